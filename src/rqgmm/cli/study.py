"""``rqgmm experiment``: run a study from its YAML config (validated in full before any work)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from rqgmm.cli.options import quiet_option, show_warnings


@click.command()
@click.argument("config_path", metavar="CONFIG", required=False, default=None)
@click.option("--quick", is_flag=True, help="The config's reduced grid (its `quick:` overrides).")
@click.option("-o", "--output", "--root", "root", type=click.Path(path_type=Path), default=Path("runs"),
              show_default=True, help="Runs are written to OUTPUT/<name>; finished stages there are reused.")
@click.option("--workers", type=int, default=min(2, os.cpu_count() or 1), show_default=True,
              help="Processes for fits and CTR runs (one torch thread each).")
@click.option("--check", is_flag=True, help="Validate the config (and its quick form) and stop.")
@click.option("--describe", type=click.Choice(["paper", "variants", "stable-ids"]), default=None,
              help="Print every setting of that kind of study (key, default, meaning) and stop.")
@click.option("--device", default=None,
              help="CTR training device (cpu, cuda, cuda:N or auto); overrides the config's training.device.")
@quiet_option
def experiment(config_path, quick, root, workers, check, describe, device, quiet):
    """Run a study from CONFIG: a YAML file, or the name of a packaged config (an unknown name
    lists them: ml-100k, variants, sid-ctr, ...). Its kind: paper (the default: tokenizers,
    quality, CTR grid, report), variants (tokenizer variants against RQ-KMeans) or stable-ids
    (refit strategies on a growing catalogue: churn, quality, CTR cost). The main job is
    `rqgmm experiment ml-100k` (make demo)."""
    from rqgmm.experiment.config import load_config
    from rqgmm.experiment.pages import text_table
    from rqgmm.experiment.paper import PaperStudy
    from rqgmm.experiment.variants import VariantStudy

    show_warnings(True)
    if describe is not None:
        from rqgmm.experiment.config import study_kinds
        from rqgmm.io.settings import describe as settings_of

        click.echo(text_table(["setting", "default", "meaning"], [list(row) for row in
                                                                  settings_of(study_kinds()[describe])]))
        return
    if config_path is None:  # never start a long study nobody named
        raise click.UsageError("give CONFIG: a study YAML or a packaged config's name (the main job: ml-100k)")
    config = load_config(config_path, quick=quick)
    if device is not None:
        config = with_training_device(config, device)
    if check:
        click.echo(f"{config_path}: valid {config.kind} study config")
        return
    log = (lambda line: None) if quiet else (lambda line: click.echo(line, err=True))
    from rqgmm.experiment.stable_ids import StableIDStudy

    study_class = {"paper": PaperStudy, "variants": VariantStudy, "stable-ids": StableIDStudy}[config.kind]
    study = study_class(config, root, progress=False if quiet else None, log=log, workers=workers)
    summary = study.run()["summary"]
    for name, table in summary["tables"].items():
        click.echo(f"\n{name}\n" + text_table(*table))
    if config.kind == "variants":
        click.echo("\nSelection rule: " + summary["selection"]["rule"])
        click.echo(f"chosen default: {summary['selection']['chosen'] or 'none (the defaults stay the paper' + chr(39) + 's)'}")
    elif config.kind == "paper":
        verdict = summary["rq_gmm_vs_rq_kmeans"]
        click.echo(f"\nRQ-GMM vs RQ-KMeans (test AUC): {len(verdict['wins'])} ahead, {len(verdict['losses'])} behind,"
                   f" {len(verdict['ties'])} no significant difference")
    click.echo(f"report: {study.directory / 'report.html'} (and report.md, results.json)")



def with_training_device(config, device: str):
    """``config`` with its CTR training device replaced (checked like the config's own)."""
    from dataclasses import replace

    from rqgmm.errors import InvalidInputError

    try:
        if config.kind in ("variants", "stable-ids"):
            if config.ctr is None:
                return config
            return replace(config, ctr=replace(config.ctr, training=replace(config.ctr.training, device=device)))
        return replace(config, training=replace(config.training, device=device))
    except InvalidInputError as error:
        raise click.BadParameter(str(error), param_hint="--device") from None


@click.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("docs/results"), show_default=True,
              help="Directory of the generated results documents.")
@click.option("--readme", type=click.Path(path_type=Path), default=None,
              help="Also fill the '<!-- generated: NAME -->' block of each run in this Markdown file"
              " (README.md or a page under docs/).")
@click.option("--headline", default=None, help="Which table fills the README block (default: the first headline table, else the first).")
@quiet_option
@click.option("--block", default=None,
              help="Name of the block to fill (default: the run's name; another lets one run fill two blocks).")
def publish(run_dirs, output, readme, headline, block, quiet):
    """Write results documents (docs/results/<name>.md) from finished runs' results.json."""
    from rqgmm.experiment.publish import publish as write

    for run_dir in run_dirs:
        written = write(run_dir, output, readme, headline, block)
        if not quiet:
            click.echo(f"wrote {written}")


COMMANDS = (experiment, publish)
