"""Balanced k-means: rqgmm's hard / soft balance against ``k-means-constrained`` (min-cost-flow
balanced k-means, installed only for this benchmark), and a balanced level from a memmap.

1. One level on the clothing-review embeddings (22,642 x 384 MiniLM, or ``--rows`` of them, or with
   ``--data synthetic`` a mixture of the same shape) at
   K = 128 with at most ceil(n / K) rows per cluster: fit seconds, RMSE of the fit assignment and
   of nearest-centroid encoding, largest cluster; plain RQ-KMeans and soft balance beside them.
   Target: hard >= 50x faster than k-means-constrained, RMSE within 2% of it.
2. One hard-balanced level of K = 256 on a ``--memmap-rows`` x 128 float32 ``.npy`` read from
   disk in a child process: fit seconds and peak resident memory (VmHWM). Target: under 5 min
   and 1.5 GiB at 1,000,000 rows.

Run from the repository root (k-means-constrained: ``pip install k-means-constrained``):
    python -m benchmarks.bench_balanced [--data clothing|synthetic] [--rows N] [--k 128] [--skip-constrained] [--memmap-rows 1000000]
        [--skip-memmap] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import numpy as np

from benchmarks.bench_scale import write_memmap
from benchmarks.common import add_markdown_option, environment, fit_memmap_in_child, recorded_output, timed, write_json
from rqgmm import RQKMeans

SPEED_TARGET = 50.0
RMSE_TOLERANCE = 0.02
MEMMAP_SECONDS_TARGET = 300.0
MEMORY_TARGET_MIB = 1536


def rmse(X: np.ndarray, centers: np.ndarray, labels: np.ndarray) -> float:
    return float(np.sqrt(((X - centers[labels]) ** 2).mean()))


def ours(X: np.ndarray, k: int, balance: str | None, max_iter: int) -> dict:
    model = RQKMeans(n_levels=1, codebook_size=k, balance=balance, max_iter=max_iter, random_state=0, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, seconds = timed(model.fit, X)
    centers = model.codebooks_[0]
    nearest = model.encode(X)[:, 0]
    sizes = np.array(model.fit_cluster_sizes_[0]) if balance else np.bincount(nearest, minlength=k)
    return {"method": f"rqgmm {balance or 'plain'}", "seconds": seconds, "largest_cluster": int(sizes.max()),
            "rmse_encode": rmse(X, centers, nearest), "iterations": model.n_iter_[0]}


def constrained(X: np.ndarray, k: int, max_iter: int) -> dict:
    from k_means_constrained import KMeansConstrained

    capacity = -(-X.shape[0] // k)
    model = KMeansConstrained(n_clusters=k, size_max=capacity, n_init=1, max_iter=max_iter, random_state=0)
    _, seconds = timed(model.fit, X)
    labels = np.asarray(model.labels_)
    centers = np.asarray(model.cluster_centers_, dtype=np.float32)
    nearest = ((X**2).sum(1, keepdims=True) - 2 * X @ centers.T + (centers**2).sum(1)).argmin(1)
    return {"method": "k-means-constrained", "seconds": seconds, "largest_cluster": int(np.bincount(labels).max()),
            "rmse_fit": rmse(X, centers, labels), "rmse_encode": rmse(X, centers, nearest),
            "iterations": int(getattr(model, "n_iter_", max_iter))}


def memmap_fit(rows: int, k: int, max_iter: int, tmpdir: str | None) -> dict:
    with tempfile.TemporaryDirectory(dir=tmpdir, prefix="rqgmm-bench-") as directory:
        path = Path(directory) / "X.npy"
        write_memmap(path, rows)
        result = fit_memmap_in_child(
            path, f"rqgmm.RQKMeans(n_levels=1, codebook_size={k}, balance='hard', max_iter={max_iter}, random_state=0,"
                  " progress=False)",
            "{'iterations': model.n_iter_[0], 'largest_cluster': max(model.fit_cluster_sizes_[0]),"
            f" 'capacity': -(-X.shape[0] // {k})}}")
    result.update(rows=rows, k=k, max_iter=max_iter)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["clothing", "synthetic"], default="clothing",
                        help="the clothing-review embeddings, or a synthetic mixture of the same shape (22,642 x 384)")
    parser.add_argument("--rows", type=int, default=None, help="first N rows (default: all)")
    parser.add_argument("--k", type=int, default=128)
    parser.add_argument("--max-iter", type=int, default=50, help="Lloyd iterations at most, for every method")
    parser.add_argument("--skip-constrained", action="store_true")
    parser.add_argument("--memmap-rows", type=int, default=1_000_000)
    parser.add_argument("--memmap-max-iter", type=int, default=20)
    parser.add_argument("--tmpdir", default=None)
    parser.add_argument("--skip-memmap", action="store_true")
    parser.add_argument("--out", default=None)
    add_markdown_option(parser)
    args = parser.parse_args()
    with recorded_output(args.markdown, "Balanced RQ-KMeans against k-means-constrained"):
        result: dict = {"environment": environment()}
        from rqgmm.data.catalogue import load_catalogue

        if args.data == "clothing":
            X = load_catalogue("clothing", progress=False).embeddings
        else:
            from benchmarks.common import structured_data

            X = structured_data(22_642, 384)
        X = np.ascontiguousarray(X[: args.rows], dtype=np.float32)
        rows = [ours(X, args.k, balance, args.max_iter) for balance in (None, "soft", "hard")]
        if not args.skip_constrained:
            rows.append(constrained(X, args.k, args.max_iter))
        print(f"1. one level, K={args.k}, {X.shape[0]:,} x {X.shape[1]} ({args.data}), capacity"
              f" {-(-X.shape[0] // args.k)}, at most {args.max_iter} iterations")
        print(f"{'method':>22} {'seconds':>9} {'iters':>6} {'largest':>8} {'RMSE (encode)':>14}")
        for row in rows:
            print(f"{row['method']:>22} {row['seconds']:9.2f} {row['iterations']:6d} {row['largest_cluster']:8d}"
                  f" {row['rmse_encode']:14.5f}")
        result["clothing"] = rows
        if not args.skip_constrained:
            hard, reference = rows[2], rows[3]
            speedup = reference["seconds"] / hard["seconds"]
            gap = hard["rmse_encode"] / reference["rmse_encode"] - 1
            print(f"hard vs k-means-constrained: {speedup:.1f}x faster (target {SPEED_TARGET:.0f}x), RMSE"
                  f" {gap:+.2%} (target within {RMSE_TOLERANCE:.0%})")
            result["hard_vs_constrained"] = {"speedup": speedup, "rmse_gap": gap}
        if not args.skip_memmap:
            mapped = memmap_fit(args.memmap_rows, 256, args.memmap_max_iter, args.tmpdir)
            print(f"\n2. one hard-balanced level, K=256, from a {mapped['rows']:,} x 128 memmap: {mapped['fit_seconds']:.0f} s"
                  f" ({mapped['iterations']} iterations; target {MEMMAP_SECONDS_TARGET:.0f} s), peak resident memory"
                  f" {mapped['peak_rss_mib']:,.0f} MiB (target {MEMORY_TARGET_MIB} MiB; {mapped['baseline_rss_mib']:,.0f}"
                  f" after imports), largest cluster {mapped['largest_cluster']} of capacity {mapped['capacity']}")
            result["memmap"] = mapped
        write_json(args.out, result)


if __name__ == "__main__":
    main()
