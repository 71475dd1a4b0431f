"""Report of the paper study: tokenizer table, CTR tables per split, AUC plots, the RQ-GMM vs
RQ-KMeans tally; markdown, HTML and the summary stored in results.json."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rqgmm.experiment.engine import compute_minutes
from rqgmm.experiment.pages import save_figure, write_pages
from rqgmm.experiment.stats import (
    by_seed,
    format_difference,
    format_mean_std,
    mark_significant,
    mean_std,
    paired_difference,
)

# Figures the RQ-GMM paper reports (arXiv 2602.12593, as summarized second-hand), on Amazon data.
PAPER_FIGURES = [
    ("Appliances RMSE", "VQ-VAE 0.614, RQ-VAE 0.173, RQ-KMeans 0.121, RQ-GMM 0.117"),
    ("Appliances utilization per level", "RQ-VAE 73.9/71.8%, RQ-KMeans 86.7/87.1%, RQ-GMM 89.5/89.3%"),
    ("Beauty RMSE", "RQ-KMeans 0.132, RQ-GMM 0.127"),
    ("AUC IPNN w/ Emb (Appliances/Beauty/Automotive)", "RQ-KMeans 0.680/0.628/0.647, RQ-GMM 0.688/0.634/0.654"),
    ("AUC FNN w/o Emb (Appliances/Beauty/Automotive)", "RQ-KMeans 0.665/0.613/0.632, RQ-GMM 0.674/0.619/0.638"),
]
METRICS = ("auc", "logloss", "gauc", "cold_auc", "tail_auc")
COMPARED = ("auc", "cold_auc", "tail_auc")
CTR_DEFINITIONS = (
    "Test figures, mean ± std over seeds. AUC: area under the ROC curve; LogLoss: mean binary cross-entropy;"
    " GAUC: AUC per user, weighted by the user's test rows; cold AUC: test rows whose item never appears in"
    " training; tail AUC: test rows whose item has at most the tail threshold of training interactions (cold"
    " items included). Δ columns are paired by seed (Δ vs id: against the same model with plain item IDs and the"
    " same item-ID dropout; Δ vs emb: sid+emb against the raw embedding alone; Δ vs RQ-KMeans: RQ-GMM IDs"
    " against RQ-KMeans IDs of the same shape); * marks a difference that a two-sided paired t-test finds"
    " significant after Holm's correction over every Δ of the split's table (family-wise false-positive rate"
    " at most 5%).")
TOKENIZER_DEFINITIONS = (
    "RMSE: root mean squared reconstruction error per coordinate (by level: after each level's codeword is"
    " added). Utilization: share of a level's codes used. Unique IDs: share of items whose full ID no other"
    " item has. Perplexity: exp of the entropy of code usage per level (K for perfectly even use). K_eff:"
    " effective capacity, the codes an item keeps when its embedding is perturbed (1 / expected overlap). Lift:"
    " P(two items with the same level-1 code share a label) / P(two random items do); on MovieLens the item"
    " text that is embedded names the genres, so genre lift and purity partly measure the text encoder, not"
    " only the tokenizer. kNN purity: share of an item's nearest neighbours by ID prefix that share its label. Converged: levels whose EM / Lloyd met its"
    " tolerance (neural tokenizers: -).")


def ctr_definitions(n_seeds: int) -> str:
    """The CTR column definitions, honest about a single seed (no spread, no paired test)."""
    if n_seeds > 1:
        return CTR_DEFINITIONS
    return (CTR_DEFINITIONS.replace("Test figures, mean ± std over seeds.", "Test figures of a single seed (no spread"
                                    " over seeds is measured, and no difference is marked significant).")
            .replace(" Δ columns are paired by seed", " Δ columns are differences"))


def _test(metric: str):
    return lambda record: record["test"].get(metric)


def aggregate_ctr(runs: list[dict]) -> list[dict]:
    """One row per (split, model, features): mean/std per metric, paired differences against the
    same model's ``id`` features and against RQ-KMeans IDs of the same shape."""
    grouped = by_seed(runs, lambda run: (run["split"], run["model"], run["features"]))
    rows = []
    for (split, model, features), seeds in grouped.items():
        row = {"split": split, "model": model, "features": features, "seeds": len(seeds),
               "samples_per_second": float(np.mean([r["samples_per_second"] for r in seeds.values()]))}
        for metric in METRICS:
            row[metric] = mean_std([r["test"].get(metric) for r in seeds.values()])
        row["cold_rows"] = next(iter(seeds.values()))["test"].get("cold_rows")
        row["validation_score"] = mean_std([_validation_score(r) for r in seeds.values()])[0]
        spec, _, axes = features.partition(" ")
        dropout = next((a for a in axes.split() if a.startswith("drop=")), None)
        id_label = "id" + (f" {dropout}" if dropout else "")
        baseline = grouped.get((split, model, id_label))
        row["vs_id"] = None if features == id_label or baseline is None else {
            m: paired_difference(seeds, baseline, _test(m)) for m in COMPARED}
        kind, _, tokenizer = spec.partition(":")
        emb_label = "emb" + (f" {dropout}" if dropout else "")
        emb = grouped.get((split, model, emb_label))
        # the paper's claim: discretized IDs add to the raw embedding (sid+emb against emb)
        row["vs_emb"] = None if kind != "sid+emb" or emb is None else {
            m: paired_difference(seeds, emb, _test(m)) for m in COMPARED}
        reference = None
        if tokenizer and not tokenizer.startswith("rq-kmeans"):
            other = f"{kind}:rq-kmeans-{tokenizer.split('-')[-1]}" + (f" {axes}" if axes else "")
            reference = grouped.get((split, model, other))
        row["vs_rq_kmeans"] = None if reference is None else {
            m: paired_difference(seeds, reference, _test(m)) for m in COMPARED}
        rows.append(row)
    for split in dict.fromkeys(r["split"] for r in rows):  # one family of tests per split's table
        mark_significant([(r[key] or {}).get(m) for r in rows if r["split"] == split
                          for key in ("vs_id", "vs_emb", "vs_rq_kmeans") for m in COMPARED])
    return rows


def _validation_score(record: dict) -> float | None:
    """What settings are selected on: validation cold-item AUC where the validation part has cold
    rows, else validation AUC (never a test figure)."""
    validation = record.get("validation") or {}
    return validation.get("cold_auc") if validation.get("cold_auc") is not None else validation.get("auc")


def headline(runs: list[dict], split: str) -> dict:
    """Per model: the best id, emb, sid and sid+emb settings (tokenizer, representation, item-ID
    dropout, semantic-ID variant), each selected on validation, the feature set to recommend (the
    best of those on validation, never on test), and the paired tests of sid against id and sid+emb
    against emb on test cold and tail AUC (Holm-corrected over this table)."""
    grouped = by_seed([r for r in runs if r["split"] == split], lambda r: (r["model"], r["features"]))
    rows = []
    for model in dict.fromkeys(r["model"] for r in runs if r["split"] == split):
        best = {}
        for kind in ("id", "emb", "sid", "sid+emb"):
            candidates = [(features, seeds) for (m, features), seeds in grouped.items()
                          if m == model and features.split(" ")[0].split(":")[0] == kind]
            if candidates:
                best[kind] = max(candidates, key=lambda item: mean_std(_validation_score(r)
                                                                        for r in item[1].values())[0])
        validation = {kind: mean_std(_validation_score(r) for r in seeds.values())[0]
                      for kind, (_, seeds) in best.items()}
        row = {"model": model, "chosen": {kind: features for kind, (features, _) in best.items()},
               "validation": validation, "recommended": max(validation, key=validation.get) if validation else None}
        for kind, (_, seeds) in best.items():
            row[kind] = {m: mean_std(r["test"].get(m) for r in seeds.values()) for m in ("auc", "cold_auc", "tail_auc")}
        for name, (a, b) in {"sid_vs_id": ("sid", "id"), "sid_emb_vs_emb": ("sid+emb", "emb")}.items():
            if a in best and b in best:
                row[name] = {m: paired_difference(best[a][1], best[b][1], _test(m)) for m in ("cold_auc", "tail_auc")}
        rows.append(row)
    mark_significant([row.get(name, {}).get(m) for row in rows for name in ("sid_vs_id", "sid_emb_vs_emb")
                      for m in ("cold_auc", "tail_auc")])
    return {"split": split, "rows": rows}


NEURAL_METHODS = ("rq-vae", "vq-vae")


def tokenizer_family(features: str) -> str | None:
    """"sid+emb:rq-kmeans-2x128 level" -> "rq-kmeans"; None without a tokenizer."""
    tokenizer = features.split(" ")[0].partition(":")[2]
    return tokenizer.rsplit("-", 1)[0] if tokenizer else None


def family_headline(runs: list[dict], split: str) -> dict:
    """Per model and tokenizer family (rq-kmeans, rq-gmm, rq-vae, ...): the family's best sid
    setting on validation against id, paired by seed on test cold AUC (Holm over this table).
    A single overall winner can flip between families whose figures are within noise of each
    other (and a neural tokenizer's fit differs across machines); this table shows each."""
    grouped = by_seed([r for r in runs if r["split"] == split], lambda r: (r["model"], r["features"]))
    rows = []
    for model in dict.fromkeys(r["model"] for r in runs if r["split"] == split):
        plain = [(f, seeds) for (m, f), seeds in grouped.items() if m == model and f.split(" ")[0] == "id"]
        if not plain:
            continue
        id_seeds = max(plain, key=lambda item: mean_std(_validation_score(r) for r in item[1].values())[0])[1]
        families: dict[str, list] = {}
        for (m, features), seeds in grouped.items():
            if m == model and features.split(" ")[0].split(":")[0] == "sid":
                families.setdefault(tokenizer_family(features), []).append((features, seeds))
        for family, candidates in families.items():
            features, seeds = max(candidates, key=lambda item: mean_std(_validation_score(r)
                                                                        for r in item[1].values())[0])
            rows.append({"model": model, "family": family, "chosen": features,
                         "cold_auc": mean_std(r["test"].get("cold_auc") for r in seeds.values()),
                         "vs_id": paired_difference(seeds, id_seeds, _test("cold_auc")),
                         "one_fit": family in NEURAL_METHODS})
    mark_significant([row["vs_id"] for row in rows])
    return {"split": split, "rows": rows}


def family_table(summary: dict) -> tuple[list[str], list[list[str]]]:
    header = ["model", "tokenizer family", "cold AUC: sid", "Δ sid vs id", "setting chosen on validation", "note"]
    body = [[row["model"], row["family"], format_mean_std(row["cold_auc"]), _diff(row["vs_id"]), row["chosen"],
             "one neural fit: differs across machines" if row["one_fit"] else ""]
            for row in summary["rows"]]
    return header, body


def headline_table(summary: dict) -> tuple[list[str], list[list[str]]]:
    header = ["model", "cold AUC: id", "emb", "sid", "sid+emb", "Δ sid vs id", "Δ sid+emb vs emb",
              "tail AUC Δ sid vs id", "recommended (validation)", "settings chosen on validation (sid; sid+emb)"]
    body = []
    for row in summary["rows"]:
        cold = {k: format_mean_std(row[k]["cold_auc"]) if k in row else "-" for k in ("id", "emb", "sid", "sid+emb")}
        body.append([row["model"], cold["id"], cold["emb"], cold["sid"], cold["sid+emb"],
                     _diff((row.get("sid_vs_id") or {}).get("cold_auc")),
                     _diff((row.get("sid_emb_vs_emb") or {}).get("cold_auc")),
                     _diff((row.get("sid_vs_id") or {}).get("tail_auc")), row.get("recommended") or "-",
                     f"{row['chosen'].get('sid', '-')}; {row['chosen'].get('sid+emb', '-')}"])
    return header, body


def _diff(diff: dict | None) -> str:
    return format_difference(diff, flag="significant")


def tokenizer_table(tokenizers: dict[str, dict]) -> tuple[list[str], list[list[str]]]:
    header = ["tokenizer", "RMSE", "RMSE by level", "utilization", "unique IDs", "perplexity", "K_eff",
              "label lift L1", "kNN purity", "converged", "fit s"]
    rows = []
    for name, t in tokenizers.items():
        converged = t.get("converged_")
        rows.append([name, f"{t['rmse']:.5f}", " / ".join(f"{v:.5f}" for v in t["rmse_by_level"]),
                     " / ".join(f"{u:.1%}" for u in t["utilization"]), f"{t['unique_id_rate']:.1%}",
                     " / ".join(f"{p:.1f}" for p in t["perplexity"]),
                     " / ".join(f"{k:.1f}" for k in t.get("effective_capacity", [])) or "-",
                     f"{t['level1_lift']:.2f}x" if "level1_lift" in t else "-",
                     f"{t['knn_purity']:.3f}" if "knn_purity" in t else "-",
                     "-" if converged is None else f"{sum(converged)}/{len(converged)}",
                     f"{t['fit_seconds']:.1f}"])
    return header, rows


def ctr_table(rows: list[dict], split: str) -> tuple[list[str], list[list[str]]]:
    header = ["model", "features", "test AUC", "Δ vs id", "Δ vs RQ-KMeans", "LogLoss", "GAUC", "cold AUC",
              "Δ cold vs id", "Δ cold vs emb", "tail AUC", "Δ tail vs id", "samples/s"]
    body = []
    for row in rows:
        if row["split"] != split:
            continue
        vs_id, vs_km, vs_emb = row["vs_id"] or {}, row["vs_rq_kmeans"] or {}, row.get("vs_emb") or {}
        body.append([row["model"], row["features"], format_mean_std(row["auc"]), _diff(vs_id.get("auc")),
                     _diff(vs_km.get("auc")), format_mean_std(row["logloss"]), format_mean_std(row["gauc"]),
                     format_mean_std(row["cold_auc"]), _diff(vs_id.get("cold_auc")), _diff(vs_emb.get("cold_auc")),
                     format_mean_std(row["tail_auc"]), _diff(vs_id.get("tail_auc")),
                     f"{row['samples_per_second']:,.0f}"])
    return header, body


def rq_gmm_verdict(rows: list[dict]) -> dict:
    """RQ-GMM vs RQ-KMeans comparisons (test AUC, paired by seed): wins and losses significant by
    the Holm-corrected paired t-test, and ties."""
    tally = {"wins": [], "losses": [], "ties": []}
    for row in rows:
        diff = (row["vs_rq_kmeans"] or {}).get("auc")
        if diff is None or not row["features"].split(" ")[0].split(":")[-1].startswith("rq-gmm"):
            continue
        label = f"{row['split']}/{row['model']}/{row['features']} ({diff['mean']:+.4f})"
        if not diff.get("significant"):
            tally["ties"].append(label)
        else:
            tally["wins" if diff["mean"] > 0 else "losses"].append(label)
    return tally


def plot_auc(rows: list[dict], split: str, path: Path) -> None:
    """Test AUC per feature set and backbone as dots with their seed interval (mean ± std); each
    backbone keeps one colour."""
    from matplotlib.figure import Figure

    selected = [r for r in rows if r["split"] == split]
    models = list(dict.fromkeys(r["model"] for r in rows))
    features = list(dict.fromkeys(r["features"] for r in selected))
    figure = Figure(figsize=(max(6.0, 0.35 * len(features) * len(models) + 3), 3.8))
    axis = figure.subplots()
    width = 0.8 / max(len(models), 1)
    for index, model in enumerate(models):
        lookup = {r["features"]: r for r in selected if r["model"] == model}
        if not lookup:
            continue
        x = [i + index * width for i, f in enumerate(features) if f in lookup]
        means = [lookup[f]["auc"][0] for f in features if f in lookup]
        stds = [np.nan_to_num(lookup[f]["auc"][1]) for f in features if f in lookup]
        axis.errorbar(x, means, yerr=stds, fmt="o", capsize=3, label=model, color=f"C{index}")
    axis.set_xticks([i + 0.4 - width / 2 for i in range(len(features))])
    axis.set_xticklabels(features, rotation=35, ha="right", fontsize=8)
    one_seed = all(np.isnan(r["auc"][1]) for r in selected)
    axis.set_ylabel("test AUC (one seed)" if one_seed else "test AUC (dot: mean; bar: ± std over seeds)")
    axis.set_title(f"CTR test AUC by features and backbone, {split} split")
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize=8, ncol=len(models))
    save_figure(figure, path)


def write_paper_report(directory: Path, results: dict) -> dict:
    """Write report.md, report.html and the AUC plots; return the summary stored in results.json."""
    rows = aggregate_ctr(results["ctr_runs"])
    config, data = results["config"], results["dataset"]
    verdict = rq_gmm_verdict(rows)
    blocks: list[tuple] = [
        ("h", 1, f"rqgmm offline study: {config['name']}"),
        ("p", f"Data set {data['name']}: {data['interactions']:,} interactions, {data['users']:,} users,"
              f" {data['items']:,} items ({data['embedding_dim']}-d content embeddings), positive rate"
              f" {data['positive_rate']:.3f}. Seeds {config['seeds']}; splits {config['splits']}."
              f" {compute_minutes(results):.1f} min of fitting and training, summed over jobs; this invocation took"
              f" {results['seconds'] / 60:.1f} min (stages finished earlier are loaded, not re-run)."),
        ("h", 2, "Tokenizers"),
        ("p", TOKENIZER_DEFINITIONS),
        ("table", *tokenizer_table(results["tokenizers"])),
        ("img", "quality/reconstruction.png", "reconstruction error by level"),
        ("img", "quality/code_usage.png", "items per code"),
    ]
    if rows:  # a study without CTR models reports quality only
        blocks += [("h", 2, "CTR"), ("p", ctr_definitions(len(config["seeds"])))]
    headlines, families = {}, {}
    for split in config["splits"]:
        if not any(r["split"] == split for r in rows):
            continue
        headlines[split] = headline(results["ctr_runs"], split)
        families[split] = family_headline(results["ctr_runs"], split)
        plot_auc(rows, split, directory / f"auc_{split}.png")
        blocks += [("h", 3, f"{split} split"),
                   ("p", "Headline: for each model, the best setting of each feature set (tokenizer, representation,"
                         " item-ID dropout, semantic-ID variant) chosen on this data set's validation data (cold-item"
                         " AUC where validation has cold rows), then compared on test; the recommended feature set"
                         " is the best of those on validation; * = significant by paired t-test, Holm-corrected"
                         " over this table."),
                   ("table", *headline_table(headlines[split])),
                   *([("p", "Each tokenizer family's best semantic-ID setting on validation against plain item IDs"
                               " (a single overall winner can flip between families within noise of each other,"
                               " and a neural tokenizer is fitted once, so its figures differ across machines):"),
                      ("table", *family_table(families[split]))]
                     if len({row["family"] for row in families[split]["rows"]}) > 1 else []),
                   ("table", *ctr_table(rows, split)),
                   ("img", f"auc_{split}.png", f"AUC {split}")]
    if rows:
        blocks += [("h", 2, "RQ-GMM against RQ-KMeans"),
                   ("p", f"Test AUC comparisons with the same backbone, features and split: RQ-GMM ahead"
                         f" significantly in {len(verdict['wins'])}, behind significantly in {len(verdict['losses'])},"
                         f" no significant difference in {len(verdict['ties'])}."),
                   *[("p", f"{key}: " + ("; ".join(items) or "none")) for key, items in verdict.items()]]
    blocks += [("h", 2, "The paper's figures (different data: Amazon reviews, BERT embeddings)"),
               ("table", ["figure", "reported"], [list(item) for item in PAPER_FIGURES])]
    write_pages(directory, blocks, f"rqgmm study {config['name']}")
    return {"ctr": rows, "rq_gmm_vs_rq_kmeans": verdict, "headline": headlines,
            "tables": {"tokenizers": tokenizer_table(results["tokenizers"]),
                       **{f"headline_{split}": headline_table(h) for split, h in headlines.items()},
                       **{f"families_{split}": family_table(f) for split, f in families.items()},
                       **{f"ctr_{split}": ctr_table(rows, split) for split in config["splits"]}}}
