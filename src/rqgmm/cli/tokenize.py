"""Tokenizer commands: fit, encode, decode, info, report."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from rqgmm.cli.options import (
    codebook_sizes,
    device_option,
    overwrite_option,
    quiet_option,
    show_warnings,
    tokenizer_from_options,
    tokenizer_options,
)
from rqgmm.quantize.declarations import METHODS


@click.command()
@click.argument("embeddings", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Tokenizer directory to write.")
@click.option("--method", type=click.Choice(METHODS), default="rq-gmm", show_default=True,
              help="Tokenizer: RQ-GMM (the paper's method), RQ-KMeans, RQ-VAE or VQ-VAE.")
@click.option("--n-levels", "--levels", "n_levels", type=int, default=3, show_default=True,
              help="Residual levels L (n_levels; vq-vae: 1).")
@click.option("--codebook-size", default="256", show_default=True, help="Codes per level: K or K1,K2,...")
@tokenizer_options
@click.option("--random-state", "--seed", "seed", type=int, default=0, show_default=True,
              help="Seed of every random choice (random_state).")
@device_option
@click.option("--batch-size", type=int, default=16384, show_default=True, help="Rows per chunk.")
@click.option("--column", default=None, help="Parquet embedding column (auto-detected if only one list column).")
@click.option("--id-column", default=None, help="Parquet id column (default: 'id' or the other column).")
@click.option("--drop-invalid", is_flag=True, help="Skip rows with NaN/Inf instead of failing.")
@click.option("--previous", type=click.Path(path_type=Path), default=None,
              help="An earlier tokenizer to stay aligned with (warm start + component matching): items that"
                   " did not move keep their IDs.")
@click.option("--alignment", type=click.Choice(["codewords", "co-assignment", "none"]), default="codewords",
              show_default=True, help="With --previous: match components by codeword distance, by the rows both"
              " versions assign alike, or not at all (warm start only).")
@click.option("--warm-start/--no-warm-start", default=True, show_default=True,
              help="With --previous: start each level from the previous codewords, or fit afresh and only"
              " renumber the components to match (the fresh fit's quality, more churn).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="ray: fit on a Ray Dataset of Parquet files (EMBEDDINGS: file, directory or glob).")
@click.option("--address", default=None, help="Ray cluster address ('auto' or host:port); default: a local"
              " instance started and stopped for this command.")
@click.option("--verbose", is_flag=True, help="Show Ray's INFO logs (--engine ray).")
@overwrite_option
@quiet_option
def fit(embeddings, output, method, n_levels, codebook_size, seed, device, batch_size, column, id_column,
        drop_invalid, previous, alignment, warm_start, engine, address, verbose, overwrite, quiet, **given):
    """Fit a tokenizer on EMBEDDINGS (.npy or .parquet; with --engine ray, Parquet files) and save it to OUTPUT."""
    from rqgmm.io.atomic import check_output
    from rqgmm.io.tables import read_embeddings
    from rqgmm.validation import EmbeddingMatrix

    show_warnings(quiet)
    check_output(output, overwrite, "artifact", inputs=[embeddings, previous])  # before the (long) fit
    common = {"random_state": seed, "device": device, "batch_size": batch_size, "progress": False if quiet else None}
    tokenizer = tokenizer_from_options(method, n_levels, codebook_sizes(codebook_size), common, given)
    if engine == "ray":
        if previous is not None:
            raise click.BadParameter("--previous is not available with --engine ray yet", param_hint="--previous")
        _fit_on_ray(tokenizer, method, str(embeddings), column, address, drop_invalid, verbose)
        tokenizer.save(output, overwrite=overwrite)
        if not quiet:
            click.echo(f"fitted {type(tokenizer).__name__} {tokenizer.codebook_sizes} on Ray; saved to {output}")
        return
    if address is not None:
        raise click.BadParameter("--address applies to --engine ray only", param_hint="--address")
    table = read_embeddings(embeddings, column=column, id_column=id_column)
    from rqgmm.quantize import ResidualTokenizer

    anchor = None if previous is None else ResidualTokenizer.load(previous)
    if anchor is None and alignment != "codewords":
        raise click.BadParameter("applies with --previous only", param_hint="--alignment")
    if anchor is None and not warm_start:
        raise click.BadParameter("applies with --previous only", param_hint="--no-warm-start")
    from rqgmm.quantize.levelwise import LevelwiseTokenizer

    matrix = EmbeddingMatrix(table.embeddings, name=str(embeddings))
    if anchor is None:
        tokenizer.fit(matrix, drop_invalid=drop_invalid)
    elif not isinstance(tokenizer, LevelwiseTokenizer):
        raise click.BadParameter(f"{method} trains its levels jointly; aligned refits are for rq-kmeans and rq-gmm",
                                 param_hint="--previous")
    else:
        tokenizer.fit(matrix, drop_invalid=drop_invalid, previous=anchor, alignment=alignment, warm_start=warm_start)
    tokenizer.save(output, overwrite=overwrite)
    if not quiet:
        click.echo(f"fitted {type(tokenizer).__name__} {tokenizer.codebook_sizes} on"
                   f" {table.embeddings.shape[0]} x {table.embeddings.shape[1]}; saved to {output}")


def _fit_on_ray(tokenizer, method: str, pattern: str, column, address, drop_invalid: bool, verbose: bool) -> None:
    from rqgmm.quantize.levelwise import LevelwiseTokenizer

    if not isinstance(tokenizer, LevelwiseTokenizer):
        raise click.BadParameter(f"--engine ray fits tokenizers whose levels are fitted in order (rq-gmm,"
                                 f" rq-kmeans), not {method}", param_hint="--method")
    if drop_invalid:
        raise click.BadParameter("--drop-invalid is not available with --engine ray; clean the data first",
                                 param_hint="--drop-invalid")
    from rqgmm.distributed import (
        embedding_column,
        fit_on_ray,
        ray_session,
        read_parquet_dataset,
    )

    with ray_session(address, verbose=verbose):
        dataset = read_parquet_dataset(pattern)
        fit_on_ray(tokenizer, dataset, embedding_column(dataset, column))


@click.command()
@click.argument("tokenizer_dir", type=click.Path(path_type=Path))
@click.argument("embeddings", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path, allow_dash=True),
              help="Codes to write: .parquet (id + level_0.. columns), .npy ((n, L) int64) or .csv; - for standard"
                   " output (with --format); with --engine ray, a directory of Parquet files.")
@click.option("--format", "fmt", type=click.Choice(["parquet", "npy", "csv"]), default=None,
              help="Format of OUTPUT (default: its extension; needed for -).")
@click.option("--column", default=None, help="Parquet embedding column (auto-detected if only one list column).")
@click.option("--id-column", default=None, help="Parquet id column (default: 'id' or the other column).")
@click.option("--device", default=None, help="Override the tokenizer's device (cpu, cuda, cuda:N, auto).")
@click.option("--drop-invalid", is_flag=True, help="Skip rows with NaN/Inf (left out of the output, counted on"
              " stderr; .parquet output only, which keeps the id of every kept row).")
@click.option("--collisions", type=click.Choice(["none", "suffix", "relocate", "sinkhorn"]), default="none",
              show_default=True, help="Make IDs unique: a counting 'suffix' column, or move colliding items at the"
              " last level: greedily ('relocate') or by a Sinkhorn-balanced assignment ('sinkhorn').")
@click.option("--capacity", type=int, default=1, show_default=True, help="Items per full ID allowed by relocate.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="ray: map_batches over a Ray Dataset of Parquet files (EMBEDDINGS: file, directory or glob).")
@click.option("--address", default=None, help="Ray cluster address; default: a local instance.")
@click.option("--verbose", is_flag=True, help="Show Ray's INFO logs (--engine ray).")
@overwrite_option
@quiet_option
def encode(tokenizer_dir, embeddings, output, fmt, column, id_column, device, drop_invalid, collisions, capacity,
           engine, address, verbose, overwrite, quiet):
    """Encode EMBEDDINGS with a saved tokenizer; write id + level_0..level_{L-1} to OUTPUT."""
    from rqgmm.io.atomic import check_output

    if engine == "ray":
        if collisions != "none" or drop_invalid:
            raise click.BadParameter("--collisions and --drop-invalid need the whole catalogue on one machine;"
                                     " not available with --engine ray", param_hint="--engine")
        _encode_on_ray(tokenizer_dir, str(embeddings), output, column, id_column, address, overwrite, quiet,
                       verbose)
        return
    from rqgmm.io.tables import check_codes_path, read_embeddings, write_codes
    from rqgmm.quantize import ResidualTokenizer
    from rqgmm.validation import check_embeddings

    show_warnings(quiet)
    from rqgmm.io.tables import codes_format

    check_codes_path(output, fmt)
    to_stdout = str(output) == "-"
    if drop_invalid and codes_format(output, fmt) == "npy":
        raise click.BadParameter("a .npy of codes has no id column, so dropped rows would leave its rows out of line"
                                 " with the input; write .parquet (it keeps the id of every kept row)",
                                 param_hint="--drop-invalid")
    if not to_stdout:
        check_output(output, overwrite, inputs=[tokenizer_dir, embeddings])
    tokenizer = ResidualTokenizer.load(tokenizer_dir)
    tokenizer.progress = False if quiet else None
    if device:
        tokenizer.device = device
    table = read_embeddings(embeddings, column=column, id_column=id_column)
    matrix, dropped = check_embeddings(table.embeddings, name=str(embeddings), drop_invalid=drop_invalid,
                                       expected_dim=tokenizer.n_features_in_,
                                       owner=type(tokenizer).__name__)
    codes = tokenizer.encode(matrix, collisions=collisions, capacity=capacity)
    ids = np.delete(table.ids, dropped) if dropped.size else table.ids
    write_codes(output, codes, ids, table.id_name, n_levels=tokenizer.n_levels, tokenizer_version=tokenizer.version,
                overwrite=overwrite, fmt=fmt)
    if dropped.size:  # always said, even with -q: the output has fewer rows than the input
        first = table.ids[dropped[0]]
        first = first.item() if isinstance(first, np.generic) else first
        click.echo(f"rqgmm encode: dropped {dropped.size} row(s) with NaN/Inf (first: {table.id_name}="
                   f"{first!r}); {output} holds the {len(codes)} kept row(s) with their"
                   f" {table.id_name!r}", err=True)
    if not quiet:  # on stderr when the codes themselves go to standard output
        click.echo(f"encoded {len(codes)} rows into {tokenizer.n_levels} levels (tokenizer version"
                   f" {tokenizer.version}); wrote {'standard output' if to_stdout else output}", err=to_stdout)


def _encode_on_ray(tokenizer_dir, pattern: str, output: Path, column, id_column, address, overwrite, quiet,
                   verbose: bool) -> None:
    from rqgmm.distributed import (
        embedding_column,
        encode_on_ray,
        ray_session,
        read_parquet_dataset,
    )
    from rqgmm.io.atomic import atomic_path
    from rqgmm.quantize import ResidualTokenizer

    tokenizer = ResidualTokenizer.load(tokenizer_dir)
    with ray_session(address, verbose=verbose), atomic_path(output, overwrite=overwrite, directory=True,
                                           kind="parquet-directory") as target:
        dataset = read_parquet_dataset(pattern)
        encode_on_ray(tokenizer, dataset, embedding_column(dataset, column), str(target), id_column=id_column)
    if not quiet:
        click.echo(f"encoded on Ray into {tokenizer.n_levels} levels; wrote Parquet files to {output}")


@click.command()
@click.argument("tokenizer_dir", type=click.Path(path_type=Path))
@click.argument("codes", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help=".npy or .parquet to write.")
@click.option("--ignore-version", is_flag=True,
              help="Decode codes written by another tokenizer version (refused by default: the same code means"
                   " another vector in another version).")
@overwrite_option
@quiet_option
def decode(tokenizer_dir, codes, output, ignore_version, overwrite, quiet):
    """Reconstruct embeddings from CODES (.parquet or .npy) written by `rqgmm encode` with this tokenizer."""
    from rqgmm.io.artifacts import require_version
    from rqgmm.io.atomic import check_output
    from rqgmm.io.tables import read_codes, write_matrix
    from rqgmm.quantize import ResidualTokenizer

    check_output(output, overwrite, inputs=[tokenizer_dir, codes])
    tokenizer = ResidualTokenizer.load(tokenizer_dir)
    table = read_codes(codes, tokenizer.n_levels)
    if table.tokenizer_version is None:
        click.echo(f"rqgmm decode: {codes} records no tokenizer version; decoding without checking it", err=True)
    elif not ignore_version:
        require_version(table.tokenizer_version, tokenizer.version, found_in=str(codes),
                        expected_in=f"tokenizer {tokenizer_dir}",
                        fix="decode with the tokenizer that wrote them (or pass --ignore-version)")
    write_matrix(output, tokenizer.decode(table.codes), table.ids, table.id_name, overwrite=overwrite)
    if not quiet:
        click.echo(f"decoded {len(table.codes)} rows; wrote {output}")


@click.command()
@click.argument("tokenizer_dir", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the manifest's summary as JSON instead of text.")
def info(tokenizer_dir, as_json):
    """Summarize a saved tokenizer (version, method, levels, codes, width, fit, parameters) after
    verifying it with every check `load` makes before building a tokenizer (same verdict; torch
    is not loaded)."""
    from rqgmm.errors import ArtifactError, InvalidInputError
    from rqgmm.io.artifacts import load_artifact, manifest_version
    from rqgmm.quantize.specs import PARAMETERS, verify

    manifest, arrays = load_artifact(tokenizer_dir)
    kind, params = manifest.get("kind"), manifest.get("params")
    if kind not in PARAMETERS:
        raise ArtifactError(f"{tokenizer_dir}: holds a {kind!r}, not a tokenizer (one of {sorted(PARAMETERS)})")
    if not isinstance(params, dict) or not isinstance(manifest.get("attributes"), dict):
        raise ArtifactError(f"{tokenizer_dir}: manifest needs 'params' and 'attributes' mappings")
    unknown = sorted(set(params) - {p.name for p in PARAMETERS[kind]})
    if unknown:
        raise ArtifactError(f"{tokenizer_dir}: manifest names parameter(s) {unknown} that {kind} does not have")
    try:
        verify(manifest, arrays)
    except InvalidInputError as exc:
        raise ArtifactError(f"{tokenizer_dir}: not a valid {kind}: {exc}") from None
    except (KeyError, TypeError, ValueError, IndexError, RecursionError) as exc:
        raise ArtifactError(f"{tokenizer_dir}: manifest does not describe a valid {kind}: {type(exc).__name__}:"
                            f" {exc}") from None
    summary = {"version": manifest_version(manifest), **{k: manifest[k] for k in ("kind", "library_version", "params")}}
    summary["arrays"] = {name: meta["shape"] for name, meta in manifest["arrays"].items()}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    from rqgmm.quantize.specs import codebook_sizes

    attributes = manifest["attributes"]
    sizes = codebook_sizes(params)
    lines = [f"{tokenizer_dir}: {kind}, version {summary['version']} (rqgmm {summary['library_version']})",
             f"  levels {len(sizes)} x codes {' x '.join(map(str, sizes))}, input width {attributes['n_features_in_']}"]
    if "n_iter_" in attributes:
        converged = sum(bool(c) for c in attributes.get("converged_", []))
        lines.append(f"  fit: iterations per level {attributes['n_iter_']}, converged {converged}/{len(sizes)},"
                     f" re-seeded {attributes.get('n_reseeded_')}")
    if "best_epoch_" in attributes:
        lines.append(f"  fit: best epoch {attributes['best_epoch_'] + 1} of {attributes['n_epochs_']}")
    shown = {k: v for k, v in params.items() if k not in ("progress", "seed") and v is not None}
    lines.append("  parameters: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
    click.echo("\n".join(lines))


@click.command()
@click.argument("tokenizer_dir", type=click.Path(path_type=Path))
@click.argument("embeddings", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Report directory.")
@click.option("--compare", "others", multiple=True, type=click.Path(path_type=Path),
              help="Another tokenizer directory to put side by side (repeatable).")
@click.option("--labels", type=click.Path(path_type=Path), default=None,
              help="Parquet/CSV with item labels (aligned by id column if shared, else by row).")
@click.option("--label-column", "label_column", default=None,
              help="Label column (a label or a list of labels per item; CSV lists separated by '|').")
@click.option("--column", "--embedding-column", "embedding_column", default=None,
              help="Parquet embedding column (auto-detected if only one list column).")
@click.option("--id-column", default=None, help="Parquet id column (default: 'id' or the other column).")
@click.option("--noise-scale", type=float, default=0.1, show_default=True,
              help="Perturbation norm relative to |x| for keep rate and K_eff.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the perturbations.")
@click.option("--previous", type=click.Path(path_type=Path), default=None,
              help="An earlier version of the tokenizer: the report adds the ID churn of these items.")
@overwrite_option
@quiet_option
def report(tokenizer_dir, embeddings, output, others, labels, label_column, embedding_column, id_column, noise_scale,
           seed, previous, overwrite, quiet):
    """Semantic-ID quality of one or more tokenizers on EMBEDDINGS: table, report.json, plots."""
    from rqgmm.io.atomic import check_output
    from rqgmm.io.tables import read_embeddings, read_labels
    from rqgmm.metrics import quality_report
    from rqgmm.metrics.report import format_table, write_report
    from rqgmm.quantize import ResidualTokenizer
    from rqgmm.validation import check_embeddings

    show_warnings(quiet)
    check_output(output, overwrite, "report", inputs=[tokenizer_dir, embeddings, *others, labels, previous])
    table = read_embeddings(embeddings, column=embedding_column, id_column=id_column)
    item_labels = None
    if labels is not None:
        if label_column is None:
            raise click.UsageError("--labels needs --label-column (the column holding the labels)")
        item_labels = read_labels(labels, label_column, table.ids, table.id_name)
    matrix, _ = check_embeddings(table.embeddings, name=str(embeddings))
    X = matrix.read(0, matrix.n_rows)
    reports = []
    anchor = None if previous is None else ResidualTokenizer.load(previous)
    if anchor is not None:
        anchor.progress = False
    for directory in (tokenizer_dir, *others):
        tokenizer = ResidualTokenizer.load(directory)
        tokenizer.progress = False if quiet else None
        reports.append(quality_report(tokenizer, X, item_labels, noise_scale=noise_scale, seed=seed, previous=anchor,
                                      method=f"{type(tokenizer).__name__} ({Path(directory).name})"))
    paths = write_report(reports, output, extra={"embeddings": str(embeddings), "noise_scale": noise_scale,
                                                 "labels": str(labels) if labels else None, "seed": seed})
    click.echo(format_table(reports))
    click.echo(f"wrote {', '.join(str(p) for p in paths)}")


@click.command()
@click.argument("tokenizer_dir", type=click.Path(path_type=Path))
@click.argument("items", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Parquet file to write: the id column, then one int64 column per field; a <file>.json sidecar"
                   " names the fields, their vocabulary sizes and hashing, and the tokenizer version.")
@click.option("--representation", type=click.Choice(["level", "prefix", "level+prefix"]), default="level",
              show_default=True, help="Per-level fields (code + 1), prefix fields (the code up to each level), or both:"
                                      " the fields `rqgmm ctr train --sid-representation` embeds.")
@click.option("--prefix-buckets", type=click.IntRange(1), default=100_000, show_default=True,
              help="A prefix field whose prefix space is larger is hashed into this many buckets.")
@click.option("--column", default=None, help="Parquet embedding column (auto-detected if only one list column).")
@click.option("--id-column", default=None, help="Parquet id column (default: 'id' or the other column).")
@overwrite_option
@quiet_option
def features(tokenizer_dir, items, output, representation, prefix_buckets, column, id_column, overwrite, quiet):
    """Semantic-ID feature columns of ITEMS for your own CTR stack: the exact integer fields `rqgmm ctr
    train` embeds (0 = unknown item), to embed with rqgmm.ctr.sid_embedding.SemanticIDEmbedding or
    any embedding layer."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rqgmm.ctr.features import semantic_id_fields
    from rqgmm.io.atomic import atomic_path, check_output
    from rqgmm.io.tables import read_embeddings
    from rqgmm.quantize import ResidualTokenizer

    show_warnings(quiet)
    if output.suffix.lower() != ".parquet":
        raise click.BadParameter(f"{output}: feature columns are written as .parquet (id + one column per field)",
                                 param_hint="--output")
    check_output(output, overwrite, inputs=[tokenizer_dir, items])
    tokenizer = ResidualTokenizer.load(tokenizer_dir)
    tokenizer.progress = False if quiet else None
    table = read_embeddings(items, column=column, id_column=id_column)
    if table.id_name == "row":
        raise click.BadParameter(f"{items}: no item id column (a .npy has none); give Parquet with an id column",
                                 param_hint="ITEMS")
    codes = tokenizer.encode(table.embeddings)
    fields, names, cards = semantic_id_fields(codes, tokenizer.codebook_sizes, representation, prefix_buckets)
    columns = {table.id_name: pa.array(table.ids)}
    columns.update({name: pa.array(fields[:, j], pa.int64()) for j, name in enumerate(names)})
    spec = {"format": "rqgmm-sid-features", "tokenizer_version": tokenizer.version, "id_column": table.id_name,
            "fields": names, "cardinalities": cards, "representation": representation,
            "codebook_sizes": [int(k) for k in tokenizer.codebook_sizes], "prefix_buckets": prefix_buckets,
            "hashed": [name.startswith("sid_prefix_") and card - 1 >= prefix_buckets for name, card in zip(names, cards)],
            "unknown": 0, "hash": "splitmix64 of the mixed-radix prefix, salted by level, modulo prefix_buckets"}
    arrow = pa.table(columns).replace_schema_metadata({b"rqgmm.sid_features": json.dumps(spec).encode()})
    sidecar = output.with_name(output.name + ".json")
    with atomic_path(output, overwrite=overwrite) as tmp:
        pq.write_table(arrow, tmp)
    with atomic_path(sidecar, overwrite=True) as tmp:
        tmp.write_text(json.dumps(spec, indent=2))
    if not quiet:
        click.echo(f"wrote {len(fields)} items x {len(names)} fields ({', '.join(names)}) to {output}; spec {sidecar}")


COMMANDS = (fit, encode, decode, info, report, features)
