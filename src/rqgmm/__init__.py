"""rqgmm: semantic IDs from item embeddings with residual quantized Gaussian mixtures.

The tokenizers are imported on first use (``rqgmm.RQGMM`` loads torch then), so the command line
and ``import rqgmm.errors`` start without it.
"""

from rqgmm._version import __version__
from rqgmm.errors import ConvergenceWarning, RqgmmError

_LAZY = {"RQGMM", "RQVAE", "VQVAE", "RQKMeans", "ResidualTokenizer"}


def __getattr__(name: str):
    if name in _LAZY:
        import rqgmm.quantize

        return getattr(rqgmm.quantize, name)
    if name == "load":
        from rqgmm.quantize import ResidualTokenizer

        return ResidualTokenizer.load
    raise AttributeError(f"module 'rqgmm' has no attribute {name!r}")


__all__ = ["RQGMM", "RQVAE", "VQVAE", "ConvergenceWarning", "RQKMeans", "ResidualTokenizer", "RqgmmError",
           "__version__", "load"]
