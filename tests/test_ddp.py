"""Data-parallel CTR training with torch.distributed: 2 CPU ranks (gloo) launched by torchrun
against single-process training of the same global batches."""

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["ctr", "train", "--dataset", "ml-100k", "--model", "fnn", "--features", "id", "--epochs", "2",
        "--patience", "5", "--batch-size", "1024", "-q"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _model_arrays(run: Path) -> dict:
    files = sorted((run / "model").glob("*.safetensors"))
    assert files, f"no weights under {run / 'model'}"
    return load_file(files[0])


def test_two_rank_ddp_matches_single_process_training(tmp_path):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                "127.0.0.1", "--master_port", str(_free_port()), "-m", "rqgmm.cli", *ARGS, "-o", str(tmp_path / "ddp")]
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
        launcher = ["unshare", "-n", "sh", "-c", "ip link set lo up && exec " + " ".join(f"'{a}'" for a in launcher)]
    ddp = subprocess.run(launcher, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert ddp.returncode == 0, ddp.stderr[-4000:]
    assert "data-parallel over 2 ranks" in ddp.stdout
    single = subprocess.run([sys.executable, "-m", "rqgmm.cli", *ARGS, "-o", str(tmp_path / "one")],
                            capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert single.returncode == 0, single.stderr[-4000:]
    ddp_metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())["metrics"]
    one_metrics = json.loads((tmp_path / "one" / "metrics.json").read_text())["metrics"]
    for part in ("validation", "test"):
        assert ddp_metrics[part]["auc"] == pytest.approx(one_metrics[part]["auc"], abs=2e-3)
        assert ddp_metrics[part]["logloss"] == pytest.approx(one_metrics[part]["logloss"], abs=2e-3)
    ddp_weights, one_weights = _model_arrays(tmp_path / "ddp"), _model_arrays(tmp_path / "one")
    assert ddp_weights.keys() == one_weights.keys()
    worst = max(float(np.abs(ddp_weights[k] - one_weights[k]).max()) for k in ddp_weights)
    scale = max(float(np.abs(one_weights[k]).max()) for k in one_weights)
    assert worst < 1e-3 * max(scale, 1.0), f"largest weight difference {worst:.2e} (weights up to {scale:.2f})"
