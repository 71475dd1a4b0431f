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

from rqgmm.ctr.dataset import item_content
from rqgmm.ctr.features import FeatureEncoder
from rqgmm.ctr.run import RunConfig, fit_and_evaluate, load_dataset, prepare, save_run
from rqgmm.ctr.splits import make_split
from rqgmm.ctr.training import TrainingConfig
from rqgmm.errors import InvalidInputError
from rqgmm.experiment.config import ExperimentConfig, TokenizerSpec
from rqgmm.io.atomic import atomic_path
from rqgmm.progress import progress_bar
from rqgmm.quantize import RQGMM, RQVAE, VQVAE, ResidualTokenizer, RQKMeans

TOKENIZER_CLASSES = {"rq-gmm": RQGMM, "rq-kmeans": RQKMeans, "rq-vae": RQVAE, "vq-vae": VQVAE}


def _write_json(path: Path, payload) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=float))


def feature_slug(feature: str) -> str:
    return feature.replace(":", "__").replace("+", "-plus-")


class Experiment:
    """Runs an :class:`ExperimentConfig` into ``root / config.name``; ``log`` prints one line."""

    def __init__(self, config: ExperimentConfig, root: str | Path = "runs", *, progress: bool | None = None,
                 log: Callable[[str], None] = print):
        self.config = config
        self.directory = Path(root) / config.name
        self.progress = progress
        self.log = log

    def run(self) -> dict:
        self._check_config()
        started = time.perf_counter()
        self.log(f"[1/5] data set {self.config.dataset} and item embeddings")
        dataset = load_dataset(self.config.dataset)
        content = item_content(dataset, self.progress)
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
        klass = TOKENIZER_CLASSES[spec.method]
        common = {"seed": int(self.config.seeds[0]), "progress": self.progress, **spec.params}
        if klass is VQVAE:
            return klass(codebook_size=spec.codebook_size, **common)
        return klass(n_levels=spec.levels, codebook_size=spec.codebook_size, **common)

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
        config = self.config
        training = dict(config.training)
        features = list(dict.fromkeys(f for model in config.models for f in config.features_of(model)))
        jobs = [(split, model, feature, seed) for split in config.splits for feature in features
                for model in config.models if feature in config.features_of(model) for seed in config.seeds]
        results, prepared = [], {}
        codes = {name: tokenizers[name].encode(content) for name in config.ctr_tokenizers}
        bar = progress_bar(jobs, enabled=self.progress, desc="CTR runs")
        for split_name, model, feature, seed in bar:
            path = self.directory / "ctr" / split_name / model / feature_slug(feature) / f"seed{seed}.json"
            if path.is_file():
                results.append(json.loads(path.read_text()))
                continue
            kind, _, tokenizer_name = feature.partition(":")
            key = (split_name, kind, tokenizer_name)
            if key not in prepared:
                split = make_split(dataset.interactions, split_name, seed=int(config.seeds[0]))
                encoder = FeatureEncoder(kind, history_length=config.history_length)
                sid = codes.get(tokenizer_name)
                sizes = tokenizers[tokenizer_name].codebook_sizes if tokenizer_name else None
                prepared = {key: prepare(dataset, split, encoder, content=content, codes=sid, codebook_sizes=sizes)}
            params = dict((config.models[model] or {}).get("params", {}))
            train_config = TrainingConfig(**{**training, "seed": int(seed)})
            trained, record, metrics = fit_and_evaluate(prepared[key], model, params, train_config, progress=False)
            row = {"split": split_name, "model": model, "features": feature, "kind": kind,
                   "tokenizer": tokenizer_name or None, "seed": int(seed), "validation": metrics["validation"],
                   "test": metrics["test"], "epochs": len(record.epochs), "best_epoch": record.best_epoch,
                   "samples_per_second": record.samples_per_second, "seconds": record.seconds}
            _write_json(path, row)
            results.append(row)
            if seed == config.seeds[0]:
                tokenizer_dir = self.directory / "tokenizers" / tokenizer_name if tokenizer_name else None
                run = RunConfig(dataset=config.dataset, split=split_name, model=model, features=kind,
                                tokenizer=None if tokenizer_dir is None else str(tokenizer_dir), seed=int(seed),
                                history_length=config.history_length, model_params=params, training={**training})
                save_run(self.directory / "models" / split_name / model / feature_slug(feature), run,
                         prepared[key].encoder, trained, {"metrics": metrics}, overwrite=True)
            bar.set_postfix(last=f"{model} {feature} s{seed} AUC {metrics['test']['auc']:.4f}")
        return results
