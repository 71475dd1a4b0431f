"""The experiment's report: aggregated tables, plots, ``report.md`` and a self-contained ``report.html``.

CTR figures are aggregated over seeds as mean ± sample standard deviation. Differences to the
``id`` baseline and to RQ-KMeans are paired by seed; a difference "exceeds seed noise" when its
mean is more than twice its standard error (std of the paired differences / sqrt(seeds)).
"""

from __future__ import annotations

import base64
import html
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from rqgmm.io.atomic import atomic_path

# Figures the RQ-GMM paper reports (arXiv 2602.12593, as summarized second-hand), on Amazon data.
PAPER_FIGURES = [
    ("Appliances RMSE", "VQ-VAE 0.614, RQ-VAE 0.173, RQ-KMeans 0.121, RQ-GMM 0.117"),
    ("Appliances utilization per level", "RQ-VAE 73.9/71.8%, RQ-KMeans 86.7/87.1%, RQ-GMM 89.5/89.3%"),
    ("Beauty RMSE", "RQ-KMeans 0.132, RQ-GMM 0.127"),
    ("AUC IPNN w/ Emb (Appliances/Beauty/Automotive)", "RQ-KMeans 0.680/0.628/0.647, RQ-GMM 0.688/0.634/0.654"),
    ("AUC FNN w/o Emb (Appliances/Beauty/Automotive)", "RQ-KMeans 0.665/0.613/0.632, RQ-GMM 0.674/0.619/0.638"),
]
METRICS = ("auc", "logloss", "gauc", "cold_auc")


def _mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def _paired(rows_a: dict[int, dict], rows_b: dict[int, dict], metric: str) -> dict | None:
    seeds = sorted(set(rows_a) & set(rows_b))
    diffs = [rows_a[s]["test"][metric] - rows_b[s]["test"][metric] for s in seeds
             if rows_a[s]["test"].get(metric) is not None and rows_b[s]["test"].get(metric) is not None]
    if not diffs:
        return None
    mean, std = _mean_std(diffs)
    std = 0.0 if math.isnan(std) else std
    noise = 2 * std / math.sqrt(len(diffs)) if len(diffs) > 1 else math.inf
    return {"mean": mean, "std": std, "seeds": len(diffs), "exceeds_noise": bool(abs(mean) > noise)}


def aggregate_ctr(runs: list[dict]) -> list[dict]:
    """One row per (split, model, features): mean/std per metric, paired differences."""
    grouped: dict[tuple, dict[int, dict]] = defaultdict(dict)
    for run in runs:
        grouped[(run["split"], run["model"], run["features"])][run["seed"]] = run
    rows = []
    for (split, model, features), by_seed in grouped.items():
        row = {"split": split, "model": model, "features": features, "seeds": len(by_seed),
               "samples_per_second": float(np.mean([r["samples_per_second"] for r in by_seed.values()]))}
        for metric in METRICS:
            row[metric] = _mean_std([r["test"].get(metric) for r in by_seed.values()])
        row["cold_rows"] = next(iter(by_seed.values()))["test"].get("cold_rows")
        baseline = grouped.get((split, model, "id"))
        row["vs_id"] = None if features == "id" or baseline is None else {
            m: _paired(by_seed, baseline, m) for m in ("auc", "cold_auc")}
        kind, _, tokenizer = features.partition(":")
        reference = None
        if tokenizer and not tokenizer.startswith("rq-kmeans"):
            setting = tokenizer.split("-")[-1]
            reference = grouped.get((split, model, f"{kind}:rq-kmeans-{setting}"))
        row["vs_rq_kmeans"] = None if reference is None else {m: _paired(by_seed, reference, m)
                                                              for m in ("auc", "cold_auc")}
        rows.append(row)
    return rows


def _fmt(pair: tuple[float, float], digits: int = 4) -> str:
    mean, std = pair
    if math.isnan(mean):
        return "-"
    return f"{mean:.{digits}f}" if math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _fmt_diff(diff: dict | None) -> str:
    if diff is None:
        return ""
    return f"{diff['mean']:+.4f}{' *' if diff['exceeds_noise'] else ''}"


def tokenizer_table(tokenizers: dict[str, dict]) -> tuple[list[str], list[list[str]]]:
    header = ["tokenizer", "RMSE", "RMSE by level", "utilization", "unique IDs", "perplexity", "K_eff",
              "genre lift L1", "kNN purity", "fit s"]
    rows = []
    for name, t in tokenizers.items():
        rows.append([name, f"{t['rmse']:.5f}", " / ".join(f"{v:.5f}" for v in t["rmse_by_level"]),
                     " / ".join(f"{u:.1%}" for u in t["utilization"]), f"{t['unique_id_rate']:.1%}",
                     " / ".join(f"{p:.1f}" for p in t["perplexity"]),
                     " / ".join(f"{k:.1f}" for k in t.get("effective_capacity", [])) or "-",
                     f"{t['level1_lift']:.2f}x" if "level1_lift" in t else "-",
                     f"{t['knn_purity']:.3f}" if "knn_purity" in t else "-", f"{t['fit_seconds']:.1f}"])
    return header, rows


def ctr_table(rows: list[dict], split: str) -> tuple[list[str], list[list[str]]]:
    header = ["model", "features", "test AUC", "Δ vs id", "Δ vs RQ-KMeans", "LogLoss", "GAUC", "cold AUC",
              "Δ cold vs id", "samples/s"]
    body = []
    for row in rows:
        if row["split"] != split:
            continue
        vs_id, vs_km = row["vs_id"] or {}, row["vs_rq_kmeans"] or {}
        body.append([row["model"], row["features"], _fmt(row["auc"]), _fmt_diff(vs_id.get("auc")),
                     _fmt_diff(vs_km.get("auc")), _fmt(row["logloss"]), _fmt(row["gauc"]), _fmt(row["cold_auc"]),
                     _fmt_diff(vs_id.get("cold_auc")), f"{row['samples_per_second']:,.0f}"])
    return header, body


def rq_gmm_verdict(rows: list[dict]) -> dict:
    """Count RQ-GMM vs RQ-KMeans comparisons (test AUC, paired by seed): wins, losses beyond noise, ties."""
    tally = {"wins": [], "losses": [], "ties": []}
    for row in rows:
        diff = (row["vs_rq_kmeans"] or {}).get("auc")
        if diff is None or not row["features"].split(":")[-1].startswith("rq-gmm"):
            continue
        label = f"{row['split']}/{row['model']}/{row['features']} ({diff['mean']:+.4f})"
        if not diff["exceeds_noise"]:
            tally["ties"].append(label)
        else:
            tally["wins" if diff["mean"] > 0 else "losses"].append(label)
    return tally


# ---------------------------------------------------------------------------- plots
def plot_auc(rows: list[dict], split: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    selected = [r for r in rows if r["split"] == split]
    models = list(dict.fromkeys(r["model"] for r in selected))
    features = list(dict.fromkeys(r["features"] for r in selected))
    figure, axis = plt.subplots(figsize=(max(6.0, 0.5 * len(features) * len(models) / 2 + 3), 3.8))
    width = 0.8 / max(len(models), 1)
    for index, model in enumerate(models):
        lookup = {r["features"]: r for r in selected if r["model"] == model}
        x = [i + index * width for i, f in enumerate(features) if f in lookup]
        means = [lookup[f]["auc"][0] for f in features if f in lookup]
        stds = [np.nan_to_num(lookup[f]["auc"][1]) for f in features if f in lookup]
        axis.bar(x, means, width=width, yerr=stds, capsize=2, label=model)
    axis.set_xticks([i + 0.4 - width / 2 for i in range(len(features))])
    axis.set_xticklabels(features, rotation=35, ha="right", fontsize=8)
    low = min((r["auc"][0] - np.nan_to_num(r["auc"][1]) for r in selected), default=0.5)
    high = max((r["auc"][0] + np.nan_to_num(r["auc"][1]) for r in selected), default=1.0)
    axis.set_ylim(low - 0.005, high + 0.005)
    axis.set_ylabel("test AUC (mean ± std over seeds)")
    axis.set_title(f"CTR test AUC by features and backbone, {split} split")
    axis.legend(fontsize=8, ncol=len(models))
    with atomic_path(path, overwrite=True) as tmp:
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)


# ---------------------------------------------------------------------------- documents
def _markdown(blocks: list[tuple]) -> str:
    out = []
    for kind, *content in blocks:
        if kind == "h":
            out.append("#" * content[0] + " " + content[1])
        elif kind == "p":
            out.append(content[0])
        elif kind == "table":
            header, rows = content
            out.append("| " + " | ".join(header) + " |")
            out.append("|" + "|".join("---" for _ in header) + "|")
            out += ["| " + " | ".join(row) + " |" for row in rows]
        elif kind == "img":
            out.append(f"![{content[1]}]({content[0]})")
        out.append("")
    return "\n".join(out)


def _html(blocks: list[tuple], directory: Path, title: str) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
             "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #ccc;"
             "padding:3px 8px;text-align:right}td:first-child,td:nth-child(2),th{text-align:left}"
             "th{background:#f3f3f3}img{max-width:100%}</style></head><body>"]
    for kind, *content in blocks:
        if kind == "h":
            parts.append(f"<h{content[0]}>{html.escape(content[1])}</h{content[0]}>")
        elif kind == "p":
            parts.append(f"<p>{html.escape(content[0])}</p>")
        elif kind == "table":
            header, rows = content
            parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows]
            parts.append("</table>")
        elif kind == "img":
            data = base64.b64encode((directory / content[0]).read_bytes()).decode()
            parts.append(f"<p><img alt='{html.escape(content[1])}' src='data:image/png;base64,{data}'></p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_experiment_report(directory: Path, results: dict) -> dict:
    """Write report.md, report.html and the AUC plots; return the summary stored in results.json."""
    rows = aggregate_ctr(results["ctr_runs"])
    config, data = results["config"], results["dataset"]
    verdict = rq_gmm_verdict(rows)
    blocks: list[tuple] = [
        ("h", 1, f"rqgmm offline experiment: {config['name']}"),
        ("p", f"Data set {data['name']}: {data['interactions']:,} interactions, {data['users']:,} users,"
              f" {data['items']:,} items ({data['embedding_dim']}-d content embeddings), positive rate"
              f" {data['positive_rate']:.3f}. Seeds {config['seeds']}; splits {config['splits']}. Total run time"
              f" {results['seconds'] / 60:.1f} min (stages finished earlier are loaded, not re-run)."),
        ("h", 2, "Tokenizers"),
        ("table", *tokenizer_table(results["tokenizers"])),
        ("img", "quality/reconstruction.png", "reconstruction error by level"),
        ("img", "quality/code_usage.png", "items per code"),
        ("h", 2, "CTR"),
        ("p", "Test figures, mean ± std over seeds. Δ columns are paired by seed; * marks a difference larger than"
              " twice its standard error (beyond seed noise). Cold AUC: test rows whose item never appears in"
              " training."),
    ]
    for split in config["splits"]:
        plot_auc(rows, split, directory / f"auc_{split}.png")
        blocks += [("h", 3, f"{split} split"), ("table", *ctr_table(rows, split)),
                   ("img", f"auc_{split}.png", f"AUC {split}")]
    blocks += [("h", 2, "RQ-GMM against RQ-KMeans"),
               ("p", f"Test AUC comparisons with the same backbone, features and split: RQ-GMM ahead beyond noise in"
                     f" {len(verdict['wins'])}, behind beyond noise in {len(verdict['losses'])}, within noise in"
                     f" {len(verdict['ties'])}."),
               *[("p", f"{key}: " + ("; ".join(items) or "none")) for key, items in verdict.items()],
               ("h", 2, "The paper's figures (different data: Amazon reviews, BERT embeddings)"),
               ("table", ["figure", "reported"], [list(item) for item in PAPER_FIGURES])]
    with atomic_path(directory / "report.md", overwrite=True) as tmp:
        tmp.write_text(_markdown(blocks))
    with atomic_path(directory / "report.html", overwrite=True) as tmp:
        tmp.write_text(_html(blocks, directory, f"rqgmm experiment {config['name']}"))
    return {"ctr": rows, "rq_gmm_vs_rq_kmeans": verdict,
            "tables": {"tokenizers": tokenizer_table(results["tokenizers"]),
                       **{f"ctr_{split}": ctr_table(rows, split) for split in config["splits"]}}}


def format_text_table(header: list[str], rows: list[list[str]]) -> str:
    """A fixed-width table for the terminal."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)
