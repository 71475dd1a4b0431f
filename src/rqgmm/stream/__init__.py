"""Streaming CTR training with distribution-aware numeric embeddings (DAES) and its baselines."""

from rqgmm.stream.daes import DAESEmbedding
from rqgmm.stream.data import StreamData, drifting_stream, movielens_stream
from rqgmm.stream.numeric import (
           AutoDis,
           NumericEmbedding,
           RefreshedBinning,
           ScalarEmbedding,
           StaticBinning,
)
from rqgmm.stream.quantiles import quantile_map
from rqgmm.stream.reservoir import Reservoir
from rqgmm.stream.train import NUMERIC_METHODS, StreamConfig, compare, run_stream

__all__ = ["AutoDis", "DAESEmbedding", "NUMERIC_METHODS", "NumericEmbedding", "RefreshedBinning", "Reservoir",
           "ScalarEmbedding", "StaticBinning", "StreamConfig", "StreamData", "compare", "drifting_stream",
           "movielens_stream", "quantile_map", "run_stream"]
