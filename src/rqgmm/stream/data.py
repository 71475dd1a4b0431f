"""Time-ordered streams with causally computed numerical features.

- :func:`movielens_stream`: MovieLens-100k ratings in time order (click = rating >= 4) with
  categorical user, item, gender, occupation and numeric features computed at each event from
  the past only: the user's events so far, the item's events so far, hours since the user's
  previous event (missing for a first event), the item's release year, the user's age.
- :func:`drifting_stream`: a synthetic stream whose numeric distributions drift over time while
  the click probability depends on each value's quantile in its *current* distribution (a known
  label function), so a model must track the distributions to keep its accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from rqgmm.errors import InvalidInputError


@dataclass
class StreamData:
    """A time-ordered stream of N events.

    categorical: (N, C) int64 indices in ``[0, cardinalities[c])``; numeric: (N, F) float32, NaN
    for missing; labels: (N,) int8 in {0, 1}; timestamps: (N,) int64 non-decreasing.
    """

    name: str
    categorical: np.ndarray
    cardinalities: tuple[int, ...]
    categorical_names: tuple[str, ...]
    numeric: np.ndarray
    numeric_names: tuple[str, ...]
    labels: np.ndarray
    timestamps: np.ndarray

    def __post_init__(self) -> None:
        # canonical dtypes first, so a user's int, float64 or object arrays either convert or are
        # refused here with a named error, never deep inside training
        self.labels = _as_array(self.labels, np.float64, self.name, "labels", 1)
        bad = np.flatnonzero(~np.isin(self.labels, (0.0, 1.0)))
        if bad.size:
            raise InvalidInputError(f"{self.name}: labels must be 0 or 1; row {int(bad[0])} has"
                                    f" {self.labels[bad[0]]} ({bad.size} such row(s))")
        self.labels = self.labels.astype(np.int8)
        self.numeric = _as_array(self.numeric, np.float32, self.name, "numeric", 2)
        self.categorical = _as_array(self.categorical, np.int64, self.name, "categorical", 2)
        self.timestamps = _as_array(self.timestamps, np.int64, self.name, "timestamps", 1)
        n = len(self.labels)
        for label, array in (("categorical", self.categorical), ("numeric", self.numeric),
                             ("timestamps", self.timestamps)):
            if len(array) != n:
                raise InvalidInputError(f"{self.name}: {label} has {len(array)} rows, labels {n}")
        if self.categorical.shape[1] != len(self.cardinalities):
            raise InvalidInputError(f"{self.name}: {self.categorical.shape[1]} categorical columns but"
                                    f" {len(self.cardinalities)} cardinalities")
        for column, cardinality in enumerate(self.cardinalities):
            values = self.categorical[:, column]
            outside = np.flatnonzero((values < 0) | (values >= cardinality))
            if outside.size:
                raise InvalidInputError(
                    f"{self.name}: categorical column {self.categorical_names[column]!r} row {int(outside[0])} has"
                    f" index {int(values[outside[0]])}, outside [0, {cardinality})")
        if np.any(np.diff(self.timestamps) < 0):
            raise InvalidInputError(f"{self.name}: timestamps must be non-decreasing (a stream is time-ordered)")
        if np.isinf(self.numeric).any():
            row, column = np.argwhere(np.isinf(self.numeric))[0]
            raise InvalidInputError(f"{self.name}: numeric column {self.numeric_names[column]!r} is infinite at"
                                    f" row {row}; use NaN for a missing value")

    @property
    def n_events(self) -> int:
        return int(len(self.labels))


def _as_array(values, dtype, name: str, label: str, ndim: int) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name}: {label} must hold numbers ({exc})") from None
    if array.ndim != ndim:
        raise InvalidInputError(f"{name}: {label} must be {ndim}-dimensional, got shape {array.shape}")
    if label == "labels" and np.isnan(array).any():
        raise InvalidInputError(f"{name}: labels hold NaN at row {int(np.flatnonzero(np.isnan(array))[0])}")
    return array


def causal_numeric_features(events: pd.DataFrame) -> pd.DataFrame:
    """Features known at each event of a time-ordered frame (user_id, item_id, timestamp):
    user_events_so_far, item_events_so_far, hours_since_user_previous (NaN for a first event)."""
    by_user = events.groupby("user_id", sort=False)
    return pd.DataFrame({
        "user_events_so_far": by_user.cumcount().astype(np.float32),
        "item_events_so_far": events.groupby("item_id", sort=False).cumcount().astype(np.float32),
        "hours_since_user_previous": ((events["timestamp"] - by_user["timestamp"].shift()) / 3600.0).astype(np.float32),
    }, index=events.index)


def movielens_stream() -> StreamData:
    """MovieLens-100k as a stream (about 100k events; ties in time keep the file's order)."""
    from rqgmm.data.interactions import load_movielens

    frame = load_movielens().interactions
    frame = frame.iloc[np.argsort(frame["timestamp"].to_numpy(), kind="stable")].reset_index(drop=True)
    causal = causal_numeric_features(frame)
    numeric = pd.concat([causal, frame[["year", "age"]].rename(columns={"year": "release_year", "age": "user_age"})],
                        axis=1)
    names = ("user_id", "item_id", "gender", "occupation")
    codes = [pd.factorize(frame[name], sort=False)[0] for name in names]
    return StreamData("ml-100k", np.stack(codes, axis=1).astype(np.int64),
                      tuple(int(c.max()) + 1 for c in codes), names,
                      numeric.to_numpy(np.float32), tuple(numeric.columns),
                      frame["label"].to_numpy(np.int8), frame["timestamp"].to_numpy(np.int64))


def _logit(u: np.ndarray) -> np.ndarray:
    return np.log(u) - np.log1p(-u)


def drifting_stream(n_events: int = 200_000, seed: int = 0, n_contexts: int = 50,
                    missing_rate: float = 0.02) -> StreamData:
    """Synthetic drifting stream with a known label function.

    At time ``t`` in [0, 1] each field draws its quantile ``u ~ U(0, 1)`` and the value from the
    inverse CDF of the current distribution: a log-logistic whose scale grows e^3-fold, a logistic
    whose centre oscillates and whose spread triples, an exponential whose mean grows 1 -> 20, and
    a stationary uniform. Click logit = 1.5 sin(2 pi u0) + 3 (u1 - 0.5) + 2 [u2 > 0.8]
    + cos(2 pi u3) + a context effect ~ N(0, 0.5^2) - 0.7. ``missing_rate`` of field 2 is NaN.
    """
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 1.0, n_events)
    u = rng.uniform(1e-6, 1 - 1e-6, size=(n_events, 4))
    values = np.stack([
        np.exp(3.0 * t + 0.7 * _logit(u[:, 0])),
        5.0 * np.sin(3.0 * np.pi * t) + (1.0 + 2.0 * t) * _logit(u[:, 1]),
        -(1.0 + 19.0 * t) * np.log1p(-u[:, 2]),
        10.0 * u[:, 3],
    ], axis=1)
    contexts = rng.integers(0, n_contexts, n_events)
    context_effect = rng.normal(0.0, 0.5, n_contexts)
    logit = (1.5 * np.sin(2 * np.pi * u[:, 0]) + 3.0 * (u[:, 1] - 0.5) + 2.0 * (u[:, 2] > 0.8)
             + np.cos(2 * np.pi * u[:, 3]) + context_effect[contexts] - 0.7)
    labels = (rng.random(n_events) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int8)
    values[rng.random(n_events) < missing_rate, 2] = np.nan
    return StreamData("drifting", contexts[:, None].astype(np.int64), (n_contexts,), ("context",),
                      values.astype(np.float32), ("loglogistic_scale_up", "logistic_oscillating",
                                                  "exponential_mean_up", "uniform_stationary"),
                      labels, np.arange(n_events, dtype=np.int64))
