"""The generative-retrieval study: on MovieLens-100k (leave-last-out, a held-out share of cold
items), TIGER-style generation over each tokenizer's IDs against SASRec and popularity, per
seed, with paired tests (Holm) of every tokenizer against RQ-KMeans.

Each (model, seed) result is a JSON file under the run directory, so a rerun resumes; the
results document is written from them (``report.md``, ``results.json``).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from rqgmm.experiment.engine import provenance, read_json, write_json
from rqgmm.experiment.stats import format_difference, format_mean_std, mark_significant, mean_std, paired_difference
from rqgmm.retrieval.train import KS, RetrievalTraining, fit_sasrec, fit_tiger, item_metrics, popularity


@dataclass
class RetrievalStudy:
    """tokenizers: "method-LxK" names (rq-kmeans, rq-gmm, rq-gmm-tied, balanced-rq-kmeans, rq-vae);
    every ID gets a collision suffix (the field's default)."""

    name: str = "retrieval"
    tokenizers: list[str] = field(default_factory=lambda: ["rq-kmeans-3x256", "rq-gmm-3x256"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    cold_share: float = 0.1
    training: RetrievalTraining = field(default_factory=RetrievalTraining)


def build_tokenizer(name: str, seed: int):
    from rqgmm.quantize import make_tokenizer

    method, shape = name.rsplit("-", 1)
    levels, size = (int(v) for v in shape.split("x"))
    extra = {"rq-gmm-tied": ("rq-gmm", {"covariance_type": "tied"}),
             "rq-gmm": ("rq-gmm", {"covariance_type": "diag"}),
             "balanced-rq-kmeans": ("rq-kmeans", {"balance_mode": "hard"})}.get(method, (method, {}))
    return make_tokenizer(extra[0], levels, size, random_state=seed, progress=False, **extra[1])


def run_study(study: RetrievalStudy, root: str | Path = "runs", *, log=print, progress: bool | None = False) -> dict:
    from rqgmm.experiment.engine import dataset_and_content
    from rqgmm.retrieval.data import leave_last_out
    from rqgmm.retrieval.tokens import ItemTokens

    directory = Path(root) / study.name
    directory.mkdir(parents=True, exist_ok=True)
    dataset, content = dataset_and_content("ml-100k")
    ids = pd.Index(dataset.items["item_id"].astype(str))
    records = []
    started = time.perf_counter()
    for seed in study.seeds:
        sequences = leave_last_out(dataset.interactions, ids, cold_share=study.cold_share, seed=seed)
        training = RetrievalTraining(**{**asdict(study.training), "seed": seed})
        path = directory / "runs" / f"popularity-seed{seed}.json"
        if not path.is_file():
            ranking = popularity(sequences)
            write_json(path, {"model": "popularity", "seed": seed,
                              "metrics": item_metrics([ranking] * len(sequences.test), sequences.test, sequences.cold)})
        records.append(read_json(path))
        path = directory / "runs" / f"sasrec-seed{seed}.json"
        if not path.is_file():
            _, result = fit_sasrec(sequences, training, progress)
            write_json(path, {"model": "sasrec", "seed": seed, **asdict(result)})
            log(f"  sasrec seed {seed}: Recall@10 {result.metrics['recall@10']:.4f} ({result.seconds:.0f} s)")
        records.append(read_json(path))
        for name in study.tokenizers:
            path = directory / "runs" / f"tiger-{name}-seed{seed}.json"
            if not path.is_file():
                tokenizer = build_tokenizer(name, seed)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    tokenizer.fit(content)
                codes = tokenizer.encode(content, collisions="suffix")
                quality = id_quality(codes[:, :-1], tokenizer.codebook_sizes)
                _, result = fit_tiger(sequences, ItemTokens(codes), training, progress)
                write_json(path, {"model": f"tiger:{name}", "seed": seed, "id_quality": quality, **asdict(result)})
                log(f"  tiger {name} seed {seed}: Recall@10 {result.metrics['recall@10']:.4f}, cold"
                    f" {result.metrics['cold_recall@10']:.4f} ({result.seconds:.0f} s)")
            records.append(read_json(path))
    results = {"config": asdict(study), "records": records, "seconds": time.perf_counter() - started,
               "provenance": provenance()}
    results["tables"] = {"retrieval": retrieval_table(records)}
    write_json(directory / "results.json", results)
    return results


def id_quality(codes: np.ndarray, sizes: list[int]) -> dict:
    """The PRQ-KMeans re-evaluation's cheap figures: the independent-code ratio (share of items
    whose full ID, without suffix, no other item has) and per-level prefix utilization (prefixes in
    use / possible prefixes at that depth, capped by the item count)."""
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    independent = float((counts[inverse.reshape(-1)] == 1).mean())
    utilization = []
    for depth in range(1, codes.shape[1] + 1):
        used = len(np.unique(codes[:, :depth], axis=0))
        possible = min(int(np.prod(sizes[:depth])), len(codes))
        utilization.append(used / possible)
    return {"independent_code_ratio": independent, "prefix_utilization": utilization}


def retrieval_table(records: list[dict]) -> tuple[list[str], list[list[str]]]:
    """One row per model: Recall/NDCG@5/10 and cold Recall@10 (mean ± std over seeds), Δ Recall@10
    against TIGER with RQ-KMeans IDs of the same shape (paired by seed, Holm over the table)."""
    by_model: dict[str, dict[int, dict]] = {}
    for record in records:
        by_model.setdefault(record["model"], {})[record["seed"]] = record
    value = lambda metric: lambda record: record["metrics"].get(metric)  # noqa: E731
    rows, diffs = [], []
    for model, seeds in by_model.items():
        reference = None
        if model.startswith("tiger:") and not model.startswith("tiger:rq-kmeans-"):
            reference = by_model.get(f"tiger:rq-kmeans-{model.rsplit('-', 1)[1]}")
        diff = None if reference is None else paired_difference(seeds, reference, value("recall@10"))
        diffs.append(diff)
        quality = next(iter(seeds.values())).get("id_quality")
        rows.append([model, str(len(seeds)),
                     *(format_mean_std(mean_std(value(f"{m}@{k}")(r) for r in seeds.values()))
                       for k in KS for m in ("recall", "ndcg")),
                     format_mean_std(mean_std(value("cold_recall@10")(r) for r in seeds.values())),
                     diff, "-" if quality is None else f"{quality['independent_code_ratio']:.1%}",
                     "-" if quality is None else " / ".join(f"{u:.1%}" for u in quality["prefix_utilization"])])
    mark_significant(diffs)
    for row in rows:
        row[7] = format_difference(row[7], flag="significant") if row[7] else ""
    header = ["model", "seeds", "Recall@5", "NDCG@5", "Recall@10", "NDCG@10", "cold Recall@10",
              "Δ Recall@10 vs RQ-KMeans", "independent IDs", "prefix utilization by level"]
    return header, rows


def write_document(results: dict, path: str | Path | None = None) -> str:
    """The results document (markdown) of a study; written atomically to ``path`` when given."""
    from rqgmm.experiment.engine import produced_by
    from rqgmm.experiment.pages import markdown

    config = results["config"]
    blocks = [("h", 1, f"Results: {config['name']}"),
              ("p", f"{produced_by(results['provenance'])}; {results['seconds'] / 60:.1f} min (runs finished earlier"
                    " are loaded, not re-run)."),
              ("p", f"MovieLens-100k, leave-last-out per user (last item test, second-to-last validation),"
                    f" {config['cold_share']:.0%} of the items held out as cold-start targets (never a training"
                    f" target; their IDs come from content). Models read the last {config['training']['history']}"
                    f" items; TIGER-style generation (decoder-only) with beam width {config['training']['beams']}"
                    " constrained to real IDs (3 levels + collision suffix: every ID names one item, so the metrics"
                    " are item-level); SASRec over item IDs; popularity. Early stopping on validation Recall@10"
                    f" (generation: at most {config['training']['max_epochs']} epochs, patience"
                    f" {config['training']['patience']}; SASRec: at most {config['training']['sasrec_max_epochs']},"
                    f" patience {config['training']['sasrec_patience']}); the best epoch's weights are kept. Seeds {config['seeds']} (split, tokenizer,"
                    " model). Δ: paired by seed against TIGER with RQ-KMeans IDs of the same shape; * = significant"
                    " by a paired t-test after Holm's correction over the table. Independent IDs: share of items whose"
                    " codes (without suffix) no other item has; prefix utilization: prefixes in use / possible at"
                    " each depth (both of the first seed's tokenizer)."),
              ("table", *results["tables"]["retrieval"])]
    text = markdown(blocks)
    if path is not None:
        from rqgmm.io.atomic import atomic_path

        with atomic_path(Path(path), overwrite=True) as tmp:
            tmp.write_text(text)
    return text
