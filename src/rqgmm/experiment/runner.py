"""The offline experiment, stage by stage, each stage's output on disk so a rerun resumes.

Stages: item embeddings (cached by the text encoder) -> tokenizers (``tokenizers/<name>/``) ->
quality report (``quality/``) -> CTR grid (one ``ctr/<split>/<model>/<features>/seed<k>.json``
per run; the first seed's model as a run directory under ``models/``) -> report.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from rqgmm.data.interactions import item_content
from rqgmm.ctr.features import FeatureEncoder
from rqgmm.ctr.run import RunConfig, fit_and_evaluate, load_dataset, prepare, save_run
from rqgmm.ctr.splits import make_split
from rqgmm.ctr.training import TrainingConfig
from rqgmm.errors import InvalidInputError
from rqgmm.experiment.config import ExperimentConfig, TokenizerSpec
from rqgmm.io.atomic import atomic_path
from rqgmm.progress import progress_bar
from rqgmm.quantize import ResidualTokenizer, make_tokenizer


def _write_json(path: Path, payload) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=float))


def feature_slug(feature: str) -> str:
    return feature.replace(":", "__").replace("+", "-plus-")


class Experiment:
    """Runs an :class:`ExperimentConfig` into ``root / config.name``; ``log`` prints one line.

    workers: processes for the CTR grid (each with one torch thread). The small CTR models of this
    study are bound by per-step overhead, so two single-threaded workers beat one two-threaded
    process on two cores. Figures depend on the thread count in the last float digits only."""

    def __init__(self, config: ExperimentConfig, root: str | Path = "runs", *, progress: bool | None = None,
                 log: Callable[[str], None] = print, workers: int = 1):
        self.config = config
        self.workers = max(1, int(workers))
        self.directory = Path(root) / config.name
        self.progress = progress
        self.log = log

    def run(self) -> dict:
        self._check_config()
        started = time.perf_counter()
        self.log(f"[1/5] data set {self.config.dataset} and item embeddings")
        dataset = load_dataset(self.config.dataset)
        content = item_content(dataset, self.progress)
        if not (self.directory / "item_embeddings.npy").is_file():
            with atomic_path(self.directory / "item_embeddings.npy", overwrite=True) as tmp, open(tmp, "wb") as f:
                np.save(f, content)
        self.log(f"[2/5] tokenizers: {', '.join(s.name for s in self.config.tokenizer_specs())}")
        tokenizers, fit_seconds = self._tokenizers(content)
        self.log("[3/5] semantic-ID quality")
        quality = self._quality(dataset, content, tokenizers)
        self.log("[4/5] CTR grid")
        ctr = self._ctr(dataset, content, tokenizers)
        self.log("[5/5] report")
        results = {"config": self.config.to_json(), "dataset": {
            "name": dataset.name, "interactions": len(dataset.interactions), "items": len(dataset.items),
            "users": int(dataset.interactions["user_id"].nunique()), "embedding_dim": int(content.shape[1]),
            "positive_rate": float(dataset.interactions["label"].mean())},
            "tokenizers": {name: {**quality[name], "fit_seconds": fit_seconds[name]} for name in tokenizers},
            "ctr_runs": ctr, "seconds": time.perf_counter() - started}
        from rqgmm.experiment.report import write_experiment_report

        results["summary"] = write_experiment_report(self.directory, results)
        _write_json(self.directory / "results.json", results)
        return results

    # ------------------------------------------------------------------ stages
    def _check_config(self) -> None:
        path = self.directory / "config.json"
        current = self.config.to_json()
        if path.is_file() and json.loads(path.read_text()) != current:
            raise InvalidInputError(f"{self.directory}: holds a run of a different config; its finished stages"
                                    " would not match. Rename the experiment or delete the directory")
        _write_json(path, current)

    def _tokenizers(self, content: np.ndarray) -> tuple[dict[str, ResidualTokenizer], dict[str, float]]:
        tokenizers, seconds = {}, {}
        for spec in self.config.tokenizer_specs():
            path = self.directory / "tokenizers" / spec.name
            timing = self.directory / "tokenizers" / f"{spec.name}.json"
            if path.is_dir() and timing.is_file():
                tokenizers[spec.name] = ResidualTokenizer.load(path)
                seconds[spec.name] = json.loads(timing.read_text())["fit_seconds"]
                self.log(f"  {spec.name}: done before, loaded")
                continue
            tokenizer = self._new_tokenizer(spec)
            tick = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tokenizer.fit(content)
            seconds[spec.name] = time.perf_counter() - tick
            tokenizer.save(path, overwrite=True)
            _write_json(timing, {"fit_seconds": seconds[spec.name]})
            tokenizers[spec.name] = tokenizer
            self.log(f"  {spec.name}: fitted in {seconds[spec.name]:.1f} s")
        return tokenizers, seconds

    def _new_tokenizer(self, spec: TokenizerSpec) -> ResidualTokenizer:
        return make_tokenizer(spec.method, spec.levels, spec.codebook_size,
                              **{"seed": int(self.config.seeds[0]), "progress": self.progress, **spec.params})

    def _quality(self, dataset, content, tokenizers) -> dict[str, dict]:
        from rqgmm.metrics import quality_report
        from rqgmm.metrics.report import write_report

        cached = self.directory / "quality" / "headlines.json"
        if cached.is_file():
            self.log("  done before, loaded")
            return json.loads(cached.read_text())
        labels = None
        if dataset.name == "ml-100k":
            from rqgmm.data.movielens import load_items

            labels = load_items()["genres"].tolist()
        reports = []
        for name, tokenizer in tokenizers.items():
            tokenizer.progress = False
            reports.append(quality_report(tokenizer, content, labels, seed=int(self.config.seeds[0]), method=name))
        write_report(reports, self.directory / "quality", extra={"labels": "genres" if labels else None})
        headlines = {report.method: report.headline() for report in reports}
        for report in reports:
            headlines[report.method]["rmse_by_level"] = list(report.reconstruction.rmse)
        _write_json(cached, headlines)
        return headlines

    def _ctr(self, dataset, content, tokenizers) -> list[dict]:
        """Every (split, model, features, seed) run not finished before, grouped by (split, features)
        so each group prepares its features once; groups run in ``workers`` processes."""
        config = self.config
        features = list(dict.fromkeys(f for model in config.models for f in config.features_of(model)))
        jobs = [(split, model, feature, seed) for split in config.splits for feature in features
                for model in config.models if feature in config.features_of(model) for seed in config.seeds]
        groups: dict[tuple[str, str], list[tuple[str, int]]] = {}
        for split, model, feature, seed in jobs:
            if not run_path(self.directory, split, model, feature, seed).is_file():
                groups.setdefault((split, feature), []).append((model, int(seed)))
        done = len(jobs) - sum(len(g) for g in groups.values())
        self.log(f"  {len(jobs)} runs, {done} done before; {len(jobs) - done} to train in {len(groups)} group(s)"
                 f" on {self.workers} worker(s)")
        bar = progress_bar(total=len(jobs) - done, enabled=self.progress, desc="CTR runs")
        if self.workers > 1 and len(groups) > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor, as_completed

            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(self.workers, mp_context=context, initializer=_single_thread) as pool:
                futures = [pool.submit(run_group, self.directory, config.to_json(), split, feature, group)
                           for (split, feature), group in groups.items()]
                for future in as_completed(futures):
                    bar.update(len(future.result()))
        else:
            for (split, feature), group in groups.items():
                bar.update(len(run_group(self.directory, config.to_json(), split, feature, group,
                                         dataset=dataset, content=content, tokenizers=tokenizers)))
        bar.close()
        return [json.loads(run_path(self.directory, *job).read_text()) for job in jobs]


def run_path(directory: Path, split: str, model: str, feature: str, seed: int) -> Path:
    return directory / "ctr" / split / model / feature_slug(feature) / f"seed{seed}.json"


def _single_thread() -> None:
    import torch

    torch.set_num_threads(1)


def run_group(directory: Path, config_json: dict, split_name: str, feature: str, group: list[tuple[str, int]], *,
              dataset=None, content=None, tokenizers=None) -> list[dict]:
    """Train and evaluate the (model, seed) runs of one (split, features) group; write one JSON per
    run (and the first seed's model). Loads what it is not given from the experiment directory."""
    config = ExperimentConfig.from_dict(config_json)
    kind, _, tokenizer_name = feature.partition(":")
    if dataset is None:
        dataset = load_dataset(config.dataset)
        content = np.load(directory / "item_embeddings.npy")
        tokenizers = {tokenizer_name: ResidualTokenizer.load(directory / "tokenizers" / tokenizer_name)} \
            if tokenizer_name else {}
    codes = sizes = None
    if tokenizer_name:
        tokenizer = tokenizers[tokenizer_name]
        tokenizer.progress = False
        codes, sizes = tokenizer.encode(content), tokenizer.codebook_sizes
    split = make_split(dataset.interactions, split_name, seed=int(config.seeds[0]))
    encoder = FeatureEncoder(kind, history_length=config.history_length)
    data = prepare(dataset, split, encoder, content=content, codes=codes, codebook_sizes=sizes)
    rows = []
    for model, seed in group:
        params = dict((config.models[model] or {}).get("params", {}))
        training = TrainingConfig(**{**config.training, "seed": seed})
        trained, record, metrics = fit_and_evaluate(data, model, params, training, progress=False)
        row = {"split": split_name, "model": model, "features": feature, "kind": kind,
               "tokenizer": tokenizer_name or None, "seed": seed, "validation": metrics["validation"],
               "test": metrics["test"], "epochs": len(record.epochs), "best_epoch": record.best_epoch,
               "samples_per_second": record.samples_per_second, "seconds": record.seconds}
        if seed == int(config.seeds[0]):
            tokenizer_dir = directory / "tokenizers" / tokenizer_name if tokenizer_name else None
            run = RunConfig(dataset=config.dataset, split=split_name, model=model, features=kind,
                            tokenizer=None if tokenizer_dir is None else str(tokenizer_dir), seed=seed,
                            history_length=config.history_length, model_params=params,
                            training=dict(config.training))
            save_run(directory / "models" / split_name / model / feature_slug(feature), run, encoder, trained,
                     {"metrics": metrics}, overwrite=True)
        _write_json(run_path(directory, split_name, model, feature, seed), row)
        rows.append(row)
    return rows
