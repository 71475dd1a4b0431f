"""Tokenizers: one base contract, one module per method."""

from rqgmm.quantize.base import ResidualTokenizer
from rqgmm.quantize.rq_gmm import RQGMM
from rqgmm.quantize.rq_kmeans import RQKMeans
from rqgmm.quantize.rq_vae import RQVAE, VQVAE

__all__ = ["ResidualTokenizer", "RQGMM", "RQKMeans", "RQVAE", "VQVAE"]
