"""How fitting and encoding grow with rows and codebook size, and the peak memory of fitting
from a memory-mapped file larger than the memory budget.

1. n = 100k, 400k, 1.6M rows (d=128, K=256): fit (one level, a fixed number of EM iterations,
   tol=0) and encode time; time per row should stay flat.
2. K = 64, 256, 1024 at n = 200k: the same.
3. A 5M x 128 float32 ``.npy`` (2.4 GiB) written to a temporary directory and fitted from
   ``np.load(mmap_mode="r")`` in a child process (two levels, K=256): its peak resident memory
   (VmHWM, Linux), which must stay under 1.5 GiB, next to its resident memory after imports.

Run from the repository root:
    python -m benchmarks.bench_scale [--iters 5] [--memmap-rows 5000000] [--tmpdir DIR] [--skip-memmap] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import numpy as np

from benchmarks.common import (
    add_markdown_option,
    fit_memmap_in_child,
    recorded_output,
    structured_data,
    timed,
    write_json,
)
from rqgmm import RQGMM

DIM = 128
MEMORY_TARGET_MIB = 1536


def fit_and_encode(X: np.ndarray, k: int, iterations: int) -> dict:
    model = RQGMM(n_levels=1, codebook_size=k, max_iter=iterations, tol=0.0, random_state=0, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, fit_seconds = timed(model.fit, X)
    _, encode_seconds = timed(model.encode, X)
    n = X.shape[0]
    return {"n": n, "k": k, "fit_seconds": fit_seconds, "encode_seconds": encode_seconds,
            "fit_us_per_row": fit_seconds / n * 1e6, "encode_us_per_row": encode_seconds / n * 1e6}


def print_rows(title: str, rows: list[dict], key: str) -> None:
    print(f"\n{title}")
    print(f"{key:>9} {'fit s':>8} {'fit us/row':>11} {'encode s':>9} {'encode us/row':>14}")
    for row in rows:
        print(f"{row[key]:9,d} {row['fit_seconds']:8.1f} {row['fit_us_per_row']:11.2f} {row['encode_seconds']:9.2f}"
              f" {row['encode_us_per_row']:14.2f}")


def write_memmap(path: Path, rows: int, block: int = 250_000) -> None:
    """A ``rows`` x 128 float32 ``.npy`` of the structured mixture, written block by block."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, DIM))
    for start in range(0, rows, block):
        stop = min(start + block, rows)
        out[start:stop] = structured_data(stop - start, DIM, seed=start)
    out.flush()
    del out


def memmap_fit(rows: int, iterations: int, tmpdir: str | None) -> dict:
    with tempfile.TemporaryDirectory(dir=tmpdir, prefix="rqgmm-bench-") as directory:
        path = Path(directory) / "X.npy"
        _, write_seconds = timed(write_memmap, path, rows)
        result = fit_memmap_in_child(path, f"rqgmm.RQGMM(n_levels=2, codebook_size=256, max_iter={iterations},"
                                           " tol=0.0, seed=0, progress=False)")
        result.update(rows=rows, file_gib=path.stat().st_size / 2**30, write_seconds=write_seconds,
                      iterations=iterations, target_mib=MEMORY_TARGET_MIB)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=5, help="EM iterations per fit")
    parser.add_argument("--memmap-rows", type=int, default=5_000_000)
    parser.add_argument("--tmpdir", default=None, help="where the memmap file is written (needs 2.4 GiB)")
    parser.add_argument("--skip-memmap", action="store_true")
    parser.add_argument("--only-memmap", action="store_true", help="skip parts 1 and 2")
    parser.add_argument("--out", default=None)
    add_markdown_option(parser)
    args = parser.parse_args()
    with recorded_output(args.markdown, "Fit and encode time against rows and codebook size; a memmap fit"):
        result = {}
        if not args.only_memmap:
            by_rows = [fit_and_encode(structured_data(n, DIM), 256, args.iters) for n in (100_000, 400_000, 1_600_000)]
            print_rows(f"1. rows (K=256, d={DIM}, one level, {args.iters} EM iterations)", by_rows, "n")
            X = structured_data(200_000, DIM)
            by_k = [fit_and_encode(X, k, args.iters) for k in (64, 256, 1024)]
            print_rows(f"2. codebook size (n=200,000, d={DIM})", by_k, "k")
            result = {"by_rows": by_rows, "by_codebook_size": by_k}
        if not args.skip_memmap:
            mapped = memmap_fit(args.memmap_rows, 3, args.tmpdir)
            verdict = "under" if mapped["peak_rss_mib"] < MEMORY_TARGET_MIB else "OVER"
            print(f"\n3. fit from a {mapped['rows']:,} x {DIM} memmap ({mapped['file_gib']:.1f} GiB), 2 levels x 256,"
                  f" 3 EM iterations: {mapped['fit_seconds']:.0f} s, peak resident memory"
                  f" {mapped['peak_rss_mib']:,.0f} MiB ({verdict} the {MEMORY_TARGET_MIB} MiB target;"
                  f" {mapped['baseline_rss_mib']:,.0f} MiB after imports)")
            result["memmap"] = mapped
        write_json(args.out, result)


if __name__ == "__main__":
    main()
