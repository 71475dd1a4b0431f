"""Training and evaluation of CTR models: Adam, early stopping on validation AUC, metrics.

Data parallel when a ``torch.distributed`` process group is initialized (e.g. launched by
``torchrun``): every rank draws the same global permutation and takes its slice ``rank::world``
of each global batch; the model is wrapped in ``DistributedDataParallel`` and each rank's loss is
its rows' summed loss divided by the global batch size times the world size, so the averaged
gradient is exactly the single-process gradient of the global batch (up to the order of
floating-point sums). Predictions are split the same way and all-gathered, so AUC, LogLoss and
early-stopping decisions are exact and identical on every rank.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from rqgmm.ctr.metrics import auc, gauc, log_loss
from rqgmm.errors import InvalidInputError
from rqgmm.io.settings import setting
from rqgmm.progress import progress_bar

INPUT_KEYS = ("context", "numeric", "item", "history")


@dataclass(frozen=True)
class TrainingConfig:
    """How a CTR model is trained (every field documented in ``setting(help=...)``)."""

    batch_size: int = setting(1024, "rows per Adam step")
    max_epochs: int = setting(20, "epochs at most (early stopping on validation AUC)")
    learning_rate: float = setting(1e-3, "Adam step size")
    weight_decay: float = setting(0.0, "Adam L2 weight decay")
    patience: int = setting(2, "epochs without a better validation AUC before stopping (best weights restored)")
    seed: int = setting(0, "initialization, shuffling and dropout")
    eval_batch_size: int = setting(16384, "rows per forward pass at evaluation")
    device: str = setting("cpu", "cpu, cuda, cuda:N or auto; under torchrun with CUDA each rank uses its local GPU")
    item_id_dropout: float = setting(0.0, "share of training rows whose item ID is replaced by the out-of-vocabulary"
                                          " index, so that index is trained and the model learns to use content"
                                          " when the ID is unknown (new items); evaluation is untouched")
    sid_dropout: float = setting(0.0, "share of training rows whose semantic-ID fields are all replaced by the"
                                      " out-of-vocabulary index (drawn apart from item-ID dropout), so the model"
                                      " cannot lean on the IDs alone; evaluation is untouched")

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_epochs", "patience", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"training.{name} must be an int >= 1, got {value!r}")
        for name in ("learning_rate", "weight_decay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or \
                    value < 0 or (name == "learning_rate" and value == 0):
                raise InvalidInputError(f"training.{name} must be a finite number {'> 0' if name == 'learning_rate' else '>= 0'},"
                                        f" got {value!r}")
        from rqgmm.quantize.rowops import valid_device

        if not valid_device(self.device):
            raise InvalidInputError(f"training.device must be cpu, cuda, cuda:N or auto, got {self.device!r}")
        for name in ("item_id_dropout", "sid_dropout"):
            dropout = getattr(self, name)
            if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
                raise InvalidInputError(f"training.{name} must be a number in [0, 1), got {dropout!r}")


@dataclass
class TrainingResult:
    """epochs: per epoch ``{"epoch", "train_loss", "validation_auc"}``; best_epoch (0-based);
    samples_per_second: training rows per second of optimizer time (forward, backward, step)."""

    epochs: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    samples_per_second: float = 0.0
    seconds: float = 0.0


def _tensors(inputs: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {key: torch.from_numpy(np.ascontiguousarray(inputs[key])) for key in INPUT_KEYS if key in inputs}


def _world() -> tuple[int, int]:
    """``(rank, world size)`` of the initialized process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def predict(model: torch.nn.Module, inputs: dict[str, np.ndarray], batch_size: int = 16384) -> np.ndarray:
    """Click probabilities for every row: (n,) float64 (every rank gets all of them)."""
    rank, world = _world()
    tensors = _tensors(inputs)
    n = len(inputs["item"])
    mine = np.arange(rank, n, world)
    model.eval()
    device = next(model.parameters()).device
    out = np.empty(len(mine), dtype=np.float64)
    with torch.inference_mode():
        for start in range(0, len(mine), batch_size):
            rows = torch.from_numpy(mine[start:start + batch_size])
            batch = {k: v[rows] for k, v in tensors.items()} if world > 1 else \
                {k: v[start:start + batch_size] for k, v in tensors.items()}
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            out[start:start + batch_size] = model(batch)["y_pred"].double().cpu().numpy()
    if world == 1:
        return out
    parts: list = [None] * world
    dist.all_gather_object(parts, out)
    gathered = np.empty(n, dtype=np.float64)
    for other, part in enumerate(parts):
        gathered[other::world] = part
    return gathered


def training_device(name: str) -> torch.device:
    """The device of this process: ``name`` resolved, and under torchrun with CUDA the rank's local
    GPU (``LOCAL_RANK``), so nccl sees one GPU per rank."""
    import os

    from rqgmm.quantize.rowops import resolve_device

    device = resolve_device(name)
    if device.type == "cuda" and _world()[1] > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device


def train_model(model: torch.nn.Module, train: dict[str, np.ndarray], validation: dict[str, np.ndarray],
                config: TrainingConfig = TrainingConfig(), progress: bool | None = None,
                desc: str = "train") -> TrainingResult:
    """Fit ``model`` in place; keeps the weights of the epoch with the best validation AUC."""
    rank, world = _world()
    tensors = _tensors(train)
    labels = torch.from_numpy(train["label"])
    n = len(labels)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay,
                                 foreach=True)
    network = model
    device = training_device(config.device)
    model.to(device)
    labels = labels.to(device)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        # broadcasts rank 0's initial weights; on CUDA each rank drives its own GPU (nccl)
        network = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    generator = torch.Generator().manual_seed(config.seed)
    # a stream of its own, so a dropout of 0 leaves the shuffling (and every figure) as without it
    dropout_generator = torch.Generator().manual_seed(config.seed + 1)
    sid_dropout_generator = torch.Generator().manual_seed(config.seed + 2)
    result = TrainingResult()
    best_auc, best_state, stale, busy = -np.inf, None, 0, 0.0
    started = time.perf_counter()
    epochs = progress_bar(range(config.max_epochs), enabled=progress, desc=desc)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        for epoch in epochs:
            model.train()
            order = torch.randperm(n, generator=generator)
            total, tick = 0.0, time.perf_counter()
            for start in range(0, n, config.batch_size):
                index = order[start:start + config.batch_size]
                masks = {}
                if config.item_id_dropout > 0:
                    masks["drop_item_id"] = torch.rand(len(index), generator=dropout_generator) < config.item_id_dropout
                if config.sid_dropout > 0:
                    masks["drop_sid"] = torch.rand(len(index), generator=sid_dropout_generator) < config.sid_dropout
                if world == 1:
                    batch = {k: v[index].to(device, non_blocking=True) for k, v in tensors.items()}
                    batch.update({k: mask.to(device) for k, mask in masks.items()})
                    loss = F.binary_cross_entropy_with_logits(network(batch)["logit"], labels[index.to(device)])
                    batch_loss = float(loss.detach())
                else:  # this rank's slice; DDP averages the gradients over ranks
                    mine = index[rank::world]
                    batch = {k: v[mine].to(device, non_blocking=True) for k, v in tensors.items()}
                    batch.update({k: mask[rank::world].to(device) for k, mask in masks.items()})
                    summed = F.binary_cross_entropy_with_logits(network(batch)["logit"], labels[mine.to(device)],
                                                                reduction="sum")
                    loss = summed * world / len(index)
                    shared = summed.detach().clone()
                    dist.all_reduce(shared)
                    batch_loss = float(shared) / len(index)
                if not math.isfinite(batch_loss):  # NaN/Inf weights would make every figure meaningless
                    raise InvalidInputError(f"training diverged: the loss is {batch_loss} at epoch {epoch + 1},"
                                            f" rows {start}..{start + len(index) - 1} of the shuffled training set"
                                            " (non-finite inputs, or a learning rate too high); nothing was written")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += batch_loss * len(index)
            busy += time.perf_counter() - tick
            validation_auc = auc(validation["label"], predict(model, validation, config.eval_batch_size))
            result.epochs.append({"epoch": epoch, "train_loss": total / n, "validation_auc": validation_auc})
            epochs.set_postfix(loss=f"{total / n:.4f}", val_auc=f"{validation_auc:.4f}")
            if validation_auc > best_auc:
                best_auc, best_state, stale = validation_auc, copy.deepcopy(model.state_dict()), 0
                result.best_epoch = epoch
            else:
                stale += 1
                if stale >= config.patience:
                    break
    model.load_state_dict(best_state)
    result.samples_per_second = n * len(result.epochs) / max(busy, 1e-9)
    result.seconds = time.perf_counter() - started
    return result


def evaluate(model: torch.nn.Module, inputs: dict[str, np.ndarray], users: np.ndarray,
             cold: np.ndarray | None = None, batch_size: int = 16384,
             tail: np.ndarray | None = None) -> dict[str, float]:
    """AUC, LogLoss, GAUC (by user) and, where ``cold`` (bool per row) marks rows whose item never
    appeared in training, the AUC on those rows (``cold_auc``, None when undefined) and their
    count; likewise ``tail_auc`` / ``tail_rows`` for the rows ``tail`` marks (long-tail items)."""
    probabilities = predict(model, inputs, batch_size)
    labels = inputs["label"]
    metrics = {"auc": auc(labels, probabilities), "logloss": log_loss(labels, probabilities),
               "gauc": gauc(labels, probabilities, users), "rows": int(len(labels))}
    if cold is not None:
        metrics["cold_rows"] = int(cold.sum())
        cold_auc = auc(labels[cold], probabilities[cold]) if cold.any() else math.nan
        metrics["cold_auc"] = None if math.isnan(cold_auc) else cold_auc  # None: no cold rows or one class
    if tail is not None:
        metrics["tail_rows"] = int(tail.sum())
        tail_auc = auc(labels[tail], probabilities[tail]) if tail.any() else math.nan
        metrics["tail_auc"] = None if math.isnan(tail_auc) else tail_auc
    return metrics
