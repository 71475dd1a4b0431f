"""CTR metrics: AUC, LogLoss and GAUC, vectorized with NumPy.

AUC is the Mann-Whitney statistic with average ranks for ties (equal to scikit-learn's
``roc_auc_score``). GAUC is the impression-weighted mean of per-user AUC over users with both a
positive and a negative row, computed for all users at once from ranks within users.
"""

from __future__ import annotations

import math

import numpy as np


def _average_ranks(keys_sorted_equal: np.ndarray) -> np.ndarray:
    """1-based average ranks of a sorted sequence given ``keys_sorted_equal[i]`` = whether
    element i equals element i-1 (first element False)."""
    n = len(keys_sorted_equal)
    starts = np.flatnonzero(~keys_sorted_equal)
    ends = np.r_[starts[1:], n]
    average = (starts + ends + 1) / 2.0  # mean of ranks start+1 .. end
    return np.repeat(average, ends - starts)


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve; NaN when only one class is present."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    positives = int(labels.sum())
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return math.nan
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    ranks = _average_ranks(np.r_[False, sorted_scores[1:] == sorted_scores[:-1]])
    rank_sum = ranks[labels[order]].sum()
    return float((rank_sum - positives * (positives + 1) / 2) / (positives * negatives))


def log_loss(labels: np.ndarray, probabilities: np.ndarray, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy (nats), probabilities clipped to [eps, 1 - eps]."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), eps, 1 - eps)
    y = np.asarray(labels, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def gauc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> float:
    """Per-group AUC weighted by the group's number of rows, over groups with both classes."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    _, group = np.unique(np.asarray(groups), return_inverse=True)
    order = np.lexsort((scores, group))
    g, s, y = group[order], scores[order], labels[order]
    same_group = np.r_[False, g[1:] == g[:-1]]
    tied = same_group & np.r_[False, s[1:] == s[:-1]]
    global_ranks = _average_ranks(tied)
    n_groups = int(g.max()) + 1 if len(g) else 0
    sizes = np.bincount(g, minlength=n_groups)
    group_start = np.r_[0, np.cumsum(sizes)[:-1]]
    ranks = global_ranks - group_start[g]
    positives = np.bincount(g, weights=y, minlength=n_groups)
    negatives = sizes - positives
    rank_sums = np.bincount(g, weights=ranks * y, minlength=n_groups)
    usable = (positives > 0) & (negatives > 0)
    if not usable.any():
        return math.nan
    per_group = (rank_sums[usable] - positives[usable] * (positives[usable] + 1) / 2) / (
        positives[usable] * negatives[usable])
    return float(np.average(per_group, weights=sizes[usable]))
