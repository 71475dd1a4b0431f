"""Statistics shared by every study's report: seed means, paired differences, multiple testing.

Figures of a study come per seed. A comparison of two settings pairs them by seed (same data
split, same tokenizer seed) and looks at the differences. Two decision rules are offered:

- ``beyond_noise``: |mean difference| > 2 standard errors. Cheap, but with 3 seeds about one
  null comparison in five passes it (the t distribution has heavy tails at 2 degrees of freedom);
  kept because the variants study's selection rule was fixed with it before that study ran.
- ``p_value`` / ``significant``: a two-sided paired t-test, with Holm's step-down correction over
  all comparisons of one table (:func:`holm`), so the family-wise false-positive rate of a table
  is at most ``alpha`` (5% by default). The CTR studies use this one.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable

import numpy as np

ALPHA = 0.05


def mean_std(values: Iterable[float | None]) -> tuple[float, float]:
    """(mean, sample standard deviation) of the finite values; NaN where undefined."""
    kept = [float(v) for v in values if v is not None and not math.isnan(v)]
    if not kept:
        return math.nan, math.nan
    return float(np.mean(kept)), float(np.std(kept, ddof=1)) if len(kept) > 1 else math.nan


def by_seed(records: Iterable[dict], key: Callable[[dict], tuple]) -> dict[tuple, dict[int, dict]]:
    """Records grouped by ``key(record)``, then by their ``seed``."""
    grouped: dict[tuple, dict[int, dict]] = defaultdict(dict)
    for record in records:
        grouped[key(record)][record["seed"]] = record
    return grouped


def paired_difference(a: dict[int, dict], b: dict[int, dict], value: Callable[[dict], float | None]) -> dict | None:
    """``value(a) - value(b)`` over the seeds both have: mean, std, seeds, the 2-SE flag
    ``beyond_noise`` and the paired t-test's two-sided ``p_value`` (None below 2 seeds)."""
    diffs = []
    for seed in sorted(set(a) & set(b)):
        first, second = value(a[seed]), value(b[seed])
        if first is None or second is None or math.isnan(first) or math.isnan(second):
            continue
        diffs.append(first - second)
    if not diffs:
        return None
    mean = float(np.mean(diffs))
    std = float(np.std(diffs, ddof=1)) if len(diffs) > 1 else 0.0
    noise = 2 * std / math.sqrt(len(diffs)) if len(diffs) > 1 else math.inf
    return {"mean": mean, "std": std, "seeds": len(diffs), "beyond_noise": bool(abs(mean) > noise),
            "p_value": paired_t_p_value(diffs)}


def paired_t_p_value(diffs: list[float]) -> float | None:
    """Two-sided p-value of a paired t-test that the mean difference is 0 (None below 2 pairs;
    0 when every difference is the same non-zero number, 1 when all are 0)."""
    if len(diffs) < 2:
        return None
    mean, std = float(np.mean(diffs)), float(np.std(diffs, ddof=1))
    if std == 0.0:
        return 1.0 if mean == 0.0 else 0.0
    from scipy import stats

    t = mean / (std / math.sqrt(len(diffs)))
    return float(2 * stats.t.sf(abs(t), df=len(diffs) - 1))


def holm(p_values: list[float | None], alpha: float = ALPHA) -> list[bool]:
    """Holm's step-down procedure: which hypotheses are rejected at family-wise level ``alpha``
    (None p-values are never rejected and do not count in the family)."""
    order = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    rejected = [False] * len(p_values)
    for rank, (p, index) in enumerate(order):
        if p > alpha / (len(order) - rank):
            break
        rejected[index] = True
    return rejected


def mark_significant(diffs: list[dict | None], alpha: float = ALPHA) -> None:
    """Set ``significant`` on every difference of one family (in place), Holm-corrected."""
    present = [d for d in diffs if d is not None]
    for diff, rejected in zip(present, holm([d["p_value"] for d in present], alpha)):
        diff["significant"] = rejected


def format_mean_std(pair: tuple[float, float], digits: int = 4) -> str:
    mean, std = pair
    if mean is None or math.isnan(mean):
        return "-"
    return f"{mean:.{digits}f}" if math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def format_difference(diff: dict | None, digits: int = 4, flag: str = "beyond_noise") -> str:
    """``+0.0012 *`` where ``diff[flag]`` holds."""
    if diff is None:
        return ""
    return f"{diff['mean']:+.{digits}f}{' *' if diff.get(flag) else ''}"
