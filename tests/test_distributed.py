"""Ray engine tests. Every Ray instance runs in a child process inside a network namespace of its
own with only loopback up: a local Ray instance listens on every interface and probes a public
resolver for its own address, and tests must not send traffic beyond this machine."""

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rqgmm.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _namespace_available() -> str | None:
    """None when a loopback-only network namespace can be made here, else the reason."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs unshare and ip (util-linux, iproute2) to isolate Ray's network"
    probe = subprocess.run(["unshare", "-n", "sh", "-c", "ip link set lo up"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot create a network namespace here ({probe.stderr.strip()[:120]}); Ray would listen on every interface"
    return None


try:
    import ray  # noqa: F401

    ray_installed = True
except ImportError:
    ray_installed = False
isolation_problem = _namespace_available()
pytestmark = [
    pytest.mark.skipif(not ray_installed, reason="Ray is an optional extra: pip install 'rqgmm[ray]'"),
    pytest.mark.skipif(isolation_problem is not None, reason=str(isolation_problem)),
]


def _ray_processes(temp_dir: str) -> list[str]:
    listing = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout.splitlines()
    return [line for line in listing if temp_dir in line and "ps -eo" not in line]


def run_isolated(command: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``command`` from the repository root in a loopback-only network namespace, with Ray's
    files in a fresh temporary directory; fail if any process of that Ray instance outlives it."""
    temp_dir = tempfile.mkdtemp(prefix="rqray", dir="/tmp")  # short: Ray's socket paths are length-limited
    script = "ip link set lo up && RAY_TMPDIR={} exec {}".format(temp_dir, " ".join(
        f"'{part}'" for part in command))
    try:
        completed = subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True, text=True,
                                   cwd=ROOT, timeout=timeout)
        deadline = time.time() + 20
        while _ray_processes(temp_dir) and time.time() < deadline:
            time.sleep(0.5)
        left = _ray_processes(temp_dir)
        assert not left, f"Ray processes left running: {left}"
        return completed
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)


def _job(name: str, tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / f"{name}.json"
    completed = run_isolated([sys.executable, "-m", "tests.ray_jobs", name, str(out), str(tmp_path), *extra])
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads(out.read_text())


def test_ray_fit_matches_the_single_machine_fit_and_encodes_to_parquet(tmp_path):
    result = _job("compare", tmp_path)
    assert result["rows_in_order"], "the engine's blocks do not hold the files' rows in path order"
    for name in ("rq_gmm", "rq_kmeans"):
        assert result[name]["code_agreement"] >= 0.999, (name, result[name]["code_agreement"])
        assert result[name]["codebook_max_abs_diff"] < 1e-4, (name, result[name]["codebook_max_abs_diff"])
    np.testing.assert_allclose(result["rq_gmm"]["log_likelihood_ray"], result["rq_gmm"]["log_likelihood_local"],
                               rtol=1e-6)
    assert result["rq_gmm"]["encode_matches"] and result["rq_gmm"]["encoded_rows"] == 12_000


def test_a_worker_killed_mid_fit_is_retried_by_ray_and_the_tokenizer_is_unchanged(tmp_path):
    marker = tmp_path / "killed-once"
    result = _job("fault", tmp_path, str(marker))
    assert result["fault_happened"], "the fault was never injected"
    assert result["identical"], "the fit with a killed worker differs from the clean fit"


def test_cli_fit_and_encode_with_the_ray_engine(tmp_path):
    from tests.conftest import mixture_sample
    from tests.ray_jobs import write_parts

    X, _ = mixture_sample(n=6_000, dim=8, n_components=10, seed=5)
    pattern = write_parts(X, tmp_path / "data", parts=3)
    fitted = run_isolated([sys.executable, "-m", "rqgmm.cli", "fit", pattern, "--engine", "ray", "--method",
                           "rq-kmeans", "--levels", "2", "--codebook-size", "8", "-o", str(tmp_path / "tok"), "-q"])
    assert fitted.returncode == 0, fitted.stderr[-3000:]
    local = CliRunner().invoke(main, ["fit", str(tmp_path / "data" / "part-00.parquet"), "--method", "rq-kmeans",
                                      "--levels", "2", "--codebook-size", "8", "-o", str(tmp_path / "one"), "-q"])
    assert local.exit_code == 0, local.output
    encoded = run_isolated([sys.executable, "-m", "rqgmm.cli", "encode", str(tmp_path / "tok"), pattern, "--engine",
                            "ray", "-o", str(tmp_path / "codes"), "--id-column", "id", "-q"])
    assert encoded.returncode == 0, encoded.stderr[-3000:]
    import pyarrow.parquet as pq

    from rqgmm import load

    table = pq.read_table(tmp_path / "codes").to_pandas().sort_values("id")
    codes = load(tmp_path / "tok").encode(X)
    np.testing.assert_array_equal(table[["level_0", "level_1"]].to_numpy(), codes[table["id"].to_numpy()])


def test_the_ray_engine_refuses_what_it_cannot_do(tmp_path):
    result = CliRunner().invoke(main, ["fit", "x.parquet", "--engine", "ray", "--method", "rq-vae", "-o",
                                       str(tmp_path / "t")])
    assert result.exit_code != 0 and "fitted in order (rq-gmm, rq-kmeans), not rq-vae" in result.output
    result = CliRunner().invoke(main, ["fit", "x.npy", "--address", "auto", "-o", str(tmp_path / "t")])
    assert result.exit_code != 0 and "--address applies to --engine ray only" in result.output
