"""The main job until the full experiment exists: RQ-GMM vs RQ-KMeans on MovieLens-100k items.

Item texts ("Title (year). Genres: …") are encoded by the packaged all-MiniLM-L6-v2 (cached),
then both tokenizers are fitted at the same levels and codebook size, and their reconstruction
error and per-level codebook utilization are printed side by side.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np

from rqgmm.quantize import RQGMM, ResidualTokenizer, RQKMeans


@dataclass(frozen=True)
class DemoRow:
    """One tokenizer's figures. rmse: sqrt of the mean squared error per coordinate of
    decode(encode(X)); relative_error: mean over items of |x - x_hat| / |x|; utilization: per
    level, the fraction of codes used by at least one item; unique_rate: share of items whose
    full ID no other item has; fit_seconds: wall time of fit."""

    method: str
    levels: int
    codebook_size: int
    rmse: float
    relative_error: float
    utilization: tuple[float, ...]
    unique_rate: float
    fit_seconds: float


def evaluate(name: str, tokenizer: ResidualTokenizer, X: np.ndarray) -> DemoRow:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        started = time.perf_counter()
        codes = tokenizer.fit_encode(X)
        seconds = time.perf_counter() - started
    error = tokenizer.decode(codes) - X
    sizes = tokenizer.codebook_sizes
    utilization = tuple(len(np.unique(codes[:, level])) / sizes[level] for level in range(codes.shape[1]))
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    return DemoRow(
        method=name, levels=codes.shape[1], codebook_size=sizes[0],
        rmse=float(np.sqrt(np.mean(error.astype(np.float64) ** 2))),
        relative_error=float(np.mean(np.linalg.norm(error, axis=1) / np.linalg.norm(X, axis=1))),
        utilization=utilization, unique_rate=float(np.mean(counts[inverse.ravel()] == 1)),
        fit_seconds=seconds)


def movielens_item_embeddings(progress: bool | None = None) -> np.ndarray:
    from rqgmm.data.movielens import load_items
    from rqgmm.data.text_encoder import TextEncoder

    items = load_items()
    return TextEncoder(progress=progress).encode(items["text"].tolist())


def run_demo(settings=((2, 128), (3, 256)), seed: int = 0, progress: bool | None = None) -> list[DemoRow]:
    X = movielens_item_embeddings(progress)
    rows = []
    for levels, size in settings:
        for name, klass in (("RQ-GMM", RQGMM), ("RQ-KMeans", RQKMeans)):
            rows.append(evaluate(name, klass(n_levels=levels, codebook_size=size, seed=seed, progress=progress), X))
    return rows


def format_rows(rows: list[DemoRow]) -> str:
    header = f"{'method':<10} {'L x K':>8} {'RMSE':>8} {'rel.err':>8} {'unique':>7} {'fit s':>6}  utilization per level"
    lines = [header, "-" * len(header)]
    for row in rows:
        util = " ".join(f"{u:.1%}" for u in row.utilization)
        lines.append(f"{row.method:<10} {f'{row.levels}x{row.codebook_size}':>8} {row.rmse:8.5f}"
                     f" {row.relative_error:8.4f} {row.unique_rate:7.1%} {row.fit_seconds:6.2f}  {util}")
    return "\n".join(lines)
