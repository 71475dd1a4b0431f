"""``rqgmm stream``: streaming CTR training (test-then-train) with DAES or a baseline numeric embedding."""

from __future__ import annotations

import json
import math
from pathlib import Path

import click

from rqgmm.cli.options import device_option, int_list, overwrite_option, quiet_option
from rqgmm.stream.methods import NUMERIC_METHODS


@click.command()
@click.option("--dataset", type=click.Choice(["ml-100k", "drifting"]), default="ml-100k", show_default=True,
              help="MovieLens-100k in time order, or the synthetic drifting stream.")
@click.option("--numeric", default="daes", show_default=True,
              help=f"Numeric embedding(s), comma-separated, or 'all': {', '.join(NUMERIC_METHODS)}.")
@click.option("--seeds", default="0", show_default=True, help="Comma-separated seeds; mean ± std over them.")
@click.option("--events", type=int, default=200_000, show_default=True, help="Events of the drifting stream.")
@click.option("--batch-size", type=int, default=256, show_default=True, help="Events per test-then-train step.")
@click.option("--learning-rate", type=float, default=1e-3, show_default=True, help="Adam step size.")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Write every run's metrics (overall and per window) to this JSON file.")
@click.option("--markdown", type=click.Path(path_type=Path), default=None,
              help="Also write the comparison as a results document stamped with this command (docs/results/…).")
@device_option
@overwrite_option
@quiet_option
def stream(dataset, numeric, seeds, events, batch_size, learning_rate, markdown, device, output, overwrite,
           quiet):
    """Streaming CTR training (test-then-train) with DAES or a baseline numeric embedding."""
    methods = list(NUMERIC_METHODS) if numeric.strip() == "all" else [m.strip() for m in numeric.split(",") if m.strip()]
    unknown = [m for m in methods if m not in NUMERIC_METHODS]
    if unknown or not methods:
        raise click.BadParameter(f"unknown numeric embedding(s) {unknown}; choose from {', '.join(NUMERIC_METHODS)}"
                                 " or 'all'", param_hint="--numeric")
    seed_list = int_list("--seeds", seeds)
    if not seed_list or any(seed < 0 for seed in seed_list):
        raise click.BadParameter(f"expected non-negative seeds, got {seeds!r}", param_hint="--seeds")
    if not math.isfinite(learning_rate) or learning_rate <= 0:
        raise click.BadParameter(f"must be a finite number > 0, got {learning_rate}", param_hint="--learning-rate")
    for option, value in (("--events", events), ("--batch-size", batch_size)):
        if value < 1:
            raise click.BadParameter(f"must be a positive int, got {value}", param_hint=option)
    from rqgmm.io.atomic import atomic_path, check_output
    from rqgmm.stream import compare, drifting_stream, movielens_stream
    from rqgmm.stream.train import format_comparison

    for target in (output, markdown):
        if target is not None:
            check_output(target, overwrite)
    data = movielens_stream() if dataset == "ml-100k" else drifting_stream(events, seed=0)
    results = compare(data, methods, seed_list, progress=False if quiet else None, batch_size=batch_size,
                      learning_rate=learning_rate, device=device)
    summary = (f"{data.name}: {data.n_events:,} events, progressive validation after a"
               f" {results[methods[0]]['runs'][0]['warmup_rows']:,}-event warm-up")
    table = format_comparison(data.name, results)
    click.echo(summary)
    click.echo(table)
    if markdown is not None:
        write_results_document(markdown, overwrite, data.name, summary, table)
        click.echo(f"wrote {markdown}")
    if output is not None:
        with atomic_path(output, overwrite=overwrite) as target:
            target.write_text(json.dumps({"dataset": data.name, "methods": results}, indent=2))
        click.echo(f"wrote {output}")


def write_results_document(path: Path, overwrite: bool, name: str, summary: str, table: str) -> None:
    """``path``: the comparison table, stamped with the command line, date, commit and machine."""
    from rqgmm.experiment.engine import produced_by, provenance
    from rqgmm.experiment.pages import markdown
    from rqgmm.io.atomic import atomic_path

    stamp = provenance()
    command = " ".join(["rqgmm", *stamp["command"].split()[1:]])
    blocks = [("h", 1, f"Streaming CTR: {name}"),
              ("p", produced_by(stamp, command) + "."),
              ("p", summary + ". AUC and LogLoss of the predictions made before each batch was trained on"
                    " (test-then-train), mean ± std over seeds; AUC − DAES paired by seed."),
              ("p", table)]
    with atomic_path(path, overwrite=overwrite) as target:
        target.write_text(markdown(blocks))


COMMANDS = (stream,)
