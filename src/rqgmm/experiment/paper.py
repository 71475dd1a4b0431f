"""The RQ-GMM paper's offline study as a configuration of the study engine.

Stages: catalogue (item embeddings, cached by the text encoder) -> tokenizers
(``tokenizers/<name>/``, fitted with the first seed) -> semantic-ID quality (``quality/``) -> CTR
grid (one ``ctr/<split>/<model>/<features>/seed<k>.json`` per run; the first seed's model saved
under ``models/``) -> report (report.md / .html, results.json).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from rqgmm.experiment.config import SidVariant
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
from rqgmm.progress import progress_bar


def feature_slug(feature: str) -> str:
    return feature.replace(":", "__").replace("+", "-plus-").replace(" ", "_").replace("=", "")


class PaperStudy(Study):
    """Runs a :class:`PaperStudyConfig` into ``root / config.name``; ``log`` prints one line."""

    def run(self) -> dict:
        from rqgmm.data.catalogue import load_catalogue
        from rqgmm.experiment.paper_report import write_paper_report

        self.run_directory.claim(self.config.to_json(), type(self.config))
        started = time.perf_counter()
        self.log(f"[1/5] catalogue {self.config.dataset}: item embeddings")
        catalogue = load_catalogue(self.config.dataset, self.progress)
        self.log(f"[2/5] tokenizers: {', '.join(t.name for t in self.config.tokenizers)}")
        tokenizers, fits = self._tokenizers(catalogue.embeddings)
        self.log("[3/5] semantic-ID quality")
        quality = self._quality(catalogue, tokenizers)
        self.log("[4/5] CTR grid")
        ctr = self._ctr()
        self.log("[5/5] report")
        from rqgmm.data.interactions import load_dataset

        dataset = load_dataset(self.config.dataset)
        results = {"config": self.config.to_json(), "dataset": {
            "name": dataset.name, "interactions": len(dataset.interactions), "items": len(dataset.items),
            "users": int(dataset.interactions["user_id"].nunique()),
            "embedding_dim": int(catalogue.embeddings.shape[1]),
            "positive_rate": float(dataset.interactions["label"].mean())},
            "tokenizers": {name: {**quality[name], **fits[name]} for name in tokenizers},
            "ctr_runs": ctr, "seconds": time.perf_counter() - started, "provenance": provenance()}
        results["summary"] = write_paper_report(self.directory, results)
        write_json(self.directory / "results.json", results)
        return results

    # ------------------------------------------------------------------ stages
    def _tokenizers(self, content) -> tuple[dict, dict[str, dict]]:
        from rqgmm.quantize import ResidualTokenizer

        tokenizers, fits = {}, {}
        for entry in self.config.tokenizers:
            path = self.directory / "tokenizers" / entry.name
            record_path = self.directory / "tokenizers" / f"{entry.name}.json"
            if path.is_dir() and record_path.is_file():
                tokenizers[entry.name] = ResidualTokenizer.load(path)
                fits[entry.name] = read_json(record_path)
                self.log(f"  {entry.name}: done before, loaded")
                continue
            tokenizer = entry.build(random_state=int(self.config.seeds[0]), progress=self.progress)
            tick = time.perf_counter()
            caught = fit_with_warnings(tokenizer, content)
            fits[entry.name] = {"fit_seconds": time.perf_counter() - tick, "warnings": caught,
                                **convergence_record(tokenizer)}
            tokenizer.save(path, overwrite=True)
            write_json(record_path, fits[entry.name])
            tokenizers[entry.name] = tokenizer
            self.log(f"  {entry.name}: fitted in {fits[entry.name]['fit_seconds']:.1f} s"
                     + (f" ({len(caught)} warning(s), see results.json)" if caught else ""))
        return tokenizers, fits

    def _quality(self, catalogue, tokenizers) -> dict[str, dict]:
        from rqgmm.metrics import quality_report
        from rqgmm.metrics.report import write_report

        cached = self.directory / "quality" / "headlines.json"
        if cached.is_file():
            self.log("  done before, loaded")
            return read_json(cached)
        reports = []
        for name, tokenizer in tokenizers.items():
            tokenizer.progress = False
            reports.append(quality_report(tokenizer, catalogue.embeddings, catalogue.labels,
                                          seed=int(self.config.seeds[0]), method=name))
        write_report(reports, self.directory / "quality", extra={"labels": catalogue.label_kind})
        headlines = {report.method: report.headline() for report in reports}
        for report in reports:
            headlines[report.method]["rmse_by_level"] = list(report.reconstruction.rmse)
        write_json(cached, headlines)
        return headlines

    def variants(self, spec: str) -> list[tuple[str, dict, dict]]:
        """(label, feature options, training options) of a feature spec over the study's axes; the
        label is the spec plus the axes that vary ("sid:rq-kmeans-2x128 prefix drop=0.1",
        "sid+emb:rq-gmm-3x256 soft4")."""
        config = self.config
        sid = "sid" in spec
        tokenizer = spec.partition(":")[2]
        representations = config.sid_representations if sid else config.sid_representations[:1]
        names = [name for name in config.sid_variants if config.sid_variant_applies(name, tokenizer)] if sid else \
            list(config.sid_variants)[:1]
        out = []
        for representation in representations:
            for name in names:
                variant = config.sid_variants[name] if sid else SidVariant()
                for dropout in config.item_id_dropouts:
                    label = spec
                    if sid and len(config.sid_representations) > 1:
                        label += f" {representation}"
                    if sid and len(config.sid_variants) > 1:
                        label += f" {name}"
                    if len(config.item_id_dropouts) > 1:
                        label += f" drop={dropout:g}"
                    features = {"sid_representation": representation, "sid_init": variant.sid_init,
                                "soft_top_k": variant.soft_top_k, "soft_temperature": variant.soft_temperature}
                    training = {"item_id_dropout": float(dropout), "sid_dropout": variant.sid_dropout}
                    out.append((label, features, training))
        return out

    def ctr_tasks(self) -> list[CTRTask]:
        """One task per (split, feature spec and axes): its (model, seed) runs share prepared features."""
        config, directory = self.config, self.directory
        specs = list(dict.fromkeys(f for model in config.models for f in config.features_of(model)))
        tasks = []
        for split in config.splits:
            for spec in specs:
                kind, _, tokenizer = spec.partition(":")
                for label, feature_options, training_options in self.variants(spec):
                    runs = tuple(
                        CTRRun(model, dict(config.models[model].params), int(seed),
                               str(run_path(directory, split, model, label, seed)),
                               str(directory / "models" / split / model / feature_slug(label))
                               if seed == config.seeds[0] else None)
                        for model in config.models if spec in config.features_of(model) for seed in config.seeds)
                    tasks.append(CTRTask(
                        dataset=config.dataset, split=split, split_seed=int(config.seeds[0]), features=kind,
                        tokenizer=str(directory / "tokenizers" / tokenizer) if tokenizer else None, runs=runs,
                        training={**asdict(config.training), **training_options},
                        feature_options={**asdict(config.features), **feature_options},
                        labels={"features": label, "tokenizer": tokenizer or None, **feature_options,
                                **training_options},
                        tail_threshold=config.tail_threshold))
        return tasks

    def _ctr(self) -> list[dict]:
        tasks = self.ctr_tasks()
        runs = [run for task in tasks for run in task.runs]
        pending = [task for task in tasks if any(not Path(run.record).is_file() for run in task.runs)]
        todo = sum(not Path(run.record).is_file() for run in runs)
        self.log(f"  {len(runs)} runs, {len(runs) - todo} done before; {todo} to train in {len(pending)} group(s)"
                 f" on {self.workers} worker(s)")
        bar = progress_bar(total=todo, enabled=self.progress, desc="CTR runs")
        run_jobs(run_ctr_task, [{"task": task} for task in pending], self.workers,
                 on_result=lambda records: bar.update(len(records)))
        bar.close()
        return [read_json(Path(run.record)) for run in runs]


def run_path(directory: Path, split: str, model: str, feature: str, seed: int) -> Path:
    return directory / "ctr" / split / model / feature_slug(feature) / f"seed{seed}.json"
