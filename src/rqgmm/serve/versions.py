"""The tokenizer version a service holds, swapped atomically on reload.

A request takes the current :class:`TokenizerVersion` once, when it starts, and uses only that
object to the end: a reload replaces the service's reference, never the object, so requests in
flight finish on the version they started with and every response names the version that
produced it.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path

from rqgmm.quantize import ResidualTokenizer


@dataclass(frozen=True)
class TokenizerVersion:
    """A loaded tokenizer and its identity: ``version`` is ``<directory name>@<12 hex digits of the
    manifest's sha256>`` (two saves of different codebooks never share it)."""

    tokenizer: ResidualTokenizer
    version: str
    checksum: str
    path: str

    def summary(self) -> dict:
        tokenizer = self.tokenizer
        return {"version": self.version, "checksum": self.checksum, "path": self.path,
                "method": type(tokenizer).__name__, "n_levels": tokenizer.n_levels,
                "codebook_sizes": list(tokenizer.codebook_sizes), "n_features_in": int(tokenizer.n_features_in_),
                "params": json.loads(json.dumps(tokenizer.get_params(deep=False), default=str))}


def load_version(path: str | Path) -> TokenizerVersion:
    """Load a saved tokenizer (every check of :func:`rqgmm.load`) and name its version."""
    path = Path(path).resolve()
    tokenizer = ResidualTokenizer.load(path)
    tokenizer.progress = False
    checksum = hashlib.sha256((path / "manifest.json").read_bytes()).hexdigest()
    return TokenizerVersion(tokenizer, f"{path.name}@{checksum[:12]}", checksum, str(path))


class VersionHolder:
    """The service's current version; ``reload`` loads first, then swaps under a lock."""

    def __init__(self, path: str | Path):
        self._lock = threading.Lock()
        self._current = load_version(path)
        self._path = Path(path)

    @property
    def current(self) -> TokenizerVersion:
        return self._current

    def reload(self, path: str | Path | None = None) -> TokenizerVersion:
        """Load ``path`` (default: the path the service started with, re-read) and make it current.
        A tokenizer of another dimension is refused: clients send embeddings of a fixed width."""
        from rqgmm.errors import InvalidInputError

        candidate = load_version(path if path is not None else self._path)
        with self._lock:
            old = self._current.tokenizer.n_features_in_
            if candidate.tokenizer.n_features_in_ != old:
                raise InvalidInputError(f"{candidate.path}: a {candidate.tokenizer.n_features_in_}-d tokenizer cannot"
                                        f" replace the {old}-d one being served")
            self._current = candidate
            if path is not None:
                self._path = Path(path)
        return candidate
