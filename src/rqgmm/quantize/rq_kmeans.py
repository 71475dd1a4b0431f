"""RQ-KMeans: residual quantization with k-means at every level (as in OneRec, arXiv 2506.13695)."""

from __future__ import annotations

import warnings

import numpy as np

from rqgmm.errors import ComponentReseedWarning, InvalidInputError, convergence_warning
from rqgmm.quantize.balanced import balanced_lloyd
from rqgmm.quantize.declarations import RQKMEANS_PARAMETERS
from rqgmm.quantize.kmeans import (
    CentroidScorer,
    init_sample_size,
    lloyd,
    seed_centers,
)
from rqgmm.quantize.levelwise import LevelwiseTokenizer


class RQKMeans(LevelwiseTokenizer):
    """Residual k-means tokenizer.

    Level ``l`` runs k-means (Lloyd, k-means++ seeding on a sample) on the residuals left by
    levels ``0..l-1``; an item's code is its nearest centroid; decode sums the chosen centroids.

    Attributes
    ----------
    codebooks_: list of L arrays (K_l, dim) float32.
    inertia_: list of L floats, mean squared residual distance after each level's last update.
    n_iter_, converged_, n_reseeded_: per level.
    fit_cluster_sizes_: with ``balance_mode``, per level the rows of each cluster in the last balanced
        assignment of the fit (lists of K ints); empty lists without.

    Example::

        tokenizer = RQKMeans(n_levels=2, codebook_size=128, random_state=0)
        codes = tokenizer.fit_encode(X)          # (n, 2) int64
        X_hat = tokenizer.decode(codes)          # (n, dim) float32
    """

    parameters = RQKMEANS_PARAMETERS

    level_records = (*LevelwiseTokenizer.level_records, "inertia_", "fit_cluster_sizes_")
    optional_records = ("fit_cluster_sizes_",)  # artifacts written before balanced k-means lack it

    def _fit_level(self, level, residuals, generator, rng, start) -> None:
        n_codes = self.codebook_sizes[level]
        sample = residuals.sample(init_sample_size(n_codes), rng)
        centroids = start  # an aligned refit starts from the previous version's centroids
        if centroids is None:
            centroids = seed_centers(sample, n_codes, self.init, generator)
        spread = sample.double().std(0)
        if self._param("balance_mode") is None:
            result = lloyd(residuals, centroids, max_iter=self.max_iter, tol=self.tol, dtype=self._dtype,
                           generator=generator, spread=spread, progress=self.progress, desc=f"k-means level {level}",
                           cache_bytes=int(self.cache_mib * 2**20))
        else:
            result = self._fit_balanced(level, residuals, centroids, generator, spread)
        if not result.converged:
            warnings.warn(
                f"RQKMeans level {level}: k-means did not converge in max_iter={self.max_iter} iterations"
                f" (relative inertia change above tol={self.tol}); raise max_iter or tol", convergence_warning(),
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
        rows_of = residuals.rows if residuals.training_rows() is not None else None
        if read_chunks is None or rows_of is None:
            raise InvalidInputError(f"RQKMeans(balance_mode={self._param('balance_mode')!r}) needs the rows in this process; it is not"
                                    " available on the Ray engine (fit with the local engine, or without balance)")
        result, sizes = balanced_lloyd(
            read_chunks, residuals.n_rows, centroids, mode=self._param("balance_mode"),
            temperature=self.balance_temperature,
            max_iter=self.max_iter, tol=self.tol, dtype=self._dtype, generator=generator, spread=spread,
            rows_of=rows_of, progress=self.progress, desc=f"balanced k-means ({self._param('balance_mode')}) level {level}")
        self.fit_cluster_sizes_.append([int(size) for size in np.asarray(sizes)])
        return result

    def level_scores(self, level, residual):
        scorers = self.__dict__.setdefault("_scorers", {})
        scorer = scorers.get(level)
        if scorer is None or scorer.centroids.device != residual.device:
            scorer = CentroidScorer(self._device_codebooks[level].to(residual.device).double(), self._dtype)
            scorers[level] = scorer
        return scorer.scores(residual)
