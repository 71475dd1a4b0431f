"""Embeddings of streaming numerical fields: the common contract and the four baselines.

Every module maps raw values (B, F) float (NaN = missing) to (B, F, D) and keeps whatever
distribution state it needs, updated by :meth:`NumericEmbedding.observe` as the stream goes by
(the training loop calls it after predicting a batch and before training on it, so no state
ever holds a value from the future of the row being predicted). Missing values get a learned
per-field embedding.

Baselines (same interface as :class:`rqgmm.stream.daes.DAESEmbedding`):

- :class:`ScalarEmbedding`: ``z * v_f + b_f`` with ``z`` the running-standardized ``symlog(x)``.
- :class:`StaticBinning`: equal-frequency bins fitted once on a warm-up prefix.
- :class:`RefreshedBinning`: equal-frequency bins re-fitted every ``refresh_every`` rows from a
  recency-biased reservoir; a bin's embedding keeps its index, so its meaning moves with the
  boundaries (the "semantic drift" DAES avoids).
- :class:`AutoDis`: soft discretization into meta-embeddings (Guo et al., KDD 2021).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rqgmm.stream.reservoir import Reservoir


def symlog(values: torch.Tensor) -> torch.Tensor:
    """``sign(x) log(1 + |x|)``: tames heavy-tailed counts before standardization."""
    return torch.sign(values) * torch.log1p(values.abs())


class NumericEmbedding(nn.Module):
    """Base: (B, F) values with NaN for missing -> (B, F, dim)."""

    def __init__(self, n_fields: int, dim: int):
        super().__init__()
        self.n_fields = n_fields
        self.dim = dim
        self.missing = nn.Parameter(torch.randn(n_fields, dim) * 0.01)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        absent = torch.isnan(values)
        embedded = self.embed(torch.where(absent, torch.zeros_like(values), values))
        return torch.where(absent[..., None], self.missing.expand_as(embedded), embedded)

    def embed(self, values: torch.Tensor) -> torch.Tensor:
        """(B, F) finite values -> (B, F, dim)."""
        raise NotImplementedError

    @torch.no_grad()
    def observe(self, values: np.ndarray) -> None:
        """Update the distribution state with a batch (B, F) of the stream (NaN skipped)."""


class RunningStandardizer:
    """Per-field running mean and variance of ``symlog(x)`` (Welford, NaN skipped)."""

    def __init__(self, n_fields: int):
        self.count = np.zeros(n_fields)
        self.mean = np.zeros(n_fields)
        self.m2 = np.zeros(n_fields)

    def update(self, values: np.ndarray) -> None:
        transformed = np.sign(values) * np.log1p(np.abs(values))
        for field in range(values.shape[1]):
            column = transformed[:, field]
            column = column[np.isfinite(column)]
            if column.size == 0:
                continue
            n_a, n_b = self.count[field], column.size
            mean_b = column.mean()
            delta = mean_b - self.mean[field]
            total = n_a + n_b
            self.mean[field] += delta * n_b / total
            self.m2[field] += ((column - mean_b) ** 2).sum() + delta**2 * n_a * n_b / total
            self.count[field] = total

    def transform(self, values: torch.Tensor) -> torch.Tensor:
        std = np.sqrt(self.m2 / np.maximum(self.count, 1)) + 1e-6
        mean = torch.as_tensor(self.mean, dtype=values.dtype, device=values.device)
        return (symlog(values) - mean) / torch.as_tensor(std, dtype=values.dtype, device=values.device)


class ScalarEmbedding(NumericEmbedding):
    """``z * v_f + b_f``: one learned direction per field scaled by the standardized value."""

    def __init__(self, n_fields: int, dim: int):
        super().__init__(n_fields, dim)
        self.direction = nn.Parameter(torch.randn(n_fields, dim) * 0.1)
        self.bias = nn.Parameter(torch.zeros(n_fields, dim))
        self.standardizer = RunningStandardizer(n_fields)

    def embed(self, values):
        z = self.standardizer.transform(values).clamp(-10, 10)
        return z[..., None] * self.direction + self.bias

    @torch.no_grad()
    def observe(self, values):
        self.standardizer.update(values)


class _BinnedEmbedding(NumericEmbedding):
    """A table of ``n_bins`` embeddings per field indexed by bucketized values."""

    def __init__(self, n_fields: int, dim: int, n_bins: int):
        super().__init__(n_fields, dim)
        self.n_bins = n_bins
        self.table = nn.Parameter(torch.randn(n_fields, n_bins, dim) * 0.01)
        self.register_buffer("boundaries", None, persistent=False)  # (F, n_bins - 1) ascending once fitted

    def fit_boundaries(self, samples: list[np.ndarray]) -> None:
        """Equal-frequency interior boundaries from one sample per field."""
        levels = np.linspace(0, 1, self.n_bins + 1)[1:-1]
        rows = [np.quantile(s, levels) if s.size else np.zeros(levels.size) for s in samples]
        self.boundaries = torch.as_tensor(np.stack(rows), dtype=torch.float64, device=self.table.device)

    def embed(self, values):
        if self.boundaries is None:
            bins = torch.zeros(values.shape, dtype=torch.int64, device=values.device)
        else:
            columns = values.T.contiguous().to(torch.float64)
            bins = torch.searchsorted(self.boundaries, columns, right=True).T
        fields = torch.arange(self.n_fields, device=values.device).expand_as(bins)
        return self.table[fields, bins]


class StaticBinning(_BinnedEmbedding):
    """Equal-frequency bins fitted once, on the first ``warmup_rows`` rows of the stream."""

    def __init__(self, n_fields: int, dim: int, n_bins: int = 20, warmup_rows: int = 10_000):
        super().__init__(n_fields, dim, n_bins)
        self.warmup_rows = warmup_rows
        self._prefix: list[np.ndarray] = []
        self._rows = 0

    @torch.no_grad()
    def observe(self, values):
        if self.boundaries is not None:
            return
        self._prefix.append(np.asarray(values, dtype=np.float64))
        self._rows += len(values)
        if self._rows >= self.warmup_rows:
            prefix = np.concatenate(self._prefix)
            self.fit_boundaries([c[np.isfinite(c)] for c in prefix.T])
            self._prefix = []


class RefreshedBinning(_BinnedEmbedding):
    """Equal-frequency bins re-fitted every ``refresh_every`` rows from a recency-biased reservoir."""

    def __init__(self, n_fields: int, dim: int, n_bins: int = 20, refresh_every: int = 10_000,
                 capacity: int = 2000, window: int | None = 20_000, seed: int = 0):
        super().__init__(n_fields, dim, n_bins)
        self.refresh_every = refresh_every
        self.reservoir = Reservoir(n_fields, capacity, window=window, seed=seed)
        self._since_refresh = 0

    @torch.no_grad()
    def observe(self, values):
        self.reservoir.update(values)
        self._since_refresh += len(values)
        if self.boundaries is None or self._since_refresh >= self.refresh_every:
            self.fit_boundaries([self.reservoir.values[f, :self.reservoir.filled[f]] for f in range(self.n_fields)])
            self._since_refresh = 0


class AutoDis(NumericEmbedding):
    """Soft discretization (AutoDis): ``h = LeakyReLU(w_f z)``, ``h' = W_f h + alpha h``,
    ``e = sum_j softmax(h' / tau)_j m_fj`` over ``n_meta`` meta-embeddings per field."""

    def __init__(self, n_fields: int, dim: int, n_meta: int = 20, temperature: float = 1.0, skip: float = 0.5):
        super().__init__(n_fields, dim)
        self.meta = nn.Parameter(torch.randn(n_fields, n_meta, dim) * 0.01)
        self.projection = nn.Parameter(torch.randn(n_fields, n_meta) * 0.5)
        self.mixing = nn.Parameter(torch.randn(n_fields, n_meta, n_meta) / n_meta**0.5)
        self.temperature = temperature
        self.skip = skip
        self.standardizer = RunningStandardizer(n_fields)

    def embed(self, values):
        z = self.standardizer.transform(values).clamp(-10, 10)
        hidden = nn.functional.leaky_relu(z[..., None] * self.projection)  # (B, F, H)
        mixed = torch.einsum("bfh,fhk->bfk", hidden, self.mixing) + self.skip * hidden
        weights = torch.softmax(mixed / self.temperature, dim=-1)
        return torch.einsum("bfh,fhd->bfd", weights, self.meta)

    @torch.no_grad()
    def observe(self, values):
        self.standardizer.update(values)
