"""``rqgmm ctr``: train, evaluate and summarize CTR models with semantic IDs as features."""

from __future__ import annotations

import json
from pathlib import Path

import click

from rqgmm.cli.options import (
    device_option,
    overwrite_option,
    quiet_option,
    show_warnings,
)
from rqgmm.ctr.names import (
    DEFAULT_PREFIX_BUCKETS,
    FEATURE_SETS,
    MISSING_ITEM_POLICIES,
    SID_INITS,
    SID_REPRESENTATIONS,
    SPLITS,
)
from rqgmm.ctr.names import MODEL_NAMES as MODELS


@click.group()
def ctr() -> None:
    """CTR models with semantic IDs as features: train and evaluate."""


@ctr.command("train")
@click.option("--dataset", default="ml-100k", show_default=True,
              help="ml-100k, or a .yaml describing your Parquet interactions and items.")
@click.option("--model", "model_name", type=click.Choice(MODELS), default="fnn", show_default=True,
              help="CTR backbone.")
@click.option("--features", type=click.Choice(FEATURE_SETS), default="id", show_default=True,
              help="Item features: the item ID, its content embedding, its semantic ID, or both.")
@click.option("--tokenizer", type=click.Path(path_type=Path), default=None, help="Saved tokenizer (sid features).")
@click.option("--split", type=click.Choice(SPLITS), default="time", show_default=True,
              help="How interactions are split into train / validation / test.")
@click.option("--seed", type=int, default=0, show_default=True, help="Split, initialization and shuffling seed.")
@click.option("--epochs", type=int, default=20, show_default=True, help="Epochs at most (early stopping on val AUC).")
@click.option("--batch-size", type=int, default=1024, show_default=True, help="Rows per Adam step.")
@click.option("--learning-rate", type=float, default=1e-3, show_default=True, help="Adam step size.")
@click.option("--patience", type=int, default=2, show_default=True,
              help="Epochs without a better validation AUC before stopping.")
@click.option("--embed-dim", type=click.IntRange(1, 4096), default=16, show_default=True,
              help="Width of every field embedding.")
@click.option("--min-count", type=int, default=1, show_default=True, help="Training rows a category needs.")
@click.option("--missing-items", type=click.Choice(MISSING_ITEM_POLICIES), default="error", show_default=True,
              help="Interactions whose item has no content: stop, or use zero content.")
@click.option("--sid-representation", type=click.Choice(SID_REPRESENTATIONS), default="level", show_default=True,
              help="Semantic ID as features: one field per level (level), the prefix up to each level (prefix),"
                   " or both.")
@click.option("--prefix-buckets", type=int, default=DEFAULT_PREFIX_BUCKETS, show_default=True,
              help="Hash buckets of a prefix field whose prefix space is larger (exact vocabulary below).")
@click.option("--sid-init", type=click.Choice(SID_INITS), default="random", show_default=True,
              help="A level's code embedding: a learned row (random), or that row plus the code's codeword"
                   " through a learned projection, the emb projection when there is one (codewords).")
@click.option("--soft-top-k", type=click.IntRange(0), default=0, show_default=True,
              help="Soft IDs (rq-gmm): each level's field is the posterior-weighted sum of its top-k"
                   " components' embeddings; 0: hard codes.")
@click.option("--soft-temperature", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True,
              help="Soft IDs: the posterior of the joint log-density divided by this (> 1: softer; RQ-GMM's"
                   " posterior in hundreds of dimensions is nearly one-hot).")
@click.option("--item-id-dropout", type=float, default=0.1, show_default=True,
              help="Share of training rows whose item ID is replaced by the out-of-vocabulary index (trains the"
                   " unknown-item row; chosen on validation by the sid-ctr studies).")
@click.option("--sid-dropout", type=float, default=0.0, show_default=True,
              help="Share of training rows whose semantic-ID fields are all replaced by the out-of-vocabulary"
                   " index (keeps sid+emb from leaning on the IDs).")
@click.option("--tail-threshold", type=int, default=5, show_default=True,
              help="Tail AUC: test rows whose item has at most this many training rows.")
@device_option
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Run directory to write.")
@overwrite_option
@quiet_option
def ctr_train(dataset, model_name, features, tokenizer, split, seed, epochs, batch_size, learning_rate, patience,
              embed_dim, min_count, missing_items, sid_representation, prefix_buckets, sid_init, soft_top_k,
              soft_temperature, item_id_dropout, sid_dropout, tail_threshold, device, output, overwrite, quiet):
    """Train a CTR model and write OUTPUT (config.json, metrics.json, model/).

    Data-parallel under torchrun (``torchrun --nproc_per_node N -m rqgmm.cli ctr train ...``):
    gloo on CPU, nccl on GPU; rank 0 writes OUTPUT."""
    from rqgmm.ctr.data_parallel import process_group
    from rqgmm.ctr.features import FeatureEncoder
    from rqgmm.ctr.run import RunConfig, train_run
    from rqgmm.ctr.training import TrainingConfig

    show_warnings(quiet)
    if tail_threshold < 0:
        raise click.BadParameter(f"must be an int >= 0, got {tail_threshold}", param_hint="--tail-threshold")
    training = {"max_epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
                "patience": patience, "item_id_dropout": item_id_dropout, "sid_dropout": sid_dropout,
                "device": device}
    TrainingConfig(**training)  # named errors before any data is read
    FeatureEncoder(features, min_count=min_count, sid_representation=sid_representation, prefix_buckets=prefix_buckets,
                   sid_init=sid_init, soft_top_k=soft_top_k, soft_temperature=soft_temperature)
    if dataset.endswith((".yaml", ".yml")):  # runs store absolute paths: evaluate works from any directory
        dataset = str(Path(dataset).resolve())
    config = RunConfig(dataset=dataset, split=split, model=model_name, features=features,
                       tokenizer=None if tokenizer is None else str(tokenizer.resolve()), seed=seed,
                       min_count=min_count, missing_items=missing_items, sid_representation=sid_representation,
                       prefix_buckets=prefix_buckets, sid_init=sid_init, soft_top_k=soft_top_k,
                       soft_temperature=soft_temperature,
                       tail_threshold=tail_threshold,
                       model_params={"embed_dim": embed_dim}, training=training)
    with process_group() as (rank, world):
        summary = train_run(config, output if rank == 0 else None, overwrite=overwrite,
                            progress=False if quiet or rank != 0 else None)
    if rank != 0:
        return
    if world > 1:
        click.echo(f"data-parallel over {world} ranks")
    if summary["n_missing_items"]:
        click.echo(f"note: {summary['n_missing_items']} interaction(s) name items without content; they got zero"
                   " content and unknown semantic IDs", err=True)
    click.echo(format_metrics(summary["metrics"], summary["training"]))
    click.echo(f"wrote {output}")


@ctr.command("evaluate")
@click.argument("run_dir", type=click.Path(path_type=Path))
@quiet_option
def ctr_evaluate(run_dir, quiet):
    """Re-evaluate a saved run on its data set and split."""
    from rqgmm.ctr.run import evaluate_run

    show_warnings(quiet)
    click.echo(format_metrics(evaluate_run(run_dir, progress=False if quiet else None)))


@ctr.command("remap")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--registry", required=True, help="The ID registry (path or sqlite:/// URL) that was migrated.")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Run directory to write (default: RUN_DIR itself, replaced atomically).")
@overwrite_option
@quiet_option
def ctr_remap(run_dir, registry, output, overwrite, quiet):
    """Carry RUN_DIR's semantic-ID item rows through the registry's migrations to its current
    version: unchanged items keep their exact scores, moved items get the rows of their new IDs."""
    from rqgmm.ctr.run import remap_run
    from rqgmm.io.atomic import check_output

    if output is not None:
        check_output(output, overwrite, "run", inputs=[run_dir])
    done = remap_run(run_dir, registry, output, overwrite=overwrite)
    if not quiet:
        click.echo(f"remapped {run_dir} from tokenizer version {done['from']} to {done['to']}: {done['changed']} of"
                   f" {done['items']} item(s) moved, {done['not_in_registry']} not in the registry (rows kept);"
                   f" wrote {output or run_dir}")


@ctr.command("summarize")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--part", type=click.Choice(["validation", "test"]), default="test", show_default=True,
              help="Which part's metrics to show.")
def ctr_summarize(run_dirs, part):
    """One table of the saved metrics of several runs (model, features, split, AUC, LogLoss, GAUC, samples/s)."""
    header = (f"{'model':<7} {'features':<8} {'split':<9} {'AUC':>7} {'LogLoss':>8} {'GAUC':>7} {'cold AUC':>9}"
              f" {'tail AUC':>9} {'epochs':>6} {'samples/s':>10}")
    lines = [header, "-" * len(header)]
    for run_dir in run_dirs:
        path = Path(run_dir) / "metrics.json"
        if not path.is_file():
            raise click.ClickException(f"{run_dir}: not a CTR run directory (metrics.json is missing)")
        try:
            summary = json.loads(path.read_text())
            config, m, training = summary["config"], summary["metrics"][part], summary["training"]
        except (ValueError, KeyError, TypeError) as exc:
            raise click.ClickException(f"{path}: not a metrics file written by rqgmm ({exc})") from None
        lines.append(f"{config['model']:<7} {config['features']:<8} {config['split']:<9} {m['auc']:7.4f}"
                     f" {m['logloss']:8.4f} {m['gauc']:7.4f} {_optional(m.get('cold_auc')):>9}"
                     f" {_optional(m.get('tail_auc')):>9} {len(training['epochs']):6d}"
                     f" {training['samples_per_second']:10,.0f}")
    click.echo("\n".join(lines))


def _optional(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def format_metrics(metrics: dict, training: dict | None = None) -> str:
    lines = [f"{'part':<11} {'AUC':>7} {'LogLoss':>8} {'GAUC':>7} {'rows':>7} {'cold AUC':>9} {'cold rows':>9}"
             f" {'tail AUC':>9} {'tail rows':>9}"]
    for part, m in metrics.items():
        lines.append(f"{part:<11} {m['auc']:7.4f} {m['logloss']:8.4f} {m['gauc']:7.4f} {m['rows']:7d}"
                     f" {_optional(m.get('cold_auc')):>9} {m.get('cold_rows', 0):9d}"
                     f" {_optional(m.get('tail_auc')):>9} {m.get('tail_rows', 0):9d}")
    if training is not None:
        lines.append(f"best epoch {training['best_epoch'] + 1} of {len(training['epochs'])},"
                     f" {training['samples_per_second']:,.0f} training samples/s")
    return "\n".join(lines)


COMMANDS = (ctr,)
