"""The network of the neural tokenizers: MLP encoder, residual codebooks, MLP decoder.

Shapes: inputs ``x`` (m, dim) standardized; latents ``z`` (m, latent_dim); codes (m, n_levels)
int64. The codebooks quantize ``z`` residually: level ``l`` picks the codeword nearest to what
levels ``0..l-1`` left, and the decoder sees the sum of the chosen codewords, passed to the encoder
with straight-through gradients (van den Oord et al. 2017; Zeghidour et al. 2021; TIGER 2023).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def mlp(dims: list[int]) -> nn.Sequential:
    """Linear layers ``dims[0] -> dims[1] -> ... -> dims[-1]`` with ReLU between them (none after
    the last)."""
    layers: list[nn.Module] = []
    for index, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:])):
        if index:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(fan_in, fan_out))
    return nn.Sequential(*layers)


def nearest_codes(residual: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest codeword (squared Euclidean) for each row: (m,) int64.

    residual: (m, d); codebook: (K, d). Uses ``argmax(2 r.c - |c|^2)``, one matrix product."""
    scores = torch.addmm(-codebook.square().sum(1), residual, codebook.T, alpha=2.0)
    return scores.argmax(dim=1)


@dataclass
class Quantized:
    """Output of :meth:`ResidualCodebooks.forward`.

    quantized: (m, d) sum of the chosen codewords (gradient to the codebooks only);
    codes: (m, L) int64; residuals: L tensors (m, d), the detached input of each level;
    codebook_loss: sum over levels of |sg(r_l) - e_l|^2 (zero with EMA updates);
    commitment_loss: sum over levels of |r_l - sg(e_l)|^2 (both as means over elements).
    """

    quantized: torch.Tensor
    codes: torch.Tensor
    residuals: list[torch.Tensor]
    codebook_loss: torch.Tensor
    commitment_loss: torch.Tensor


class ResidualCodebooks(nn.Module):
    """``L`` codebooks of ``K_l`` codewords of ``latent_dim`` each.

    With ``ema=True`` codewords are not trained by gradient but follow exponential moving
    averages of the residuals assigned to them (decay ``decay``, Laplace-smoothed counts).
    Every codebook tracks how many training steps each code has gone unused, so the training
    loop can re-seed dead codes.
    """

    def __init__(self, sizes: list[int], latent_dim: int, *, ema: bool = False, decay: float = 0.99,
                 epsilon: float = 1e-5):
        super().__init__()
        self.sizes = list(sizes)
        self.ema = ema
        self.decay = decay
        self.epsilon = epsilon
        if ema:
            for level, k in enumerate(self.sizes):
                self.register_buffer(f"codebook_{level}", torch.zeros(k, latent_dim))
                self.register_buffer(f"cluster_size_{level}", torch.ones(k))
                self.register_buffer(f"embed_sum_{level}", torch.zeros(k, latent_dim))
        else:
            self.weights = nn.ParameterList([nn.Parameter(torch.zeros(k, latent_dim)) for k in self.sizes])
        for level, k in enumerate(self.sizes):
            self.register_buffer(f"steps_unused_{level}", torch.zeros(k, dtype=torch.int64), persistent=False)

    def codebook(self, level: int) -> torch.Tensor:
        """(K_l, d) codewords of ``level`` (a Parameter without EMA, a buffer with it)."""
        return getattr(self, f"codebook_{level}") if self.ema else self.weights[level]

    @torch.no_grad()
    def set_codewords(self, level: int, index: torch.Tensor | slice, values: torch.Tensor) -> None:
        """Overwrite codewords ``index`` of ``level`` (initialization and re-seeding)."""
        self.codebook(level).data[index] = values
        if self.ema:
            getattr(self, f"embed_sum_{level}")[index] = values
            getattr(self, f"cluster_size_{level}")[index] = 1.0
        getattr(self, f"steps_unused_{level}")[index] = 0

    def forward(self, z: torch.Tensor) -> Quantized:
        residual = z
        quantized = torch.zeros_like(z)
        codes, residuals = [], []
        codebook_loss = z.new_zeros(())
        commitment_loss = z.new_zeros(())
        for level in range(len(self.sizes)):
            codebook = self.codebook(level)
            detached = residual.detach()
            level_codes = nearest_codes(detached, codebook.detach())
            chosen = codebook[level_codes]
            if not self.ema:
                codebook_loss = codebook_loss + F.mse_loss(chosen, detached)
            commitment_loss = commitment_loss + F.mse_loss(residual, chosen.detach())
            quantized = quantized + chosen
            residual = residual - chosen.detach()
            codes.append(level_codes)
            residuals.append(detached)
        return Quantized(quantized, torch.stack(codes, dim=1), residuals, codebook_loss, commitment_loss)

    @torch.no_grad()
    def ema_update(self, residuals: list[torch.Tensor], codes: torch.Tensor) -> None:
        """Move each codeword toward the mean of the residuals assigned to it in this batch."""
        for level, k in enumerate(self.sizes):
            counts = torch.bincount(codes[:, level], minlength=k).to(residuals[level].dtype)
            sums = torch.zeros_like(self.codebook(level)).index_add_(0, codes[:, level], residuals[level])
            cluster_size = getattr(self, f"cluster_size_{level}")
            embed_sum = getattr(self, f"embed_sum_{level}")
            cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
            embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
            total = cluster_size.sum()
            smoothed = (cluster_size + self.epsilon) / (total + k * self.epsilon) * total
            self.codebook(level).copy_(embed_sum / smoothed[:, None])

    @torch.no_grad()
    def reseed_dead(self, residuals: list[torch.Tensor], codes: torch.Tensor, after_steps: int,
                    generator: torch.Generator) -> list[int]:
        """Count this batch's usage; codes unused for ``after_steps`` consecutive steps are
        replaced by residuals of the batch drawn at random. Returns re-seeded codes per level."""
        reseeded = []
        for level, k in enumerate(self.sizes):
            unused = getattr(self, f"steps_unused_{level}")
            used = torch.bincount(codes[:, level], minlength=k) > 0
            unused.add_(1).masked_fill_(used, 0)
            dead = torch.nonzero(unused >= after_steps).flatten()
            if dead.numel():
                rows = torch.randint(residuals[level].shape[0], (dead.numel(),), generator=generator)
                self.set_codewords(level, dead, residuals[level][rows.to(dead.device)])
            reseeded.append(int(dead.numel()))
        return reseeded


class ResidualAutoencoder(nn.Module):
    """Encoder MLP ``dim -> hidden_dims -> latent_dim``, residual codebooks, mirrored decoder."""

    def __init__(self, dim: int, latent_dim: int, hidden_dims: list[int], sizes: list[int], *,
                 ema: bool = False, decay: float = 0.99):
        super().__init__()
        self.encoder = mlp([dim, *hidden_dims, latent_dim])
        self.decoder = mlp([latent_dim, *reversed(hidden_dims), dim])
        self.codebooks = ResidualCodebooks(sizes, latent_dim, ema=ema, decay=decay)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Quantized]:
        """x: (m, dim) -> (reconstruction (m, dim), quantization of the latent)."""
        z = self.encoder(x)
        q = self.codebooks(z)
        straight_through = z + (q.quantized - z).detach()
        return self.decoder(straight_through), q
