"""Typed settings from YAML: read a mapping and check its keys against a dataclass."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import yaml

from rqgmm.errors import InvalidInputError


def read_yaml_mapping(path: str | Path, what: str) -> dict:
    """The YAML mapping in ``path``; ``what`` names the file in errors ("the data set config")."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInputError(f"{path}: cannot read {what} ({exc})") from None
    return raw


def check_keys(raw, klass, source: str) -> set[str]:
    """Refuse a non-mapping or unknown keys for dataclass ``klass``; return its field names."""
    if not isinstance(raw, dict):
        raise InvalidInputError(f"{source}: expected a mapping of settings, got {type(raw).__name__}")
    known = {f.name for f in fields(klass)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InvalidInputError(f"{source}: unknown setting(s) {unknown}; known: {sorted(known)}")
    return known
