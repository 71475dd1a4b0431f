"""Quality reports on disk: ``report.json`` plus PNG plots, and a terminal table."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from rqgmm.io import strict_json
from rqgmm.io.atomic import atomic_path
from rqgmm.metrics.quality import QualityReport, compare


def format_table(reports: Sequence[QualityReport]) -> str:
    """One column per tokenizer, one row per figure."""
    def per_level(values, fmt):
        return " / ".join(format(v, fmt) for v in values)

    rows: list[tuple[str, list[str]]] = [
        ("codes per level", [" / ".join(str(k) for k in r.codebook_sizes) for r in reports]),
        ("RMSE (per coord)", [f"{r.reconstruction.rmse[-1]:.5f}" for r in reports]),
        ("RMSE by level", [per_level(r.reconstruction.rmse, ".5f") for r in reports]),
        ("relative L2 error", [f"{r.reconstruction.relative_l2[-1]:.4f}" for r in reports]),
        ("utilization", [per_level([u.utilization * 100 for u in r.usage], ".1f") + " %" for r in reports]),
        ("perplexity", [per_level([u.perplexity for u in r.usage], ".1f") for r in reports]),
        ("entropy ratio", [per_level([u.entropy_ratio for u in r.usage], ".3f") for r in reports]),
        ("Gini", [per_level([u.gini for u in r.usage], ".3f") for r in reports]),
        ("largest code share", [per_level([u.max_share * 100 for u in r.usage], ".1f") + " %" for r in reports]),
        ("unique-ID rate", [f"{r.collisions.unique_id_rate:.1%}" for r in reports]),
        ("collision rate", [f"{r.collisions.collision_rate:.1%}" for r in reports]),
        ("largest bucket", [str(r.collisions.largest_bucket) for r in reports]),
    ]
    if all(r.overlap for r in reports):
        rows += [("keep rate (noise)", [per_level([v * 100 for v in r.overlap.keep_rate], ".1f") + " %"
                                         for r in reports]),
                 ("K_eff (codes)", [per_level(r.overlap.effective_capacity, ".1f") for r in reports])]
    if all(r.semantic for r in reports):
        rows += [("label lift, level 1", [f"{r.semantic.level1_lift:.2f}x" for r in reports]),
                 ("label lift, full ID", [f"{r.semantic.full_id_lift:.2f}x" for r in reports]),
                 ("kNN label purity", [f"{r.semantic.knn_purity:.3f}" for r in reports])]
    if any(r.log_likelihood for r in reports):
        rows.append(("mean log-lik / level", [per_level(r.log_likelihood, ".1f") if r.log_likelihood else "-"
                                             for r in reports]))
    if all(r.churn for r in reports):
        rows += [("prefix churn by level", [per_level([v * 100 for v in r.churn.prefix_changed], ".1f") + " %"
                                             for r in reports]),
                 ("full-ID churn", [f"{r.churn.full_id_changed:.1%}" for r in reports])]
    header = ["figure"] + [r.method for r in reports]
    widths = [max(len(header[0]), *(len(name) for name, _ in rows))]
    widths += [max(len(header[i + 1]), *(len(values[i]) for _, values in rows)) for i in range(len(reports))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip([name, *values], widths)) for name, values in rows]
    return "\n".join(lines)


def _label(axis, xlabel: str, ylabel: str, title: str) -> None:
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.legend(fontsize=8)


def _save_figure(figure, path: Path) -> None:
    with atomic_path(path, overwrite=True) as tmp:
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def write_report(reports: Sequence[QualityReport], directory: str | Path, *, extra: dict | None = None) -> list[Path]:
    """Write ``report.json`` and the plots for one or more tokenizers; return the paths written."""
    from matplotlib.figure import (
        Figure,  # the object-oriented API: the global backend is never switched
    )

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    payload = {"reports": [r.to_dict() for r in reports], **(extra or {})}
    if len(reports) > 1:
        payload["comparisons"] = [compare(reports[0], other) for other in reports[1:]]
    with atomic_path(directory / "report.json", overwrite=True) as tmp:
        tmp.write_text(strict_json.dumps(payload, indent=2))
    written.append(directory / "report.json")

    n_levels = max(len(r.codebook_sizes) for r in reports)
    colours = {report.method: f"C{index}" for index, report in enumerate(reports)}  # one colour per tokenizer
    figure = Figure(figsize=(4.2 * n_levels, 3.4))
    axes = figure.subplots(1, n_levels, squeeze=False)
    for level in range(n_levels):
        axis = axes[0, level]
        for report in reports:
            if level < len(report.usage_counts):
                counts = np.sort(np.asarray(report.usage_counts[level]))[::-1]
                share = np.cumsum(counts) / max(counts.sum(), 1)
                axis.plot(np.arange(1, len(counts) + 1) / len(counts), share, label=report.method,
                          color=colours[report.method])
        axis.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle=":", label="perfectly even")
        _label(axis, "share of codes (most used first)", "share of items", f"level {level + 1}: code usage")  # 1-based, as in tables
    _save_figure(figure, directory / "code_usage.png")
    written.append(directory / "code_usage.png")

    figure = Figure(figsize=(4.8, 3.4))
    axis = figure.subplots()
    for report in reports:
        levels = np.arange(1, len(report.reconstruction.rmse) + 1)
        axis.plot(levels, report.reconstruction.rmse, marker="o", label=report.method, color=colours[report.method])
    axis.set_xticks(range(1, n_levels + 1))
    _label(axis, "levels decoded", "RMSE per coordinate", "reconstruction error by level")
    _save_figure(figure, directory / "reconstruction.png")
    written.append(directory / "reconstruction.png")

    figure = Figure(figsize=(4.8, 3.4))
    axis = figure.subplots()
    width = 0.8 / len(reports)
    for index, report in enumerate(reports):
        sizes = np.asarray(report.collisions.bucket_sizes)
        bucket_size = np.flatnonzero(sizes)
        items = sizes[bucket_size] * bucket_size  # items living in buckets of that size
        axis.bar(np.arange(len(bucket_size)) + index * width, items, width=width, label=report.method,
                 color=colours[report.method])
        for x, size in zip(np.arange(len(bucket_size)) + index * width, bucket_size):
            axis.annotate(str(size), (x, 0), fontsize=6, ha="center", va="bottom")
    axis.set_yscale("log")
    _label(axis, "buckets by size (label: items sharing one full ID)", "items (log scale)", "collision buckets")
    _save_figure(figure, directory / "collisions.png")
    written.append(directory / "collisions.png")
    return written
