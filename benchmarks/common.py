"""Data sets, timers and the matmul roofline shared by the benchmark scripts.

Every benchmark measures its references in the same run and prints ratios; absolute times on a
shared machine drift by tens of percent between runs.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

DATA_SETS = ("synthetic", "ml-100k")


def structured_data(n: int, dim: int, n_components: int = 512, seed: int = 0) -> np.ndarray:
    """Rows of a diagonal mixture of ``n_components`` components: (n, dim) float32."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(n_components, dim)) * 2.0
    scales = rng.uniform(0.3, 1.0, size=(n_components, dim))
    labels = rng.integers(0, n_components, n)
    return (means[labels] + rng.normal(size=(n, dim)) * scales[labels]).astype(np.float32)


def movielens_item_embeddings() -> np.ndarray:
    """MiniLM embeddings of the MovieLens-100k item texts: (1682, 384) float32 (cached on disk)."""
    from rqgmm.data.interactions import item_content, load_movielens

    return item_content(load_movielens(), progress=False)


def load_data(name: str, n: int, dim: int) -> np.ndarray:
    """``synthetic`` (n x dim, see :func:`structured_data`) or ``ml-100k`` (its own size)."""
    if name == "synthetic":
        return structured_data(n, dim)
    if name == "ml-100k":
        return movielens_item_embeddings()
    raise ValueError(f"unknown data set {name!r}; expected one of {DATA_SETS}")


def timed(function, *args, **kwargs):
    """``(result, seconds)`` of one call."""
    begin = time.perf_counter()
    out = function(*args, **kwargs)
    return out, time.perf_counter() - begin


def matmul_gflops(m: int, k: int, n: int, repeats: int = 5, dtype: torch.dtype = torch.float32) -> float:
    """Best ``torch.matmul`` GFLOP/s of an (m, k) @ (k, n) product over ``repeats`` (fp32 by default)."""
    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    a @ b
    best = min(timed(torch.matmul, a, b)[1] for _ in range(repeats))
    return 2 * m * k * n / best / 1e9


def matmul_peak(size: int = 4096) -> float:
    """fp32 matmul peak of this machine as benchmarks quote it: a square ``size`` product."""
    return matmul_gflops(size, size, size, repeats=10)


def peak_rss_mib(children: bool = False) -> float:
    """Peak resident memory of this process (or of its finished children) in MiB (Linux units)."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024


def environment() -> dict:
    """What the figures were measured on."""
    return {"date": datetime.date.today().isoformat(), "machine": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "numpy": np.__version__}


def write_json(path: str | None, result: dict) -> None:
    """Write ``result`` plus :func:`environment` to ``path`` (atomically) when a path is given."""
    if not path:
        return
    from rqgmm.io.atomic import atomic_path

    with atomic_path(Path(path), overwrite=True) as target:
        from rqgmm.io import strict_json

        target.write_text(strict_json.dumps({**result, "environment": environment()}, indent=2))


def stamp() -> str:
    """"Produced by `python -m benchmarks.NAME options` on DATE (code COMMIT; machine …)." for the
    running benchmark: the line every benchmark results document starts with."""
    from rqgmm.experiment.engine import produced_by, provenance

    command = " ".join([f"python -m benchmarks.{Path(sys.argv[0]).stem}", *sys.argv[1:]])
    return produced_by(provenance(), command) + f", {torch.get_num_threads()} torch threads, torch {torch.__version__}."


def _write_document(path: str, blocks: list[tuple]) -> None:
    from rqgmm.experiment.pages import markdown
    from rqgmm.io.atomic import atomic_path

    with atomic_path(Path(path), overwrite=True) as target:
        target.write_text(markdown(blocks))


def write_markdown(path: str | None, title: str, header: list[str], rows: list[list[str]], notes: str = "") -> None:
    """A results document (``docs/results/…``) of one benchmark run: its table, stamped with the
    command that produced it, the date, the commit and the machine (written atomically)."""
    if path:
        _write_document(path, [("h", 1, title), ("p", stamp()), ("table", header, rows)]
                        + ([("p", notes)] if notes else []))


def add_markdown_option(parser) -> None:
    parser.add_argument("--markdown", default=None,
                        help="also write what the run prints as a stamped results document (docs/results/…)")


@contextlib.contextmanager
def recorded_output(path: str | None, title: str):
    """Everything printed inside the block also goes, on success, into a results document at
    ``path`` (when given): the stamp, then the printed text verbatim. A failed run writes nothing."""
    if not path:
        yield
        return
    buffer = io.StringIO()

    class Tee(io.TextIOBase):
        def write(self, text):
            buffer.write(text)
            return terminal.write(text)

        def flush(self):
            terminal.flush()

    terminal = sys.stdout
    sys.stdout = Tee()
    try:
        yield
    finally:
        sys.stdout = terminal
    _write_document(path, [("h", 1, title), ("p", stamp()), ("code", buffer.getvalue().strip("\n"))])


# The child measures its own peak from /proc/self/status (VmHWM): ru_maxrss survives exec on
# Linux, so it would report the parent's peak.
_MEMMAP_CHILD = """
import json, sys, time, warnings
import numpy as np
import rqgmm

def peak_mib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024

baseline = peak_mib()
X = np.load(sys.argv[1], mmap_mode="r")
model = eval(sys.argv[2], {"rqgmm": rqgmm})
begin = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    model.fit(X)
seconds = time.perf_counter() - begin
peak = peak_mib()
extra = eval(sys.argv[3], {"model": model, "X": X})
print(json.dumps({"baseline_rss_mib": baseline, "peak_rss_mib": peak, "fit_seconds": seconds, **extra}))
"""


def fit_memmap_in_child(path: Path, model: str, extra: str = "{}") -> dict:
    """Fit the tokenizer the expression ``model`` builds (``rqgmm.RQGMM(...)``) on the ``.npy`` at
    ``path`` opened as a memmap, in a fresh process; returns its fit seconds, its resident memory
    after imports and its peak (MiB), plus the dict the expression ``extra`` makes of ``model``."""
    import subprocess
    import sys

    completed = subprocess.run([sys.executable, "-c", _MEMMAP_CHILD, str(path), model, extra],
                               capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"the memmap fit failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])
