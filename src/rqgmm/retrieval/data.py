"""Leave-last-out sequences for next-item retrieval.

Per user, interactions in time order (ties by table order): the last item is the test target,
the second-to-last the validation target, the rest the training sequence. A seeded share of the
catalogue's items are *cold*: never a training target (their tokens are never a loss target, and
SASRec never learns their output row), though they may appear in histories; Recall on test
users whose target is cold measures what semantic IDs exist for — recommending an item from its
content alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from rqgmm.errors import InvalidInputError


@dataclass
class Sequences:
    """Item indices are rows of the catalogue (0..n_items-1).

    train: per user, the training sequence (oldest first); validation / test: per user, the target;
    cold: (n_items,) bool; n_items."""

    train: list[np.ndarray]
    validation: np.ndarray
    test: np.ndarray
    cold: np.ndarray
    n_items: int

    def history(self, part: str, user: int) -> np.ndarray:
        """What the model reads to predict ``part``'s target: the training sequence, plus the
        validation item for the test target."""
        if part == "validation":
            return self.train[user]
        return np.append(self.train[user], self.validation[user])


def leave_last_out(interactions: pd.DataFrame, item_ids: pd.Index, *, cold_share: float = 0.1, seed: int = 0,
                   min_length: int = 5) -> Sequences:
    """Sequences of every user with at least ``min_length`` interactions. ``item_ids``: the
    catalogue's item ids, in row order."""
    if not 0 <= cold_share < 1:
        raise InvalidInputError(f"cold_share must be in [0, 1), got {cold_share}")
    frame = interactions.assign(_row=np.arange(len(interactions)))
    frame = frame.sort_values(["user_id", "timestamp", "_row"], kind="stable")
    rows = item_ids.get_indexer(frame["item_id"].astype(str))
    if (rows < 0).any():
        missing = frame["item_id"].iloc[int(np.flatnonzero(rows < 0)[0])]
        raise InvalidInputError(f"item {missing!r} of the interactions is not in the catalogue")
    rng = np.random.default_rng(seed)
    cold = np.zeros(len(item_ids), bool)
    cold[rng.choice(len(item_ids), int(round(cold_share * len(item_ids))), replace=False)] = True
    train, validation, test = [], [], []
    users = frame["user_id"].to_numpy()
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    for start, end in zip(starts, np.r_[starts[1:], len(users)]):
        items = rows[start:end]
        if len(items) < min_length:
            continue
        train.append(items[:-2])
        validation.append(items[-2])
        test.append(items[-1])
    return Sequences(train, np.array(validation), np.array(test), cold, len(item_ids))
