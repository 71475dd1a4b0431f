"""Jobs the Ray tests run in a child process inside a network namespace with only loopback up
(see tests/test_distributed.py). Each writes a JSON result.

    python -m tests.ray_jobs compare OUT.json WORKDIR
    python -m tests.ray_jobs fault OUT.json WORKDIR MARKER
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rqgmm import RQGMM, RQKMeans
from rqgmm.distributed import encode_on_ray, fit_on_ray, ray_session, read_parquet_dataset
from rqgmm.distributed.engine import FAULT_ONCE_ENV, RayBlocks
from tests.conftest import mixture_sample

PARAMS = {"n_levels": 2, "codebook_size": [12, 6], "seed": 0, "batch_size": 1000, "progress": False}


def write_parts(X: np.ndarray, directory: Path, parts: int = 4) -> str:
    """X as ``parts`` Parquet files (id, embedding list<float>); returns their glob."""
    directory.mkdir(parents=True, exist_ok=True)
    for index, rows in enumerate(np.array_split(np.arange(len(X)), parts)):
        vectors = pa.FixedSizeListArray.from_arrays(pa.array(X[rows].ravel()), X.shape[1])
        pq.write_table(pa.table({"id": rows.astype(np.int64), "embedding": vectors}),
                       directory / f"part-{index:02d}.parquet")
    return str(directory / "part-*.parquet")


def summary(local, distributed, X: np.ndarray) -> dict:
    local_codes, ray_codes = local.encode(X), distributed.encode(X)
    return {"code_agreement": float(np.mean(np.all(local_codes == ray_codes, axis=1))),
            "codebook_max_abs_diff": max(float(np.abs(a - b).max())
                                         for a, b in zip(local.codebooks_, distributed.codebooks_)),
            "codebooks": [c.tolist() for c in distributed.codebooks_]}


def compare(out: Path, workdir: Path) -> None:
    X, _ = mixture_sample(n=12_000, dim=8, n_components=20, separation=3.0, seed=4)
    pattern = write_parts(X, workdir / "data")
    result = {}
    with warnings.catch_warnings(), ray_session(num_cpus=2) as ray:
        warnings.simplefilter("ignore")
        dataset = read_parquet_dataset(pattern)
        blocks = RayBlocks(dataset, "embedding")
        result["rows_in_order"] = bool(np.array_equal(np.concatenate(ray.get(blocks.refs)), X))
        for name, klass, extra in (("rq_gmm", RQGMM, {"max_iter": 30}), ("rq_kmeans", RQKMeans, {"max_iter": 30})):
            local = klass(**PARAMS, **extra).fit(X)
            distributed = fit_on_ray(klass(**PARAMS, **extra), dataset, "embedding")
            result[name] = summary(local, distributed, X)
            if name == "rq_gmm":
                result[name]["log_likelihood_local"] = local.lower_bound_
                result[name]["log_likelihood_ray"] = distributed.lower_bound_
                encode_on_ray(distributed, dataset, "embedding", str(workdir / "codes"), id_column="id")
                table = pq.read_table(workdir / "codes").to_pandas().sort_values("id")
                written = table[["level_0", "level_1"]].to_numpy()
                result[name]["encode_matches"] = bool(np.array_equal(written, distributed.encode(X)[table["id"]]))
                result[name]["encoded_rows"] = len(table)
    out.write_text(json.dumps(result))


def fault(out: Path, workdir: Path, marker: str) -> None:
    X, _ = mixture_sample(n=12_000, dim=8, n_components=20, separation=3.0, seed=4)
    pattern = write_parts(X, workdir / "data")
    with warnings.catch_warnings(), ray_session(num_cpus=2):
        warnings.simplefilter("ignore")
        dataset = read_parquet_dataset(pattern)
        clean = fit_on_ray(RQGMM(**PARAMS, max_iter=10), dataset, "embedding")
        # the first block task of this fit kills its own worker process; Ray must retry it
        faulty = fit_on_ray(RQGMM(**PARAMS, max_iter=10), dataset, "embedding",
                            runtime_env={"env_vars": {FAULT_ONCE_ENV: marker}})
    out.write_text(json.dumps({
        "fault_happened": os.path.exists(marker),
        "identical": all(np.array_equal(a, b) for a, b in zip(clean.means_, faulty.means_))
        and all(np.array_equal(a, b) for a, b in zip(clean.variances_, faulty.variances_)),
    }))


if __name__ == "__main__":
    command, out, workdir = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    if command == "compare":
        compare(out, workdir)
    elif command == "fault":
        fault(out, workdir, sys.argv[4])
    else:
        raise SystemExit(f"unknown job {command!r}")
