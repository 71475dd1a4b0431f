"""One pass of streaming training with progressive validation, and comparisons over seeds.

Protocol: the stream is cut into mini-batches in time order; each batch is first predicted by
the current model (test-then-train), then offered to the numeric module's distribution state,
then trained on with one optimizer step. Metrics are taken over the predictions made after a
warm-up prefix (the rows static binning fits its bins on), overall and per time window.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from rqgmm.ctr.metrics import auc, log_loss
from rqgmm.errors import InvalidInputError
from rqgmm.progress import progress_bar
from rqgmm.stream.daes import DAESEmbedding
from rqgmm.stream.data import StreamData
from rqgmm.stream.methods import NUMERIC_METHODS  # also importable from here
from rqgmm.stream.model import StreamingCTR
from rqgmm.stream.numeric import (
    AutoDis,
    NumericEmbedding,
    RefreshedBinning,
    ScalarEmbedding,
    StaticBinning,
)


@dataclass
class StreamConfig:
    """Hyperparameters of one streaming run (every method gets the same)."""

    numeric: str = "daes"
    seed: int = 0
    batch_size: int = 256
    learning_rate: float = 1e-3
    dim: int = 16
    hidden: tuple[int, ...] = (128, 64)
    warmup_fraction: float = 0.1
    n_windows: int = 10
    n_bins: int = 20
    capacity: int = 2000
    window: int | None = 20_000
    refresh_every: int = 10_000
    device: str = "cpu"  # cpu, cuda, cuda:N or auto

    def __post_init__(self) -> None:
        import math

        from rqgmm.quantize.rowops import valid_device

        if not valid_device(self.device):
            raise InvalidInputError(f"device must be cpu, cuda, cuda:N or auto, got {self.device!r}")
        if self.numeric not in NUMERIC_METHODS:
            raise InvalidInputError(f"numeric must be one of {NUMERIC_METHODS}, got {self.numeric!r}")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise InvalidInputError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        rate = self.learning_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate <= 0:
            raise InvalidInputError(f"learning_rate must be a finite number > 0, got {rate!r}")
        for name in ("batch_size", "dim", "n_windows", "n_bins", "capacity", "refresh_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"{name} must be an int >= 1, got {value!r}")


def make_numeric(config: StreamConfig, n_fields: int, warmup_rows: int) -> NumericEmbedding:
    """The numeric embedding ``config.numeric`` names, for ``n_fields`` fields."""
    dim = config.dim
    if config.numeric == "daes":
        return DAESEmbedding(n_fields, dim, n_anchors=config.n_bins, capacity=config.capacity,
                             window=config.window, seed=config.seed)
    if config.numeric == "scalar":
        return ScalarEmbedding(n_fields, dim)
    if config.numeric == "static-bins":
        return StaticBinning(n_fields, dim, n_bins=config.n_bins, warmup_rows=max(warmup_rows, 1))
    if config.numeric == "refresh-bins":
        return RefreshedBinning(n_fields, dim, n_bins=config.n_bins, refresh_every=config.refresh_every,
                                capacity=config.capacity, window=config.window, seed=config.seed)
    return AutoDis(n_fields, dim, n_meta=config.n_bins)


def run_stream(data: StreamData, config: StreamConfig, progress: bool | None = None) -> dict:
    """Test-then-train over ``data``; returns metrics (overall and per window) and timing."""
    begin = time.perf_counter()
    predictions = progressive_predictions(data, config, progress)
    seconds = time.perf_counter() - begin
    warmup_rows = int(config.warmup_fraction * data.n_events)
    return {"config": asdict(config), "data": data.name, "n_events": data.n_events, "warmup_rows": warmup_rows,
            **evaluate_progressive(data.labels, predictions, warmup_rows, config.n_windows),
            "seconds": seconds, "events_per_second": data.n_events / seconds}


def progressive_predictions(data: StreamData, config: StreamConfig, progress: bool | None = None) -> np.ndarray:
    """Click probability of every event (N,) float64, each predicted before the model or the
    numeric state has seen that event's batch."""
    from rqgmm.quantize.rowops import resolve_device

    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    warmup_rows = int(config.warmup_fraction * data.n_events)
    model = StreamingCTR(data.cardinalities, make_numeric(config, data.numeric.shape[1], warmup_rows),
                         hidden=config.hidden).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    loss_function = torch.nn.BCEWithLogitsLoss()
    categorical = torch.from_numpy(data.categorical).to(device)
    numeric = torch.from_numpy(data.numeric).to(device)
    labels = torch.from_numpy(data.labels.astype(np.float32)).to(device)
    predictions = np.empty(data.n_events, dtype=np.float64)
    starts = range(0, data.n_events, config.batch_size)
    for start in progress_bar(starts, enabled=progress, desc=f"stream {data.name} {config.numeric}"):
        rows = slice(start, start + config.batch_size)
        model.eval()
        with torch.no_grad():
            predictions[rows] = torch.sigmoid(model(categorical[rows], numeric[rows])).double().cpu().numpy()
        model.numeric.observe(data.numeric[rows])
        model.train()
        optimizer.zero_grad()
        loss = loss_function(model(categorical[rows], numeric[rows]), labels[rows])
        loss.backward()
        optimizer.step()
    return predictions


def evaluate_progressive(labels: np.ndarray, predictions: np.ndarray, warmup_rows: int, n_windows: int) -> dict:
    """AUC and LogLoss of the progressive predictions after ``warmup_rows``, overall and in
    ``n_windows`` consecutive windows of equal size."""
    labels, predictions = labels[warmup_rows:], predictions[warmup_rows:]
    windows = []
    for part in np.array_split(np.arange(labels.size), n_windows):
        if part.size == 0:
            continue
        y, p = labels[part], predictions[part]
        windows.append({"first_row": int(warmup_rows + part[0]), "rows": int(part.size),
                        "auc": auc(y, p) if 0 < y.sum() < y.size else None, "log_loss": log_loss(y, p)})
    return {"auc": auc(labels, predictions), "log_loss": log_loss(labels, predictions), "windows": windows}


def compare(data: StreamData, methods: list[str], seeds: list[int], progress: bool | None = None,
            **overrides) -> dict:
    """Every method over every seed: ``{method: {"auc": [...], "log_loss": [...], "runs": [...]}}``."""
    results: dict[str, dict] = {}
    for method in methods:
        runs = [run_stream(data, StreamConfig(numeric=method, seed=seed, **overrides), progress=progress)
                for seed in seeds]
        results[method] = {"auc": [r["auc"] for r in runs], "log_loss": [r["log_loss"] for r in runs], "runs": runs}
    return results


def format_comparison(data_name: str, results: dict) -> str:
    """Markdown table: mean ± std of AUC and LogLoss per method, and the AUC difference to DAES."""
    reference = results.get("daes")
    lines = [f"| {data_name} | AUC | LogLoss | AUC − DAES | seeds |", "|---|---|---|---|---|"]
    for method, result in results.items():
        aucs, losses = np.array(result["auc"]), np.array(result["log_loss"])
        delta = "" if reference is None or method == "daes" else \
            f"{np.mean(aucs - np.array(reference['auc'])):+.4f}"
        lines.append(f"| {method} | {aucs.mean():.4f} ± {aucs.std():.4f} | {losses.mean():.4f} ± {losses.std():.4f}"
                     f" | {delta} | {len(aucs)} |")
    return "\n".join(lines)
