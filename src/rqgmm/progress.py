"""Progress bars that can be silenced: a thin wrapper over tqdm."""

from __future__ import annotations

from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_bar(iterable: Iterable[T] | None = None, *, enabled: bool | None, **kwargs) -> tqdm:
    """Wrap ``iterable`` in a tqdm bar.

    ``enabled=None`` shows the bar only when stderr is a terminal (tqdm's own rule);
    ``False`` silences it; ``True`` always shows it.
    """
    disable = None if enabled is None else not enabled
    return tqdm(iterable, disable=disable, dynamic_ncols=True, leave=False, **kwargs)
