"""RQ-KMeans: residual quantization with k-means at every level (as in OneRec, arXiv 2506.13695)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from rqgmm.errors import ComponentReseedWarning, ConvergenceWarning, InvalidInputError
from rqgmm.quantize.balanced import BALANCE_MODES, balanced_lloyd
from rqgmm.quantize.base import ResidualTokenizer
from rqgmm.quantize.kmeans import (
    KMEANS_INITS,
    CentroidScorer,
    init_sample_size,
    lloyd,
    seed_centers,
)


class RQKMeans(ResidualTokenizer):
    """Residual k-means tokenizer.

    Level ``l`` runs k-means (Lloyd, k-means++ seeding on a sample) on the residuals left by
    levels ``0..l-1``; an item's code is its nearest centroid; decode sums the chosen centroids.

    Parameters
    ----------
    n_levels: number of residual levels L.
    codebook_size: codes per level, an int or a list of L ints (any size, not only powers of 2).
    max_iter: Lloyd iterations per level at most.
    tol: stop when inertia (mean squared distance) decreases by less than ``tol`` relative.
    init: "kmeans++" (greedy k-means++ on a sample) or "random" (distinct sample rows).
    seed: seed of every random choice; same seed, same data -> same codes.
    device: "cpu", "cuda", "cuda:N" or "auto".
    batch_size: rows per chunk; bounds memory during fit and encode.
    max_samples: fit each level on a seeded sample of this many rows of the current residuals
        and encode the rest (None: all rows); production fits of huge catalogues.
    precision: compute dtype of the distance products, "float32" or "float64"; statistics are
        always accumulated in float64.
    cache_mib: memory budget (MiB) for keeping a level's residuals (n x dim) between Lloyd
        iterations instead of recomputing them every pass; larger inputs (e.g. a big
        ``np.memmap``) are re-read chunk by chunk, so memory stays bounded. 0 never caches.
    balance: None (plain k-means), "hard" (at fit time every cluster holds at most ceil(n/K) of
        the rows it is fitted on: greedy capacity-constrained assignment over each row's nearest
        centroids) or "soft" (Sinkhorn-balanced assignment, strength set by balance_temperature).
        Encoding stays nearest-centroid. See :mod:`rqgmm.quantize.balanced`.
    balance_temperature: soft balance only: Sinkhorn temperature relative to the mean nearest
        squared distance; smaller values balance more strongly (and need more iterations to settle).
    progress: show progress bars (None: only on a terminal).

    Attributes
    ----------
    codebooks_: list of L arrays (K_l, dim) float32.
    inertia_: list of L floats, mean squared residual distance after each level's last update.
    n_iter_, converged_, n_reseeded_: per level.
    fit_cluster_sizes_: with ``balance``, per level the rows of each cluster in the last balanced
        assignment of the fit (lists of K ints); empty lists without.

    Example::

        tokenizer = RQKMeans(n_levels=2, codebook_size=128, seed=0)
        codes = tokenizer.fit_encode(X)          # (n, 2) int64
        X_hat = tokenizer.decode(codes)          # (n, dim) float32
    """

    _parameter_constraints = {
        "init": (lambda v: v in KMEANS_INITS, f"one of {KMEANS_INITS}"),
        "balance": (lambda v: v is None or v in BALANCE_MODES, f"None or one of {BALANCE_MODES}"),
        "balance_temperature": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
                                and math.isfinite(v) and v > 0, "a finite number > 0"),
        "cache_mib": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0,
                      "a number of MiB >= 0"),
    }

    def __init__(self, n_levels: int = 3, codebook_size: int | list[int] = 256, *, max_iter: int = 50,
                 tol: float = 1e-4, init: str = "kmeans++", seed: int | None = 0, random_state=None, device: str = "cpu",
                 batch_size: int = 16384, max_samples: int | None = None, precision: str = "float32",
                 balance: str | None = None, balance_temperature: float = 0.1, cache_mib: float = 1024,
                 progress: bool | None = None):
        self.n_levels = n_levels
        self.codebook_size = codebook_size
        self.max_iter = max_iter
        self.tol = tol
        self.init = init
        self.seed = seed
        self.random_state = random_state
        self.device = device
        self.batch_size = batch_size
        self.max_samples = max_samples
        self.precision = precision
        self.balance = balance
        self.balance_temperature = balance_temperature
        self.cache_mib = cache_mib
        self.progress = progress

    def _reset_fit_state(self) -> None:
        self.__dict__.pop("_scorers", None)
        self.inertia_: list[float] = []
        self.n_iter_: list[int] = []
        self.converged_: list[bool] = []
        self.n_reseeded_: list[int] = []
        self.fit_cluster_sizes_: list[list[int]] = []

    @property
    def _dtype(self) -> torch.dtype:
        return torch.float64 if self.precision == "float64" else torch.float32

    def _fit_level(self, level, residuals, generator, rng) -> None:
        n_codes = self.codebook_sizes[level]
        sample = residuals.sample(init_sample_size(n_codes), rng)
        centroids = self._warm_start(level)
        if centroids is None:
            centroids = seed_centers(sample, n_codes, self.init, generator)
        spread = sample.double().std(0)
        if self.balance is None:
            result = lloyd(residuals, centroids, max_iter=self.max_iter, tol=self.tol, dtype=self._dtype,
                           generator=generator, spread=spread, progress=self.progress, desc=f"k-means level {level}",
                           cache_bytes=int(self.cache_mib * 2**20))
        else:
            result = self._fit_balanced(level, residuals, centroids, generator, spread)
        if not result.converged:
            warnings.warn(
                f"RQKMeans level {level}: k-means did not converge in max_iter={self.max_iter} iterations"
                f" (relative inertia change above tol={self.tol}); raise max_iter or tol", ConvergenceWarning,
                stacklevel=3)
        if result.n_reseeded:
            warnings.warn(f"RQKMeans level {level}: re-seeded {result.n_reseeded} empty cluster(s) by splitting"
                          " the largest; the level may have more codes than the data supports",
                          ComponentReseedWarning, stacklevel=3)
        self.codebooks_.append(result.centroids.float().cpu().numpy())
        self.inertia_.append(result.inertia_history[-1])
        self.n_iter_.append(len(result.inertia_history))
        self.converged_.append(result.converged)
        self.n_reseeded_.append(result.n_reseeded)

    def _fit_balanced(self, level, residuals, centroids, generator, spread):
        read_chunks = residuals.local_chunks()
        rows_of = getattr(residuals, "rows", None)
        if read_chunks is None or rows_of is None:
            raise InvalidInputError(f"RQKMeans(balance={self.balance!r}) needs the rows in this process; it is not"
                                    " available on the Ray engine (fit with the local engine, or without balance)")
        result, sizes = balanced_lloyd(
            read_chunks, residuals.n_rows, centroids, mode=self.balance, temperature=self.balance_temperature,
            max_iter=self.max_iter, tol=self.tol, dtype=self._dtype, generator=generator, spread=spread,
            rows_of=rows_of, progress=self.progress, desc=f"balanced k-means ({self.balance}) level {level}")
        self.fit_cluster_sizes_.append([int(size) for size in np.asarray(sizes)])
        return result

    def level_scores(self, level, residual):
        scorers = self.__dict__.setdefault("_scorers", {})
        scorer = scorers.get(level)
        if scorer is None or scorer.centroids.device != residual.device:
            scorer = CentroidScorer(self._device_codebooks[level].to(residual.device).double(), self._dtype)
            scorers[level] = scorer
        return scorer.scores(residual)

    def _fitted_attributes(self):
        return {**super()._fitted_attributes(), "inertia_": self.inertia_, "n_iter_": self.n_iter_,
                "converged_": self.converged_, "n_reseeded_": self.n_reseeded_,
                "fit_cluster_sizes_": self.fit_cluster_sizes_}

    def _restore(self, arrays, attributes):
        super()._restore(arrays, attributes)
        for name in ("inertia_", "n_iter_", "converged_", "n_reseeded_"):
            setattr(self, name, list(attributes[name]))
        self.fit_cluster_sizes_ = [list(sizes) for sizes in attributes.get("fit_cluster_sizes_", [])]
