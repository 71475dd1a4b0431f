"""Fit RQ-GMM on CPU and CUDA from the same data and seed; print time and agreement.

Run: PYTHONPATH=src python benchmarks/gpu_smoke.py [n] [dim] [K]
"""

import sys
import time
import warnings

import numpy as np
import torch

from rqgmm import RQGMM

n, dim, k = (int(a) for a in (sys.argv[1:4] if len(sys.argv) > 3 else (200_000, 128, 256)))
rng = np.random.default_rng(0)
centers = rng.normal(size=(512, dim)).astype(np.float32)
X = centers[rng.integers(0, 512, n)] + 0.5 * rng.normal(size=(n, dim)).astype(np.float32)
results = {}
for device in ("cpu", "cuda"):
    if device == "cuda" and not torch.cuda.is_available():
        continue
    model = RQGMM(n_levels=3, codebook_size=k, max_iter=10, tol=0.0, random_state=0, device=device, batch_size=65536,
                  progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        model.fit(X)
        if device == "cuda":
            torch.cuda.synchronize()
        fit_s = time.perf_counter() - start
    start = time.perf_counter()
    codes = model.encode(X)
    encode_s = time.perf_counter() - start
    results[device] = (model, codes)
    print(f"{device}: fit 3x{k} (10 EM iterations per level) {fit_s:.2f}s, encode {n / encode_s:,.0f} rows/s,"
          f" loglik {model.lower_bound_}")
if "cuda" in results:
    cpu_codes, gpu_codes = results["cpu"][1], results["cuda"][1]
    print("level-0 code agreement cpu vs cuda:", float(np.mean(cpu_codes[:, 0] == gpu_codes[:, 0])))
    print("all-level agreement:", float(np.mean((cpu_codes == gpu_codes).all(1))))
