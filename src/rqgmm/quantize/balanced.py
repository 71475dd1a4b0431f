"""Balanced k-means for one residual level: Lloyd iterations whose assignment step evens out
cluster sizes (OneRec / MiniOneRec use balanced or constrained RQ-KMeans for code usage).

Each iteration reads the residuals once to keep every row's ``J`` nearest centroids with their
squared distances (a candidate list, (n, J), held in memory: 8 bytes per row and candidate),
assigns rows to clusters from those lists in memory, and reads the residuals a second time for
the per-cluster sums of the new centroids. Two assignment rules:

``hard``
    Every cluster receives at most ``capacity = ceil(n / K)`` rows. Greedy rounds: each row not
    yet placed proposes to its nearest candidate that still has room; a cluster accepts its
    proposers in order of increasing distance up to its remaining room, and rejected rows move to
    their next candidate. A row whose ``J`` candidates are all full is placed in a final round
    over every cluster with room, using its exact distances to all of them. The bound holds by
    construction (a cluster never accepts more than its room), and every row is placed because
    the total room ``K * capacity >= n`` (the final round sees all open clusters).

``soft``
    A Sinkhorn-balanced assignment: the transport plan ``diag(u) exp(-D / tau) diag(v)`` with
    row sums 1 and column sums ``n / K`` is computed on the candidate lists (Sinkhorn's
    alternating scalings, warm-started from the previous iteration); each row takes the candidate
    of its largest plan entry, i.e. argmin of ``D_ik - tau log v_k``: the cluster scalings act as
    prices that push rows away from crowded clusters. ``tau = temperature * mean nearest squared
    distance``; a small temperature balances strongly, a large one leaves plain k-means.

Balancing only shapes the centroids: encoding new items stays nearest-centroid, like plain
RQ-KMeans, so codes of new items need no capacity bookkeeping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from rqgmm.progress import progress_bar
from rqgmm.quantize.declarations import BALANCE_MODES  # noqa: E402,F401 - declared with the parameters
from rqgmm.quantize.kmeans import LloydResult
from rqgmm.quantize.reseed import split_heaviest
from rqgmm.quantize.rowops import group_sums

N_CANDIDATES = 16
SINKHORN_ITERATIONS = 5


@dataclass
class Candidates:
    """Each row's nearest centroids: clusters (n, J) int32, costs (n, J) float32 squared
    distances in increasing order (8 bytes per row and candidate)."""

    clusters: np.ndarray
    costs: np.ndarray


def squared_distances(chunk: torch.Tensor, centroids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Squared Euclidean distances (m, K) of a chunk (m, dim) to centroids (K, dim), >= 0."""
    x = chunk.to(dtype)
    c = centroids.to(dtype)
    return (x.square().sum(1, keepdim=True) - 2.0 * x @ c.T + c.square().sum(1)[None, :]).clamp_min_(0.0)


def nearest_candidates(chunks: Iterator[torch.Tensor], n_rows: int, centroids: torch.Tensor, n_candidates: int,
                       dtype: torch.dtype) -> Candidates:
    """The ``n_candidates`` nearest centroids of every row of the chunks (``n_rows`` in all), in
    row order, written into arrays allocated once."""
    out = Candidates(np.empty((n_rows, n_candidates), dtype=np.int32),
                     np.empty((n_rows, n_candidates), dtype=np.float32))
    start = 0
    for chunk in chunks:
        distances = squared_distances(chunk, centroids, dtype)
        values, indices = torch.topk(distances, n_candidates, dim=1, largest=False, sorted=True)
        stop = start + chunk.shape[0]
        out.clusters[start:stop] = indices.cpu().numpy()
        out.costs[start:stop] = values.float().cpu().numpy()
        start = stop
    return out


def capacity_rounds(clusters: np.ndarray, costs: np.ndarray, room: np.ndarray) -> np.ndarray:
    """Greedy capacity-constrained placement of rows over their candidate lists.

    clusters, costs: (m, J) candidate clusters and squared distances, nearest first;
    room: (K,) int64 free places per cluster, decreased in place. Returns (m,) int64 codes,
    -1 where every candidate of a row filled up. No cluster ever receives more than its room.
    """
    m, n_cand = clusters.shape
    codes = np.full(m, -1, dtype=np.int64)
    pointer = np.zeros(m, dtype=np.int64)
    pending = np.arange(m)
    while pending.size:
        # advance each pending row to its next candidate that still has room
        while True:
            full = room[clusters[pending, np.minimum(pointer[pending], n_cand - 1)]] <= 0
            full |= pointer[pending] >= n_cand
            stuck = full & (pointer[pending] < n_cand)
            if not stuck.any():
                break
            pointer[pending[stuck]] += 1
        pending = pending[pointer[pending] < n_cand]
        if not pending.size:
            break
        proposal = clusters[pending, pointer[pending]]
        cost = costs[pending, pointer[pending]]
        order = np.lexsort((pending, cost, proposal))  # by cluster, then nearest first, then row
        proposal, rows = proposal[order], pending[order]
        starts = np.flatnonzero(np.r_[True, proposal[1:] != proposal[:-1]])
        rank = np.arange(proposal.size) - np.repeat(starts, np.diff(np.r_[starts, proposal.size]))
        accepted = rank < room[proposal]
        codes[rows[accepted]] = proposal[accepted]
        np.subtract.at(room, proposal[accepted], 1)
        rejected = rows[~accepted]
        pointer[rejected] += 1
        pending = np.sort(rejected)
    return codes


def hard_assign(candidates: Candidates, n_clusters: int, capacity: int,
                rows_of: Callable[[np.ndarray], torch.Tensor], centroids: torch.Tensor,
                dtype: torch.dtype) -> np.ndarray:
    """Codes (n,) int64 with at most ``capacity`` rows per cluster (see the module docstring).
    ``rows_of(positions)`` returns the residuals (p, dim) of the given sorted row positions."""
    room = np.full(n_clusters, capacity, dtype=np.int64)
    codes = capacity_rounds(candidates.clusters, candidates.costs, room)
    left = np.flatnonzero(codes < 0)
    if left.size:
        open_clusters = np.flatnonzero(room > 0)
        distances = squared_distances(rows_of(left), centroids[torch.from_numpy(open_clusters)], dtype)
        order = torch.argsort(distances, dim=1).cpu().numpy()
        ranked = open_clusters[order]
        ranked_costs = np.take_along_axis(distances.float().cpu().numpy(), order, axis=1)
        codes[left] = capacity_rounds(ranked, ranked_costs, room)
    assert (codes >= 0).all(), "capacity rounds leave no row unplaced when K * capacity >= n"
    return codes


def sinkhorn_assign(candidates: Candidates, n_clusters: int, temperature: float,
                    log_scalings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sinkhorn-balanced codes (n,) int64 on the candidate lists, and the updated cluster
    log-scalings (K,) float64 (warm start for the next call: a few scaling steps per call
    suffice because the centroids move little between Lloyd iterations)."""
    costs = torch.from_numpy(candidates.costs)
    clusters = torch.from_numpy(candidates.clusters).long()
    n = costs.shape[0]
    tau = temperature * max(float(costs[:, 0].double().mean()), 1e-30)
    logits = -(costs - costs[:, :1]) / tau  # shifted per row: the row scaling absorbs it
    target = math.log(n / n_clusters)
    flat_clusters = clusters.reshape(-1)
    log_v = torch.from_numpy(log_scalings).float()
    for _ in range(SINKHORN_ITERATIONS):
        plan = torch.softmax(logits + log_v[clusters], dim=1)
        column = torch.zeros(n_clusters, dtype=torch.float64).index_add_(0, flat_clusters, plan.reshape(-1).double())
        log_v = log_v + (target - torch.log(column.clamp_min(1e-12))).float()
        log_v = (log_v - log_v.max()).clamp_min(-50.0)  # a cluster no row lists stays bounded
    best = torch.argmax(logits + log_v[clusters], dim=1)
    codes = clusters.gather(1, best[:, None]).squeeze(1)
    return codes.numpy().astype(np.int64), log_v.double().numpy()


def balanced_lloyd(read_chunks: Callable[[], Iterator[torch.Tensor]], n_rows: int, centroids: torch.Tensor, *,
                   mode: str, temperature: float, max_iter: int, tol: float, dtype: torch.dtype,
                   generator: torch.Generator, spread: torch.Tensor, rows_of: Callable[[np.ndarray], torch.Tensor],
                   progress: bool | None, desc: str) -> tuple[LloydResult, np.ndarray]:
    """Lloyd iterations with a balanced assignment step until the relative decrease of the
    assigned rows' mean squared distance is below ``tol`` or the assignment stops changing.

    read_chunks: re-reads the level's residual chunks (m, dim) in row order; centroids: (K, dim)
    float64 start. Returns the result and the cluster sizes (K,) int64 of the last assignment.
    """
    n_clusters = centroids.shape[0]
    n_candidates = min(N_CANDIDATES, n_clusters)
    capacity = -(-n_rows // n_clusters)
    log_scalings = np.zeros(n_clusters)
    history: list[float] = []
    converged = False
    n_reseeded = 0
    previous_codes = None
    centroids = centroids.clone()
    counts = np.zeros(n_clusters, dtype=np.int64)
    iterations = progress_bar(range(max_iter), enabled=progress, desc=desc)
    for _ in iterations:
        with torch.inference_mode():
            candidates = None  # the previous iteration's lists go before the new ones are made
            candidates = nearest_candidates(read_chunks(), n_rows, centroids, n_candidates, dtype)
            if mode == "hard":
                codes = hard_assign(candidates, n_clusters, capacity, rows_of, centroids, dtype)
            else:
                codes, log_scalings = sinkhorn_assign(candidates, n_clusters, temperature, log_scalings)
            sums = torch.zeros(n_clusters, centroids.shape[1], dtype=torch.float64, device=centroids.device)
            distance_sum = 0.0
            start = 0
            for chunk in read_chunks():
                stop = start + chunk.shape[0]
                chunk_codes = torch.from_numpy(codes[start:stop]).to(chunk.device)
                sums += group_sums(chunk.double(), chunk_codes, n_clusters)
                distance_sum += float((chunk.double() - centroids[chunk_codes]).square().sum())
                start = stop
        counts = np.bincount(codes, minlength=n_clusters)
        inertia = distance_sum / n_rows
        history.append(inertia)
        count_tensor = torch.from_numpy(counts).double().to(centroids.device)
        dead = count_tensor < 0.5
        updated = sums / count_tensor.clamp_min(1.0)[:, None]
        updated[dead] = centroids[dead]
        if bool(dead.any()):
            n_reseeded += len(split_heaviest(count_tensor, dead, updated, spread, generator))
        iterations.set_postfix(mse=f"{inertia:.5g}", largest=int(counts.max()))
        centroids = updated
        unchanged = previous_codes is not None and np.array_equal(codes, previous_codes)
        previous_codes = codes
        if len(history) > 1 and not dead.any():
            before = history[-2]
            if unchanged or abs(before - inertia) <= tol * max(before, 1e-300):
                converged = True
                break
    return LloydResult(centroids, history, converged, n_reseeded), counts
