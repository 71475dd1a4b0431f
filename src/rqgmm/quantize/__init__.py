"""Tokenizers: one base contract, one module per method, and a factory by method name.

The classes (and torch) load on first use; ``METHODS`` and the parameter declarations
(:mod:`rqgmm.quantize.declarations`) do not need them.
"""

from rqgmm.errors import InvalidInputError
from rqgmm.quantize.declarations import METHOD_PARAMETERS, METHODS

_CLASSES = {"RQGMM": "rq_gmm", "RQKMeans": "rq_kmeans", "RQVAE": "rq_vae", "VQVAE": "rq_vae",
            "ResidualTokenizer": "base"}


def __getattr__(name: str):
    import importlib

    if name in _CLASSES:
        return getattr(importlib.import_module(f"rqgmm.quantize.{_CLASSES[name]}"), name)
    if name == "TOKENIZERS":
        return {method: __getattr__(klass) for method, (klass, _) in METHOD_PARAMETERS.items()}
    raise AttributeError(f"module 'rqgmm.quantize' has no attribute {name!r}")


def make_tokenizer(method: str, n_levels: int, codebook_size, **params):
    """The tokenizer of ``method`` ("rq-gmm", "rq-kmeans", "rq-vae", "vq-vae") with ``params``.

    VQ-VAE has one level: ``n_levels`` must be 1. An unknown method or parameter is an error
    naming it."""
    if method not in METHOD_PARAMETERS:
        raise InvalidInputError(f"method must be one of {METHODS}, got {method!r}")
    class_name, declared = METHOD_PARAMETERS[method]
    unknown = sorted(set(params) - {p.name for p in declared})
    if unknown:
        raise InvalidInputError(f"{method} has no parameter(s) {unknown}")
    klass = __getattr__(class_name)
    if method == "vq-vae":
        if n_levels != 1:
            raise InvalidInputError(f"vq-vae has one level; levels must be 1, got {n_levels}")
        return klass(codebook_size=codebook_size, **params)
    return klass(n_levels=n_levels, codebook_size=codebook_size, **params)


__all__ = ["METHODS", "RQGMM", "RQVAE", "VQVAE", "RQKMeans", "ResidualTokenizer", "make_tokenizer"]
