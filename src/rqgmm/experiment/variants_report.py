"""The variants study's report: per catalogue and shape tables, the CTR table, the selection rule
applied to the measured figures, plots, ``report.md`` and a self-contained ``report.html``.

Figures are mean ± sample standard deviation over seeds. Comparisons with RQ-KMeans pair the
runs by seed; a difference is beyond seed noise when its mean exceeds twice its standard error.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from rqgmm.experiment.pages import save_figure, write_pages
from rqgmm.experiment.stats import (
    by_seed,
    format_difference,
    format_mean_std,
    mean_std,
    paired_difference,
)

BASELINE = "rq-kmeans"  # the reference every variant is compared with

# The rule, fixed before the study was run (issue 10), for RQGMM's defaults.
SELECTION_RULE = (
    "A variant qualifies when, on every catalogue and shape, neither its unique-ID rate nor its level-1 label"
    " lift is below RQ-KMeans' beyond seed noise (paired by seed, mean difference more than two standard errors"
    " below zero). Among qualifying variants the one with the lowest RMSE relative to RQ-KMeans (the mean over"
    " catalogues and shapes of RMSE_variant / RMSE_RQ-KMeans) becomes RQGMM's default, if that is lower than the"
    " paper variant's; otherwise the defaults stay the paper's."
)
PAPER_VARIANT = "paper"


def _fit_key(record: dict) -> tuple:
    return record["dataset"], f"{record['shape'][0]}x{record['shape'][1]}", record["method"]


FIGURES = {  # name -> (value of a fit record, higher is better)
    "rmse": (lambda r: r["rmse"], False),
    "perplexity_l1": (lambda r: r["perplexity"][0], True),
    "gini_l1": (lambda r: r["gini"][0], False),
    "unique_id_rate": (lambda r: r["unique_id_rate"], True),
    "effective_capacity_l1": (lambda r: r["effective_capacity"][0], True),
    "overlap_l1": (lambda r: r["overlap"][0], False),
    "level1_lift": (lambda r: r.get("level1_lift", math.nan), True),
    "full_id_lift": (lambda r: r.get("full_id_lift", math.nan), True),
    "fit_seconds": (lambda r: r["fit_seconds"], False),
}


def aggregate_fits(fits: list[dict]) -> list[dict]:
    """One row per (catalogue, shape, method): mean/std of every figure and paired differences to
    RQ-KMeans."""
    grouped = by_seed(fits, _fit_key)
    rows = []
    for (dataset, shape, method), seeds in grouped.items():
        row = {"dataset": dataset, "shape": shape, "method": method, "seeds": len(seeds),
               "converged_share": float(np.mean([all(r.get("converged", [True])) for r in seeds.values()]))}
        for name, (value, _) in FIGURES.items():
            row[name] = mean_std([value(r) for r in seeds.values()])
        baseline = grouped.get((dataset, shape, BASELINE))
        row["vs_baseline"] = None if method == BASELINE or baseline is None else {
            name: paired_difference(seeds, baseline, value) for name, (value, _) in FIGURES.items()}
        if baseline is not None:
            ratios = [seeds[s]["rmse"] / baseline[s]["rmse"] for s in sorted(set(seeds) & set(baseline))]
            row["rmse_ratio"] = float(np.mean(ratios)) if ratios else math.nan
        rows.append(row)
    return rows


def select_default(rows: list[dict], exclude=()) -> dict:
    """Apply :data:`SELECTION_RULE` to the aggregated rows (``exclude``: methods that are not RQ-GMM
    variants, e.g. RQ-KMeans variants)."""
    variants = list(dict.fromkeys(r["method"] for r in rows if r["method"] != BASELINE and r["method"] not in exclude))
    verdicts = {}
    for variant in variants:
        mine = [r for r in rows if r["method"] == variant]
        worse = []
        for row in mine:
            for figure in ("unique_id_rate", "level1_lift"):
                diff = (row["vs_baseline"] or {}).get(figure)
                if diff is not None and diff["beyond_noise"] and diff["mean"] < 0:
                    worse.append(f"{figure} on {row['dataset']} {row['shape']} ({diff['mean']:+.4f})")
        ratio = float(np.mean([r["rmse_ratio"] for r in mine]))
        verdicts[variant] = {"qualifies": not worse, "worse": worse, "rmse_ratio": ratio}
    qualifying = sorted((v for v in verdicts if verdicts[v]["qualifies"]), key=lambda v: verdicts[v]["rmse_ratio"])
    paper_ratio = verdicts.get(PAPER_VARIANT, {}).get("rmse_ratio", math.inf)
    chosen = qualifying[0] if qualifying and verdicts[qualifying[0]]["rmse_ratio"] < paper_ratio else None
    return {"rule": SELECTION_RULE, "verdicts": verdicts, "chosen": chosen}


def aggregate_ctr(runs: list[dict]) -> list[dict]:
    grouped = by_seed(runs, lambda run: (run["model"], run["method"]))
    rows = []
    for (model, method), seeds in grouped.items():
        row = {"model": model, "method": method, "seeds": len(seeds)}
        for metric in ("auc", "cold_auc", "logloss"):
            row[metric] = mean_std([r["test"].get(metric) for r in seeds.values()])
        baseline = grouped.get((model, BASELINE))
        row["vs_baseline"] = None if method == BASELINE or baseline is None else {
            metric: paired_difference(seeds, baseline, lambda r, m=metric: r["test"].get(m))
            for metric in ("auc", "cold_auc")}
        rows.append(row)
    return rows


def fit_table(rows: list[dict], dataset: str, shape: str) -> tuple[list[str], list[list[str]]]:
    header = ["method", "RMSE", "RMSE / RQ-KMeans", "perplexity L1", "Gini L1", "unique IDs", "Δ unique",
              "K_eff L1", "overlap L1", "level-1 lift", "Δ lift", "full-ID lift", "converged", "fit s"]
    table = []
    for row in (r for r in rows if r["dataset"] == dataset and r["shape"] == shape):
        diffs = row["vs_baseline"] or {}
        table.append([row["method"], format_mean_std(row["rmse"], 5), f"{row.get('rmse_ratio', math.nan):.4f}",
                      format_mean_std(row["perplexity_l1"], 1), format_mean_std(row["gini_l1"], 3), format_mean_std(row["unique_id_rate"], 4),
                      format_difference(diffs.get("unique_id_rate")), format_mean_std(row["effective_capacity_l1"], 1),
                      format_mean_std(row["overlap_l1"], 4), format_mean_std(row["level1_lift"], 3), format_difference(diffs.get("level1_lift"), 3),
                      format_mean_std(row["full_id_lift"], 2), f"{row['converged_share']:.0%}",
                      format_mean_std(row["fit_seconds"], 1)])
    return header, table


def ctr_table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    header = ["model", "method", "test AUC", "Δ AUC", "cold AUC", "Δ cold AUC", "LogLoss"]
    table = []
    for row in rows:
        diffs = row["vs_baseline"] or {}
        table.append([row["model"], row["method"], format_mean_std(row["auc"]), format_difference(diffs.get("auc")),
                      format_mean_std(row["cold_auc"]), format_difference(diffs.get("cold_auc")), format_mean_std(row["logloss"])])
    return header, table


def selection_table(selection: dict) -> tuple[list[str], list[list[str]]]:
    header = ["variant", "mean RMSE / RQ-KMeans", "qualifies", "worse than RQ-KMeans beyond noise"]
    rows = [[name, f"{v['rmse_ratio']:.4f}", "yes" if v["qualifies"] else "no", "; ".join(v["worse"]) or "-"]
            for name, v in sorted(selection["verdicts"].items(), key=lambda item: item[1]["rmse_ratio"])]
    return header, rows


def plot_variants(rows: list[dict], dataset: str, path: Path) -> None:
    """RMSE relative to RQ-KMeans and level-1 perplexity of every method, one bar group per shape."""
    from matplotlib.figure import Figure

    selected = [r for r in rows if r["dataset"] == dataset]
    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    figure = Figure(figsize=(13, 4.2))
    axes = figure.subplots(1, 2)
    width = 0.8 / max(len(shapes), 1)
    for index, shape in enumerate(shapes):
        lookup = {r["method"]: r for r in selected if r["shape"] == shape}
        x = np.arange(len(methods)) + index * width
        axes[0].bar(x, [lookup[m].get("rmse_ratio", np.nan) if m in lookup else np.nan for m in methods],
                    width=width, label=shape, color=f"C{index}")
        axes[1].bar(x, [lookup[m]["perplexity_l1"][0] / int(shape.split("x")[1]) if m in lookup else np.nan
                        for m in methods], width=width, label=shape, color=f"C{index}")
    for axis, title in zip(axes, ("RMSE / RQ-KMeans (lower is better)", "level-1 perplexity / K (higher = more even)")):
        axis.set_xticks(np.arange(len(methods)) + 0.4 - width / 2)
        axis.set_xticklabels(methods, rotation=35, ha="right", fontsize=8)
        axis.set_title(f"{dataset}: {title}", fontsize=10)
        axis.legend(fontsize=8)
    axes[0].axhline(1.0, color="black", linewidth=0.8)
    finite = [r["rmse_ratio"] for r in selected if not math.isnan(r.get("rmse_ratio", math.nan))]
    if finite:  # a ratio axis around 1: the bars show relative differences, marked by the line at 1
        axes[0].set_ylim(min(finite + [1.0]) - 0.01, max(finite + [1.0]) + 0.01)
    save_figure(figure, path)


def write_variants_report(directory: Path, results: dict) -> dict:
    """Write report.md, report.html and the plots; return the summary stored in results.json."""
    config = results["config"]
    rows = aggregate_fits(results["fits"])
    selection = select_default(rows, exclude=set(config.get("kmeans_variants") or {}))
    ctr_rows = aggregate_ctr(results["ctr_runs"])
    blocks: list[tuple] = [
        ("h", 1, f"RQ-GMM variants against RQ-KMeans: {config['name']}"),
        ("p", "Catalogues: " + "; ".join(f"{name} ({c['items']:,} items, {c['dim']}-d MiniLM embeddings"
                                         f" ({c.get('embedding', 'normalized')}), labels:"
                                         f" {c['labels']})" for name, c in results["catalogues"].items())
              + f". Seeds {config['seeds']}. Total run time {results['seconds'] / 60:.1f} min (stages finished"
              " earlier are loaded, not re-run)."),
        ("p", "Variants (RQGMM parameters on top of " + (str(config["common"]) or "the defaults") + "): "
              + "; ".join(f"{name} {params or '{}'}" for name, params in config["variants"].items())
              + f". Baseline RQ-KMeans {config['baseline'] or '{}'}"
              + ("; RQ-KMeans variants (RQKMeans parameters on top of the baseline; not candidates for RQGMM's"
                 " defaults): " + "; ".join(f"{name} {params or '{}'}" for name, params in
                                           config["kmeans_variants"].items()) if config.get("kmeans_variants") else "")
              + "."),
        ("p", "Mean ± std over seeds. Δ columns: paired by seed against RQ-KMeans; * beyond seed noise (more"
              " than two standard errors). Lift: P(two items with the same level-1 code share a label) / P(two"
              " random items do). K_eff: effective capacity (codes a perturbed item keeps), overlap = 1 / K_eff."
              " Perplexity: exp of the entropy of level-1 code usage; Gini: inequality of level-1 code usage (0:"
              " even). Unique IDs: share of items whose full ID no other item has. Converged: share of fits whose"
              " every level met its tolerance."),
        ("h", 2, "Selection rule (stated before the run)"),
        ("p", SELECTION_RULE),
        ("table", *selection_table(selection)),
        ("p", f"Chosen default: {selection['chosen'] or 'none qualifies with a lower RMSE than the paper variant; the defaults stay the paper' + chr(39) + 's'}."),
    ]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        plot_variants(rows, dataset, directory / f"variants_{dataset}.png")
        blocks += [("h", 2, dataset), ("img", f"variants_{dataset}.png", f"variants on {dataset}")]
        for shape in dict.fromkeys(r["shape"] for r in rows if r["dataset"] == dataset):
            blocks += [("h", 3, f"{dataset}, {shape}"), ("table", *fit_table(rows, dataset, shape))]
    if ctr_rows:
        ctr = config["ctr"]
        blocks += [("h", 2, f"CTR on MovieLens-100k, {ctr['split']} split"),
                   ("p", f"Semantic IDs ({ctr['features']}) of each method at {ctr['shape'][0]}x{ctr['shape'][1]},"
                         " fitted with the run's seed; test figures. AUC: area under the ROC curve; LogLoss: mean"
                         " binary cross-entropy; cold AUC: test rows whose item never appears in training."),
                   ("table", *ctr_table(ctr_rows))]
    write_pages(directory, blocks, f"rqgmm variants study {config['name']}")
    return {"fits": rows, "selection": selection, "ctr": ctr_rows,
            "tables": {"selection": selection_table(selection), "ctr": ctr_table(ctr_rows),
                       **{f"{r['dataset']} {r['shape']}": fit_table(rows, r["dataset"], r["shape"]) for r in rows}}}
