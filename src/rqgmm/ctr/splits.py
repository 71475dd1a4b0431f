"""Train / validation / test splits of an interaction table, as sorted row-index arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from rqgmm.ctr.names import SPLITS  # also importable from here
from rqgmm.errors import InvalidInputError


@dataclass(frozen=True)
class Split:
    """Row positions (int64, sorted) of each part; ``cold_items`` the item ids held out of
    training by a cold-item split (empty otherwise)."""

    kind: str
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    cold_items: tuple[str, ...] = ()

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)}


def _cut(order: np.ndarray, fractions: tuple[float, float, float]) -> tuple[np.ndarray, ...]:
    n = len(order)
    first = int(round(fractions[0] * n))
    second = first + int(round(fractions[1] * n))
    return tuple(np.sort(part) for part in (order[:first], order[first:second], order[second:]))


def time_split(interactions: pd.DataFrame, fractions=(0.8, 0.1, 0.1)) -> Split:
    """The earliest ``fractions[0]`` of rows by timestamp train, the next validate, the last test
    (ties keep table order)."""
    order = np.argsort(interactions["timestamp"].to_numpy(), kind="stable")
    return _checked(Split("time", *_cut(order, fractions)))


def random_split(interactions: pd.DataFrame, fractions=(0.8, 0.1, 0.1), seed: int = 0) -> Split:
    order = np.random.default_rng(seed).permutation(len(interactions))
    return _checked(Split("random", *_cut(order, fractions)))


def cold_item_split(interactions: pd.DataFrame, fractions=(0.8, 0.1, 0.1), cold_fraction: float = 0.2,
                    seed: int = 0) -> Split:
    """Time split, then a seeded random ``cold_fraction`` of the items leaves training entirely:
    the rows of half of those items go to validation, of the other half to test."""
    base = time_split(interactions, fractions)
    items = np.sort(interactions["item_id"].unique())
    rng = np.random.default_rng(seed)
    cold = rng.permutation(items)[: int(round(cold_fraction * len(items)))]
    to_validation, to_test = cold[: len(cold) // 2], cold[len(cold) // 2:]
    item_of_row = interactions["item_id"].to_numpy()
    in_validation = np.isin(item_of_row, to_validation)
    in_test = np.isin(item_of_row, to_test)
    warm = ~(in_validation | in_test)
    keep = np.zeros(len(interactions), dtype=bool)
    parts = []
    for rows, extra in ((base.train, None), (base.validation, in_validation), (base.test, in_test)):
        keep[:] = False
        keep[rows] = True
        selected = keep & warm
        if extra is not None:
            selected |= extra
        parts.append(np.flatnonzero(selected))
    return _checked(Split("cold-item", *parts, cold_items=tuple(sorted(map(str, cold)))))


def make_split(interactions: pd.DataFrame, kind: str = "time", seed: int = 0) -> Split:
    if kind == "time":
        return time_split(interactions)
    if kind == "random":
        return random_split(interactions, seed=seed)
    if kind == "cold-item":
        return cold_item_split(interactions, seed=seed)
    raise InvalidInputError(f"split must be one of {SPLITS}, got {kind!r}")


def _checked(split: Split) -> Split:
    empty = [name for name, size in split.sizes().items() if size == 0]
    if empty:
        raise InvalidInputError(f"{split.kind} split leaves no rows in {', '.join(empty)} ({split.sizes()});"
                                " the interaction table is too small for this split")
    return split
