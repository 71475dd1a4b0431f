"""Making semantic IDs unique: a counting suffix (as TIGER), greedy relocation at the last
level, or a Sinkhorn-balanced re-assignment at the last level (as LC-Rec).

All are independent of the order of the items: ties are broken by a hash of each item's
embedding bytes (items with byte-identical embeddings are interchangeable).
"""

from __future__ import annotations

import hashlib
import warnings
from typing import Callable

import numpy as np

from rqgmm.errors import InvalidInputError

COLLISION_MODES = ("none", "suffix", "relocate", "sinkhorn")
SINKHORN_TEMPERATURE = 0.1   # relative to the spread of a group's scores
SINKHORN_ITERATIONS = 200


def content_keys(X: np.ndarray) -> np.ndarray:
    """A uint64 per row from a hash of its float32 bytes: (n,)."""
    rows = np.ascontiguousarray(X, dtype=np.float32)
    return np.array([int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest(), "little")
                     for row in rows], dtype=np.uint64)


def _group_ids(codes: np.ndarray) -> np.ndarray:
    _, inverse = np.unique(codes, axis=0, return_inverse=True)
    return inverse.ravel()


def add_suffix(codes: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Append a level counting the items that share the full ID: (n, L) -> (n, L+1) int64.

    Within an ID the counter follows ``keys`` (content hashes), so every resulting ID is unique
    and the result does not depend on the order of the items."""
    group = _group_ids(codes)
    order = np.lexsort((keys, group))
    sorted_group = group[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_group)) + 1]
    run_start = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    suffix = np.empty(len(codes), dtype=np.int64)
    suffix[order] = np.arange(len(order)) - run_start
    return np.concatenate([codes, suffix[:, None]], axis=1)


def place_greedily(preference: np.ndarray, item_keys: np.ndarray, room: np.ndarray) -> np.ndarray:
    """A code with room left for each item: (item, code) pairs are taken highest ``preference``
    first across all items (ties by item key, then code). preference: (m, K); item_keys: (m,);
    room: (K,) places per code. Returns (m,) int64 codes, -1 where no room was left."""
    n_items, n_codes = preference.shape
    item_index = np.repeat(np.arange(n_items), n_codes)
    code_index = np.tile(np.arange(n_codes), n_items)
    greedy = np.lexsort((code_index, item_keys[item_index], -preference.ravel()))
    chosen = np.full(n_items, -1, dtype=np.int64)
    occupancy = np.zeros(n_codes, dtype=np.int64)
    left = n_items
    for position in greedy:
        item, code = item_index[position], code_index[position]
        if chosen[item] >= 0 or occupancy[code] >= room[code]:
            continue
        chosen[item] = code
        occupancy[code] += 1
        left -= 1
        if left == 0:
            break
    return chosen


def relocate(codes: np.ndarray, keys: np.ndarray, last_level_scores: Callable[[np.ndarray], np.ndarray],
             capacity: int = 1) -> np.ndarray:
    """Move items out of over-full last-level buckets to their next most likely free code.

    codes: (n, L) int64; keys: (n,) content hashes; last_level_scores(positions) -> (m, K) scores
    of the last level (higher = more likely) for those items; capacity: items allowed per full ID.
    In each over-full bucket the ``capacity`` items scoring highest keep the code; the others,
    in order of decreasing score over all (item, free code) pairs, take the best code of their
    prefix that still has room. Earlier levels never change. Items that find no room (the prefix
    holds more than K * capacity items) keep their code, with a warning.
    """
    codes = codes.copy()
    n_levels = codes.shape[1]
    full = _group_ids(codes)
    load = np.bincount(full)
    crowded_items = np.flatnonzero(load[full] > capacity)
    if crowded_items.size == 0:
        return codes
    prefix = _group_ids(codes[:, : n_levels - 1]) if n_levels > 1 else np.zeros(len(codes), dtype=np.int64)
    unplaced = 0
    for group in np.unique(prefix[crowded_items]):
        members = np.flatnonzero(prefix == group)
        scores = last_level_scores(members)
        n_codes = scores.shape[1]
        current = codes[members, -1]
        own = scores[np.arange(len(members)), current]
        # who stays: per code, the `capacity` best-scoring members (ties by content hash)
        order = np.lexsort((keys[members], -own, current))
        rank = np.empty(len(members), dtype=np.int64)
        sorted_codes = current[order]
        starts = np.r_[0, np.flatnonzero(np.diff(sorted_codes)) + 1]
        rank[order] = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
        movers = np.flatnonzero(rank >= capacity)
        room = capacity - np.bincount(current[rank < capacity], minlength=n_codes)
        chosen = place_greedily(scores[movers], keys[members[movers]], room)
        codes[members[movers[chosen >= 0]], -1] = chosen[chosen >= 0]
        unplaced += int((chosen < 0).sum())
    if unplaced:
        warnings.warn(f"relocate: {unplaced} item(s) found no free last-level code under their prefix"
                      f" (capacity {capacity}); they keep colliding IDs. Raise capacity or the last codebook size.",
                      UserWarning, stacklevel=3)
    return codes


def sinkhorn_repair(codes: np.ndarray, keys: np.ndarray, last_level_scores: Callable[[np.ndarray], np.ndarray],
                    capacity: int = 1, temperature: float = SINKHORN_TEMPERATURE,
                    iterations: int = SINKHORN_ITERATIONS) -> np.ndarray:
    """Re-assign the items of over-full last-level buckets with a Sinkhorn-balanced assignment.

    For each prefix holding a collision, the colliding items (every member of a bucket with more
    than ``capacity`` items) share the last-level codes left free by the prefix's other items,
    which never move. Their transport plan is ``exp(score / (temperature * spread))`` scaled by
    Sinkhorn iterations so each item sends one unit and each code receives at most its free
    room (LC-Rec's uniform-assignment step); the plan is then rounded greedily, highest mass
    first, ties by content hash. Earlier levels never change. Items left without room keep
    their code, with a warning. Deterministic and independent of the order of the items.
    """
    codes = codes.copy()
    n_levels = codes.shape[1]
    full = _group_ids(codes)
    load = np.bincount(full)
    crowded = load[full] > capacity
    if not crowded.any():
        return codes
    prefix = _group_ids(codes[:, : n_levels - 1]) if n_levels > 1 else np.zeros(len(codes), dtype=np.int64)
    unplaced = 0
    for group in np.unique(prefix[crowded]):
        members = np.flatnonzero(prefix == group)
        members = members[np.lexsort((members, keys[members]))]  # a fixed order: by content hash
        movers = members[crowded[members]]
        scores = np.asarray(last_level_scores(movers), dtype=np.float64)
        n_codes = scores.shape[1]
        staying = members[~crowded[members]]
        room = capacity - np.bincount(codes[staying, -1], minlength=n_codes).astype(np.float64)
        room = np.maximum(room, 0.0)
        spread = float(scores.std()) or 1.0
        logits = (scores - scores.max(axis=1, keepdims=True)) / (temperature * spread)
        plan = np.exp(np.maximum(logits, -80.0)) * (room > 0)[None, :]
        for _ in range(iterations):
            plan /= np.maximum(plan.sum(axis=1, keepdims=True), 1e-300)       # each item: one unit
            over = plan.sum(axis=0) / np.maximum(room, 1e-300)                  # each code: <= room
            plan /= np.maximum(over, 1.0)[None, :]
        chosen = place_greedily(plan, keys[movers], room)
        codes[movers[chosen >= 0], -1] = chosen[chosen >= 0]
        unplaced += int((chosen < 0).sum())
    if unplaced:
        warnings.warn(f"sinkhorn: {unplaced} item(s) found no free last-level code under their prefix"
                      f" (capacity {capacity}); they keep colliding IDs. Raise capacity or the last codebook size.",
                      UserWarning, stacklevel=3)
    return codes


def repair_collisions(codes: np.ndarray, matrix, last_level_scores: Callable[[np.ndarray], np.ndarray],
                      mode: str, capacity: int, codebook_sizes: list[int]) -> np.ndarray:
    """Codes (n, L) of the rows of ``matrix`` (an :class:`~rqgmm.validation.EmbeddingMatrix`) made
    unique by ``mode`` ("suffix", "relocate" or "sinkhorn", see ``ResidualTokenizer.encode``): a
    step applied to codes, after encoding. ``last_level_scores(rows (m, dim)) -> (m, K_last)``
    ranks a colliding item's alternative last-level codes."""
    keys = np.concatenate([content_keys(matrix.read(s, min(s + 65536, matrix.n_rows)))
                           for s in range(0, matrix.n_rows, 65536)])
    if mode == "suffix":
        return add_suffix(codes, keys)
    scores = lambda positions: last_level_scores(matrix.take(positions))  # noqa: E731
    if mode == "sinkhorn":
        if len(codebook_sizes) == 1 and matrix.n_rows > codebook_sizes[0] * capacity:
            largest = int(np.unique(codes[:, 0], return_counts=True)[1].max())
            raise InvalidInputError(
                f"collisions='sinkhorn' on a one-level tokenizer: {matrix.n_rows} items cannot have unique"
                f" IDs among {codebook_sizes[0]} codes x capacity {capacity} (largest collision group:"
                f" {largest}); raise capacity to at least {-(-matrix.n_rows // codebook_sizes[0])},"
                " use more levels, or collisions='suffix'")
        return sinkhorn_repair(codes, keys, scores, capacity)
    return relocate(codes, keys, scores, capacity)
