"""Command line: ``rqgmm fit | encode | decode | info | report | data | ctr | experiment | stream``. Thin: parse, call, print."""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

import click
import numpy as np

from rqgmm.errors import RqgmmError

METHODS = ("rq-gmm", "rq-kmeans", "rq-vae", "vq-vae")  # rqgmm.quantize.METHODS, without importing torch


class _Group(click.Group):
    """Turns rqgmm's own errors into one clean line (exit status 1), never a stack trace."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except RqgmmError as exc:
            raise click.ClickException(str(exc)) from None


def _codebook_sizes(value: str) -> int | list[int]:
    sizes = _int_list("--codebook-size", value)
    if not sizes or any(size < 1 for size in sizes):
        raise click.BadParameter(f"codebook sizes must be positive ints, got {value!r}")
    return sizes[0] if len(sizes) == 1 else sizes


def _int_list(option: str, value: str) -> list[int]:
    try:
        return [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated ints, got {value!r}", param_hint=option) from None


def _show_warnings(quiet: bool):
    def show(message, category, filename, lineno, file=None, line=None):
        if not quiet:
            click.echo(f"warning: {message}", err=True)
    warnings.showwarning = show


@click.group(cls=_Group)
@click.version_option(package_name="rqgmm")
def main() -> None:
    """Semantic IDs from item embeddings: RQ-GMM, RQ-KMeans and friends."""


# Options that belong to some methods only: option name -> (parameter name, methods that take it).
METHOD_OPTIONS = {
    "--max-iter": ("max_iter", ("rq-gmm", "rq-kmeans")),
    "--tol": ("tol", ("rq-gmm", "rq-kmeans")),
    "--init": ("init", ("rq-gmm", "rq-kmeans")),
    "--reg-covar": ("reg_covar", ("rq-gmm",)),
    "--covariance-type": ("covariance_type", ("rq-gmm",)),
    "--residual": ("residual", ("rq-gmm",)),
    "--reg-covar-mode": ("reg_covar_mode", ("rq-gmm",)),
    "--weight-prior": ("weight_prior", ("rq-gmm",)),
    "--balance": ("balance", ("rq-gmm",)),
    "--anneal-temperature": ("anneal_temperature", ("rq-gmm",)),
    "--latent-dim": ("latent_dim", ("rq-vae", "vq-vae")),
    "--hidden-dims": ("hidden_dims", ("rq-vae", "vq-vae")),
    "--beta": ("beta", ("rq-vae", "vq-vae")),
    "--codebook-update": ("codebook_update", ("rq-vae", "vq-vae")),
    "--dead-code-steps": ("dead_code_steps", ("rq-vae", "vq-vae")),
    "--max-epochs": ("max_epochs", ("rq-vae", "vq-vae")),
    "--learning-rate": ("learning_rate", ("rq-vae", "vq-vae")),
}


def _tokenizer_for(method: str, n_levels: int, codebook_size, common: dict, given: dict):
    """Build the tokenizer of ``method``; ``given`` maps option names to values (None = not given)."""
    from rqgmm.errors import InvalidInputError
    from rqgmm.quantize import make_tokenizer

    options = {}
    for option, value in given.items():
        if value is None:
            continue
        parameter, methods = METHOD_OPTIONS[option]
        if method not in methods:
            raise click.UsageError(f"{option} applies to --method {' or '.join(methods)} only, not {method}")
        options[parameter] = value
    try:
        return make_tokenizer(method, n_levels, codebook_size, **common, **options)
    except InvalidInputError as exc:
        raise click.UsageError(str(exc)) from None


@main.command()
@click.argument("embeddings", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Tokenizer directory to write.")
@click.option("--method", type=click.Choice(METHODS), default="rq-gmm", show_default=True)
@click.option("--levels", "n_levels", type=int, default=3, show_default=True, help="Residual levels L (vq-vae: 1).")
@click.option("--codebook-size", default="256", show_default=True, help="Codes per level: K or K1,K2,...")
@click.option("--max-iter", type=int, default=None, help="EM / Lloyd iterations per level (method default).")
@click.option("--tol", type=float, default=None, help="Convergence tolerance (method default).")
@click.option("--reg-covar", type=float, default=None, help="RQ-GMM variance floor (default 1e-6).")
@click.option("--covariance-type", type=click.Choice(["diag", "spherical", "tied"]), default=None)
@click.option("--reg-covar-mode", type=click.Choice(["absolute", "relative"]), default=None,
              help="RQ-GMM: --reg-covar in absolute units or as a fraction of each dimension's variance.")
@click.option("--weight-prior", type=float, default=None, help="RQ-GMM Dirichlet concentration on the weights (1: none).")
@click.option("--balance", type=float, default=None, help="RQ-GMM Sinkhorn-balanced E-step strength in [0, 1].")
@click.option("--anneal-temperature", type=float, default=None,
              help="RQ-GMM E-step start temperature (>= 1), annealed to 1 over the first 10 iterations.")
@click.option("--residual", type=click.Choice(["hard", "soft"]), default=None, help="RQ-GMM residual mode.")
@click.option("--init", default=None, help="kmeans++, random (or kmeans for rq-gmm).")
@click.option("--latent-dim", type=int, default=None, help="RQ-VAE / VQ-VAE latent width (default 32).")
@click.option("--hidden-dims", default=None, help="RQ-VAE / VQ-VAE encoder widths, e.g. 512,256,128.")
@click.option("--beta", type=float, default=None, help="RQ-VAE / VQ-VAE commitment weight (default 0.25).")
@click.option("--codebook-update", type=click.Choice(["loss", "ema"]), default=None,
              help="RQ-VAE / VQ-VAE codebook learning (default loss).")
@click.option("--dead-code-steps", type=int, default=None,
              help="RQ-VAE / VQ-VAE: re-seed codes unused for this many steps (default 0: off).")
@click.option("--max-epochs", type=int, default=None, help="RQ-VAE / VQ-VAE epochs at most (default 200).")
@click.option("--learning-rate", type=float, default=None, help="RQ-VAE / VQ-VAE Adam step (default 1e-3).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--batch-size", type=int, default=16384, show_default=True, help="Rows per chunk.")
@click.option("--column", default=None, help="Parquet embedding column (auto-detected if only one list column).")
@click.option("--id-column", default=None, help="Parquet id column (default: 'id' or the other column).")
@click.option("--drop-invalid", is_flag=True, help="Skip rows with NaN/Inf instead of failing.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="ray: fit on a Ray Dataset of Parquet files (EMBEDDINGS: file, directory or glob).")
@click.option("--address", default=None, help="Ray cluster address ('auto' or host:port); default: a local"
              " instance started and stopped for this command.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or warnings.")
def fit(embeddings, output, method, n_levels, codebook_size, max_iter, tol, reg_covar, covariance_type,
        reg_covar_mode, weight_prior, balance, anneal_temperature, residual, init, latent_dim, hidden_dims, beta, codebook_update, dead_code_steps, max_epochs, learning_rate,
        seed, device, batch_size, column, id_column, drop_invalid, engine, address, overwrite, quiet):
    """Fit a tokenizer on EMBEDDINGS (.npy or .parquet; with --engine ray, Parquet files) and save it to OUTPUT."""
    from rqgmm.io.atomic import refuse_existing
    from rqgmm.io.tables import read_embeddings
    from rqgmm.validation import EmbeddingMatrix

    _show_warnings(quiet)
    refuse_existing(output, overwrite)  # fail before the (long) fit, not after
    given = {"--max-iter": max_iter, "--tol": tol, "--init": init, "--reg-covar": reg_covar,
             "--covariance-type": covariance_type, "--reg-covar-mode": reg_covar_mode,
             "--weight-prior": weight_prior, "--balance": balance, "--anneal-temperature": anneal_temperature,
             "--residual": residual, "--latent-dim": latent_dim,
             "--hidden-dims": None if hidden_dims is None else _int_list("--hidden-dims", hidden_dims),
             "--beta": beta, "--codebook-update": codebook_update, "--dead-code-steps": dead_code_steps,
             "--max-epochs": max_epochs, "--learning-rate": learning_rate}
    common = {"seed": seed, "device": device, "batch_size": batch_size, "progress": False if quiet else None}
    tokenizer = _tokenizer_for(method, n_levels, _codebook_sizes(codebook_size), common, given)
    if engine == "ray":
        _fit_on_ray(tokenizer, method, str(embeddings), column, address, drop_invalid)
        tokenizer.save(output, overwrite=overwrite)
        if not quiet:
            click.echo(f"fitted {type(tokenizer).__name__} {tokenizer.codebook_sizes} on Ray; saved to {output}")
        return
    if address is not None:
        raise click.BadParameter("--address applies to --engine ray only", param_hint="--address")
    table = read_embeddings(embeddings, column=column, id_column=id_column)
    tokenizer.fit(EmbeddingMatrix(table.embeddings, name=str(embeddings)), drop_invalid=drop_invalid)
    tokenizer.save(output, overwrite=overwrite)
    if not quiet:
        click.echo(f"fitted {type(tokenizer).__name__} {tokenizer.codebook_sizes} on"
                   f" {table.embeddings.shape[0]} x {table.embeddings.shape[1]}; saved to {output}")


def _fit_on_ray(tokenizer, method: str, pattern: str, column, address, drop_invalid: bool) -> None:
    if method not in ("rq-gmm", "rq-kmeans"):
        raise click.BadParameter(f"--engine ray fits rq-gmm and rq-kmeans, not {method}", param_hint="--method")
    if drop_invalid:
        raise click.BadParameter("--drop-invalid is not available with --engine ray; clean the data first",
                                 param_hint="--drop-invalid")
    from rqgmm.distributed import (
        embedding_column,
        fit_on_ray,
        ray_session,
        read_parquet_dataset,
    )

    with ray_session(address):
        dataset = read_parquet_dataset(pattern)
        fit_on_ray(tokenizer, dataset, embedding_column(dataset, column))


@main.command()
@click.argument("tokenizer_dir", type=click.Path(path_type=Path))
@click.argument("embeddings", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Codes Parquet to write (with --engine ray: a directory of Parquet files).")
@click.option("--column", default=None)
@click.option("--id-column", default=None)
@click.option("--device", default=None, help="Override the tokenizer's device.")
@click.option("--drop-invalid", is_flag=True, help="Skip rows with NaN/Inf (they are left out of the output).")
@click.option("--collisions", type=click.Choice(["none", "suffix", "relocate"]), default="none", show_default=True,
              help="Make IDs unique: a counting 'suffix' column, or 'relocate' at the last level.")
@click.option("--capacity", type=int, default=1, show_default=True, help="Items per full ID allowed by relocate.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="ray: map_batches over a Ray Dataset of Parquet files (EMBEDDINGS: file, directory or glob).")
@click.option("--address", default=None, help="Ray cluster address; default: a local instance.")
@click.option("--overwrite", is_flag=True)
@click.option("-q", "--quiet", is_flag=True)
def encode(tokenizer_dir, embeddings, output, column, id_column, device, drop_invalid, collisions, capacity,
           engine, address, overwrite, quiet):
    """Encode EMBEDDINGS with a saved tokenizer; write id + level_0..level_{L-1} to OUTPUT."""
    from rqgmm.io.atomic import refuse_existing

    if engine == "ray":
        if collisions != "none" or drop_invalid:
            raise click.BadParameter("--collisions and --drop-invalid need the whole catalogue on one machine;"
                                     " not available with --engine ray", param_hint="--engine")
        _encode_on_ray(tokenizer_dir, str(embeddings), output, column, id_column, address, overwrite, quiet)
        return
    from rqgmm.io.tables import read_embeddings, write_codes
    from rqgmm.quantize import ResidualTokenizer
    from rqgmm.validation import check_embeddings

    _show_warnings(quiet)
    refuse_existing(output, overwrite)
    tokenizer = ResidualTokenizer.load(tokenizer_dir)
    tokenizer.progress = False if quiet else None
    if device:
        tokenizer.device = device
    table = read_embeddings(embeddings, column=column, id_column=id_column)
    matrix, dropped = check_embeddings(table.embeddings, name=str(embeddings), drop_invalid=drop_invalid,
                                       expected_dim=tokenizer.n_features_in_)
    codes = tokenizer.encode(matrix, collisions=collisions, capacity=capacity)
    ids = np.delete(table.ids, dropped) if dropped.size else table.ids
    write_codes(output, codes, ids, table.id_name, overwrite=overwrite)
    if not quiet:
        note = f" ({dropped.size} row(s) with NaN/Inf dropped)" if dropped.size else ""
        click.echo(f"encoded {len(codes)} rows into {codes.shape[1]} levels; wrote {output}{note}")


def _encode_on_ray(tokenizer_dir, pattern: str, output: Path, column, id_column, address, overwrite, quiet) -> None:
    from rqgmm.distributed import (
        embedding_column,
        encode_on_ray,
        ray_session,
        read_parquet_dataset,
    )
    from rqgmm.io.atomic import atomic_path
    from rqgmm.quantize import ResidualTokenizer

    tokenizer = ResidualTokenizer.load(tokenizer_dir)
    with ray_session(address), atomic_path(output, overwrite=overwrite, directory=True) as target:
        dataset = read_parquet_dataset(pattern)
        encode_on_ray(tokenizer, dataset, embedding_column(dataset, column), str(target), id_column=id_column)
    if not quiet:
        click.echo(f"encoded on Ray into {tokenizer.n_levels} levels; wrote Parquet files to {output}")


@main.command()
@click.argument("tokenizer_dir", type=click.Path(path_type=Path))
@click.argument("codes", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help=".npy or .parquet to write.")
@click.option("--overwrite", is_flag=True)
@click.option("-q", "--quiet", is_flag=True)
def decode(tokenizer_dir, codes, output, overwrite, quiet):
    """Reconstruct embeddings from a CODES Parquet written by `rqgmm encode`."""
    from rqgmm.io.atomic import refuse_existing
    from rqgmm.io.tables import read_codes, write_matrix
    from rqgmm.quantize import ResidualTokenizer

    refuse_existing(output, overwrite)
    tokenizer = ResidualTokenizer.load(tokenizer_dir)
    code_matrix, ids, id_name = read_codes(codes, tokenizer.n_levels)
    write_matrix(output, tokenizer.decode(code_matrix), ids, id_name, overwrite=overwrite)
    if not quiet:
        click.echo(f"decoded {len(code_matrix)} rows; wrote {output}")


@main.command()
@click.argument("tokenizer_dir", type=click.Path(path_type=Path))
def info(tokenizer_dir):
    """Print a saved tokenizer's manifest (class, hyperparameters, shapes) after verifying it."""
    from rqgmm.io.artifacts import load_artifact

    manifest, _ = load_artifact(tokenizer_dir)
    summary = {k: manifest[k] for k in ("kind", "library_version", "params")}
    summary["arrays"] = {name: meta["shape"] for name, meta in manifest["arrays"].items()}
    click.echo(json.dumps(summary, indent=2))


@main.command()
@click.argument("tokenizer_dir", type=click.Path(path_type=Path))
@click.argument("embeddings", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Report directory.")
@click.option("--compare", "others", multiple=True, type=click.Path(path_type=Path),
              help="Another tokenizer directory to put side by side (repeatable).")
@click.option("--labels", type=click.Path(path_type=Path), default=None,
              help="Parquet/CSV with item labels (aligned by id column if shared, else by row).")
@click.option("--label-column", "--column", "label_column", default=None,
              help="Label column (a label or a list of labels per item; CSV lists separated by '|').")
@click.option("--embedding-column", default=None)
@click.option("--id-column", default=None)
@click.option("--noise-scale", type=float, default=0.1, show_default=True,
              help="Perturbation norm relative to |x| for keep rate and K_eff.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-q", "--quiet", is_flag=True)
def report(tokenizer_dir, embeddings, output, others, labels, label_column, embedding_column, id_column, noise_scale,
           seed, quiet):
    """Semantic-ID quality of one or more tokenizers on EMBEDDINGS: table, report.json, plots."""
    from rqgmm.io.tables import read_embeddings, read_labels
    from rqgmm.metrics import quality_report
    from rqgmm.metrics.report import format_table, write_report
    from rqgmm.quantize import ResidualTokenizer
    from rqgmm.validation import check_embeddings

    _show_warnings(quiet)
    table = read_embeddings(embeddings, column=embedding_column, id_column=id_column)
    item_labels = None
    if labels is not None:
        if label_column is None:
            raise click.UsageError("--labels needs --label-column (the column holding the labels)")
        item_labels = read_labels(labels, label_column, table.ids, table.id_name)
    matrix, _ = check_embeddings(table.embeddings, name=str(embeddings))
    X = matrix.read(0, matrix.n_rows)
    reports = []
    for directory in (tokenizer_dir, *others):
        tokenizer = ResidualTokenizer.load(directory)
        tokenizer.progress = False if quiet else None
        reports.append(quality_report(tokenizer, X, item_labels, noise_scale=noise_scale, seed=seed,
                                      method=f"{type(tokenizer).__name__} ({Path(directory).name})"))
    paths = write_report(reports, output, extra={"embeddings": str(embeddings), "noise_scale": noise_scale,
                                                 "labels": str(labels) if labels else None, "seed": seed})
    click.echo(format_table(reports))
    click.echo(f"wrote {', '.join(str(p) for p in paths)}")


@main.group()
def data() -> None:
    """Export the real data sets that ship inside installed packages."""


@data.command("ml-100k")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Items Parquet to write.")
@click.option("--overwrite", is_flag=True)
@click.option("-q", "--quiet", is_flag=True)
def data_movielens(output, overwrite, quiet):
    """MovieLens-100k items with their MiniLM text embeddings (item_id, title, year, genres, text, embedding).

    For local use only: MovieLens' terms forbid redistributing the file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rqgmm.data.movielens import load_items
    from rqgmm.data.text_encoder import TextEncoder
    from rqgmm.io.atomic import atomic_path, refuse_existing

    refuse_existing(output, overwrite)
    items = load_items()
    vectors = TextEncoder(progress=False if quiet else None).encode(items["text"].tolist())
    table = pa.table({
        "item_id": items["item_id"].to_numpy(), "title": items["title"].tolist(),
        "year": pa.array(items["year"].astype(object).where(items["year"].notna(), None).tolist(), pa.int64()),
        "genres": items["genres"].tolist(), "text": items["text"].tolist(),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1]),
    })
    with atomic_path(output, overwrite=overwrite) as tmp:
        pq.write_table(table, tmp)
    if not quiet:
        click.echo(f"wrote {len(items)} items x {vectors.shape[1]}-d embeddings to {output}")


@main.group()
def ctr() -> None:
    """CTR models with semantic IDs as features: train and evaluate."""


@ctr.command("train")
@click.option("--dataset", default="ml-100k", show_default=True,
              help="ml-100k, or a .yaml describing your Parquet interactions and items.")
@click.option("--model", "model_name", type=click.Choice(["fnn", "ipnn", "deepfm", "dcnv2", "din"]), default="fnn",
              show_default=True)
@click.option("--features", type=click.Choice(["id", "emb", "sid", "sid+emb"]), default="id", show_default=True)
@click.option("--tokenizer", type=click.Path(path_type=Path), default=None, help="Saved tokenizer (sid features).")
@click.option("--split", type=click.Choice(["time", "random", "cold-item"]), default="time", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--epochs", type=int, default=20, show_default=True, help="Epochs at most (early stopping on val AUC).")
@click.option("--batch-size", type=int, default=1024, show_default=True)
@click.option("--learning-rate", type=float, default=1e-3, show_default=True)
@click.option("--patience", type=int, default=2, show_default=True)
@click.option("--embed-dim", type=int, default=16, show_default=True)
@click.option("--min-count", type=int, default=1, show_default=True, help="Training rows a category needs.")
@click.option("--missing-items", type=click.Choice(["error", "zero"]), default="error", show_default=True,
              help="Interactions whose item has no content: stop, or use zero content.")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Run directory to write.")
@click.option("--overwrite", is_flag=True)
@click.option("-q", "--quiet", is_flag=True)
def ctr_train(dataset, model_name, features, tokenizer, split, seed, epochs, batch_size, learning_rate, patience,
              embed_dim, min_count, missing_items, output, overwrite, quiet):
    """Train a CTR model and write OUTPUT (config.json, metrics.json, model/).

    Data-parallel under torchrun (``torchrun --nproc_per_node N -m rqgmm.cli ctr train ...``):
    gloo on CPU, nccl on GPU; rank 0 writes OUTPUT."""
    from rqgmm.ctr.run import RunConfig, train_run

    _show_warnings(quiet)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = 0
    if world > 1:
        import torch
        import torch.distributed as dist

        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        rank = dist.get_rank()
        quiet = quiet or rank != 0
    config = RunConfig(dataset=dataset, split=split, model=model_name, features=features,
                       tokenizer=None if tokenizer is None else str(tokenizer), seed=seed, min_count=min_count,
                       missing_items=missing_items, model_params={"embed_dim": embed_dim},
                       training={"max_epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
                                 "patience": patience})
    try:
        summary = train_run(config, output if rank == 0 else None, overwrite=overwrite,
                            progress=False if quiet else None)
    finally:
        if world > 1:
            dist.destroy_process_group()
    if rank != 0:
        return
    if world > 1:
        click.echo(f"data-parallel over {world} ranks")
    if summary["n_missing_items"]:
        click.echo(f"note: {summary['n_missing_items']} interaction(s) name items without content; they got zero"
                   " content and unknown semantic IDs", err=True)
    click.echo(_format_metrics(summary["metrics"], summary["training"]))
    click.echo(f"wrote {output}")


@ctr.command("evaluate")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("-q", "--quiet", is_flag=True)
def ctr_evaluate(run_dir, quiet):
    """Re-evaluate a saved run on its data set and split."""
    from rqgmm.ctr.run import evaluate_run

    _show_warnings(quiet)
    click.echo(_format_metrics(evaluate_run(run_dir, progress=False if quiet else None)))


@ctr.command("summarize")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--part", type=click.Choice(["validation", "test"]), default="test", show_default=True)
def ctr_summarize(run_dirs, part):
    """One table of the saved metrics of several runs (model, features, split, AUC, LogLoss, GAUC, samples/s)."""
    header = (f"{'model':<7} {'features':<8} {'split':<9} {'AUC':>7} {'LogLoss':>8} {'GAUC':>7} {'cold AUC':>9}"
              f" {'epochs':>6} {'samples/s':>10}")
    lines = [header, "-" * len(header)]
    for run_dir in run_dirs:
        path = Path(run_dir) / "metrics.json"
        if not path.is_file():
            raise click.ClickException(f"{run_dir}: not a CTR run directory (metrics.json is missing)")
        summary = json.loads(path.read_text())
        config, m, training = summary["config"], summary["metrics"][part], summary["training"]
        cold = "-" if m["cold_auc"] is None else f"{m['cold_auc']:.4f}"
        lines.append(f"{config['model']:<7} {config['features']:<8} {config['split']:<9} {m['auc']:7.4f}"
                     f" {m['logloss']:8.4f} {m['gauc']:7.4f} {cold:>9} {len(training['epochs']):6d}"
                     f" {training['samples_per_second']:10,.0f}")
    click.echo("\n".join(lines))


def _format_metrics(metrics: dict, training: dict | None = None) -> str:
    lines = [f"{'part':<11} {'AUC':>7} {'LogLoss':>8} {'GAUC':>7} {'rows':>7} {'cold AUC':>9} {'cold rows':>9}"]
    for part, m in metrics.items():
        lines.append(f"{part:<11} {m['auc']:7.4f} {m['logloss']:8.4f} {m['gauc']:7.4f} {m['rows']:7d}"
                     f" {'-' if m['cold_auc'] is None else format(m['cold_auc'], '.4f'):>9} {m['cold_rows']:9d}")
    if training is not None:
        lines.append(f"best epoch {training['best_epoch'] + 1} of {len(training['epochs'])},"
                     f" {training['samples_per_second']:,.0f} training samples/s")
    return "\n".join(lines)


@main.command()
@click.argument("config_path", metavar="CONFIG", type=click.Path(path_type=Path),
                default=Path("experiments/ml-100k.yaml"))
@click.option("--quick", is_flag=True, help="The config's reduced grid (a few minutes).")
@click.option("--root", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
              help="Runs are written to ROOT/<name>; finished stages there are reused.")
@click.option("--workers", type=int, default=min(2, os.cpu_count() or 1), show_default=True,
              help="Processes for the CTR grid (one torch thread each).")
@click.option("-q", "--quiet", is_flag=True)
def experiment(config_path, quick, root, workers, quiet):
    """Run a study from CONFIG (a YAML): the paper's offline experiment (tokenizers, quality, CTR
    grid, report) or, with ``kind: variants``, the RQ-GMM variants study."""
    from rqgmm.experiment.config import ExperimentConfig
    from rqgmm.experiment.report import format_text_table
    from rqgmm.experiment.runner import Experiment
    from rqgmm.io.settings import read_yaml_mapping

    _show_warnings(True)
    log = (lambda line: None) if quiet else click.echo
    raw = read_yaml_mapping(config_path, "the experiment config")
    if isinstance(raw, dict) and raw.get("kind") == "variants":
        _variants_study(config_path, quick, root, workers, quiet, log)
        return
    config = ExperimentConfig.from_yaml(config_path, quick=quick)
    runner = Experiment(config, root, progress=False if quiet else None, log=log, workers=workers)
    results = runner.run()
    tables = results["summary"]["tables"]
    click.echo("\nTokenizers\n" + format_text_table(*tables["tokenizers"]))
    for split in config.splits:
        click.echo(f"\nCTR, {split} split (test, mean ± std over seeds {config.seeds}; * beyond seed noise)\n"
                   + format_text_table(*tables[f"ctr_{split}"]))
    verdict = results["summary"]["rq_gmm_vs_rq_kmeans"]
    click.echo(f"\nRQ-GMM vs RQ-KMeans (test AUC): {len(verdict['wins'])} ahead, {len(verdict['losses'])} behind,"
               f" {len(verdict['ties'])} within noise")
    click.echo(f"report: {runner.directory / 'report.html'} (and report.md, results.json)")


def _variants_study(config_path, quick, root, workers, quiet, log) -> None:
    from rqgmm.experiment.report import format_text_table
    from rqgmm.experiment.variants import VariantsConfig, VariantStudy

    config = VariantsConfig.from_yaml(config_path, quick=quick)
    study = VariantStudy(config, root, progress=False if quiet else None, log=log, workers=workers)
    summary = study.run()["summary"]
    for name, table in summary["tables"].items():
        if name not in ("selection", "ctr"):
            click.echo(f"\n{name}\n" + format_text_table(*table))
    if summary["ctr"]:
        click.echo("\nCTR (MovieLens-100k)\n" + format_text_table(*summary["tables"]["ctr"]))
    click.echo("\nSelection rule: " + summary["selection"]["rule"])
    click.echo(format_text_table(*summary["tables"]["selection"]))
    click.echo(f"chosen default: {summary['selection']['chosen'] or 'none (the defaults stay the paper' + chr(39) + 's)'}")
    click.echo(f"report: {study.directory / 'report.html'} (and report.md, results.json)")


STREAM_METHODS = ("daes", "scalar", "static-bins", "refresh-bins", "autodis")  # rqgmm.stream.NUMERIC_METHODS


@main.command()
@click.option("--dataset", type=click.Choice(["ml-100k", "drifting"]), default="ml-100k", show_default=True,
              help="MovieLens-100k in time order, or the synthetic drifting stream.")
@click.option("--numeric", default="daes", show_default=True,
              help=f"Numeric embedding(s), comma-separated, or 'all': {', '.join(STREAM_METHODS)}.")
@click.option("--seeds", default="0", show_default=True, help="Comma-separated seeds; mean ± std over them.")
@click.option("--events", type=int, default=200_000, show_default=True, help="Events of the drifting stream.")
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--learning-rate", type=float, default=1e-3, show_default=True)
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Write every run's metrics (overall and per window) to this JSON file.")
@click.option("--overwrite", is_flag=True)
@click.option("-q", "--quiet", is_flag=True)
def stream(dataset, numeric, seeds, events, batch_size, learning_rate, output, overwrite, quiet):
    """Streaming CTR training (test-then-train) with DAES or a baseline numeric embedding."""
    methods = list(STREAM_METHODS) if numeric.strip() == "all" else [m.strip() for m in numeric.split(",") if m.strip()]
    unknown = [m for m in methods if m not in STREAM_METHODS]
    if unknown or not methods:
        raise click.BadParameter(f"unknown numeric embedding(s) {unknown}; choose from {', '.join(STREAM_METHODS)}"
                                 " or 'all'", param_hint="--numeric")
    seed_list = _int_list("--seeds", seeds)
    if not seed_list or any(seed < 0 for seed in seed_list):
        raise click.BadParameter(f"expected non-negative seeds, got {seeds!r}", param_hint="--seeds")
    for option, value in (("--events", events), ("--batch-size", batch_size)):
        if value < 1:
            raise click.BadParameter(f"must be a positive int, got {value}", param_hint=option)
    from rqgmm.io.atomic import atomic_path, refuse_existing
    from rqgmm.stream import compare, drifting_stream, movielens_stream
    from rqgmm.stream.train import format_comparison

    if output is not None:
        refuse_existing(output, overwrite)
    data = movielens_stream() if dataset == "ml-100k" else drifting_stream(events, seed=0)
    results = compare(data, methods, seed_list, progress=False if quiet else None, batch_size=batch_size,
                      learning_rate=learning_rate)
    click.echo(f"{data.name}: {data.n_events:,} events, progressive validation after a"
               f" {results[methods[0]]['runs'][0]['warmup_rows']:,}-event warm-up")
    click.echo(format_comparison(data.name, results))
    if output is not None:
        with atomic_path(output, overwrite=overwrite) as target:
            target.write_text(json.dumps({"dataset": data.name, "methods": results}, indent=2))
        click.echo(f"wrote {output}")


if __name__ == "__main__":
    sys.exit(main())
