"""``rqgmm serve --workers N``: N processes on one port under uvicorn's supervisor.

Each worker builds its own application (tokenizer, encode batcher, registry connection) from the
settings the supervisor wrote to a private file (mode 0600: it holds the bearer token; the
environment only names the file). Workers share:
- the registry, through the database (PostgreSQL's transactions, or SQLite's write lock on one
  host), so an ID is never handed out twice whichever worker answers;
- the Prometheus metrics: ``PROMETHEUS_MULTIPROC_DIR`` is set before any worker starts, every
  worker's counters and histograms live in files there, and ``/metrics`` (whichever worker
  answers) sums them over workers.
SIGTERM (or Ctrl-C) stops the supervisor, which stops every worker gracefully (each finishes its
requests, closes its batcher and registry).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

SETTINGS_FILE = "RQGMM_SERVE_SETTINGS_FILE"
THREADS = "RQGMM_SERVE_THREADS"


def run_workers(settings, *, host: str, port: int, workers: int, threads: int, log_level: str) -> None:
    import uvicorn

    directory = Path(tempfile.mkdtemp(prefix="rqgmm-serve-"))
    try:
        settings_file = directory / "settings.json"
        descriptor = os.open(settings_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump(dataclasses.asdict(settings), handle)
        metrics = directory / "metrics"
        metrics.mkdir()
        os.environ.update({SETTINGS_FILE: str(settings_file), THREADS: str(threads),
                           "PROMETHEUS_MULTIPROC_DIR": str(metrics)})
        print(f"serving {settings.tokenizer} on http://{host}:{port} with {workers} workers", file=sys.stderr)
        uvicorn.run("rqgmm.serve.workers:worker_app", factory=True, host=host, port=port, workers=workers,
                    log_level=log_level, access_log=log_level == "info")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def worker_app():
    """The application of one worker (uvicorn calls this in each worker process)."""
    import torch

    from rqgmm.serve.app import build_app
    from rqgmm.serve.http import ServiceSettings

    torch.set_num_threads(int(os.environ.get(THREADS, "1")))
    with open(os.environ[SETTINGS_FILE]) as handle:
        return build_app(ServiceSettings(**json.load(handle)))


def multiprocess_metrics() -> bytes | None:
    """The metrics of every worker, summed (None when not running under ``--workers``)."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)
