"""Data-parallel CTR training under ``torchrun``: the process group's life around a run."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


@contextlib.contextmanager
def process_group() -> Iterator[tuple[int, int]]:
    """Yield ``(rank, world size)``. Under ``torchrun`` (``WORLD_SIZE`` > 1) a process group is
    initialized for the block (nccl when CUDA is present, else gloo) and destroyed after it;
    otherwise ``(0, 1)`` and nothing is started."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        yield 0, 1
        return
    import torch
    import torch.distributed as dist

    dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    try:
        yield dist.get_rank(), dist.get_world_size()
    finally:
        dist.destroy_process_group()
