"""Semantic-ID quality, measurable chunk by chunk on catalogues of any size.

:class:`QualityAccumulator` takes ``update(codes, X, labels)`` per chunk and ``finalize()``
returns a frozen :class:`QualityReport`. Definitions (``n`` items, level ``l`` with ``K_l`` codes,
``p_k`` the share of items using code ``k``):

- Reconstruction, cumulative after each level: MSE and RMSE per coordinate of
  ``x - x_hat_l`` where ``x_hat_l`` decodes the first ``l+1`` levels; relative L2 error is the mean
  over items of ``|x - x_hat_l| / |x|``.
- Usage per level: utilization = used codes / K; dead codes = K - used; entropy
  ``H = -sum p_k ln p_k`` (nats); perplexity ``exp(H)`` (in codes); entropy ratio ``H / ln K``;
  Gini of the K code counts (0 = uniform, -> 1 = one code); largest code's share ``max p_k``.
- Whole ID: unique-ID rate = share of items whose full ID no other item has; collision rate =
  ``1 - distinct IDs / n`` (the share of items that would need a suffix); largest bucket.
- Robustness (after DRQ, arXiv 2606.01844; our exact definition): each of up to ``overlap_items``
  items is perturbed ``overlap_draws`` times by isotropic Gaussian noise whose expected norm is
  ``noise_scale * |x|`` (per-coordinate std ``noise_scale * |x| / sqrt(dim)``), and re-encoded.
  With ``C`` the clean code and ``C'`` the perturbed code at a level, ``keep_rate = P(C' = C)``,
  the effective capacity ``K_eff = exp(I(C; C'))`` (in codes: the size of an ideal, uniformly
  used, noise-free codebook that carries the same information through the noise), and the
  expected codeword overlap ``O = 1 / K_eff``. ``K_eff = 1`` when all items share one code and
  ``K_eff = K`` for ``K`` uniformly used codes that noise never confuses. It splits as
  ``K_eff = perplexity / exp(H(C | C'))``: usage skew lowers the perplexity, geometric confusion
  raises ``H(C | C')``. Plug-in estimate from the joint counts (biased upward when items per
  code are few).
- Semantic discriminability (needs item labels: one label or a set of labels per item):
  ``P(two items share a label | they share the level-1 code)`` divided by the same for two random
  items (lift over chance; also for the full ID), from ``pairs`` pairs sampled with a fixed seed;
  and k-nearest-neighbour label purity: for up to ``purity_items`` items, the share of their
  ``k`` nearest neighbours by decoded embedding (among those items) sharing a label.
- Mixture models (RQ-GMM): mean log-likelihood per row and BIC per level.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from rqgmm.errors import InvalidInputError
from rqgmm.metrics.churn import ChurnStats, id_churn


# ---------------------------------------------------------------------------- results
@dataclass(frozen=True)
class ReconstructionStats:
    """Per level l (cumulative over levels 0..l): mse and rmse per coordinate, relative_l2 the
    mean of |x - x_hat| / |x| over items."""

    mse: tuple[float, ...]
    rmse: tuple[float, ...]
    relative_l2: tuple[float, ...]


@dataclass(frozen=True)
class LevelUsage:
    """Code usage of one level; see the module docstring for each definition."""

    level: int
    codebook_size: int
    used_codes: int
    utilization: float
    dead_codes: int
    entropy: float
    perplexity: float
    entropy_ratio: float
    gini: float
    max_share: float


@dataclass(frozen=True)
class CollisionStats:
    """Whole-ID uniqueness: n_items, n_distinct_ids, unique_id_rate, collision_rate,
    largest_bucket, and bucket_sizes (histogram: bucket_sizes[s] = number of IDs held by s items)."""

    n_items: int
    n_distinct_ids: int
    unique_id_rate: float
    collision_rate: float
    largest_bucket: int
    bucket_sizes: tuple[int, ...]


@dataclass(frozen=True)
class OverlapStats:
    """Per level: keep_rate, mutual_information (nats), effective_capacity K_eff (codes),
    overlap O = 1/K_eff; noise_scale (relative to |x|), n_items and draws used."""

    noise_scale: float
    n_items: int
    draws: int
    keep_rate: tuple[float, ...]
    mutual_information: tuple[float, ...]
    effective_capacity: tuple[float, ...]
    overlap: tuple[float, ...]


@dataclass(frozen=True)
class SemanticStats:
    """chance: P(random pair shares a label); same_code_share / lift at level 1 and full_id_*
    for the full ID (lift = share / chance); knn_purity with k neighbours over n_items."""

    chance: float
    same_code_share: float
    level1_lift: float
    full_id_share: float
    full_id_lift: float
    knn_purity: float
    k: int
    n_items: int


@dataclass(frozen=True)
class QualityReport:
    """Everything measured about one tokenizer on one set of items."""

    method: str
    n_items: int
    dim: int
    codebook_sizes: tuple[int, ...]
    reconstruction: ReconstructionStats
    usage: tuple[LevelUsage, ...]
    collisions: CollisionStats
    overlap: OverlapStats | None = None
    semantic: SemanticStats | None = None
    log_likelihood: tuple[float, ...] | None = None
    bic: tuple[float, ...] | None = None
    usage_counts: tuple[tuple[int, ...], ...] = field(default=(), repr=False)
    churn: ChurnStats | None = None
    tokenizer_version: str | None = None  # the measured tokenizer's content version

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def headline(self) -> dict[str, Any]:
        """The figures a table shows: RMSE, utilization / perplexity per level, uniqueness…"""
        row = {"method": self.method, "rmse": self.reconstruction.rmse[-1],
               "relative_l2": self.reconstruction.relative_l2[-1],
               "utilization": [u.utilization for u in self.usage],
               "perplexity": [u.perplexity for u in self.usage],
               "gini": [u.gini for u in self.usage],
               "unique_id_rate": self.collisions.unique_id_rate,
               "collision_rate": self.collisions.collision_rate}
        if self.overlap is not None:
            row["effective_capacity"] = list(self.overlap.effective_capacity)
            row["keep_rate"] = list(self.overlap.keep_rate)
        if self.semantic is not None:
            row["level1_lift"] = self.semantic.level1_lift
            row["full_id_lift"] = self.semantic.full_id_lift
            row["knn_purity"] = self.semantic.knn_purity
        if self.log_likelihood is not None:
            row["log_likelihood"] = list(self.log_likelihood)
        if self.churn is not None:
            row["prefix_churn"] = list(self.churn.prefix_changed)
            row["full_id_churn"] = self.churn.full_id_changed
        return row


def compare(before: QualityReport, after: QualityReport) -> dict[str, Any]:
    """Differences ``after - before`` of every headline number (lists element-wise)."""
    first, second = before.headline(), after.headline()
    diff: dict[str, Any] = {}
    for key, value in second.items():
        if key == "method" or key not in first:
            continue
        if isinstance(value, list):
            diff[key] = [b - a for a, b in zip(first[key], value)]
        else:
            diff[key] = value - first[key]
    return {"before": first["method"], "after": second["method"], "difference": diff}


# ---------------------------------------------------------------------------- pure functions
def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative counts (0 when all equal; (K-1)/K when one holds all)."""
    counts = np.sort(np.asarray(counts, dtype=np.float64))
    total = counts.sum()
    if total == 0 or len(counts) == 0:
        return 0.0
    k = len(counts)
    ranks = np.arange(1, k + 1)
    return float((2 * (ranks * counts).sum()) / (k * total) - (k + 1) / k)


def usage_stats(counts: np.ndarray, level: int = 0) -> LevelUsage:
    """Usage figures of one level from its code counts (K,)."""
    counts = np.asarray(counts, dtype=np.int64)
    k = len(counts)
    total = counts.sum()
    shares = counts[counts > 0] / max(total, 1)
    entropy = float(-(shares * np.log(shares)).sum()) if total else 0.0
    used = int((counts > 0).sum())
    return LevelUsage(level=level, codebook_size=k, used_codes=used, utilization=used / k, dead_codes=k - used,
                      entropy=entropy, perplexity=math.exp(entropy),
                      entropy_ratio=entropy / math.log(k) if k > 1 else 1.0, gini=gini(counts),
                      max_share=float(counts.max() / total) if total else 0.0)


def mutual_information(joint: np.ndarray) -> tuple[float, float]:
    """Plug-in ``(I(C; C'), P(C' = C))`` in nats from a (K, K) joint count matrix."""
    joint = np.asarray(joint, dtype=np.float64)
    total = joint.sum()
    p = joint / total
    rows, cols = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
    nonzero = p > 0
    info = float((p[nonzero] * np.log(p[nonzero] / (rows @ cols)[nonzero])).sum())
    return max(info, 0.0), float(np.trace(p))


def label_sets(labels, n: int) -> list[frozenset]:
    """One label or an iterable of labels per item -> a frozenset per item."""
    if len(labels) != n:
        raise InvalidInputError(f"labels: got {len(labels)} labels for {n} items")
    sets = []
    for value in labels:
        if isinstance(value, (list, tuple, set, frozenset, np.ndarray)):
            sets.append(frozenset(str(v) for v in value))
        else:
            sets.append(frozenset() if value is None or (isinstance(value, float) and math.isnan(value))
                        else frozenset([str(value)]))
    return sets


def _label_bits(sets: Sequence[frozenset], vocabulary: dict[str, int]) -> np.ndarray:
    """Label sets as bit masks over a growing vocabulary: (n, words) uint64."""
    for labels in sets:
        for label in labels:
            vocabulary.setdefault(label, len(vocabulary))
    words = max(1, -(-len(vocabulary) // 64))
    bits = np.zeros((len(sets), words), dtype=np.uint64)
    for row, labels in enumerate(sets):
        for label in labels:
            index = vocabulary[label]
            bits[row, index // 64] |= np.uint64(1) << np.uint64(index % 64)
    return bits


def _share_label(bits: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    return (bits[first] & bits[second]).any(axis=1)


def _id_keys(codes: np.ndarray) -> np.ndarray:
    """One hashable row per full ID: codes viewed as a void dtype (n,)."""
    codes = np.ascontiguousarray(codes, dtype=np.int64)
    return codes.view(np.dtype((np.void, codes.dtype.itemsize * codes.shape[1]))).ravel()


def _pairs_within_groups(group: np.ndarray, n_pairs: int, rng: np.random.Generator):
    """Uniform random pairs of distinct items sharing ``group`` (n,), as (first, second)."""
    order = np.argsort(group, kind="stable")
    _, starts, sizes = np.unique(group[order], return_index=True, return_counts=True)
    weights = sizes.astype(np.float64) * (sizes - 1)
    if weights.sum() == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    chosen = rng.choice(len(sizes), size=n_pairs, p=weights / weights.sum())
    size = sizes[chosen]
    a = rng.integers(0, size)
    b = (a + rng.integers(1, np.maximum(size, 2))) % size  # a different member
    return order[starts[chosen] + a], order[starts[chosen] + b]


# ---------------------------------------------------------------------------- accumulator
class QualityAccumulator:
    """Streaming semantic-ID quality of a fitted tokenizer.

    Call ``update(codes, X, labels=None)`` for each chunk (codes (m, L) from ``encode``, X (m, dim)
    the embeddings, labels a length-m sequence of labels or label sets) and ``finalize()`` once.
    Memory: per-level counts, one int key per item for the collision count, labels as bit masks,
    and the first ``max(overlap_items, purity_items)`` items' vectors.
    """

    def __init__(self, tokenizer, *, noise_scale: float = 0.1, overlap_items: int = 5000, overlap_draws: int = 4,
                 pairs: int = 200_000, purity_items: int = 5000, k: int = 10, seed: int = 0, method: str | None = None):
        self.tokenizer = tokenizer
        self.method = method or type(tokenizer).__name__
        self.noise_scale, self.overlap_items, self.overlap_draws = noise_scale, overlap_items, overlap_draws
        self.pairs, self.purity_items, self.k, self.seed = pairs, purity_items, k, seed
        self.sizes = list(tokenizer.codebook_sizes)
        levels = len(self.sizes)
        self.n_items = 0
        self.squared_error = np.zeros(levels)
        self.relative_error = np.zeros(levels)
        self.counts = [np.zeros(size, dtype=np.int64) for size in self.sizes]
        self.id_keys: list[np.ndarray] = []
        self.level1: list[np.ndarray] = []
        self.label_bits: list[np.ndarray] = []
        self.vocabulary: dict[str, int] = {}
        self.has_labels: bool | None = None
        self.sample_rows: list[np.ndarray] = []
        self.sample_codes: list[np.ndarray] = []
        self.noise_rng = np.random.default_rng(seed)
        self.joint = [np.zeros((size, size), dtype=np.int64) for size in self.sizes]
        self.overlap_seen = 0
        self.log_likelihood = np.zeros(levels) if hasattr(tokenizer, "score_levels") else None

    def update(self, codes: np.ndarray, X: np.ndarray, labels=None) -> "QualityAccumulator":
        codes = np.asarray(codes, dtype=np.int64)
        X = np.asarray(X, dtype=np.float32)
        if codes.ndim != 2 or codes.shape[0] != X.shape[0] or codes.shape[1] < len(self.sizes):
            raise InvalidInputError(f"update: codes {codes.shape} and X {X.shape} do not describe the same items")
        if self.has_labels is None:
            self.has_labels = labels is not None
        elif self.has_labels != (labels is not None):
            raise InvalidInputError("update: pass labels with every chunk or with none")
        m = len(codes)
        norms = np.linalg.norm(X, axis=1).astype(np.float64)
        for level in range(len(self.sizes)):
            error = X - self.tokenizer.decode_prefix(codes, level + 1)
            squared = np.square(error, dtype=np.float64).sum(1)
            self.squared_error[level] += squared.sum()
            self.relative_error[level] += (np.sqrt(squared) / np.maximum(norms, 1e-12)).sum()
            self.counts[level] += np.bincount(codes[:, level], minlength=self.sizes[level])
        self.id_keys.append(_id_keys(codes[:, : len(self.sizes)]))
        self.level1.append(codes[:, 0].copy())
        if labels is not None:
            self.label_bits.append(_label_bits(label_sets(labels, m), self.vocabulary))
        keep = max(0, max(self.overlap_items, self.purity_items) - sum(len(r) for r in self.sample_rows))
        if keep:
            self.sample_rows.append(X[:keep].copy())
            self.sample_codes.append(codes[:keep, : len(self.sizes)].copy())
        self._update_overlap(codes, X)
        if self.log_likelihood is not None:
            self.log_likelihood += self.tokenizer.score_levels(X) * m
        self.n_items += m
        return self

    def _update_overlap(self, codes: np.ndarray, X: np.ndarray) -> None:
        take = min(len(X), self.overlap_items - self.overlap_seen)
        if take <= 0 or self.noise_scale <= 0:
            return
        rows, clean = X[:take], codes[:take]
        dim = X.shape[1]
        scale = self.noise_scale * np.linalg.norm(rows, axis=1, keepdims=True) / math.sqrt(dim)
        # row-major draws: the same rows get the same noise however the items are chunked
        noise = self.noise_rng.standard_normal((take, self.overlap_draws, dim)).astype(np.float32).transpose(1, 0, 2)
        perturbed = (rows[None] + noise * scale[None].astype(np.float32)).reshape(-1, dim)
        noisy = self.tokenizer.encode(perturbed).reshape(self.overlap_draws, take, -1)
        for level, size in enumerate(self.sizes):
            flat = np.tile(clean[:, level], self.overlap_draws) * size + noisy[:, :, level].ravel()
            self.joint[level] += np.bincount(flat, minlength=size * size).reshape(size, size)
        self.overlap_seen += take

    def finalize(self) -> QualityReport:
        if self.n_items == 0:
            raise InvalidInputError("finalize: no items were added")
        dim = self.tokenizer.n_features_in_
        mse = self.squared_error / (self.n_items * dim)
        reconstruction = ReconstructionStats(tuple(mse.tolist()), tuple(np.sqrt(mse).tolist()),
                                             tuple((self.relative_error / self.n_items).tolist()))
        usage = tuple(usage_stats(c, level) for level, c in enumerate(self.counts))
        keys = np.concatenate(self.id_keys)
        _, inverse, bucket = np.unique(keys, return_inverse=True, return_counts=True)
        inverse = inverse.ravel()
        collisions = CollisionStats(
            n_items=self.n_items, n_distinct_ids=len(bucket),
            unique_id_rate=float(np.mean(bucket[inverse] == 1)), collision_rate=1.0 - len(bucket) / self.n_items,
            largest_bucket=int(bucket.max()), bucket_sizes=tuple(np.bincount(bucket).tolist()))
        overlap = None
        if self.overlap_seen:
            info, keep = zip(*(mutual_information(j) for j in self.joint))
            capacity = tuple(math.exp(i) for i in info)
            overlap = OverlapStats(self.noise_scale, self.overlap_seen, self.overlap_draws, tuple(keep), tuple(info),
                                   capacity, tuple(1.0 / c for c in capacity))
        semantic = self._semantic(inverse) if self.has_labels else None
        log_likelihood = bic = None
        if self.log_likelihood is not None:
            log_likelihood = tuple((self.log_likelihood / self.n_items).tolist())
            bic = tuple(self.tokenizer.bic_from_log_likelihood(self.log_likelihood, self.n_items).tolist())
        return QualityReport(self.method, self.n_items, dim, tuple(self.sizes), reconstruction, usage, collisions,
                             overlap, semantic, log_likelihood, bic, tuple(tuple(c.tolist()) for c in self.counts),
                             tokenizer_version=getattr(self.tokenizer, "version", None))  # duck-typed ones may lack it

    def _semantic(self, full_id: np.ndarray) -> SemanticStats:
        words = max(1, -(-len(self.vocabulary) // 64))
        bits = np.concatenate([np.pad(b, ((0, 0), (0, words - b.shape[1]))) for b in self.label_bits])
        rng = np.random.default_rng(self.seed)
        n = self.n_items
        first = rng.integers(0, n, self.pairs)
        second = (first + rng.integers(1, max(n, 2), self.pairs)) % n
        chance = float(_share_label(bits, first, second).mean())
        shares = []
        for group in (np.concatenate(self.level1), full_id):
            a, b = _pairs_within_groups(group, self.pairs, rng)
            shares.append(float(_share_label(bits, a, b).mean()) if len(a) else float("nan"))
        purity = self._knn_purity(bits)
        lift = [s / chance if chance > 0 else float("nan") for s in shares]
        return SemanticStats(chance, shares[0], lift[0], shares[1], lift[1], purity,
                             self.k, min(self.purity_items, n))

    def _knn_purity(self, bits: np.ndarray) -> float:
        codes = np.concatenate(self.sample_codes)[: self.purity_items]
        if len(codes) <= self.k:
            return float("nan")
        vectors = self.tokenizer.decode(codes).astype(np.float64)
        squared = (vectors**2).sum(1)
        neighbours = []
        for start in range(0, len(codes), _PURITY_BLOCK):  # (block, n) distances at a time
            rows = np.arange(start, min(start + _PURITY_BLOCK, len(codes)))
            distances = squared[rows, None] - 2 * vectors[rows] @ vectors.T + squared[None, :]
            distances[np.arange(len(rows)), rows] = np.inf
            neighbours.append(k_smallest(distances, self.k))
        items = np.repeat(np.arange(len(codes)), self.k)
        return float(_share_label(bits[: len(codes)], items, np.concatenate(neighbours).ravel()).mean())


_PURITY_BLOCK = 512


def k_smallest(distances: np.ndarray, k: int) -> np.ndarray:
    """Columns of the ``k`` smallest entries of each row of ``distances`` (m, n), ascending
    column order: (m, k) int64. Ties at the k-th value go to the lowest columns, so the set is
    that of ``np.argsort(kind="stable")[:, :k]`` (items sharing a code are at equal distance),
    in O(n) per row instead of O(n log n)."""
    kth = np.partition(distances, k - 1, axis=1)[:, k - 1:k]
    below = distances < kth
    tied = distances == kth
    room = k - below.sum(1, keepdims=True)
    chosen = below | (tied & (np.cumsum(tied, axis=1) <= room))
    return np.nonzero(chosen)[1].reshape(len(distances), k)


def quality_report(tokenizer, X, labels=None, *, chunk_size: int = 65536, method: str | None = None,
                   previous=None, **options) -> QualityReport:
    """One-shot report: encode X (n, dim) in chunks and accumulate. ``options`` go to
    :class:`QualityAccumulator` (noise_scale, overlap_items, pairs, k, seed…). ``previous``: an
    earlier version of the tokenizer; the report then includes the ID churn of X's items."""
    import dataclasses

    accumulator = QualityAccumulator(tokenizer, method=method, **options)
    n = len(X)
    old_codes, new_codes = [], []
    for start in range(0, n, chunk_size):
        chunk = np.asarray(X[start:start + chunk_size], dtype=np.float32)
        chunk_labels = None if labels is None else list(labels[start:start + chunk_size])
        codes = tokenizer.encode(chunk)
        accumulator.update(codes, chunk, chunk_labels)
        if previous is not None:
            old_codes.append(previous.encode(chunk))
            new_codes.append(codes)
    report = accumulator.finalize()
    if previous is not None:
        report = dataclasses.replace(report, churn=id_churn(np.concatenate(old_codes), np.concatenate(new_codes)))
    return report
