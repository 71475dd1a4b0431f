"""Tokenizers: one base contract, one module per method, and a factory by method name."""

from rqgmm.errors import InvalidInputError
from rqgmm.quantize.base import ResidualTokenizer
from rqgmm.quantize.rq_gmm import RQGMM
from rqgmm.quantize.rq_kmeans import RQKMeans
from rqgmm.quantize.rq_vae import RQVAE, VQVAE

TOKENIZERS = {"rq-gmm": RQGMM, "rq-kmeans": RQKMeans, "rq-vae": RQVAE, "vq-vae": VQVAE}
METHODS = tuple(TOKENIZERS)


def make_tokenizer(method: str, n_levels: int, codebook_size, **params) -> ResidualTokenizer:
    """The tokenizer of ``method`` ("rq-gmm", "rq-kmeans", "rq-vae", "vq-vae") with ``params``.

    VQ-VAE has one level: ``n_levels`` must be 1. An unknown method or parameter is an error
    naming it."""
    klass = TOKENIZERS.get(method)
    if klass is None:
        raise InvalidInputError(f"method must be one of {METHODS}, got {method!r}")
    unknown = sorted(set(params) - set(klass._param_names()))
    if unknown:
        raise InvalidInputError(f"{method} has no parameter(s) {unknown}")
    if klass is VQVAE:
        if n_levels != 1:
            raise InvalidInputError(f"vq-vae has one level; levels must be 1, got {n_levels}")
        return VQVAE(codebook_size=codebook_size, **params)
    return klass(n_levels=n_levels, codebook_size=codebook_size, **params)


__all__ = ["METHODS", "RQGMM", "RQVAE", "VQVAE", "RQKMeans", "ResidualTokenizer", "make_tokenizer"]
