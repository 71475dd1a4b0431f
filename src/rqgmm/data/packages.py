"""Locating data and model files that ship inside installed packages (never importing them)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from rqgmm.errors import RqgmmError


class MissingPackageDataError(RqgmmError, FileNotFoundError):
    """A package that ships needed data or weights is not installed."""


def package_dir(package: str, install_hint: str) -> Path:
    """Directory of an installed top-level package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingPackageDataError(f"package {package!r} is not installed; install it with: {install_hint}")
    return Path(list(spec.submodule_search_locations)[0])
