"""Streaming CTR training with distribution-aware numeric embeddings (DAES) and its baselines.

Names are imported on first use (pandas, which the stream data needs, is an optional dependency)."""

import importlib

_WHERE = {
    "DAESEmbedding": "daes", "StreamData": "data", "drifting_stream": "data", "movielens_stream": "data",
    "AutoDis": "numeric", "NumericEmbedding": "numeric", "RefreshedBinning": "numeric",
    "ScalarEmbedding": "numeric", "StaticBinning": "numeric", "quantile_map": "quantiles",
    "Reservoir": "reservoir", "NUMERIC_METHODS": "methods", "StreamConfig": "train", "compare": "train",
    "run_stream": "train",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'rqgmm.stream' has no attribute {name!r}")
    return getattr(importlib.import_module(f"rqgmm.stream.{_WHERE[name]}"), name)
