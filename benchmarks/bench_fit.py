"""One RQ-GMM level against scikit-learn's GaussianMixture(covariance_type="diag"): time per EM
iteration from the same initial parameters, and the log-likelihood each reaches.

Per-iteration time is (t(1 + N iterations) - t(1 iteration)) / N for both, so initialization and
set-up cancel. Both start from the k-means++ parameters RQ-GMM draws (recorded through its
initialization hook) and run exactly the same number of iterations (tol=0).

Run from the repository root: python -m benchmarks.bench_fit [--n 200000] [--dim 128] [--k 256] [--iters 5] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
from sklearn.mixture import GaussianMixture

from rqgmm import RQGMM


def structured_data(n: int, dim: int, n_components: int = 512, seed: int = 0) -> np.ndarray:
    """Rows of a diagonal mixture of ``n_components`` components: (n, dim) float32."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(n_components, dim)) * 2.0
    scales = rng.uniform(0.3, 1.0, size=(n_components, dim))
    labels = rng.integers(0, n_components, n)
    return (means[labels] + rng.normal(size=(n, dim)) * scales[labels]).astype(np.float32)


def ours(X: np.ndarray, k: int, iterations: int) -> tuple[RQGMM, float, list]:
    """Fit one level; return (model, seconds, recorded initial parameters)."""
    model = RQGMM(n_levels=1, codebook_size=k, max_iter=iterations, tol=0.0, seed=0, progress=False)
    recorded = []
    original = model._initial_params

    def recording(*args, **kwargs):
        params, reseeded = original(*args, **kwargs)
        recorded.append([t.cpu().numpy().copy() for t in (params.weights, params.means, params.variances)])
        return params, reseeded

    model._initial_params = recording
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        model.fit(X)
        seconds = time.perf_counter() - start
    return model, seconds, recorded[0]


def reference(X: np.ndarray, start: list, iterations: int) -> tuple[GaussianMixture, float]:
    weights, means, variances = start
    model = GaussianMixture(len(weights), covariance_type="diag", weights_init=weights, means_init=means,
                            precisions_init=1.0 / variances, max_iter=iterations, tol=0.0, reg_covar=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        begin = time.perf_counter()
        model.fit(X)
        seconds = time.perf_counter() - begin
    return model, seconds


def matmul_peak(size: int = 4096, repeats: int = 5) -> float:
    """fp32 ``torch.matmul`` GFLOP/s on this machine (the roofline reference), best of ``repeats``."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = min(_seconds(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _seconds(function) -> float:
    begin = time.perf_counter()
    function()
    return time.perf_counter() - begin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", type=int, default=256)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    X = structured_data(args.n, args.dim)
    _, ours_one, start = ours(X, args.k, 1)
    model, ours_many, _ = ours(X, args.k, 1 + args.iters)
    _, ref_one = reference(X, start, 1)
    ref_model, ref_many = reference(X, start, 1 + args.iters)
    ours_per_iter = (ours_many - ours_one) / args.iters
    ref_per_iter = (ref_many - ref_one) / args.iters
    flops = 2 * 2 * args.n * (2 * args.dim) * args.k  # E-step [x², x] @ W and M-step R.T @ [x², x]
    peak = matmul_peak()
    result = {
        "n": args.n, "dim": args.dim, "k": args.k, "iterations": args.iters,
        "rqgmm_seconds_per_iteration": ours_per_iter, "sklearn_seconds_per_iteration": ref_per_iter,
        "speedup": ref_per_iter / ours_per_iter, "rqgmm_gflops": flops / ours_per_iter / 1e9,
        "matmul_peak_gflops": peak, "fraction_of_peak": flops / ours_per_iter / 1e9 / peak,
        "rqgmm_lower_bound": float(model.lower_bound_[0]), "sklearn_lower_bound": float(ref_model.lower_bound_),
    }
    print(f"EM iteration, n={args.n} d={args.dim} K={args.k}, same start, {1 + args.iters} iterations each")
    print(f"{'':12} {'s/iter':>8} {'mean log-lik':>13}")
    print(f"{'rqgmm':12} {ours_per_iter:8.3f} {result['rqgmm_lower_bound']:13.4f}")
    print(f"{'scikit-learn':12} {ref_per_iter:8.3f} {result['sklearn_lower_bound']:13.4f}")
    print(f"speed-up {result['speedup']:.1f}x; rqgmm {result['rqgmm_gflops']:.0f} GFLOP/s in its matrix products,"
          f" {result['fraction_of_peak']:.0%} of this machine's fp32 matmul peak ({peak:.0f} GFLOP/s, 4096^2)")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
