"""Typed settings from YAML: one loader for every config of the project.

A settings class is a dataclass whose fields are declared with :func:`setting` (a default and a
one-line description). :func:`load_settings` checks a raw mapping against it *recursively*:
unknown keys, missing required keys and values of the wrong type are refused with one line that
names the key and where it is (``experiments/x.yaml: training.learning_rat: unknown setting``).
Nested dataclasses, ``list[...]`` and ``dict[str, ...]`` of them are checked element by element.

Why dataclasses rather than pydantic: the project already describes its settings as dataclasses
(``TrainingConfig``, ``RunConfig``), the checks needed are few (keys and basic types), and a core
dependency for them would weigh more than the ~100 lines here.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, Union

import yaml

from rqgmm.errors import InvalidInputError


def read_yaml_mapping(path: str | Path, what: str) -> dict:
    """The YAML mapping in ``path``; ``what`` names the file in errors ("the data set config")."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInputError(f"{path}: cannot read {what} ({exc})") from None
    if not isinstance(raw, dict):
        raise InvalidInputError(f"{path}: {what} must be a mapping of settings, got {type(raw).__name__}")
    return raw


def setting(default: Any = MISSING, help: str = "", *, factory: Any = MISSING) -> Any:  # noqa: A002
    """A dataclass field with a one-line description (``help``); ``factory`` for mutable defaults."""
    if factory is not MISSING:
        return dataclasses.field(default_factory=factory, metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def check_keys(raw, klass, source: str) -> set[str]:
    """Refuse a non-mapping or unknown keys for dataclass ``klass``; return its field names."""
    if not isinstance(raw, dict):
        raise InvalidInputError(f"{source}: expected a mapping of settings, got {type(raw).__name__}")
    known = {f.name for f in fields(klass)}
    unknown = sorted(set(map(str, raw)) - known)
    if unknown:
        raise InvalidInputError(f"{source}: unknown setting {unknown[0]!r}"
                                f"{f' (and {len(unknown) - 1} more)' if len(unknown) > 1 else ''};"
                                f" known: {sorted(known)}")
    return known


def _where(source: str, path: str) -> str:
    return f"{source}: {path}" if path else source


def load_settings(klass, raw, source: str, path: str = ""):
    """An instance of dataclass ``klass`` from mapping ``raw``, every key and type checked.

    source: the file (or "command line") for messages; path: the dotted place of ``raw`` in it."""
    check_keys(raw, klass, _where(source, path or "settings"))
    hints = typing.get_type_hints(klass)
    values = {}
    for item in fields(klass):
        here = f"{path}.{item.name}" if path else item.name
        if item.name not in raw:
            if item.default is MISSING and item.default_factory is MISSING:
                raise InvalidInputError(f"{source}: setting {here!r} is missing ({item.metadata.get('help', '')})")
            continue
        values[item.name] = _convert(hints[item.name], raw[item.name], source, here)
    return klass(**values)


def _convert(kind, value, source: str, path: str):
    origin = typing.get_origin(kind)
    if origin in (Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(option, value, source, path)
            except InvalidInputError as exc:
                errors.append(str(exc))
        raise InvalidInputError(errors[0] if len(errors) == 1 else
                                f"{source}: {path}: expected {_name(kind)}, got {value!r}")
    if dataclasses.is_dataclass(kind):
        return load_settings(kind, value, source, path)
    if origin is list or kind is list:
        if not isinstance(value, list):
            raise InvalidInputError(f"{source}: {path}: expected a list, got {value!r}")
        args = typing.get_args(kind)
        return [_convert(args[0], v, source, f"{path}[{i}]") for i, v in enumerate(value)] if args else list(value)
    if origin is dict or kind is dict:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise InvalidInputError(f"{source}: {path}: expected a mapping, got {value!r}")
        args = typing.get_args(kind)
        if not args:
            return dict(value)
        return {str(k): _convert(args[1], v, source, f"{path}.{k}") for k, v in value.items()}
    if kind is Any:
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise InvalidInputError(f"{source}: {path}: expected true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInputError(f"{source}: {path}: expected an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidInputError(f"{source}: {path}: expected a number, got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise InvalidInputError(f"{source}: {path}: expected a string, got {value!r}")
        return value
    return value


def _name(kind) -> str:
    return getattr(kind, "__name__", str(kind))


def describe(klass, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key, default, description) of every setting of ``klass``, nested ones dotted."""
    rows = []
    hints = typing.get_type_hints(klass)
    for item in fields(klass):
        key = f"{prefix}{item.name}"
        if item.default is not MISSING:
            default = repr(item.default)
        elif item.default_factory is not MISSING:
            default = repr(item.default_factory())
        else:
            default = "(required)"
        if dataclasses.is_dataclass(hints[item.name]):
            default = "(section)"
        rows.append((key, default, item.metadata.get("help", "")))
        if dataclasses.is_dataclass(hints[item.name]):
            rows += describe(hints[item.name], key + ".")
    return rows
