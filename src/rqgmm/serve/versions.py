"""The tokenizer version a service holds, swapped atomically.

A request takes the current :class:`TokenizerVersion` once, when it starts, and uses only that
object to the end: a switch replaces the service's reference, never the object, so requests in
flight finish on the version they started with and every response names the version that
produced it.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

from rqgmm.errors import InvalidInputError
from rqgmm.quantize import ResidualTokenizer


@dataclass(frozen=True)
class TokenizerVersion:
    """A loaded tokenizer and its identity: ``version`` is the tokenizer's content version
    (:attr:`rqgmm.ResidualTokenizer.version`), the same name the registry, codes files and CTR
    runs use; ``path`` is where it was loaded from."""

    tokenizer: ResidualTokenizer
    version: str
    path: str

    def summary(self, *, with_path: bool = True) -> dict:
        tokenizer = self.tokenizer
        out = {"version": self.version, "method": type(tokenizer).__name__, "n_levels": tokenizer.n_levels,
               "codebook_sizes": list(tokenizer.codebook_sizes), "n_features_in": int(tokenizer.n_features_in_),
               "params": json.loads(json.dumps(tokenizer.get_params(deep=False), default=str))}
        if with_path:
            out["path"] = self.path
        return out


def load_version(path: str | Path) -> TokenizerVersion:
    """Load a saved tokenizer (every check of :func:`rqgmm.load`) and name its version."""
    path = Path(path).resolve()
    tokenizer = ResidualTokenizer.load(path)
    tokenizer.progress = False
    return TokenizerVersion(tokenizer, tokenizer.version, str(path))


class VersionHolder:
    """The service's current version: :meth:`load` reads a candidate, :meth:`swap` makes it
    current (the service checks the candidate against its registry and CTR run in between)."""

    def __init__(self, path: str | Path):
        self._lock = threading.Lock()
        self._current = load_version(path)

    @property
    def current(self) -> TokenizerVersion:
        return self._current

    def load(self, path: str | Path | None = None) -> TokenizerVersion:
        """A candidate from ``path`` (default: the current version's path, re-read). A tokenizer
        of another dimension is refused: clients send embeddings of a fixed width."""
        candidate = load_version(path if path is not None else self._current.path)
        width = self._current.tokenizer.n_features_in_
        if candidate.tokenizer.n_features_in_ != width:
            raise InvalidInputError(f"{candidate.path}: a {candidate.tokenizer.n_features_in_}-d tokenizer cannot"
                                    f" replace the {width}-d one being served")
        return candidate

    def swap(self, candidate: TokenizerVersion) -> None:
        with self._lock:
            self._current = candidate
