"""Per-field reservoir samples of a numeric stream (Vitter's algorithm R, optionally recency-biased).

A reservoir of ``capacity`` values per field is a uniform sample of every finite value seen so
far: the t-th value enters with probability ``capacity / t`` and replaces a uniformly chosen slot.
With ``window`` set, the entry probability never falls below ``capacity / window``; each kept value
is then replaced at a constant rate, so the sample is weighted towards the last ``window`` values
with exponentially decaying weights (Aggarwal, "On biased reservoir sampling", VLDB 2006). That
tracks a drifting distribution at the price of a smaller effective sample.
"""

from __future__ import annotations

import numpy as np


class Reservoir:
    """Reservoir samples for ``n_fields`` numeric fields.

    Attributes: ``values`` (n_fields, capacity) float64, of which the first ``filled[f]`` slots of
    row f are used; ``seen`` (n_fields,) finite values offered so far. NaN (missing) is skipped.
    """

    def __init__(self, n_fields: int, capacity: int, *, window: int | None = None, seed: int = 0):
        if capacity < 2:
            raise ValueError(f"capacity must be at least 2, got {capacity}")
        if window is not None and window < capacity:
            raise ValueError(f"window must be at least the capacity ({capacity}), got {window}")
        self.capacity = capacity
        self.window = window
        self.values = np.zeros((n_fields, capacity), dtype=np.float64)
        self.filled = np.zeros(n_fields, dtype=np.int64)
        self.seen = np.zeros(n_fields, dtype=np.int64)
        self._rng = np.random.default_rng(seed)

    @property
    def n_fields(self) -> int:
        return int(self.values.shape[0])

    def update(self, batch: np.ndarray) -> None:
        """Offer a batch of rows (B, n_fields) in stream order."""
        batch = np.asarray(batch, dtype=np.float64)
        if batch.ndim != 2 or batch.shape[1] != self.n_fields:
            raise ValueError(f"expected a batch of shape (B, {self.n_fields}), got {batch.shape}")
        for field in range(self.n_fields):
            column = batch[:, field]
            self._offer(field, column[np.isfinite(column)])

    def _offer(self, field: int, values: np.ndarray) -> None:
        free = self.capacity - self.filled[field]
        direct = values[:free]
        self.values[field, self.filled[field]:self.filled[field] + direct.size] = direct
        self.filled[field] += direct.size
        self.seen[field] += direct.size
        rest = values[direct.size:]
        if rest.size == 0:
            return
        positions = self.seen[field] + 1 + np.arange(rest.size)  # 1-based stream positions
        probability = self.capacity / positions
        if self.window is not None:
            probability = np.maximum(probability, self.capacity / self.window)
        entering = self._rng.random(rest.size) < probability
        slots = self._rng.integers(0, self.capacity, size=int(entering.sum()))
        newcomers = rest[entering]
        # in stream order the last newcomer aimed at a slot is the one that stays there
        last_first = slots[::-1]
        kept_slots, first_index = np.unique(last_first, return_index=True)
        self.values[field, kept_slots] = newcomers[::-1][first_index]
        self.seen[field] += rest.size

    def sorted_sample(self) -> tuple[np.ndarray, np.ndarray]:
        """``(sorted (n_fields, capacity) float64, filled (n_fields,))``; unused slots are +inf."""
        out = np.full_like(self.values, np.inf)
        for field in range(self.n_fields):
            count = self.filled[field]
            out[field, :count] = np.sort(self.values[field, :count])
        return out, self.filled.copy()
