"""Fit and encode a 2M-row Parquet dataset with a local Ray instance against the single-process
path on the same machine, and the per-block costs behind the scaling model in README.

Runs itself inside a network namespace with only loopback up (``unshare -n``, root), because a
local Ray instance listens on every interface; refuses to start Ray otherwise.

Measured: single process = read the Parquet files into memory, ``RQGMM.fit`` and ``encode``;
Ray = ``read_parquet`` + ``fit_on_ray`` (materialize, E-step tasks per block, driver M-step) and
``encode_on_ray`` (``map_batches`` writing Parquet). Also one EM pass on Ray split into its parts:
the per-block task cost with no-op statistics (scheduling, reading the block, Python) and with
the real E-step, from which the model t(pass) = rows x c_row / workers + blocks x c_task / workers
is fitted.

Run from the repository root (as root):
    python -m benchmarks.bench_ray [--rows 2000000] [--files 16] [--iters 5] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from benchmarks.common import add_markdown_option, recorded_output, structured_data, timed, write_json

ISOLATED_ENV = "RQGMM_BENCH_ISOLATED"
DIM = 128


def reexec_isolated() -> None:
    """Run this script again inside a loopback-only network namespace, then exit."""
    if os.environ.get(ISOLATED_ENV):
        return
    command = " ".join(f"'{part}'" for part in [sys.executable, "-m", "benchmarks.bench_ray", *sys.argv[1:]])
    probe = subprocess.run(["unshare", "-n", "sh", "-c", "ip link set lo up"], capture_output=True, check=False)
    if probe.returncode != 0:
        raise SystemExit("could not create a loopback-only network namespace (needs root, unshare and ip);"
                         " not starting Ray on the open network")
    completed = subprocess.run(["unshare", "-n", "sh", "-c", f"ip link set lo up && {ISOLATED_ENV}=1 exec {command}"],
                               check=False)
    raise SystemExit(completed.returncode)


def write_dataset(directory: Path, rows: int, files: int) -> str:
    for index, part in enumerate(np.array_split(np.arange(rows), files)):
        X = structured_data(len(part), DIM, seed=index)
        vectors = pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), DIM)
        pq.write_table(pa.table({"id": part.astype(np.int64), "embedding": vectors}), directory / f"part-{index:03d}.parquet")
    return str(directory / "part-*.parquet")


def read_all(directory: Path) -> np.ndarray:
    table = pads.dataset(sorted(directory.glob("part-*.parquet"))).to_table(columns=["embedding"])
    flat = table.column("embedding").combine_chunks().flatten().to_numpy()
    return flat.reshape(-1, DIM).astype(np.float32, copy=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--iters", type=int, default=5, help="EM iterations per level (tol=0)")
    parser.add_argument("--out", default=None)
    add_markdown_option(parser)
    args = parser.parse_args()
    with recorded_output(args.markdown, "The Ray engine against one process"):
        reexec_isolated()
        from rqgmm import RQGMM
        from rqgmm.distributed import encode_on_ray, fit_on_ray, ray_session, read_parquet_dataset
        from rqgmm.distributed.engine import RayBlocks, RayResidualStream
        from rqgmm.quantize.gaussian_mixture import MixtureScorer

        params = {"n_levels": 2, "codebook_size": 256, "max_iter": args.iters, "tol": 0.0, "seed": 0, "progress": False}
        warnings.simplefilter("ignore")
        with tempfile.TemporaryDirectory(prefix="rqgmm-ray-") as tmp:
            directory = Path(tmp)
            _, write_seconds = timed(write_dataset, directory, args.rows, args.files)
            X, read_seconds = timed(read_all, directory)
            local = RQGMM(**params)
            _, local_fit = timed(local.fit, X)
            local_codes, local_encode = timed(local.encode, X)
            (_, session), start_seconds = timed(lambda: (None, ray_session(num_cpus=os.cpu_count()).__enter__()))
            try:
                dataset = read_parquet_dataset(str(directory / "part-*.parquet"))
                distributed, ray_fit = timed(fit_on_ray, RQGMM(**params), dataset, "embedding")
                _, ray_encode = timed(encode_on_ray, distributed, dataset, "embedding", str(directory / "codes"), "id")
                blocks = RayBlocks(dataset, "embedding")
                stream = RayResidualStream(distributed, blocks)
                _, noop_pass = timed(stream.reduce, _noop)
                scorer = MixtureScorer(_level_params(distributed, 0))
                _, em_pass = timed(stream.reduce, scorer.accumulate)
            finally:
                session.shutdown()
            written = pq.read_table(directory / "codes").to_pandas().sort_values("id")
            agreement = float(np.mean(np.all(written[["level_0", "level_1"]].to_numpy()
                                             == local_codes[written["id"].to_numpy()], axis=1)))
        n_blocks, workers = len(blocks.refs), os.cpu_count()
        local_pass = local_fit / (params["n_levels"] * (args.iters + 2))  # start, iterations, assignment per level
        c_task = noop_pass * workers / n_blocks
        c_row = max(em_pass - noop_pass, 0.0) * workers / args.rows
        result = {"rows": args.rows, "files": args.files, "blocks": n_blocks, "workers": workers,
                  "write_seconds": write_seconds, "single_read_seconds": read_seconds,
                  "single_fit_seconds": local_fit, "single_encode_seconds": local_encode,
                  "ray_start_seconds": start_seconds, "ray_fit_seconds": ray_fit, "ray_encode_seconds": ray_encode,
                  "fit_overhead": ray_fit / (local_fit + read_seconds), "encode_overhead": ray_encode / local_encode,
                  "code_agreement": agreement, "ray_noop_pass_seconds": noop_pass, "ray_em_pass_seconds": em_pass,
                  "single_pass_seconds_estimate": local_pass, "c_task_seconds": c_task, "c_row_seconds": c_row}
        print(f"{args.rows:,} x {DIM} in {args.files} Parquet files ({n_blocks} Ray blocks), 2 levels x 256,"
              f" {args.iters} EM iterations per level, {workers} CPUs")
        print(f"{'':26} {'single process':>15} {'Ray (local)':>12} {'ratio':>7}")
        print(f"{'fit (incl. read) s':26} {local_fit + read_seconds:15.1f} {ray_fit:12.1f} {result['fit_overhead']:7.2f}")
        print(f"{'encode s':26} {local_encode:15.1f} {ray_encode:12.1f} {result['encode_overhead']:7.2f}"
              "  (Ray: read + encode + write Parquet)")
        print(f"Ray start {start_seconds:.1f} s; codes equal to the single-process fit's for {agreement:.2%} of rows")
        print(f"one EM pass on Ray: {em_pass:.2f} s (no-op statistics {noop_pass:.2f} s); single process about"
              f" {local_pass:.2f} s per pass")
        print(f"scaling model: t(pass) = rows x {c_row * 1e6:.2f} us / workers + blocks x {c_task * 1e3:.0f} ms / workers")
        write_json(args.out, result)


def _noop(chunk):
    return 0


def _level_params(tokenizer, level: int):
    import torch

    from rqgmm.quantize.gaussian_mixture import MixtureParams

    return MixtureParams(*(torch.as_tensor(a, dtype=torch.float64) for a in
                           (tokenizer.weights_[level], tokenizer.means_[level], tokenizer.variances_[level])))


if __name__ == "__main__":
    main()
