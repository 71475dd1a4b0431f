"""One level of k-means (Lloyd) as chunked sufficient statistics, and k-means++ seeding.

Squared distances are expanded as ``|x|^2 - 2 x.c + |c|^2`` so a chunk costs one matrix product
of shape (m, dim) x (dim, K); a chunk's per-cluster sums are taken in the compute dtype and
accumulated over chunks in float64.
"""

from __future__ import annotations

import functools
import math
import operator
from dataclasses import dataclass

import torch

from rqgmm.progress import progress_bar
from rqgmm.quantize.declarations import KMEANS_INITS  # noqa: E402,F401 - declared with the parameters
from rqgmm.quantize.reseed import split_heaviest
from rqgmm.quantize.residuals import ResidualSource
from rqgmm.quantize.rowops import TILE_ROWS, group_sums, row_argmax


@dataclass
class KMeansStats:
    """counts: (K,) rows per cluster; sums: (K, dim) their sums; inertia: sum of squared
    distances to the nearest centroid; n_rows: rows seen (all float64 / Python numbers)."""

    counts: torch.Tensor
    sums: torch.Tensor
    inertia: float
    n_rows: int

    def __add__(self, other: "KMeansStats") -> "KMeansStats":
        return KMeansStats(self.counts + other.counts, self.sums + other.sums,
                           self.inertia + other.inertia, self.n_rows + other.n_rows)


class CentroidScorer:
    """Nearest-centroid assignment for chunks (m, dim); ``scores`` are ``2 x.c - |c|^2``,
    whose argmax is the nearest centroid."""

    def __init__(self, centroids: torch.Tensor, dtype: torch.dtype = torch.float32):
        self.centroids = centroids
        self.dtype = dtype
        c = centroids.to(dtype)
        self.weight_matrix = (2.0 * c).T.contiguous()  # (dim, K)
        self.bias = -(c.square().sum(1))

    def scores(self, chunk: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.bias, chunk.to(self.dtype), self.weight_matrix)

    def assign(self, chunk: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(codes (m,) int64, best score 2 x.c - |c|^2 of the chosen centroid (m,))``,
        tile by tile on the CPU so each score tile stays in cache."""
        if chunk.shape[0] > TILE_ROWS and chunk.device.type == "cpu":
            parts = [self.assign(tile) for tile in chunk.split(TILE_ROWS)]
            return torch.cat([codes for codes, _ in parts]), torch.cat([best for _, best in parts])
        scores = self.scores(chunk)
        codes = row_argmax(scores)
        return codes, scores.gather(1, codes[:, None]).squeeze(1)

    def accumulate(self, chunk: torch.Tensor) -> KMeansStats:
        chunk = chunk.to(self.dtype)
        codes, best = self.assign(chunk)
        k = self.centroids.shape[0]
        counts = torch.bincount(codes, minlength=k).double()
        sums = group_sums(chunk, codes, k)
        flat = chunk.reshape(-1)
        # squared distance to the chosen centroid is |x|^2 - best, summed over rows
        inertia = float(flat @ flat) - float(best.double().sum())
        return KMeansStats(counts, sums.double(), max(inertia, 0.0), int(chunk.shape[0]))


def kmeans_plusplus(sample: torch.Tensor, n_clusters: int, generator: torch.Generator,
                    n_local_trials: int | None = None) -> torch.Tensor:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007, as in scikit-learn).

    sample: (m, dim) float tensor; returns (n_clusters, dim) rows of ``sample``. When the sample
    has fewer distinct rows than ``n_clusters`` the remaining centers repeat existing rows
    (the caller re-seeds duplicates by splitting).
    """
    m = sample.shape[0]
    if n_local_trials is None:
        n_local_trials = 2 + int(math.log(n_clusters))
    sample = sample.double() if sample.dtype == torch.float64 else sample.float()
    norms = sample.square().sum(1)
    first = int(torch.randint(m, (1,), generator=generator, device="cpu"))
    centers = [first]
    closest = (norms - 2 * sample @ sample[first] + norms[first]).clamp_min(0)
    potential = closest.sum()
    for _ in range(1, n_clusters):
        if float(potential) <= 0.0:  # every sample point already is a center
            centers.append(int(torch.randint(m, (1,), generator=generator, device="cpu")))
            continue
        draws = torch.rand(n_local_trials, generator=generator, device="cpu").to(sample.device, sample.dtype)
        cumulative = torch.cumsum(closest, 0)
        candidates = torch.searchsorted(cumulative, draws * potential).clamp_max(m - 1)
        cand = sample[candidates]  # (trials, dim)
        dist = (norms[None, :] - 2 * cand @ sample.T + norms[candidates][:, None]).clamp_min(0)
        trial_closest = torch.minimum(closest[None, :], dist)
        trial_potential = trial_closest.sum(1)
        best = int(torch.argmin(trial_potential))
        centers.append(int(candidates[best]))
        closest = trial_closest[best]
        potential = trial_potential[best]
    return sample[torch.tensor(centers, device=sample.device)].clone()


def kmeans_in_memory(sample: torch.Tensor, n_clusters: int, generator: torch.Generator, *,
                     n_iter: int = 20) -> torch.Tensor:
    """k-means++ seeding plus ``n_iter`` Lloyd updates on a sample held in memory.

    sample: (m, dim) float tensor; returns centroids (n_clusters, dim) float32. A cluster that
    empties keeps its previous centroid (used for codebook initialization, where the training
    loop re-seeds codes that stay unused).
    """
    centroids = kmeans_plusplus(sample, n_clusters, generator).double()
    for _ in range(n_iter):
        stats = CentroidScorer(centroids).accumulate(sample)
        alive = stats.counts > 0
        updated = centroids.clone()
        updated[alive] = stats.sums[alive] / stats.counts[alive, None]
        if torch.equal(updated, centroids):
            break
        centroids = updated
    return centroids.float()


def init_sample_size(n_codes: int) -> int:
    """Rows drawn for seeding a level of ``n_codes`` codes: enough for k-means++ to see every
    region (64 per code), at least 20k, bounded so seeding stays cheap next to the passes."""
    return max(20_000, 64 * n_codes)


def seed_centers(sample: torch.Tensor, n_codes: int, init: str, generator: torch.Generator) -> torch.Tensor:
    """Initial codewords (n_codes, dim) float64 drawn from ``sample`` (m, dim)."""
    if init == "kmeans++":
        return kmeans_plusplus(sample.double(), n_codes, generator)
    if init == "random":
        order = torch.randperm(sample.shape[0], generator=generator)[:n_codes].to(sample.device)
        return sample[order].double().clone()
    raise ValueError(f"unknown init {init!r}")


@dataclass
class LloydResult:
    """centroids: (K, dim) float64; inertia_history: mean squared distance per row before each
    update; converged; n_reseeded: entries re-seeded over the run."""

    centroids: torch.Tensor
    inertia_history: list[float]
    converged: bool
    n_reseeded: int


class ResidualCache:
    """A level's residual chunks, kept after the first pass when all of them fit in ``max_bytes``.

    Every Lloyd pass otherwise re-reads the rows and recomputes their residuals from the finished
    levels' codes; the kept chunks are the same tensors in the same order, so the statistics are
    bit-identical. Above the budget (or when the rows live elsewhere, as on Ray) every pass goes
    through the source, so memory stays bounded by one chunk.
    """

    def __init__(self, stream: ResidualSource, max_bytes: int):
        self._stream = stream
        self._read = stream.local_chunks()
        self.caches = self._read is not None and stream.n_rows * stream.dim * 4 <= max_bytes
        self._kept: list[torch.Tensor] | None = None

    def reduce(self, function):
        if not self.caches:
            return self._stream.reduce(function)
        if self._kept is None:
            self._kept = [chunk.contiguous() for chunk in self._read()]
        return functools.reduce(operator.add, map(function, self._kept))


def lloyd(stream: ResidualSource, centroids: torch.Tensor, *, max_iter: int, tol: float, dtype: torch.dtype,
          generator: torch.Generator, spread: torch.Tensor, progress: bool | None, desc: str,
          cache_bytes: int = 0) -> LloydResult:
    """Chunked Lloyd iterations until the relative decrease of inertia is below ``tol``; the
    residual chunks are kept between passes when they fit in ``cache_bytes`` (float32 sizes)."""
    passes = ResidualCache(stream, cache_bytes)
    history: list[float] = []
    converged = False
    n_reseeded = 0
    centroids = centroids.clone()
    iterations = progress_bar(range(max_iter), enabled=progress, desc=desc)
    for _ in iterations:
        scorer = CentroidScorer(centroids, dtype)
        with torch.inference_mode():
            stats = passes.reduce(scorer.accumulate)
        inertia = stats.inertia / stats.n_rows
        history.append(inertia)
        dead = stats.counts < 0.5
        updated = stats.sums / stats.counts.clamp_min(1.0)[:, None]
        updated[dead] = centroids[dead]
        if bool(dead.any()):
            n_reseeded += len(split_heaviest(stats.counts, dead, updated, spread, generator))
        iterations.set_postfix(mse=f"{inertia:.5g}")
        shift = float(torch.linalg.vector_norm(updated - centroids))
        centroids = updated
        if len(history) > 1 and not dead.any():
            previous = history[-2]
            if previous - inertia <= tol * max(previous, 1e-300) or shift == 0.0:
                converged = True
                break
    return LloydResult(centroids, history, converged, n_reseeded)
