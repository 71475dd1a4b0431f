"""DAES-style distribution-aware embedding of streaming numerical fields.

After arXiv 2602.03223 (DAES), whose exact formulas are not public to us; what is built here:

1. **Distribution estimation**: a reservoir sample per field (:class:`Reservoir`, algorithm R,
   optionally recency-biased with ``window``) updated as the stream goes by.
2. **Quantile space**: a value's quantile ``q`` in its field's current distribution, by linear
   interpolation of the reservoir's empirical CDF (:func:`quantile_map`). Refreshing the
   distribution moves values, never the meaning of an embedding: the embedding is a function of
   ``q``, so no index is reassigned (the semantic drift of refreshed bins).
3. **Anchor embeddings**: ``n_anchors`` learnable vectors per field at evenly spaced quantiles
   ``a_j = j / (n_anchors - 1)``; ``e = sum_j w_j A_fj`` with
   ``w = softmax_j(-(q - a_j)^2 (n_anchors - 1)^2 / (2 s_f^2))``.
4. **Field-aware modulation (a), temperature**: the width ``s_f = softplus(rho_f)`` is learned per
   field (sharp: near one-hot anchors, like fine bins; wide: smooth interpolation). It starts at
   0.5 anchor spacings.
5. **Field-aware modulation (b), FiLM**: ``e' = e * (1 + gamma) + beta`` with ``(gamma, beta)`` a
   linear map of ``[u_f, z]``: a learned field vector ``u_f`` and the value's robust position in
   the current sample ``z = (x - median) / IQR`` (clipped to +-5). A per-field constant scale and
   shift alone would be absorbed by the anchors (the weights sum to 1), so the modulation is
   conditioned on the value's place in the current distribution, per field.

Where this differs from the paper as far as we know: the interpolation kernel, the temperature
parameterization and the FiLM conditioning are our choices; the paper's reservoir may differ in
its recency handling.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from rqgmm.stream.numeric import NumericEmbedding
from rqgmm.stream.quantiles import quantile_map
from rqgmm.stream.reservoir import Reservoir

MODULATIONS = ("temperature", "film")


def sorted_quantile(ordered: np.ndarray, filled: np.ndarray, level: float) -> np.ndarray:
    """Per-row ``level`` quantile (linear interpolation) of sorted rows (F, S) of which the first
    ``filled`` (F,) entries are used; 0 for an empty row. Returns (F,)."""
    position = np.maximum(filled - 1, 0) * level
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, np.maximum(filled - 1, 0))
    rows = np.arange(ordered.shape[0])
    low, high = ordered[rows, below], ordered[rows, above]
    with np.errstate(invalid="ignore"):  # empty rows hold +inf; masked below
        value = low + (position - below) * np.where(above > below, high - low, 0.0)
    return np.where(filled > 0, value, 0.0)


class DAESEmbedding(NumericEmbedding):
    """Distribution-aware embedding of ``n_fields`` numeric fields: (B, F) -> (B, F, dim).

    capacity: reservoir values per field; window: recency window of the reservoir (None: uniform
    over everything seen); n_anchors: anchor embeddings per field; modulations: any of
    ``("temperature", "film")`` (without "temperature" the width stays fixed at 0.5 spacings).
    """

    def __init__(self, n_fields: int, dim: int, *, n_anchors: int = 20, capacity: int = 2000,
                 window: int | None = 20_000, modulations: tuple[str, ...] = MODULATIONS,
                 field_dim: int = 8, seed: int = 0):
        super().__init__(n_fields, dim)
        unknown = set(modulations) - set(MODULATIONS)
        if unknown:
            raise ValueError(f"unknown modulation(s) {sorted(unknown)}; expected some of {MODULATIONS}")
        if n_anchors < 2:
            raise ValueError(f"n_anchors must be at least 2, got {n_anchors}")
        self.modulations = tuple(modulations)
        self.reservoir = Reservoir(n_fields, capacity, window=window, seed=seed)
        self.anchors = nn.Parameter(torch.randn(n_fields, n_anchors, dim) * 0.01)
        self.register_buffer("anchor_positions", torch.linspace(0.0, 1.0, n_anchors))
        start = math.log(math.expm1(0.5))  # softplus^-1(0.5)
        self.width = nn.Parameter(torch.full((n_fields,), start), requires_grad="temperature" in modulations)
        if "film" in modulations:
            self.field_vectors = nn.Parameter(torch.randn(n_fields, field_dim) * 0.1)
            self.film = nn.Linear(field_dim + 1, 2 * dim)
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)
        # the reservoir's sorted sample and robust statistics: non-persistent buffers, so they
        # follow the module's device and dtype and stay out of the state dict
        for name in ("_sorted", "_filled", "_median", "_spread"):
            self.register_buffer(name, None, persistent=False)
        self._refresh_state()

    @torch.no_grad()
    def observe(self, values: np.ndarray) -> None:
        self.reservoir.update(values)
        self._refresh_state()

    def _refresh_state(self) -> None:
        device = self.anchor_positions.device
        ordered, filled = self.reservoir.sorted_sample()
        low, median, high = (sorted_quantile(ordered, filled, level) for level in (0.25, 0.5, 0.75))
        self._sorted = torch.as_tensor(ordered, device=device)
        self._filled = torch.as_tensor(filled, device=device)
        self._median = torch.as_tensor(median, dtype=torch.float32, device=device)
        self._spread = torch.as_tensor(np.where(high - low > 0, high - low, 1.0), dtype=torch.float32, device=device)

    def quantiles(self, values: torch.Tensor) -> torch.Tensor:
        """(B, F) values -> (B, F) quantiles in [0, 1] under the current reservoir."""
        return quantile_map(self._sorted, self._filled, values)

    def embed(self, values: torch.Tensor) -> torch.Tensor:
        q = self.quantiles(values).to(self.anchors.dtype)  # (B, F)
        spacing = self.anchor_positions.shape[0] - 1
        width = nn.functional.softplus(self.width)[:, None]  # (F, 1) in anchor spacings
        distance = (q[..., None] - self.anchor_positions) * spacing  # (B, F, H)
        weights = torch.softmax(-distance.square() / (2 * width.square()), dim=-1)
        embedded = torch.einsum("bfh,fhd->bfd", weights, self.anchors)
        if "film" in self.modulations:
            z = ((values.to(self._median.dtype) - self._median) / self._spread).clamp(-5, 5)
            context = torch.cat([self.field_vectors.expand(values.shape[0], -1, -1), z[..., None]], dim=-1)
            gamma, beta = self.film(context).chunk(2, dim=-1)
            embedded = embedded * (1 + gamma) + beta
        return embedded
