"""Encoding throughput of a 3 x 256 residual tokenizer against faiss ResidualQuantizer and a plain
NumPy greedy encoder, with the reconstruction MSE of each.

All encoders quantize the same rows. Ours and the NumPy reference use the same RQ-KMeans
codebooks (so their codes must agree); faiss trains its own residual quantizer on the same data
and encodes with beam size 1 and with its default beam.

Run from the repository root: python -m benchmarks.bench_encode [--n 200000] [--dim 128] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import time

import faiss
import numpy as np

from benchmarks.bench_fit import structured_data
from rqgmm import RQKMeans


def numpy_greedy(X: np.ndarray, codebooks: list[np.ndarray]) -> np.ndarray:
    """Reference: nearest codeword of the residual, level by level, in chunks: (n, L) int64."""
    codes = np.empty((len(X), len(codebooks)), dtype=np.int64)
    for start in range(0, len(X), 16384):
        residual = X[start:start + 16384].copy()
        for level, codebook in enumerate(codebooks):
            scores = 2 * residual @ codebook.T - np.square(codebook).sum(1)
            chosen = scores.argmax(1)
            codes[start:start + len(chosen), level] = chosen
            residual -= codebook[chosen]
    return codes


def timed(function, *args):
    begin = time.perf_counter()
    out = function(*args)
    return out, time.perf_counter() - begin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    X = structured_data(args.n, args.dim)
    tokenizer = RQKMeans(n_levels=3, codebook_size=256, max_iter=10, seed=0, batch_size=65536, progress=False).fit(X)
    rows = {}
    codes, seconds = timed(tokenizer.encode, X)
    rows["rqgmm (RQ-KMeans codebooks)"] = (seconds, float(np.mean((tokenizer.decode(codes) - X) ** 2)))
    reference, seconds = timed(numpy_greedy, X, tokenizer.codebooks_)
    assert np.mean(reference == codes) > 0.999, "the NumPy reference disagrees with rqgmm's codes"
    rows["numpy greedy (same codebooks)"] = (seconds, rows["rqgmm (RQ-KMeans codebooks)"][1])
    quantizer = faiss.ResidualQuantizer(args.dim, 3, 8)
    quantizer.max_beam_size = 1
    quantizer.train(X)
    for beam in (1, 5):
        quantizer.max_beam_size = beam
        packed, seconds = timed(quantizer.compute_codes, X)
        rows[f"faiss ResidualQuantizer beam {beam}"] = (seconds, float(np.mean((quantizer.decode(packed) - X) ** 2)))
    ours_rate = args.n / rows["rqgmm (RQ-KMeans codebooks)"][0]
    print(f"encode {args.n} x {args.dim}, 3 levels x 256 codes")
    print(f"{'encoder':36} {'rows/s':>10} {'MSE':>9} {'vs rqgmm':>9}")
    result = {"n": args.n, "dim": args.dim, "encoders": {}}
    for name, (seconds, mse) in rows.items():
        rate = args.n / seconds
        print(f"{name:36} {rate:10,.0f} {mse:9.5f} {rate / ours_rate:8.2f}x")
        result["encoders"][name] = {"rows_per_second": rate, "mse": mse}
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
