"""Report of the stable-IDs study: churn, quality and CTR cost of each refit strategy."""

from __future__ import annotations

import math
from pathlib import Path

from rqgmm.experiment.pages import write_pages
from rqgmm.experiment.stats import (
    by_seed,
    format_difference,
    format_mean_std,
    mark_significant,
    mean_std,
    paired_difference,
)

DEFINITIONS = (
    "v1: the tokenizer fitted on the first part of the catalogue in its natural order; v2: refitted on all"
    " of it by the strategy (naive: a fresh fit; aligned: warm start + components matched by codeword"
    " distance; co-assignment: warm start + components matched by the rows both versions assign alike;"
    " warm-start: the warm start alone; frozen: v1 encodes the new items; fresh-aligned: a fresh fit whose"
    " components are renumbered to match v1's by co-assignment). Churn: share of the items v1"
    " already had whose level-1 code / level-l prefix / full ID differs between v1 and v2. RMSE: root mean"
    " squared reconstruction error per coordinate over every item; vs naive: RMSE / the naive refit's"
    " RMSE - 1. Unique IDs: share of items whose full ID no other item has. CTR: a model trained with v1's"
    " IDs and served v2's IDs without retraining; Δ AUC against the same model served v1's IDs, paired"
    " by seed; * marks a difference that a two-sided paired t-test finds significant after Holm's"
    " correction over the table. Mean ± std over seeds."
)


def _pct(pair: tuple[float, float]) -> str:
    mean, std = pair
    if math.isnan(mean):
        return "-"
    return f"{mean:.1%}" if math.isnan(std) else f"{mean:.1%} ± {std:.1%}"


def churn_tables(results: dict) -> dict[str, tuple[list, list]]:
    """One table per catalogue: tokenizer × strategy."""
    config = results["config"]
    tables = {}
    for catalogue in config["catalogues"]:
        records = [r for r in results["fits"] if r["catalogue"] == catalogue]
        header = ["tokenizer", "strategy", "level-1 churn", "prefix churn by level", "full-ID churn", "RMSE",
                  "RMSE vs naive", "unique IDs", "refit s"]
        rows = []
        for tokenizer in dict.fromkeys(r["tokenizer"] for r in records):
            mine = [r for r in records if r["tokenizer"] == tokenizer]
            for strategy in config["strategies"]:
                values = [r["strategies"][strategy] for r in mine]
                levels = len(values[0]["prefix_churn"])
                by_level = " / ".join(f"{mean_std(v['prefix_churn'][level] for v in values)[0]:.1%}"
                                      for level in range(levels))
                ratio = mean_std(r["strategies"][strategy]["rmse"] / r["strategies"]["naive"]["rmse"] - 1
                                 for r in mine)
                rows.append([tokenizer, strategy, _pct(mean_std(v["prefix_churn"][0] for v in values)), by_level,
                             _pct(mean_std(v["full_id_churn"] for v in values)),
                             format_mean_std(mean_std(v["rmse"] for v in values), 5),
                             f"{ratio[0]:+.2%}", _pct(mean_std(v["unique_id_rate"] for v in values)),
                             f"{mean_std(v['fit_seconds'] for v in values)[0]:.1f}"])
        tables[f"churn_{catalogue}"] = (header, rows)
    return tables


def ctr_table(results: dict) -> tuple[list, list]:
    """The CTR model trained with v1 IDs, served each version's IDs."""
    config, runs = results["config"], results["ctr_runs"]
    header = ["tokenizer", "served IDs", "test AUC", "Δ AUC vs v1", "cold AUC", "Δ cold AUC vs v1"]
    grouped = by_seed(runs, lambda r: (r["tokenizer"],))
    rows, diffs = [], []
    for (tokenizer,), seeds in grouped.items():
        for strategy in ["v1", *config["strategies"]]:
            served = {seed: record["served"][strategy] for seed, record in seeds.items()}
            v1 = {seed: record["served"]["v1"] for seed, record in seeds.items()}
            auc_diff = None if strategy == "v1" else paired_difference(served, v1, lambda s: s["auc"])
            cold_diff = None if strategy == "v1" else paired_difference(served, v1, lambda s: s["cold_auc"])
            diffs += [auc_diff, cold_diff]
            rows.append([tokenizer, strategy, format_mean_std(mean_std(s["auc"] for s in served.values())),
                         auc_diff, format_mean_std(mean_std(s["cold_auc"] for s in served.values())), cold_diff])
    mark_significant(diffs)
    for row in rows:
        row[3] = format_difference(row[3], flag="significant")
        row[5] = format_difference(row[5], flag="significant")
    return header, rows


def headline_table(results: dict, ctr: tuple[list, list] | None) -> tuple[list, list]:
    """Per catalogue and tokenizer, each strategy's level-1 and full-ID churn, RMSE against the
    naive refit and (ml-100k) the CTR model's AUC change."""
    ctr_delta = {}
    if ctr is not None:
        for tokenizer, strategy, _, delta, _, cold in ctr[1]:
            ctr_delta[tokenizer, strategy] = (delta, cold)
    header = ["catalogue", "tokenizer", "strategy", "level-1 churn", "full-ID churn", "RMSE vs naive",
              "CTR Δ AUC (v1 model)", "CTR Δ cold AUC"]
    rows = []
    for name, (_, table) in churn_tables(results).items():
        catalogue = name[len("churn_"):]
        for tokenizer, strategy, level1, _, full, _, ratio, _, _ in table:
            delta, cold = ctr_delta.get((tokenizer, strategy), ("", "")) if catalogue.startswith("ml-100k") \
                else ("", "")
            rows.append([catalogue, tokenizer, strategy, level1.split(" ±")[0], full.split(" ±")[0], ratio, delta,
                         cold])
    return header, rows


def write_stable_ids_report(directory: Path, results: dict) -> dict:
    """report.md / report.html; returns the summary (its tables)."""
    tables = churn_tables(results)
    ctr = ctr_table(results) if results["ctr_runs"] else None
    summary_tables = {"headline": headline_table(results, ctr), **tables}
    if ctr is not None:
        summary_tables["ctr"] = ctr
    blocks = [("h", 1, f"Stable IDs: {results['config']['name']}"), ("p", DEFINITIONS)]
    for name, (header, rows) in summary_tables.items():
        blocks += [("h", 2, name.replace("_", " ")), ("table", header, rows)]
    write_pages(Path(directory), blocks, f"rqgmm stable IDs: {results['config']['name']}")
    return {"tables": summary_tables}
