"""Achieved GFLOP/s of the EM iteration and of encoding against the fp32 matmul peak measured in
the same run, and against plain matmuls of the very shapes each kernel multiplies.

The second reference separates two losses: a product of a thin shape (inner or outer size 128 or
256) runs below the square-matrix peak even alone, and whatever remains is the kernel's own
overhead (building features, exp, normalization, argmax, gathers).

Every figure is the best of ``--repeats`` timings (the peak: of 5), since timings on a shared
machine only ever err on the slow side.

Run from the repository root:
    python -m benchmarks.bench_roofline [--n 200000] [--dim 128] [--k 256] [--iters 5] [--repeats 3] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import warnings

import torch

from benchmarks.bench_fit import ours_one_level
from benchmarks.common import (
    add_markdown_option,
    matmul_gflops,
    matmul_peak,
    recorded_output,
    structured_data,
    timed,
    write_json,
)
from rqgmm import RQGMM, RQKMeans
from rqgmm.quantize.rowops import TILE_ROWS

CHUNK = 16384  # the tokenizers' default rows per chunk


def em_iteration(X, k: int, iterations: int, repeats: int) -> dict:
    """Best of ``repeats`` measurements (this shared machine's timings drift), as for the peak."""
    seconds = min(_em_seconds(X, k, iterations) for _ in range(repeats))
    n, dim = X.shape
    flops = 2 * 2 * n * (2 * dim) * k
    # the same products alone: E-step (chunk, 2 dim) @ (2 dim, K), M-step (K, chunk) @ (chunk, 2 dim)
    e_step = matmul_gflops(CHUNK, 2 * dim, k, repeats=20)
    m_step = matmul_gflops(k, CHUNK, 2 * dim, repeats=20)
    shape_bound = flops / (flops / 2 / e_step / 1e9 + flops / 2 / m_step / 1e9) / 1e9
    return {"seconds": seconds, "gflops": flops / seconds / 1e9, "shape_matmul_gflops": shape_bound}


def _em_seconds(X, k: int, iterations: int) -> float:
    _, one, _ = ours_one_level(X, k, 1)
    _, many, _ = ours_one_level(X, k, 1 + iterations)
    return (many - one) / iterations


def encoding(X, k: int, repeats: int, levels: int = 3) -> dict:
    n, dim = X.shape
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kmeans = RQKMeans(n_levels=levels, codebook_size=k, max_iter=5, random_state=0, progress=False).fit(X)
        gmm = RQGMM(n_levels=levels, codebook_size=k, max_iter=5, random_state=0, progress=False).fit(X)
    for name, tokenizer, width in (("encode RQ-KMeans", kmeans, dim), ("encode RQ-GMM", gmm, 2 * dim)):
        tokenizer.encode(X[:1000])
        seconds = min(timed(tokenizer.encode, X)[1] for _ in range(repeats))
        flops = n * levels * 2 * width * k
        out[name] = {"seconds": seconds, "rows_per_second": n / seconds, "gflops": flops / seconds / 1e9,
                     "shape_matmul_gflops": matmul_gflops(TILE_ROWS, width, k, repeats=20)}
    return out


def low_precision(dim: int, k: int) -> dict:
    """The encoding's product (a score tile) in bf16 against fp32: what a low-precision candidate
    pass could gain on this CPU."""
    fp32 = matmul_gflops(TILE_ROWS, dim, k, repeats=5)
    bf16 = matmul_gflops(TILE_ROWS, dim, k, repeats=2, dtype=torch.bfloat16)
    return {"fp32_gflops": fp32, "bf16_gflops": bf16, "bf16_speedup": bf16 / fp32}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", type=int, default=256)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many timings per kernel")
    parser.add_argument("--out", default=None)
    add_markdown_option(parser)
    args = parser.parse_args()
    with recorded_output(args.markdown, "Kernels against this machine's fp32 matmul peak"):
        X = structured_data(args.n, args.dim)
        kernels = {f"EM iteration (K={args.k})": em_iteration(X, args.k, args.iters, args.repeats),
                   **encoding(X, args.k, args.repeats)}
        peak = matmul_peak()
        print(f"{args.n} x {args.dim}; fp32 matmul peak {peak:.0f} GFLOP/s (4096^2, torch, this run)")
        print(f"{'kernel':22} {'GFLOP/s':>8} {'of peak':>8} {'same-shape matmul':>18} {'kernel / it':>12}")
        for name, row in kernels.items():
            row["fraction_of_peak"] = row["gflops"] / peak
            print(f"{name:22} {row['gflops']:8.0f} {row['fraction_of_peak']:8.0%} {row['shape_matmul_gflops']:12.0f}"
                  f" ({row['shape_matmul_gflops'] / peak:3.0%}) {row['gflops'] / row['shape_matmul_gflops']:12.0%}")
        bf16 = low_precision(args.dim, args.k)
        print(f"score tile ({TILE_ROWS} x {args.dim} by {args.dim} x {args.k}) in bf16: {bf16['bf16_gflops']:.1f}"
              f" GFLOP/s, {bf16['bf16_speedup']:.2f}x its fp32 rate ({bf16['fp32_gflops']:.0f} GFLOP/s)")
        write_json(args.out, {"n": args.n, "dim": args.dim, "k": args.k, "matmul_peak_gflops": peak,
                              "kernels": kernels, "bf16_score_tile": bf16})


if __name__ == "__main__":
    main()
