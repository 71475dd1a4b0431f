"""The RQ-GMM variants study: every variant of ``RQGMM`` against RQ-KMeans on real catalogues.

Stages (each result on disk, so a rerun resumes): item embeddings per catalogue -> quality figures
per (catalogue, shape, method, seed) (``fits/…json``; shapes of one codebook size share a fit, the
shallower ones measured on its prefix; fits run in ``workers`` processes) -> CTR runs on the
MovieLens cold-item split with each method's IDs (``ctr/…json``) -> report (tables, plots, the
default chosen by the rule stated in the config). The YAML (``experiments/variants.yaml``)::

    kind: variants
    name: variants
    datasets: [ml-100k, clothing]
    seeds: [0, 1, 2]
    shapes: [[2, 128], [3, 256], [4, 256]]     # levels x codebook size
    baseline: {max_iter: 30}                   # RQKMeans parameters
    common: {max_iter: 30}                     # RQGMM parameters shared by every variant
    variants: {paper: {}, kmeans-init: {init: kmeans}, sinkhorn: {balance: 1.0}}
    ctr: {shape: [2, 128], split: cold-item, models: [fnn, dcnv2], training: {...}}
    quick: {...}                               # overrides applied by --quick
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rqgmm.ctr.training import TrainingConfig
from rqgmm.errors import InvalidInputError
from rqgmm.experiment.engine import (
    CTRRun,
    CTRTask,
    Study,
    convergence_record,
    fit_with_warnings,
    provenance,
    read_json,
    run_ctr_task,
    run_jobs,
    write_json,
)
from rqgmm.experiment.settings import FeatureOptions, check_seeds
from rqgmm.experiment.variants_report import BASELINE, write_variants_report
from rqgmm.io.settings import setting


@dataclass
class VariantsCTR:
    """The CTR stage: each method's IDs at one shape as features of CTR models (MovieLens-100k)."""

    shape: list[int] = setting(help="[levels, codebook size] of the IDs (one of the study's shapes)",
                               factory=lambda: [2, 128])
    split: str = setting("cold-item", "CTR split: time, random, cold-item")
    models: list[str] = setting(help="CTR models", factory=lambda: ["fnn", "dcnv2"])
    features: str = setting("sid", "feature set: sid or sid+emb")
    training: TrainingConfig = setting(help="CTR training", factory=TrainingConfig)
    feature_options: FeatureOptions = setting(help="CTR feature options", factory=FeatureOptions)


@dataclass
class VariantsConfig:
    name: str = setting(help="run directory name under --output")
    kind: str = setting("variants", "study kind: variants")
    datasets: list[str] = setting(help="catalogues: ml-100k, clothing", factory=lambda: ["ml-100k", "clothing"])
    seeds: list[int] = setting(help="one fit per seed and method", factory=lambda: [0, 1, 2])
    shapes: list[list[int]] = setting(help="[levels, codebook size] pairs",
                                      factory=lambda: [[2, 128], [3, 256], [4, 256]])
    baseline: dict = setting(help="RQKMeans parameters", factory=dict)
    common: dict = setting(help="RQGMM parameters shared by every variant", factory=dict)
    variants: dict[str, dict] = setting(help="variant name -> RQGMM parameters on top of common", factory=dict)
    kmeans_variants: dict[str, dict] = setting(
        help="RQ-KMeans variant name -> RQKMeans parameters on top of baseline (compared with RQ-KMeans, never"
             " candidates for RQGMM's defaults)", factory=dict)
    embedding: str = setting("normalized", "item embeddings: normalized (MiniLM's unit sentence vectors) or raw (its"
                                           " mean-pooled output before normalization, like BERT pipelines)")
    ctr: VariantsCTR | None = setting(None, "the CTR stage (omit to skip it)")
    quick: dict = setting(help="top-level overrides applied by --quick", factory=dict)

    def validate(self, source: str) -> None:
        from rqgmm.ctr.models import check_model_params
        from rqgmm.data.catalogue import CATALOGUES

        if self.kind != "variants":
            raise InvalidInputError(f"{source}: kind: expected 'variants', got {self.kind!r}")
        unknown = sorted(set(self.datasets) - set(CATALOGUES))
        if unknown or not self.datasets:
            raise InvalidInputError(f"{source}: datasets: must be among {list(CATALOGUES)}, got {self.datasets}")
        check_seeds(self.seeds, source)
        if not self.shapes:
            raise InvalidInputError(f"{source}: shapes is empty; give at least one [levels, codebook_size]")
        for index, shape in enumerate(self.shapes):
            if len(shape) != 2 or not all(v > 0 for v in shape):
                raise InvalidInputError(f"{source}: shapes[{index}]: expected [levels, codebook_size] > 0, got {shape}")
        if not self.variants:
            raise InvalidInputError(f"{source}: variants is empty; name at least one RQGMM variant")
        if BASELINE in self.variants or BASELINE in self.kmeans_variants:
            raise InvalidInputError(f"{source}: variants: a variant may not be called {BASELINE!r}")
        shared = sorted(set(self.variants) & set(self.kmeans_variants))
        if shared:
            raise InvalidInputError(f"{source}: kmeans_variants.{shared[0]}: the name is also an RQ-GMM variant")
        from rqgmm.data.catalogue import EMBEDDINGS

        if self.embedding not in EMBEDDINGS:
            raise InvalidInputError(f"{source}: embedding: must be one of {EMBEDDINGS}, got {self.embedding!r}")
        for method in self.methods():
            try:
                self.tokenizer(method, [1, 2], 0).validate_params()
            except InvalidInputError as exc:
                where = ("baseline" if method == BASELINE else
                         f"kmeans_variants.{method}" if method in self.kmeans_variants else f"variants.{method}")
                raise InvalidInputError(f"{source}: {where}: {exc}") from None
        if self.ctr is not None:
            if self.embedding != "normalized":
                raise InvalidInputError(f"{source}: ctr: the CTR stage reads MovieLens' normalized item embeddings;"
                                        " omit it when embedding is raw")
            if self.ctr.shape not in self.shapes:
                raise InvalidInputError(f"{source}: ctr.shape: {self.ctr.shape} is not among the shapes {self.shapes}")
            if "ml-100k" not in self.datasets:
                raise InvalidInputError(f"{source}: ctr: the CTR stage needs ml-100k among the datasets")
            if self.ctr.features not in ("sid", "sid+emb"):
                raise InvalidInputError(f"{source}: ctr.features: expected sid or sid+emb, got {self.ctr.features!r}")
            for model in self.ctr.models:
                check_model_params(model, {}, f"{source}: ctr.models")

    def methods(self) -> list[str]:
        return [BASELINE, *self.variants, *self.kmeans_variants]

    def tokenizer(self, method: str, shape: list[int], seed: int):
        from rqgmm.quantize import make_tokenizer

        levels, size = shape
        if method == BASELINE or method in self.kmeans_variants:
            return make_tokenizer("rq-kmeans", levels, size, random_state=seed, progress=False,
                                  **{**self.baseline, **(self.kmeans_variants.get(method) or {})})
        return make_tokenizer("rq-gmm", levels, size, random_state=seed, progress=False,
                              **{**self.common, **(self.variants[method] or {})})

    def to_json(self) -> dict:
        return asdict(self)


def fit_records(config: VariantsConfig, method: str, codebook_size: int, levels: list[int], seed: int,
                X: np.ndarray, labels) -> list[tuple]:
    """Fit ``method`` once at ``max(levels)`` x ``codebook_size`` and measure it and each of its
    prefixes in ``levels``: a list of (tokenizer, record) per entry of ``levels``.

    A prefix of a residual tokenizer is the tokenizer a fit with fewer levels gives (levels are
    fitted in order from one seeded generator), so 3 x 256 and 4 x 256 cost one fit. A record's
    ``fit_seconds`` is the time spent fitting its own levels.
    """
    from rqgmm.metrics import quality_report

    tokenizer = config.tokenizer(method, [max(levels), codebook_size], seed)
    caught = fit_with_warnings(tokenizer, X)
    convergence = convergence_record(tokenizer)
    results = []
    for n_levels in levels:
        kept = tokenizer.prefix(n_levels) if n_levels < tokenizer.n_levels else tokenizer
        report = quality_report(kept, X, labels, seed=seed, method=method)
        headline = report.headline()
        headline.pop("method")
        record = {**headline, "overlap": list(report.overlap.overlap),
                  "fit_seconds": float(sum(kept.level_fit_seconds_)),
                  "n_iter": convergence.get("n_iter_", [])[:n_levels],
                  "converged": convergence.get("converged_", [])[:n_levels], "warnings": caught,
                  "method": method, "seed": seed, "shape": [n_levels, codebook_size]}
        results.append((kept, record))
    return results


def shape_groups(shapes: list) -> dict[int, list[int]]:
    """Shapes ``[[levels, size], ...]`` grouped by codebook size: {size: sorted level counts}.
    The deepest shape of each size is fitted; the others are its prefixes."""
    groups: dict[int, list[int]] = {}
    for levels, size in shapes:
        groups.setdefault(int(size), []).append(int(levels))
    return {size: sorted(set(levels)) for size, levels in groups.items()}


class VariantStudy(Study):
    """Runs a :class:`VariantsConfig` into ``root / config.name``; ``log`` prints one line."""

    def run(self) -> dict:
        from rqgmm.data.catalogue import load_catalogue
        started = time.perf_counter()
        self.run_directory.claim(self.config.to_json(), type(self.config))
        config = self.config
        fits: list[dict] = []
        catalogues = {}
        for index, name in enumerate(config.datasets):
            self.log(f"[{index + 1}/{len(config.datasets)}] {name}: item embeddings")
            catalogue = load_catalogue(name, self.progress, embedding=config.embedding)
            catalogues[name] = {"items": catalogue.n_items, "dim": int(catalogue.embeddings.shape[1]),
                                "labels": catalogue.label_kind, "embedding": config.embedding}
            fits += self._fits(name, catalogue.embeddings, catalogue.labels)
        ctr = self._ctr() if config.ctr is not None else []
        results = {"config": config.to_json(), "catalogues": catalogues, "fits": fits, "ctr_runs": ctr,
                   "seconds": time.perf_counter() - started, "provenance": provenance()}
        results["summary"] = write_variants_report(self.directory, results)
        write_json(self.directory / "results.json", results)
        return results

    def _fits(self, dataset: str, X: np.ndarray, labels) -> list[dict]:
        """Every (shape, method, seed) record of ``dataset``; missing ones are fitted, one fit per
        (codebook size, method, seed), in ``self.workers`` processes when more than one."""
        config = self.config
        keep = [config.ctr.shape] if config.ctr is not None and dataset == "ml-100k" else []
        jobs = []
        for size, levels in shape_groups(config.shapes).items():
            for method in config.methods():
                for seed in config.seeds:
                    if not all(_record_done(self.directory, dataset, [n, size], method, seed, keep) for n in levels):
                        jobs.append((size, levels, method, seed))
        if jobs:
            self.log(f"  {dataset}: {len(jobs)} fit(s) to run, {self.workers} worker(s)")
            self._run_fit_jobs(dataset, X, labels, jobs, keep)
        return [read_json(_fit_path(self.directory, dataset, shape, method, seed))
                for shape in config.shapes for method in config.methods() for seed in config.seeds]

    def _run_fit_jobs(self, dataset: str, X: np.ndarray, labels, jobs: list[tuple], keep: list) -> None:
        from rqgmm.metrics.quality import label_sets

        # the costliest fits first, so the workers finish together
        jobs = sorted(jobs, key=lambda job: -max(job[1]) * job[0])
        catalogue_path = self.directory / "catalogues" / f"{dataset}.npy"
        if self.workers > 1 and len(jobs) > 1:  # workers read the catalogue from the run directory
            from rqgmm.io.atomic import atomic_path

            catalogue_path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(catalogue_path, overwrite=True) as tmp, open(tmp, "wb") as handle:
                np.save(handle, np.ascontiguousarray(X, dtype=np.float32))
            write_json(catalogue_path.with_suffix(".labels.json"),
                       [sorted(item) for item in label_sets(labels, len(labels))])
            local = {}
        else:
            local = {"X": X, "labels": labels}
        arguments = [dict(directory=str(self.directory), config_json=self.config.to_json(), dataset=dataset,
                          size=size, levels=levels, method=method, seed=seed, keep=keep, **local)
                     for size, levels, method, seed in jobs]
        run_jobs(_fit_job, arguments, self.workers, on_result=lambda records: self._log_records(dataset, records))

    def _log_records(self, dataset: str, records: list[dict]) -> None:
        for record in records:
            unconverged = len(record["converged"]) - sum(record["converged"])
            self.log(f"  {dataset} {record['shape'][0]}x{record['shape'][1]} {record['method']} seed"
                     f" {record['seed']}: RMSE {record['rmse']:.5f}, unique IDs {record['unique_id_rate']:.3f},"
                     f" fit {record['fit_seconds']:.1f} s"
                     + (f", {unconverged} level(s) not converged" if unconverged else ""))

    def ctr_tasks(self) -> list[CTRTask]:
        """One task per (method, seed): the CTR models trained on that fit's IDs."""
        config, ctr = self.config, self.config.ctr
        return [CTRTask(dataset="ml-100k", split=ctr.split, split_seed=int(config.seeds[0]), features=ctr.features,
                        tokenizer=str(_tokenizer_path(self.directory, ctr.shape, method, seed)),
                        runs=tuple(CTRRun(model, {}, int(seed), str(_ctr_path(self.directory, method, model, seed)))
                                   for model in ctr.models),
                        training=asdict(ctr.training), feature_options=asdict(ctr.feature_options),
                        labels={"method": method, "features": ctr.features})
                for method in config.methods() for seed in config.seeds]

    def _ctr(self) -> list[dict]:
        tasks = self.ctr_tasks()
        pending = [t for t in tasks if any(not Path(run.record).is_file() for run in t.runs)]
        runs = [run for task in tasks for run in task.runs]
        self.log(f"CTR: {len(runs)} runs on the {self.config.ctr.split} split, {len(pending)} tokenizer(s) to train"
                 f" with, {self.workers} worker(s)")
        run_jobs(run_ctr_task, [{"task": task} for task in pending], self.workers,
                 on_result=lambda records: records and self.log(
                     f"  CTR with {records[0]['method']} seed {records[0]['seed']}: done"))
        return [read_json(Path(run.record)) for run in runs]


def _fit_path(directory: Path, dataset: str, shape: list, method: str, seed: int) -> Path:
    return Path(directory) / "fits" / dataset / f"{shape[0]}x{shape[1]}" / method / f"seed{seed}.json"


def _tokenizer_path(directory: Path, shape: list, method: str, seed: int) -> Path:
    return Path(directory) / "tokenizers" / f"{shape[0]}x{shape[1]}" / method / f"seed{seed}"


def _ctr_path(directory: Path, method: str, model: str, seed: int) -> Path:
    return Path(directory) / "ctr" / method / model / f"seed{seed}.json"


def _record_done(directory: Path, dataset: str, shape: list, method: str, seed: int, keep: list) -> bool:
    """The record exists, and so does the saved tokenizer when the CTR stage needs it."""
    return _fit_path(directory, dataset, shape, method, seed).is_file() and (
        list(shape) not in keep or _tokenizer_path(directory, shape, method, seed).is_dir())


def _fit_job(directory: str, config_json: dict, dataset: str, size: int, levels: list[int], method: str,
             seed: int, keep: list, X: np.ndarray | None = None, labels=None) -> list[dict]:
    """Fit one (codebook size, method, seed) of ``dataset`` and write a record per level count;
    in a worker process, the catalogue is read from ``directory/catalogues``. Returns the
    records written."""
    from rqgmm.io.settings import load_settings

    directory = Path(directory)
    if X is None:
        catalogue_path = directory / "catalogues" / f"{dataset}.npy"
        X = np.load(catalogue_path)
        labels = read_json(catalogue_path.with_suffix(".labels.json"))
    config = load_settings(VariantsConfig, config_json, "config.json")
    written = []
    for tokenizer, record in fit_records(config, method, size, levels, seed, X, labels):
        shape = record["shape"]
        record["dataset"] = dataset
        if shape in keep:
            tokenizer.save(_tokenizer_path(directory, shape, method, seed), overwrite=True)
        write_json(_fit_path(directory, dataset, shape, method, seed), record)
        written.append(record)
    return written
