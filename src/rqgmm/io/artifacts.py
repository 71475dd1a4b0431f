"""Tokenizer artifacts: a directory with ``arrays.safetensors`` and ``manifest.json``.

No pickle anywhere: arrays are safetensors, everything else is JSON. The manifest records the
format version, the class, hyperparameters, fitted scalar attributes, the library version, and
the shape, dtype and SHA-256 of every array; :func:`load_artifact` verifies all of them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from rqgmm._version import __version__
from rqgmm.errors import ArtifactError, VersionMismatchError
from rqgmm.io.atomic import atomic_path

FORMAT_VERSION = 1
MAX_MANIFEST_BYTES = 64 << 20  # far above any manifest rqgmm writes
MANIFEST = "manifest.json"
ARRAYS = "arrays.safetensors"


def array_sha256(array: np.ndarray) -> str:
    """SHA-256 of the array's bytes in C order (little-endian as stored by safetensors)."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


# Parameters that change how a tokenizer runs, not which codes it gives: left out of its version,
# so moving a tokenizer to a GPU or silencing its progress bar keeps its identity.
OPERATIONAL_PARAMS = frozenset({"device", "batch_size", "cache_mib", "progress"})
VERSION_HEX_DIGITS = 16


def content_version(kind: str, params: dict[str, Any], attributes: dict[str, Any],
                    array_checksums: dict[str, str]) -> str:
    """A fitted artifact's version: 16 hex digits of the SHA-256 of its kind, hyperparameters (less
    :data:`OPERATIONAL_PARAMS`), fitted attributes and array checksums, as canonical JSON.

    The one identity every part of the lifecycle uses (registry, service, codes files, CTR runs):
    it depends on content alone, so renaming or copying a saved tokenizer keeps it, and the same
    tokenizer in memory and on disk has the same version."""
    payload = {"kind": kind, "params": {k: v for k, v in params.items() if k not in OPERATIONAL_PARAMS},
               "attributes": attributes, "arrays": dict(array_checksums)}
    canonical = json.dumps(json.loads(json.dumps(payload, default=str)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:VERSION_HEX_DIGITS]


def manifest_version(manifest: dict[str, Any]) -> str:
    """:func:`content_version` of a manifest written by :func:`save_artifact` (verified by
    :func:`load_artifact`: its array checksums are those of the stored arrays)."""
    return content_version(manifest["kind"], manifest["params"], manifest["attributes"],
                           {name: meta["sha256"] for name, meta in manifest["arrays"].items()})


def artifact_version(path: str | Path) -> str:
    """The version of the artifact directory ``path``, after every check of :func:`load_artifact`."""
    manifest, _ = load_artifact(path)
    return manifest_version(manifest)


def require_version(found: str | None, expected: str, *, found_in: str, expected_in: str, fix: str) -> None:
    """Refuse ``found`` (the version something was made with) unless it is ``expected`` (the
    version at hand): a :class:`VersionMismatchError` naming both places and what fixes it.
    ``found=None`` (made before versions were recorded) is refused too: nothing proves a match."""
    if found == expected:
        return
    made = "records no tokenizer version" if found is None else f"was made with tokenizer version {found}"
    raise VersionMismatchError(f"{found_in} {made}, but {expected_in} is version {expected}; {fix}")


def save_artifact(path: str | Path, *, kind: str, params: dict[str, Any], attributes: dict[str, Any],
                  arrays: dict[str, np.ndarray], overwrite: bool = False) -> Path:
    """Write an artifact directory atomically and return its path."""
    path = Path(path)
    arrays = {name: np.ascontiguousarray(a) for name, a in arrays.items()}
    manifest = {
        "format": "rqgmm-artifact",
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "kind": kind,
        "params": params,
        "attributes": attributes,
        "arrays": {name: {"shape": list(a.shape), "dtype": str(a.dtype), "sha256": array_sha256(a)}
                   for name, a in arrays.items()},
    }
    with atomic_path(path, overwrite=overwrite, directory=True) as tmp:
        save_file(arrays, str(tmp / ARRAYS))
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return path


def load_artifact(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read and verify an artifact directory; return ``(manifest, arrays)``.

    Raises :class:`ArtifactError` naming what is wrong: a missing directory or file, invalid
    JSON, another format version, or an array whose shape, dtype or checksum differs.
    """
    path = Path(path)
    if not path.is_dir():
        raise ArtifactError(f"{path}: no tokenizer directory here (expected a directory written by save)")
    manifest_path, arrays_path = path / MANIFEST, path / ARRAYS
    for required in (manifest_path, arrays_path):
        if not required.is_file():
            raise ArtifactError(f"{path}: incomplete tokenizer directory, {required.name} is missing")
    if manifest_path.stat().st_size > MAX_MANIFEST_BYTES:
        raise ArtifactError(f"{manifest_path}: manifest of {manifest_path.stat().st_size:,} bytes is larger than any"
                            f" rqgmm writes ({MAX_MANIFEST_BYTES:,}); refusing to parse it")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{manifest_path}: corrupted manifest, not valid JSON ({exc})") from None
    except RecursionError:
        raise ArtifactError(f"{manifest_path}: manifest nested too deeply to be one rqgmm wrote") from None
    if not isinstance(manifest, dict) or manifest.get("format") != "rqgmm-artifact":
        raise ArtifactError(f"{manifest_path}: not an rqgmm artifact manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{manifest_path}: format version {manifest.get('format_version')!r} is not supported by"
            f" rqgmm {__version__} (expected {FORMAT_VERSION}); re-fit or use the version that wrote it")
    try:
        arrays = load_file(str(arrays_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"{arrays_path}: corrupted array file ({exc})") from None
    expected = manifest.get("arrays", {})
    if not isinstance(expected, dict) or not all(
            isinstance(meta, dict) and isinstance(meta.get("shape"), list) and isinstance(meta.get("dtype"), str)
            and isinstance(meta.get("sha256"), str) for meta in expected.values()):
        raise ArtifactError(f"{manifest_path}: 'arrays' must map each array to its shape, dtype and sha256")
    if set(expected) != set(arrays):
        raise ArtifactError(f"{path}: arrays {sorted(arrays)} do not match the manifest's {sorted(expected)}")
    for name, meta in expected.items():
        array = arrays[name]
        if list(array.shape) != meta["shape"] or str(array.dtype) != meta["dtype"]:
            raise ArtifactError(
                f"{arrays_path}: array {name} has shape {list(array.shape)} {array.dtype},"
                f" manifest says {meta['shape']} {meta['dtype']}")
        if array_sha256(array) != meta["sha256"]:
            raise ArtifactError(f"{arrays_path}: checksum mismatch for array {name}: the file is corrupted")
    return manifest, arrays
