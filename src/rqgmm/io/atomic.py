"""Atomic writes: a file or directory appears whole at its final path, or not at all."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from rqgmm.errors import OutputExistsError


def refuse_existing(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: already exists; pass overwrite=True (--overwrite) to replace it")


@contextlib.contextmanager
def atomic_path(path: str | Path, *, overwrite: bool = False, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling path to write; on success it replaces ``path`` in one rename.

    On any exception the temporary is removed and ``path`` (if it existed) is left untouched.
    """
    path = Path(path)
    refuse_existing(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    target = tmp if directory else tmp / path.name
    try:
        yield target
        if path.is_dir() and not path.is_symlink():
            backup = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, backup)
            try:
                os.replace(target, path)
            except BaseException:
                os.replace(backup, path)
                raise
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(target, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
