"""rqgmm: semantic IDs from item embeddings with residual quantized Gaussian mixtures."""

from rqgmm._version import __version__
from rqgmm.errors import ConvergenceWarning, RqgmmError
from rqgmm.quantize import RQGMM, RQVAE, VQVAE, ResidualTokenizer, RQKMeans

load = ResidualTokenizer.load

__all__ = ["__version__", "RQGMM", "RQKMeans", "RQVAE", "VQVAE", "ResidualTokenizer", "load", "ConvergenceWarning", "RqgmmError"]
