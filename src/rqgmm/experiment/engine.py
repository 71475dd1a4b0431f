"""The study engine: a run directory that resumes, a worker pool, and the one CTR job.

Every study (``rqgmm experiment CONFIG``) is a configuration run by this engine: its stages write
their results as JSON files under ``root/<name>/``; a rerun loads what exists and computes only
what is missing, and refuses a directory holding a different config (its finished stages would
not match). Expensive independent jobs (tokenizer fits, groups of CTR runs) run in ``workers``
processes, each with one torch thread: on two cores two single-threaded workers beat one
two-threaded process for these small jobs, and figures change only in the last float digits.
"""

from __future__ import annotations

import functools
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from rqgmm.errors import InvalidInputError, RqgmmError
from rqgmm.io import strict_json
from rqgmm.io.atomic import atomic_path


def write_json(path: Path, payload) -> None:
    """``payload`` as indented JSON at ``path`` (atomic; parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(strict_json.dumps(payload, indent=2))


def read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise RqgmmError(f"{path}: cannot read a finished stage's result ({exc}); delete it to recompute") from None


class RunDirectory:
    """``root/name``: the place of one study's results. ``name`` must be a plain directory name."""

    def __init__(self, root: str | Path, name: str):
        if not name or name in (".", "..") or "/" in name or "\\" in name or Path(name).is_absolute():
            raise InvalidInputError(f"study name must be a plain directory name (no '/', not '.' or '..'),"
                                    f" got {name!r}")
        self.path = Path(root) / name

    def claim(self, config_json: dict, schema: type | None = None) -> None:
        """Write ``config.json``, or check that the one there is the same config. With ``schema``
        (the config's dataclass) the stored config is read through it first, so a setting added
        to the schema later, with a default, does not make a finished run look different."""
        path = self.path / "config.json"
        current = json.loads(json.dumps(config_json, default=float))
        if path.is_file():
            stored = read_json(path)
            if schema is not None:
                from dataclasses import asdict

                from rqgmm.io.settings import load_settings

                try:
                    stored = json.loads(json.dumps(asdict(load_settings(schema, stored, str(path))), default=float))
                except (InvalidInputError, TypeError):
                    pass  # not readable with today's schema: compared as stored, so refused
            if stored != current:
                raise InvalidInputError(f"{self.path}: holds a run of a different config; its finished stages"
                                        " would not match. Rename the study or delete the directory")
        write_json(path, config_json)


class Study:
    """A study run into ``root / config.name`` (a :class:`RunDirectory`): ``progress`` bars (None:
    on a terminal), ``log`` prints one line, ``workers`` processes for fits and CTR runs.
    Subclasses implement ``run() -> results``."""

    def __init__(self, config, root: str | Path = "runs", *, progress: bool | None = None,
                 log: Callable[[str], None] = print, workers: int = 1):
        self.config = config
        self.workers = max(1, int(workers))
        self.run_directory = RunDirectory(root, config.name)
        self.directory = self.run_directory.path
        self.progress = progress
        self.log = log


def compute_minutes(results: dict) -> float:
    """Minutes spent fitting tokenizers and training CTR models, summed over jobs, from the records
    themselves (a resumed run's wall time says nothing about them)."""
    tokenizers = results.get("tokenizers")
    seconds = sum(float(t.get("fit_seconds", 0.0)) for t in tokenizers.values()) if isinstance(tokenizers, dict) else 0.0
    seconds += sum(float(f.get("fit_seconds", 0.0)) for f in results.get("fits", []))
    seconds += sum(float(r.get("seconds", 0.0)) for r in results.get("ctr_runs", []))
    return seconds / 60


def produced_by(stamp: dict, command: str | None = None) -> str:
    """"Produced by `COMMAND` on DATE (code COMMIT; MACHINE)": the first line of every results
    document, from a :func:`provenance` record (``command`` replaces the recorded one)."""
    return (f"Produced by `{command or stamp.get('command', 'rqgmm experiment')}` on {stamp.get('date', '?')}"
            f" (code {stamp.get('commit') or stamp.get('version', '?')}; {stamp.get('machine', '?')})")


def provenance() -> dict:
    """Where figures come from: the command line, the time, the code's commit (when run from a git
    checkout; else the installed version) and the machine."""
    import datetime
    import os
    import platform
    import subprocess
    import sys

    from rqgmm._version import __version__

    commit = None
    try:
        root = Path(__file__).resolve().parents[3]
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=5).stdout.strip() or None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        if commit and dirty:
            commit += "+uncommitted changes"
    except (OSError, subprocess.SubprocessError):
        pass
    arguments = [Path(sys.argv[0]).name, *sys.argv[1:]]
    return {"command": " ".join(arguments), "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
            "commit": commit, "version": __version__,
            "machine": f"{platform.machine()} {processor_name()}, {os.cpu_count()} CPU(s), Python"
                       f" {platform.python_version()}, {blas_backends()}"}


def processor_name() -> str:
    """The processor's model name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere)."""
    import platform

    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown processor"


def blas_backends() -> str:
    """Which BLAS the products run on: torch's build (MKL, OpenBLAS, ...) and NumPy's (with the
    kernel OpenBLAS picked for this processor, when threadpoolctl can tell)."""
    import re

    import numpy as np

    torch_blas = "?"
    try:
        import torch

        found = re.search(r"BLAS_INFO=(\w+)", torch.__config__.show())
        torch_blas = found.group(1) if found else "?"
    except ImportError:
        torch_blas = "absent"
    numpy_blas = "?"
    try:
        from threadpoolctl import threadpool_info

        blas = [info for info in threadpool_info() if info.get("user_api") == "blas"]
        if blas:
            info = blas[0]
            numpy_blas = f"{info['internal_api']} {info.get('version') or ''} ({info.get('architecture') or '?'})"
    except ImportError:
        config = np.show_config(mode="dicts") if hasattr(np, "show_config") else {}
        numpy_blas = (config.get("Build Dependencies", {}).get("blas", {}) or {}).get("name", "?")
    return f"BLAS: torch {torch_blas}, NumPy {numpy_blas.strip()}"


def single_thread() -> None:
    """Worker initializer: one torch thread per process; Ctrl-C is the parent's to handle (the
    workers ignore it, so an interrupt prints one line, not a traceback per worker)."""
    import signal

    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)


def run_jobs(function: Callable[..., Any], jobs: list[dict], workers: int,
             on_result: Callable[[Any], None] = lambda result: None) -> None:
    """``function(**job)`` for every job, in ``workers`` spawned processes when more than one
    worker and job (``function`` must then be importable), else in this process; ``on_result``
    sees each result as it arrives. Ctrl-C stops the workers and raises one clean error."""
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            on_result(function(**job))
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=single_thread)
    try:
        futures = [pool.submit(function, **job) for job in jobs]
        for future in as_completed(futures):
            on_result(future.result())
    except KeyboardInterrupt:
        pool.shutdown(wait=False, cancel_futures=True)
        raise RqgmmError("interrupted; finished jobs are kept, rerun the same command to resume") from None
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)  # a failed job: do not run the queued ones
        raise
    pool.shutdown()


def fit_with_warnings(tokenizer, X) -> list[str]:
    """Fit ``tokenizer`` on X; return the warnings it raised (convergence, re-seeding) as text so
    studies can record them instead of hiding them."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tokenizer.fit(X)
    return [f"{w.category.__name__}: {w.message}" for w in caught]


def convergence_record(tokenizer) -> dict:
    """Per-level iterations and convergence of a fitted tokenizer (empty for neural ones)."""
    return {name: list(getattr(tokenizer, name)) for name in ("n_iter_", "converged_", "n_reseeded_")
            if hasattr(tokenizer, name)}


# ---------------------------------------------------------------------------- the CTR job
@dataclass(frozen=True)
class CTRRun:
    """One model trained in a :class:`CTRTask`: its record (JSON) path and, optionally, the run
    directory to save the trained model to."""

    model: str
    params: dict
    seed: int
    record: str
    save_to: str | None = None


@dataclass(frozen=True)
class CTRTask:
    """CTR runs that share one prepared feature table: same data set, split, feature set,
    tokenizer and feature options; they differ by model and seed.

    features: "id", "emb", "sid" or "sid+emb"; tokenizer: a saved tokenizer directory (sid sets);
    feature_options: :class:`~rqgmm.ctr.features.FeatureEncoder` keyword options; training:
    :class:`~rqgmm.ctr.training.TrainingConfig` fields (the run's seed is set per run);
    labels: fields copied into every record (how the study names this group)."""

    dataset: str
    split: str
    split_seed: int
    features: str
    tokenizer: str | None
    runs: tuple[CTRRun, ...]
    training: dict = field(default_factory=dict)
    feature_options: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)
    tail_threshold: int = 5


@functools.lru_cache(maxsize=4)
def dataset_and_content(dataset: str):
    """A CTR data set by name and its items' content embeddings (cached per process)."""
    from rqgmm.data.interactions import item_content, load_dataset

    data = load_dataset(dataset)
    return data, item_content(data, False)


def run_ctr_task(task: CTRTask) -> list[dict]:
    """Train and evaluate every run of ``task`` (skipping runs whose record exists); write one
    JSON record per run and the models asked for. Returns the records of the runs it trained."""
    from rqgmm.ctr.features import FeatureEncoder
    from rqgmm.ctr.run import (
        RunConfig,
        fit_and_evaluate,
        prepare,
        save_run,
        semantic_ids,
    )
    from rqgmm.ctr.splits import make_split
    from rqgmm.ctr.training import TrainingConfig

    todo = [run for run in task.runs if not Path(run.record).is_file()]
    if not todo:
        return []
    dataset, content = dataset_and_content(task.dataset)
    semantic = version = None
    if "sid" in task.features:
        semantic = semantic_ids(task.tokenizer, content, task.feature_options.get("soft_top_k", 0),
                                task.feature_options.get("soft_temperature", 1.0))
        version = semantic.version
    split = make_split(dataset.interactions, task.split, seed=task.split_seed)
    encoder = FeatureEncoder(task.features, **task.feature_options)
    data = prepare(dataset, split, encoder, content=content, semantic=semantic, tail_threshold=task.tail_threshold)
    records = []
    for run in todo:
        training = TrainingConfig(**{**task.training, "seed": run.seed})
        tick = time.perf_counter()
        model, history, metrics = fit_and_evaluate(data, run.model, run.params, training, progress=False)
        record = {**task.labels, "split": task.split, "model": run.model, "kind": task.features,
                  "seed": run.seed, "validation": metrics["validation"], "test": metrics["test"],
                  "epochs": len(history.epochs), "best_epoch": history.best_epoch,
                  "samples_per_second": history.samples_per_second, "seconds": time.perf_counter() - tick}
        if run.save_to is not None:
            config = RunConfig(dataset=task.dataset, split=task.split, model=run.model, features=task.features,
                               tokenizer=None if task.tokenizer is None else str(Path(task.tokenizer).resolve()),
                               tokenizer_version=version, seed=run.seed, model_params=dict(run.params), training=dict(task.training),
                               tail_threshold=task.tail_threshold, **task.feature_options)
            save_run(run.save_to, config, encoder, model, {"metrics": metrics}, overwrite=True)
        write_json(Path(run.record), record)
        records.append(record)
    return records
