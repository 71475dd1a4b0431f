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
    lines += [f"WARNING: {warning}" for warning in collapse_warnings(reports)]
    return "\n".join(lines)


COLLAPSE_SHARE = 0.5  # a level where one code holds at least half the items says little about them


def collapse_warnings(reports: Sequence[QualityReport]) -> list[str]:
    """Levels that collapsed: one code holds at least half the items (utilization can read 100%
    while nearly every item shares a code)."""
    out = []
    for report in reports:
        for level, usage in enumerate(report.usage):
            if usage.max_share >= COLLAPSE_SHARE and report.codebook_sizes[level] > 1:
                capacity = (f", effective capacity {report.overlap.effective_capacity[level]:.1f} codes"
                            if report.overlap else "")
                out.append(f"{report.method}: level {level + 1} collapsed: one code holds {usage.max_share:.0%} of"
                           f" the items (utilization {usage.utilization:.0%}, perplexity {usage.perplexity:.1f} of"
                           f" {report.codebook_sizes[level]}{capacity})")
    return out


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
    with atomic_path(directory / "report.txt", overwrite=True) as tmp:  # the table the command printed
        tmp.write_text(format_table(reports) + "\n")
    written.append(directory / "report.txt")

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
        collapsed = [f"{r.method}: one code holds {r.usage[level].max_share:.0%}" for r in reports
                     if level < len(r.usage) and r.usage[level].max_share >= COLLAPSE_SHARE]
        if collapsed:
            axis.text(0.98, 0.05, "collapsed level\n" + "\n".join(collapsed), transform=axis.transAxes, ha="right",
                      va="bottom", fontsize=7, color="firebrick")
    _save_figure(figure, directory / "code_usage.png")
    written.append(directory / "code_usage.png")

    _save_figure(reconstruction_figure(reports, colours), directory / "reconstruction.png")
    written.append(directory / "reconstruction.png")

    _save_figure(collisions_figure(reports, colours), directory / "collisions.png")
    written.append(directory / "collisions.png")
    return written


def reconstruction_figure(reports: Sequence[QualityReport], colours: dict[str, str]):
    """RMSE after each level, one line per tokenizer, on a zero-based axis."""
    from matplotlib.figure import Figure

    n_levels = max(len(r.codebook_sizes) for r in reports)
    figure = Figure(figsize=(4.8, 3.4))
    axis = figure.subplots()
    markers = "osD^vP*X"
    for index, report in enumerate(reports):  # distinct markers and a small offset: equal points stay visible
        levels = np.arange(1, len(report.reconstruction.rmse) + 1) + (index - (len(reports) - 1) / 2) * 0.04
        axis.plot(levels, report.reconstruction.rmse, marker=markers[index % len(markers)], label=report.method,
                  color=colours[report.method], alpha=0.85)
    axis.set_ylim(bottom=0)  # zero-based: a zoomed axis makes small differences look large
    axis.set_xticks(range(1, n_levels + 1))
    _label(axis, "levels decoded", "RMSE per coordinate", "reconstruction error by level")
    return figure


def collisions_figure(reports: Sequence[QualityReport], colours: dict[str, str]):
    """Items by the size of the bucket (items sharing one full ID) they are in."""
    from matplotlib.figure import Figure

    # one x position per bucket size (the union over methods), so bars at one x share a size
    all_sizes = sorted({int(size) for report in reports
                        for size in np.flatnonzero(np.asarray(report.collisions.bucket_sizes))})
    position = {size: index for index, size in enumerate(all_sizes)}
    figure = Figure(figsize=(max(4.8, 0.45 * len(all_sizes) * len(reports) + 2), 3.4))
    axis = figure.subplots()
    width = 0.8 / len(reports)
    for index, report in enumerate(reports):
        counts = np.asarray(report.collisions.bucket_sizes)
        sizes = np.flatnonzero(counts)
        items = counts[sizes] * sizes  # items living in buckets of that size
        xs = np.array([position[int(size)] for size in sizes]) + (index - (len(reports) - 1) / 2) * width
        axis.bar(xs, items, width=width, label=report.method, color=colours[report.method])
    axis.set_xticks(range(len(all_sizes)))
    axis.set_xticklabels([str(size) for size in all_sizes], fontsize=7, rotation=90 if len(all_sizes) > 20 else 0)
    axis.set_yscale("log")
    _label(axis, "items sharing one full ID (bucket size)", "items in such buckets (log scale)", "collision buckets")
    return figure
