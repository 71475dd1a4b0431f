"""Fitting speed and quality against scikit-learn and faiss, on the same data in the same run.

Three comparisons:

1. One RQ-GMM level against scikit-learn ``GaussianMixture(covariance_type="diag")``: time per EM
   iteration from the same initial parameters (the k-means++ start RQ-GMM draws, recorded through
   its initialization hook), same number of iterations (tol=0), and the log-likelihood each
   reaches. Per-iteration time is (t(1 + N iterations) - t(1 iteration)) / N, so set-up cancels.
2. A whole L-level fit: RQ-GMM against scikit-learn fitted level by level on the residuals (its
   own k-means++ start, same max_iter and tol): total time, RMSE, per-level log-likelihood.
3. RQ-KMeans against ``faiss.Kmeans`` fitted level by level on the residuals (all rows, same
   number of Lloyd iterations): total time and RMSE.

Run from the repository root:
    python -m benchmarks.bench_fit [--data synthetic|ml-100k] [--n 200000] [--dim 128] [--k 256]
        [--levels 3] [--iters 5] [--whole-iters 10] [--skip-whole] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
from sklearn.mixture import GaussianMixture

from benchmarks.common import DATA_SETS, add_markdown_option, load_data, matmul_peak, recorded_output, timed, write_json
from rqgmm import RQGMM, RQKMeans


def ours_one_level(X: np.ndarray, k: int, iterations: int) -> tuple[RQGMM, float, list]:
    """Fit one level; return (model, seconds, recorded initial parameters)."""
    model = RQGMM(n_levels=1, codebook_size=k, max_iter=iterations, tol=0.0, random_state=0, progress=False)
    recorded = []
    original = model._initial_params

    def recording(*args, **kwargs):
        params, reseeded = original(*args, **kwargs)
        recorded.append([t.cpu().numpy().copy() for t in (params.weights, params.means, params.variances)])
        return params, reseeded

    model._initial_params = recording
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, seconds = timed(model.fit, X)
    return model, seconds, recorded[0]


def sklearn_from(X: np.ndarray, start: list, iterations: int) -> tuple[GaussianMixture, float]:
    weights, means, variances = start
    model = GaussianMixture(len(weights), covariance_type="diag", weights_init=weights, means_init=means,
                            precisions_init=1.0 / variances, max_iter=iterations, tol=0.0, reg_covar=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, seconds = timed(model.fit, X)
    return model, seconds


def per_iteration(X: np.ndarray, k: int, iterations: int) -> dict:
    _, ours_one, start = ours_one_level(X, k, 1)
    model, ours_many, _ = ours_one_level(X, k, 1 + iterations)
    _, ref_one = sklearn_from(X, start, 1)
    ref_model, ref_many = sklearn_from(X, start, 1 + iterations)
    ours_seconds = (ours_many - ours_one) / iterations
    ref_seconds = (ref_many - ref_one) / iterations
    flops = 2 * 2 * X.shape[0] * (2 * X.shape[1]) * k  # E-step [x², x] @ W and M-step R.T @ [x², x]
    return {"rqgmm_seconds_per_iteration": ours_seconds, "sklearn_seconds_per_iteration": ref_seconds,
            "speedup": ref_seconds / ours_seconds, "rqgmm_gflops": flops / ours_seconds / 1e9,
            "rqgmm_log_likelihood": float(model.lower_bound_[0]),
            "sklearn_log_likelihood": float(ref_model.lower_bound_)}


def rmse(X: np.ndarray, reconstruction: np.ndarray) -> float:
    return float(np.sqrt(np.mean((X.astype(np.float64) - reconstruction) ** 2)))


def whole_gmm_fit(X: np.ndarray, levels: int, k: int, max_iter: int) -> dict:
    ours = RQGMM(n_levels=levels, codebook_size=k, max_iter=max_iter, tol=1e-3, random_state=0, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        codes, ours_seconds = timed(ours.fit_encode, X)
        residual = X.astype(np.float64)
        ref_log_likelihoods = []
        ref_seconds = 0.0
        for level in range(levels):
            model = GaussianMixture(k, covariance_type="diag", init_params="k-means++", max_iter=max_iter,
                                    tol=1e-3, reg_covar=1e-6, random_state=level)
            _, seconds = timed(model.fit, residual)
            level_codes, predict_seconds = timed(model.predict, residual)
            ref_seconds += seconds + predict_seconds
            ref_log_likelihoods.append(float(model.lower_bound_))
            residual = residual - model.means_[level_codes]
    return {"levels": levels, "k": k, "max_iter": max_iter,
            "rqgmm_seconds": ours_seconds, "sklearn_seconds": ref_seconds, "speedup": ref_seconds / ours_seconds,
            "rqgmm_rmse": rmse(X, ours.decode(codes)), "sklearn_rmse": float(np.sqrt(np.mean(residual**2))),
            "rqgmm_log_likelihood_by_level": [float(v) for v in ours.lower_bound_],
            "sklearn_log_likelihood_by_level": ref_log_likelihoods}


def whole_kmeans_fit(X: np.ndarray, levels: int, k: int, iterations: int, init: str = "kmeans++") -> dict:
    """RQ-KMeans (``init``: k-means++ or random rows, faiss' seeding) against faiss.Kmeans level by
    level, both on every row for ``iterations`` Lloyd iterations; fit + final assignment time."""
    import faiss

    ours = RQKMeans(n_levels=levels, codebook_size=k, max_iter=iterations, tol=0.0, random_state=0, init=init,
                    progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        codes, ours_seconds = timed(ours.fit_encode, X)
    residual = np.ascontiguousarray(X, dtype=np.float32)
    faiss_seconds = 0.0
    for level in range(levels):
        # faiss trains on a 256-rows-per-centroid sample unless told to use all rows
        kmeans = faiss.Kmeans(X.shape[1], k, niter=iterations, seed=level + 1,
                              max_points_per_centroid=X.shape[0] // k + 1)
        _, seconds = timed(kmeans.train, residual)
        (_, assigned), search_seconds = timed(kmeans.index.search, residual, 1)
        faiss_seconds += seconds + search_seconds
        residual = residual - kmeans.centroids[assigned[:, 0]]
    return {"levels": levels, "k": k, "iterations": iterations, "init": init,
            "rqkmeans_seconds": ours_seconds, "faiss_seconds": faiss_seconds,
            "speedup": faiss_seconds / ours_seconds,
            "rqkmeans_rmse": rmse(X, ours.decode(codes)),
            "faiss_rmse": float(np.sqrt(np.mean(residual.astype(np.float64) ** 2)))}


def kmeans_comparison(X: np.ndarray, levels: int, k: int, iterations: int) -> list[dict]:
    """Comparison 3, printed: with faiss' seeding budget (random rows) and with k-means++."""
    runs = [whole_kmeans_fit(X, levels, k, iterations, init) for init in ("random", "kmeans++")]
    product_gflop = 2 * X.shape[0] * X.shape[1] * k * levels * (iterations + 1) / 1e9
    floor = distance_product_floor(X, levels, k, iterations)
    peak = matmul_peak()
    print(f"\n3. RQ-KMeans {levels} x {k}, {iterations} Lloyd iterations per level, all rows")
    print(f"{'':32} {'seconds':>8} {'RMSE':>9}")
    for run in runs:
        run.update(distance_product_seconds=floor, matmul_peak_gflops=peak, product_gflop=product_gflop)
        print(f"{'rqgmm RQKMeans init=' + run['init']:32} {run['rqkmeans_seconds']:8.1f} {run['rqkmeans_rmse']:9.5f}")
        print(f"{'faiss.Kmeans by level':32} {run['faiss_seconds']:8.1f} {run['faiss_rmse']:9.5f}")
        print(f"ratio (faiss time / ours, init={run['init']}) {run['speedup']:.2f}x")
    faiss_seconds = min(run["faiss_seconds"] for run in runs)
    at_peak = product_gflop / peak
    print(f"distance products of an exact fit: {levels} levels x {iterations + 1} passes of a {X.shape[0]:,} x"
          f" {X.shape[1]} by {X.shape[1]} x {k} product = {product_gflop:.0f} GFLOP; one torch matmul of that shape"
          f" per pass: {floor:.1f} s; at this machine's fp32 matmul peak ({peak:.0f} GFLOP/s, 4096^2): {at_peak:.1f} s")
    print(f"faiss' whole fit runs at {product_gflop / faiss_seconds:.0f} GFLOP/s ({at_peak / faiss_seconds:.0%} of the"
          f" peak); 1.5x faiss means {1.5 * at_peak / faiss_seconds:.0%} of the peak for the whole fit")
    return runs


def distance_product_floor(X: np.ndarray, levels: int, k: int, iterations: int) -> float:
    """Seconds of the fp32 products an exact Lloyd fit cannot skip: one (n, d) @ (d, K) per
    iteration and one for the final assignment, per level (torch matmul, best of 3)."""
    import torch

    rows = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    centers = rows[torch.randperm(rows.shape[0], generator=torch.Generator().manual_seed(0))[:k]].T.contiguous()
    best = min(timed(torch.matmul, rows, centers)[1] for _ in range(3))
    return best * levels * (iterations + 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=DATA_SETS, default="synthetic")
    parser.add_argument("--n", type=int, default=200_000, help="rows of the synthetic set")
    parser.add_argument("--dim", type=int, default=128, help="dimension of the synthetic set")
    parser.add_argument("--k", type=int, default=256)
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--iters", type=int, default=5, help="timed EM iterations of comparison 1")
    parser.add_argument("--whole-iters", type=int, default=10, help="max EM / Lloyd iterations per level")
    parser.add_argument("--skip-whole", action="store_true", help="only comparison 1")
    parser.add_argument("--only-kmeans", action="store_true", help="only comparison 3 (RQ-KMeans against faiss)")
    parser.add_argument("--out", default=None)
    add_markdown_option(parser)
    args = parser.parse_args()
    with recorded_output(args.markdown, "RQ-GMM and RQ-KMeans fits against scikit-learn and faiss"):
        X = load_data(args.data, args.n, args.dim)
        n, dim = X.shape
        print(f"data {args.data}: {n} x {dim}")
        if args.only_kmeans:
            write_json(args.out, {"data": args.data, "n": n, "dim": dim, "k": args.k,
                                  "whole_kmeans": kmeans_comparison(X, args.levels, args.k, args.whole_iters)})
            return
        iteration = per_iteration(X, args.k, args.iters)
        peak = matmul_peak()
        iteration.update(matmul_peak_gflops=peak, fraction_of_peak=iteration["rqgmm_gflops"] / peak)
        print(f"\n1. one EM iteration, K={args.k}, same start, {1 + args.iters} iterations each")
        print(f"{'':14} {'s/iter':>8} {'mean log-lik':>13}")
        print(f"{'rqgmm':14} {iteration['rqgmm_seconds_per_iteration']:8.3f} {iteration['rqgmm_log_likelihood']:13.4f}")
        print(f"{'scikit-learn':14} {iteration['sklearn_seconds_per_iteration']:8.3f}"
              f" {iteration['sklearn_log_likelihood']:13.4f}")
        print(f"speed-up {iteration['speedup']:.1f}x; rqgmm {iteration['rqgmm_gflops']:.0f} GFLOP/s in its matrix"
              f" products, {iteration['fraction_of_peak']:.0%} of this machine's fp32 matmul peak ({peak:.0f} GFLOP/s,"
              " 4096^2)")
        result = {"data": args.data, "n": n, "dim": dim, "k": args.k, "per_iteration": iteration}
        if not args.skip_whole:
            gmm = whole_gmm_fit(X, args.levels, args.k, args.whole_iters)
            print(f"\n2. whole fit {args.levels} x {args.k}, max_iter={args.whole_iters}, tol=1e-3 per level")
            print(f"{'':22} {'seconds':>8} {'RMSE':>9}  mean log-lik by level")
            for name, key in (("rqgmm RQGMM", "rqgmm"), ("scikit-learn by level", "sklearn")):
                levels = " / ".join(f"{v:.3f}" for v in gmm[f"{key}_log_likelihood_by_level"])
                print(f"{name:22} {gmm[f'{key}_seconds']:8.1f} {gmm[f'{key}_rmse']:9.5f}  {levels}")
            print(f"speed-up {gmm['speedup']:.1f}x")
            result.update(whole_gmm=gmm, whole_kmeans=kmeans_comparison(X, args.levels, args.k, args.whole_iters))
        write_json(args.out, result)


if __name__ == "__main__":
    main()
