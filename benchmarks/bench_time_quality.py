"""Time to quality: RQ-KMeans against faiss.Kmeans, RMSE reached for the fit time spent.

Both fit the same residual levels (L x K) on the same rows; each point of the curve is one whole
fit plus the encoding of every row, at a budget of Lloyd iterations per level and of rows per
level (rqgmm ``max_samples``; faiss ``max_points_per_centroid``, whose default trains on 256 rows
per centroid). A point is on the Pareto front when no other point of either library is both
faster and more accurate. With ``--plot``, the curve is drawn to a PNG.

Run from the repository root:
    python -m benchmarks.bench_time_quality [--n 200000] [--dim 128] [--k 256] [--levels 3]
        [--iters 2,5,10,20] [--plot FILE.png] [--out FILE.json] [--markdown FILE.md]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np

from benchmarks.common import add_markdown_option, load_data, recorded_output, timed, write_json
from rqgmm import RQKMeans


def rmse(X: np.ndarray, X_hat: np.ndarray) -> float:
    return float(np.sqrt(np.mean((X.astype(np.float64) - X_hat) ** 2)))


def ours(X: np.ndarray, levels: int, k: int, iterations: int, init: str, max_samples: int | None) -> dict:
    """One RQ-KMeans fit + encode of every row: seconds and RMSE."""
    tokenizer = RQKMeans(n_levels=levels, codebook_size=k, max_iter=iterations, tol=0.0, random_state=0, init=init,
                         max_samples=max_samples, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        codes, seconds = timed(tokenizer.fit_encode, X)
    return {"library": "rqgmm", "setting": f"init={init}, rows/level={'all' if max_samples is None else max_samples}",
            "iterations": iterations, "seconds": seconds, "rmse": rmse(X, tokenizer.decode(codes))}


def faiss_fit(X: np.ndarray, levels: int, k: int, iterations: int, points_per_centroid: int | None) -> dict:
    """faiss.Kmeans level by level on the residuals, then every row assigned: seconds and RMSE."""
    import faiss

    per_centroid = X.shape[0] // k + 1 if points_per_centroid is None else points_per_centroid
    residual = np.ascontiguousarray(X, dtype=np.float32)
    seconds = 0.0
    for level in range(levels):
        kmeans = faiss.Kmeans(X.shape[1], k, niter=iterations, seed=level + 1, max_points_per_centroid=per_centroid)
        _, train_seconds = timed(kmeans.train, residual)
        (_, assigned), search_seconds = timed(kmeans.index.search, residual, 1)
        seconds += train_seconds + search_seconds
        residual = residual - kmeans.centroids[assigned[:, 0]]
    rows = "all" if points_per_centroid is None else f"{min(per_centroid * k, X.shape[0])}"
    return {"library": "faiss", "setting": f"random init, rows/level={rows}", "iterations": iterations,
            "seconds": seconds, "rmse": float(np.sqrt(np.mean(residual.astype(np.float64) ** 2)))}


def pareto(points: list[dict]) -> None:
    """Mark each point that no other point beats on both time and RMSE."""
    for point in points:
        point["pareto"] = not any(other["seconds"] < point["seconds"] and other["rmse"] < point["rmse"]
                                  for other in points)


def plot(points: list[dict], path: str, title: str) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.2))
    axes = figure.subplots()
    series: dict[tuple[str, str], list[dict]] = {}
    for point in points:
        series.setdefault((point["library"], point["setting"]), []).append(point)
    for (library, setting), members in sorted(series.items()):
        members.sort(key=lambda p: p["iterations"])
        axes.plot([p["seconds"] for p in members], [p["rmse"] for p in members],
                  marker="o" if library == "rqgmm" else "s", linestyle="-" if library == "rqgmm" else "--",
                  label=f"{library}: {setting}")
    axes.set_xscale("log")
    axes.set_xlabel("fit + encode seconds (log scale)")
    axes.set_ylabel("RMSE per coordinate")
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="rows of the synthetic set")
    parser.add_argument("--dim", type=int, default=128, help="dimension of the synthetic set")
    parser.add_argument("--k", type=int, default=256)
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--iters", default="2,5,10,20", help="Lloyd iterations per level, one point each")
    parser.add_argument("--plot", default=None, help="draw the curve to this PNG")
    parser.add_argument("--out", default=None)
    add_markdown_option(parser)
    args = parser.parse_args()
    with recorded_output(args.markdown, "Time to quality: RQ-KMeans against faiss.Kmeans"):
        X = load_data("synthetic", args.n, args.dim)
        iterations = [int(i) for i in args.iters.split(",")]
        sample = 256 * args.k  # faiss' default training budget, offered to both
        points = []
        for count in iterations:
            points.append(faiss_fit(X, args.levels, args.k, count, 256))
            points.append(faiss_fit(X, args.levels, args.k, count, None))
            points.append(ours(X, args.levels, args.k, count, "random", sample))
            points.append(ours(X, args.levels, args.k, count, "random", None))
            points.append(ours(X, args.levels, args.k, count, "kmeans++", sample))
            points.append(ours(X, args.levels, args.k, count, "kmeans++", None))
        pareto(points)
        print(f"{args.n:,} x {args.dim}, {args.levels} x {args.k}; each point: whole fit + encoding of every row")
        print(f"{'library':8} {'setting':38} {'iters':>5} {'seconds':>8} {'RMSE':>9}  Pareto")
        for point in sorted(points, key=lambda p: p["seconds"]):
            print(f"{point['library']:8} {point['setting']:38} {point['iterations']:5d} {point['seconds']:8.2f}"
                  f" {point['rmse']:9.5f}  {'*' if point['pareto'] else ''}")
        for library in ("rqgmm", "faiss"):
            front = [p for p in points if p["pareto"] and p["library"] == library]
            print(f"{library}: {len(front)} of {sum(p['pareto'] for p in points)} Pareto points")
        if args.plot:
            plot(points, args.plot, f"RQ-KMeans {args.levels} x {args.k} on {args.n:,} x {args.dim}")
            print(f"curve drawn to {args.plot}")
        write_json(args.out, {"n": args.n, "dim": args.dim, "k": args.k, "levels": args.levels, "points": points})


if __name__ == "__main__":
    main()
