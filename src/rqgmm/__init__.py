"""rqgmm: semantic IDs from item embeddings with residual quantized Gaussian mixtures."""

from rqgmm._version import __version__
from rqgmm.errors import ConvergenceWarning, RqgmmError
from rqgmm.quantize import RQGMM, RQVAE, VQVAE, ResidualTokenizer, RQKMeans

load = ResidualTokenizer.load

__all__ = ["RQGMM", "RQVAE", "VQVAE", "ConvergenceWarning", "RQKMeans", "ResidualTokenizer", "RqgmmError",
           "__version__", "load"]
