"""Saving, loading and naming fitted tokenizers (the artifact format is :mod:`rqgmm.io.artifacts`).

A load verifies everything before building anything: the format version and checksums
(:func:`rqgmm.io.artifacts.load_artifact`), the manifest's structure, every hyperparameter
against its declaration, the array names and shapes the hyperparameters imply, and values no
fit can produce (NaN/Inf, non-positive variances).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rqgmm.errors import ArtifactError, InvalidInputError
from rqgmm.io.artifacts import array_sha256, content_version, load_artifact, save_artifact
from rqgmm.quantize.specs import verify


def json_params(tokenizer) -> dict:
    """A tokenizer's :meth:`get_params` as JSON values for the manifest: tuples as lists, a device
    as its name, a numpy random state as the seed it gave."""
    params = {}
    for name, value in tokenizer.get_params().items():
        if isinstance(value, tuple):
            value = [int(v) if isinstance(v, (int, np.integer)) else v for v in value]
        elif type(value).__name__ == "device":  # a torch.device
            value = str(value)
        elif isinstance(value, np.integer):
            value = int(value)
        elif name == "random_state" and value is not None and not isinstance(value, int):
            value = int(tokenizer.seed_)
        params[name] = value
    return params


def tokenizer_version(tokenizer) -> str:
    """The content version of a fitted tokenizer (the same before a save and after a load)."""
    tokenizer.check_fitted()
    return content_version(type(tokenizer).__name__, tokenizer._json_params(), tokenizer._fitted_attributes(),
                           {name: array_sha256(np.ascontiguousarray(array))
                            for name, array in tokenizer._fitted_arrays().items()})


def save_tokenizer(tokenizer, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write a fitted tokenizer to directory ``path`` atomically."""
    tokenizer.check_fitted()
    return save_artifact(path, kind=type(tokenizer).__name__, params=tokenizer._json_params(),
                         attributes=tokenizer._fitted_attributes(), arrays=tokenizer._fitted_arrays(),
                         overwrite=overwrite)


def load_tokenizer(path: str | Path, expected: type):
    """The tokenizer saved at ``path``, an instance of ``expected`` (or a subclass)."""
    from rqgmm.quantize import TOKENIZERS  # noqa: F401 - imports every class, so the registry knows them
    from rqgmm.quantize.base import ResidualTokenizer

    manifest, arrays = load_artifact(path)
    kind = manifest.get("kind")
    klass = ResidualTokenizer._registry.get(kind) if isinstance(kind, str) else None
    if klass is None or not issubclass(klass, expected):
        raise ArtifactError(f"{path}: holds a {kind!r}, not a {expected.__name__}")
    params, attributes = manifest.get("params"), manifest.get("attributes")
    if not isinstance(params, dict) or not isinstance(attributes, dict):
        raise ArtifactError(f"{path}: manifest needs 'params' and 'attributes' mappings")
    unknown = sorted(set(params) - set(klass._param_names()))
    if unknown:
        raise ArtifactError(f"{path}: manifest names parameter(s) {unknown} that {kind} does not have")
    try:
        verify(manifest, arrays)  # everything that needs no tokenizer object, as `rqgmm info` checks it
        tokenizer = klass(**params)
        tokenizer.validate_params(warn=False)
        tokenizer._restore(arrays, attributes)
    except InvalidInputError as exc:
        raise ArtifactError(f"{path}: not a valid {kind}: {exc}") from None
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RecursionError) as exc:
        raise ArtifactError(f"{path}: manifest does not describe a valid {kind}: {type(exc).__name__}:"
                            f" {exc}") from None
    return tokenizer
