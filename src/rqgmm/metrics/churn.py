"""ID churn between two versions of the semantic IDs of the same items."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from rqgmm.errors import InvalidInputError


@dataclass(frozen=True)
class ChurnStats:
    """n_items: items compared (present in both versions); prefix_changed[l]: share of them whose
    ID prefix up to level l (codes of levels 0..l) changed; full_id_changed: share whose whole ID
    changed (equal to the last prefix share when both versions have the same depth)."""

    n_items: int
    prefix_changed: tuple[float, ...]
    full_id_changed: float

    def to_dict(self) -> dict:
        return asdict(self)


def id_churn(old_codes, new_codes) -> ChurnStats:
    """Churn of the IDs of the same items, row i of both tables being the same item.

    old_codes, new_codes: (n_items, L_old) and (n_items, L_new) integer codes; prefixes are
    compared on the levels both have, the full ID on all of them."""
    old, new = np.asarray(old_codes), np.asarray(new_codes)
    if old.ndim != 2 or new.ndim != 2:
        raise InvalidInputError(f"codes must be (n_items, n_levels) tables, got shapes {old.shape} and {new.shape}")
    if len(old) != len(new):
        raise InvalidInputError(f"the two code tables describe {len(old)} and {len(new)} items; align them by item"
                                " first (row i must be the same item in both)")
    if len(old) == 0:
        raise InvalidInputError("no items to compare")
    depth = min(old.shape[1], new.shape[1])
    changed = np.zeros(len(old), dtype=bool)
    shares = []
    for level in range(depth):
        changed |= old[:, level] != new[:, level]
        shares.append(float(changed.mean()))
    full = changed if old.shape[1] == new.shape[1] else np.ones(len(old), dtype=bool)
    return ChurnStats(int(len(old)), tuple(shares), float(full.mean()))
