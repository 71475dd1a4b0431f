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

import copy
import json
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from rqgmm.errors import InvalidInputError
from rqgmm.io.atomic import atomic_path
from rqgmm.io.settings import check_keys, read_yaml_mapping

BASELINE = "rq-kmeans"
DATASETS = ("ml-100k", "clothing")


def _write_json(path: Path, payload) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=float))


@dataclass
class VariantsConfig:
    name: str
    kind: str = "variants"
    datasets: list = field(default_factory=lambda: list(DATASETS))
    seeds: list = field(default_factory=lambda: [0, 1, 2])
    shapes: list = field(default_factory=lambda: [[2, 128], [3, 256], [4, 256]])
    baseline: dict = field(default_factory=dict)
    common: dict = field(default_factory=dict)
    variants: dict = field(default_factory=dict)
    ctr: dict = field(default_factory=dict)
    quick: dict = field(default_factory=dict)

    @classmethod
    def from_yaml(cls, path: str | Path, *, quick: bool = False) -> "VariantsConfig":
        return cls.from_dict(read_yaml_mapping(path, "the variants study config"), source=str(path), quick=quick)

    @classmethod
    def from_dict(cls, raw, *, source: str = "config", quick: bool = False) -> "VariantsConfig":
        known = check_keys(raw, cls, source)
        raw = copy.deepcopy(raw)
        if quick:
            overrides = raw.get("quick") or {}
            bad = sorted(set(overrides) - known)
            if bad:
                raise InvalidInputError(f"{source}: quick overrides unknown setting(s) {bad}")
            raw.update(overrides)
            raw["name"] = f"{raw.get('name', 'variants')}-quick"
        if "name" not in raw:
            raise InvalidInputError(f"{source}: setting 'name' is missing")
        config = cls(**raw)
        config.validate(source)
        return config

    def validate(self, source: str) -> None:
        from rqgmm.quantize import make_tokenizer

        if self.kind != "variants":
            raise InvalidInputError(f"{source}: kind must be 'variants', got {self.kind!r}")
        unknown = sorted(set(self.datasets) - set(DATASETS))
        if unknown or not self.datasets:
            raise InvalidInputError(f"{source}: datasets must be among {list(DATASETS)}, got {self.datasets}")
        if not self.seeds or not all(isinstance(s, int) and s >= 0 for s in self.seeds):
            raise InvalidInputError(f"{source}: seeds must be a list of ints >= 0, got {self.seeds}")
        for shape in self.shapes:
            if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(v, int) and v > 0 for v in shape)):
                raise InvalidInputError(f"{source}: each shape is [levels, codebook_size], got {shape!r}")
        if not self.variants:
            raise InvalidInputError(f"{source}: variants is empty; name at least one RQGMM variant")
        checks = [(BASELINE, "rq-kmeans", self.baseline)] + [
            (name, "rq-gmm", {**self.common, **(params or {})}) for name, params in self.variants.items()]
        for name, method, params in checks:
            if name == BASELINE and method == "rq-gmm":
                raise InvalidInputError(f"{source}: a variant may not be called {BASELINE!r}")
            try:
                make_tokenizer(method, 1, 2, **params).validate_params()
            except (InvalidInputError, TypeError) as exc:
                raise InvalidInputError(f"{source}: {name}: {exc}") from None
        if self.ctr:
            check_keys(self.ctr, _CTRSettings, f"{source}: ctr")
            ctr = self.ctr_settings()
            if ctr.shape not in self.shapes:
                raise InvalidInputError(f"{source}: ctr.shape {ctr.shape} is not among the shapes {self.shapes}")
            if "ml-100k" not in self.datasets:
                raise InvalidInputError(f"{source}: the CTR stage needs ml-100k among the datasets")

    def ctr_settings(self) -> "_CTRSettings":
        return _CTRSettings(**self.ctr)

    def methods(self) -> list[str]:
        return [BASELINE, *self.variants]

    def tokenizer(self, method: str, shape: list[int], seed: int):
        from rqgmm.quantize import make_tokenizer

        levels, size = shape
        if method == BASELINE:
            return make_tokenizer("rq-kmeans", levels, size, seed=seed, progress=False, **self.baseline)
        return make_tokenizer("rq-gmm", levels, size, seed=seed, progress=False,
                              **{**self.common, **(self.variants[method] or {})})

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class _CTRSettings:
    shape: list = field(default_factory=lambda: [2, 128])
    split: str = "cold-item"
    models: list = field(default_factory=lambda: ["fnn", "dcnv2"])
    features: str = "sid"
    training: dict = field(default_factory=dict)
    history_length: int = 10


def catalogue(name: str, progress: bool | None) -> tuple[np.ndarray, list, str]:
    """(item embeddings (n, 384) float32, label per item, label description) of a catalogue."""
    from rqgmm.data.text_encoder import TextEncoder

    if name == "ml-100k":
        from rqgmm.data.interactions import item_content
        from rqgmm.ctr.run import load_dataset
        from rqgmm.data.movielens import load_items

        return item_content(load_dataset("ml-100k"), progress), load_items()["genres"].tolist(), "genres"
    from rqgmm.data.clothing import load_reviews, review_labels

    reviews = load_reviews()
    # review texts are long (~84 word pieces): bf16 autocast encodes them ~3x faster on this CPU,
    # cosine > 0.9999 to float32
    encoder = TextEncoder(progress=progress, precision="bfloat16")
    return encoder.encode(reviews["text"].tolist()), review_labels(reviews), "class"


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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tokenizer.fit(X)
    results = []
    for n_levels in levels:
        kept = tokenizer.prefix(n_levels) if n_levels < tokenizer.n_levels else tokenizer
        report = quality_report(kept, X, labels, seed=seed, method=method)
        headline = report.headline()
        headline.pop("method")
        record = {**headline, "overlap": list(report.overlap.overlap),
                  "fit_seconds": float(sum(kept.level_fit_seconds_)),
                  "n_iter": list(getattr(kept, "n_iter_", [])), "method": method, "seed": seed,
                  "shape": [n_levels, codebook_size]}
        results.append((kept, record))
    return results


def shape_groups(shapes: list) -> dict[int, list[int]]:
    """Shapes ``[[levels, size], ...]`` grouped by codebook size: {size: sorted level counts}.
    The deepest shape of each size is fitted; the others are its prefixes."""
    groups: dict[int, list[int]] = {}
    for levels, size in shapes:
        groups.setdefault(int(size), []).append(int(levels))
    return {size: sorted(set(levels)) for size, levels in groups.items()}


class VariantStudy:
    """Runs a :class:`VariantsConfig` into ``root / config.name``; ``log`` prints one line."""

    def __init__(self, config: VariantsConfig, root: str | Path = "runs", *, progress: bool | None = None,
                 log: Callable[[str], None] = print, workers: int = 1):
        self.config = config
        self.directory = Path(root) / config.name
        self.progress = progress
        self.log = log
        self.workers = max(1, int(workers))

    def run(self) -> dict:
        started = time.perf_counter()
        self._check_config()
        config = self.config
        fits: list[dict] = []
        catalogues = {}
        for index, name in enumerate(config.datasets):
            self.log(f"[{index + 1}/{len(config.datasets)}] {name}: item embeddings")
            X, labels, label_kind = catalogue(name, self.progress)
            catalogues[name] = {"items": int(X.shape[0]), "dim": int(X.shape[1]), "labels": label_kind}
            fits += self._fits(name, X, labels)
        ctr = self._ctr() if config.ctr else []
        from rqgmm.experiment.variants_report import write_variants_report

        results = {"config": config.to_json(), "catalogues": catalogues, "fits": fits, "ctr_runs": ctr,
                   "seconds": time.perf_counter() - started}
        results["summary"] = write_variants_report(self.directory, results)
        _write_json(self.directory / "results.json", results)
        return results

    def _check_config(self) -> None:
        path = self.directory / "config.json"
        current = self.config.to_json()
        if path.is_file() and json.loads(path.read_text()) != current:
            raise InvalidInputError(f"{self.directory}: holds a run of a different config; its finished stages"
                                    " would not match. Rename the study or delete the directory")
        _write_json(path, current)

    def _fits(self, dataset: str, X: np.ndarray, labels) -> list[dict]:
        """Every (shape, method, seed) record of ``dataset``; missing ones are fitted, one fit per
        (codebook size, method, seed), in ``self.workers`` processes when more than one."""
        config = self.config
        ctr = config.ctr_settings() if config.ctr else None
        keep = [ctr.shape] if ctr is not None and dataset == "ml-100k" else []
        jobs = []
        for size, levels in shape_groups(config.shapes).items():
            for method in config.methods():
                for seed in config.seeds:
                    if not all(_record_done(self.directory, dataset, [n, size], method, seed, keep) for n in levels):
                        jobs.append((size, levels, method, seed))
        if jobs:
            self.log(f"  {dataset}: {len(jobs)} fit(s) to run, {self.workers} worker(s)")
            self._run_fit_jobs(dataset, X, labels, jobs, keep)
        return [json.loads(_fit_path(self.directory, dataset, shape, method, seed).read_text())
                for shape in config.shapes for method in config.methods() for seed in config.seeds]

    def _run_fit_jobs(self, dataset: str, X: np.ndarray, labels, jobs: list[tuple], keep: list) -> None:
        # the costliest fits first, so the workers finish together
        jobs = sorted(jobs, key=lambda job: -max(job[1]) * job[0])
        arguments = [(str(self.directory), self.config.to_json(), dataset, *job, keep) for job in jobs]
        if self.workers > 1 and len(jobs) > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor, as_completed

            from rqgmm.experiment.runner import _single_thread
            from rqgmm.metrics.quality import label_sets

            catalogue_path = self.directory / "catalogues" / f"{dataset}.npy"
            catalogue_path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(catalogue_path, overwrite=True) as tmp, open(tmp, "wb") as handle:
                np.save(handle, np.ascontiguousarray(X, dtype=np.float32))
            _write_json(catalogue_path.with_suffix(".labels.json"),
                        [sorted(item) for item in label_sets(labels, len(labels))])
            with ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                     initializer=_single_thread) as pool:
                futures = [pool.submit(_fit_job, *args) for args in arguments]
                for future in as_completed(futures):
                    self._log_records(dataset, future.result())
        else:
            for args in arguments:
                self._log_records(dataset, _fit_job(*args, X=X, labels=labels))

    def _log_records(self, dataset: str, records: list[dict]) -> None:
        for record in records:
            self.log(f"  {dataset} {record['shape'][0]}x{record['shape'][1]} {record['method']} seed"
                     f" {record['seed']}: RMSE {record['rmse']:.5f}, unique IDs {record['unique_id_rate']:.3f},"
                     f" fit {record['fit_seconds']:.1f} s")

    def _ctr(self) -> list[dict]:
        config, ctr = self.config, self.config.ctr_settings()
        tag = f"{ctr.shape[0]}x{ctr.shape[1]}"
        groups = [(method, seed) for method in config.methods() for seed in config.seeds
                  if not all(_ctr_path(self.directory, method, model, seed).is_file() for model in ctr.models)]
        self.log(f"CTR: {len(config.methods()) * len(config.seeds) * len(ctr.models)} runs on the {ctr.split} split,"
                 f" {len(groups)} tokenizer(s) to train with, {self.workers} worker(s)")
        arguments = [(str(self.directory), config.to_json(), method, seed) for method, seed in groups]
        if self.workers > 1 and len(groups) > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            from rqgmm.experiment.runner import _single_thread

            with ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                     initializer=_single_thread) as pool:
                for method, seed in pool.map(_ctr_group, *zip(*arguments)):
                    self.log(f"  CTR with {method} ({tag}) seed {seed}: done")
        else:
            for args in arguments:
                method, seed = _ctr_group(*args)
                self.log(f"  CTR with {method} ({tag}) seed {seed}: done")
        return [json.loads(_ctr_path(self.directory, method, model, seed).read_text())
                for method in config.methods() for seed in config.seeds for model in ctr.models]


def _fit_path(directory: Path, dataset: str, shape: list, method: str, seed: int) -> Path:
    return Path(directory) / "fits" / dataset / f"{shape[0]}x{shape[1]}" / method / f"seed{seed}.json"


def _tokenizer_path(directory: Path, shape: list, method: str, seed: int) -> Path:
    return Path(directory) / "tokenizers" / f"{shape[0]}x{shape[1]}" / method / f"seed{seed}"


def _record_done(directory: Path, dataset: str, shape: list, method: str, seed: int, keep: list) -> bool:
    """The record exists, and so does the saved tokenizer when the CTR stage needs it."""
    return _fit_path(directory, dataset, shape, method, seed).is_file() and (
        list(shape) not in keep or _tokenizer_path(directory, shape, method, seed).is_dir())


def _fit_job(directory: str, config_json: dict, dataset: str, size: int, levels: list[int], method: str,
             seed: int, keep: list, X: np.ndarray | None = None, labels=None) -> list[dict]:
    """Fit one (codebook size, method, seed) of ``dataset`` and write a record per level count;
    in a worker process, the catalogue is read from ``directory/catalogues``. Returns the
    records written."""
    directory = Path(directory)
    if X is None:
        catalogue_path = directory / "catalogues" / f"{dataset}.npy"
        X = np.load(catalogue_path)
        labels = json.loads(catalogue_path.with_suffix(".labels.json").read_text())
    config = VariantsConfig.from_dict(config_json)
    written = []
    for tokenizer, record in fit_records(config, method, size, levels, seed, X, labels):
        shape = record["shape"]
        record["dataset"] = dataset
        if shape in keep:
            tokenizer.save(_tokenizer_path(directory, shape, method, seed), overwrite=True)
        _write_json(_fit_path(directory, dataset, shape, method, seed), record)
        written.append(record)
    return written


def _ctr_path(directory: Path, method: str, model: str, seed: int) -> Path:
    return Path(directory) / "ctr" / method / model / f"seed{seed}.json"


def _ctr_group(directory: str, config_json: dict, method: str, seed: int) -> tuple[str, int]:
    """Train every CTR model of the config on ``method``'s IDs fitted with ``seed``."""
    from rqgmm.data.interactions import item_content
    from rqgmm.ctr.features import FeatureEncoder
    from rqgmm.ctr.run import fit_and_evaluate, load_dataset, prepare
    from rqgmm.ctr.splits import make_split
    from rqgmm.ctr.training import TrainingConfig
    from rqgmm.quantize import ResidualTokenizer

    config = VariantsConfig.from_dict(config_json)
    ctr = config.ctr_settings()
    directory = Path(directory)
    dataset = load_dataset("ml-100k")
    content = item_content(dataset, False)
    tokenizer = ResidualTokenizer.load(_tokenizer_path(directory, ctr.shape, method, seed))
    tokenizer.progress = False
    split = make_split(dataset.interactions, ctr.split, seed=int(config.seeds[0]))
    encoder = FeatureEncoder(ctr.features, history_length=ctr.history_length)
    data = prepare(dataset, split, encoder, content=content, codes=tokenizer.encode(content),
                   codebook_sizes=tokenizer.codebook_sizes)
    for model in ctr.models:
        path = _ctr_path(directory, method, model, seed)
        if path.is_file():
            continue
        training = TrainingConfig(**{**ctr.training, "seed": seed})
        _, record, metrics = fit_and_evaluate(data, model, {}, training, progress=False)
        _write_json(path, {"method": method, "model": model, "seed": seed, "split": ctr.split,
                           "features": ctr.features, "test": metrics["test"], "validation": metrics["validation"],
                           "epochs": len(record.epochs), "seconds": record.seconds})
    return method, seed
