"""Re-seeding of empty or collapsed codebook entries by splitting the heaviest one.

A split moves the heaviest entry's codeword by +delta and puts the dead entry at -delta, with
``delta = split_scale * spread * z`` (z standard normal, drawn from the fit's generator), so the
next assignment divides the heaviest entry's rows between the two (the LBG splitting rule).
"""

from __future__ import annotations

import torch

SPLIT_SCALE = 0.1


def split_heaviest(counts: torch.Tensor, dead: torch.Tensor, means: torch.Tensor, spread: torch.Tensor,
                   generator: torch.Generator) -> list[tuple[int, int]]:
    """Re-seed every dead entry in place; return ``[(dead_index, donor_index), ...]``.

    counts: (K,) float64 mass per entry, halved for donors; dead: (K,) bool; means: (K, dim)
    float64, modified in place; spread: (K, dim) or (dim,) per-dimension standard deviation.
    """
    counts = counts.clone()
    pairs = []
    for dead_index in torch.nonzero(dead).flatten().tolist():
        alive = counts.clone()
        alive[dead] = -1.0
        donor = int(torch.argmax(alive))
        donor_spread = spread[donor] if spread.ndim == 2 else spread
        z = torch.randn(means.shape[1], generator=generator, dtype=torch.float64).to(means.device)
        delta = SPLIT_SCALE * donor_spread * z
        means[dead_index] = means[donor] - delta
        means[donor] = means[donor] + delta
        counts[donor] = counts[donor] / 2
        counts[dead_index] = counts[donor]
        dead = dead.clone()
        dead[dead_index] = False
        pairs.append((dead_index, donor))
    return pairs
