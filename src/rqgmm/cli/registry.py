"""``rqgmm registry``: stable semantic IDs in a registry (an SQLite file or a PostgreSQL database)."""

from __future__ import annotations

from pathlib import Path

import click

from rqgmm.cli.options import overwrite_option, quiet_option


@click.group()
def registry() -> None:
    """Stable semantic IDs: assign, retire, migrate, export (DATABASE: an SQLite path or a postgresql:// URL)."""


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        click.echo(text)


def _items(tokenizer_dir: Path, embeddings: Path, column, id_column):
    """(item ids, codes, tokenizer version) of the items in EMBEDDINGS. Input without an id
    column is refused: a row number is not an item's identity, and two files' row 0 would be
    taken for the same item."""
    from rqgmm.io.tables import read_embeddings
    from rqgmm.quantize import ResidualTokenizer

    if embeddings.suffix.lower() == ".npy":
        raise click.BadParameter(f"{embeddings}: a .npy matrix has no item ids (its row numbers would be taken as"
                                 " ids, so other items would receive these items' IDs); give a Parquet file with an"
                                 " id column and an embedding column", param_hint="EMBEDDINGS")
    tokenizer = ResidualTokenizer.load(tokenizer_dir)
    tokenizer.progress = False
    table = read_embeddings(embeddings, column=column, id_column=id_column)
    if table.id_name == "row":
        raise click.BadParameter(f"{embeddings}: no id column; name it with --id-column", param_hint="--id-column")
    return table.ids, tokenizer.encode(table.embeddings), tokenizer.version


def _data_options(function):
    function = click.option("--id-column", default=None, help="Parquet id column (default: 'id' or the only other"
                            " column).")(function)
    function = click.option("--column", default=None, help="Parquet embedding column.")(function)
    function = click.argument("embeddings", type=click.Path(path_type=Path))(function)
    function = click.argument("tokenizer_dir", type=click.Path(path_type=Path))(function)
    return click.argument("database")(function)


@registry.command("init")
@click.argument("database")
@quiet_option
def registry_init(database, quiet):
    """Create an empty registry at DATABASE (a path, sqlite:/// or postgresql:// URL); an existing one is kept."""
    from rqgmm.registry import IDRegistry

    with IDRegistry(database, create=True) as store:
        _say(quiet, f"registry {database}: {len(store.items())} active item(s), versions {store.versions()}")


@registry.command("assign")
@_data_options
@quiet_option
def registry_assign(database, tokenizer_dir, embeddings, column, id_column, quiet):
    """Give the items of EMBEDDINGS their stable IDs (new items get the tokenizer's codes plus the
    smallest free suffix; known items keep theirs). DATABASE is created if missing. EMBEDDINGS is
    Parquet with an item id column: a .npy is refused, since its row numbers are not item ids."""
    from rqgmm.registry import IDRegistry

    ids, codes, version = _items(tokenizer_dir, embeddings, column, id_column)
    with IDRegistry(database, create=True) as store:
        assigned = store.assign(ids, codes, version)
    new = sum(a.new for a in assigned)
    _say(quiet, f"{len(assigned)} item(s): {new} new, {len(assigned) - new} known; version {version}")


@registry.command("migrate")
@_data_options
@quiet_option
def registry_migrate(database, tokenizer_dir, embeddings, column, id_column, quiet):
    """Move every active item to a new tokenizer version (EMBEDDINGS holds all active items);
    IDs whose codes did not change are kept; the old -> new mapping is recorded."""
    from rqgmm.registry import IDRegistry

    ids, codes, version = _items(tokenizer_dir, embeddings, column, id_column)
    with IDRegistry(database) as store:
        mapping = store.migrate(ids, codes, version)
    changed = sum(old != new for old, new in mapping.values())
    _say(quiet, f"migrated {len(mapping)} item(s) to version {version}: {changed} ID(s) changed")


@registry.command("mapping")
@click.argument("database")
@click.option("--from", "old_version", default=None, help="Version migrated from (default: the one before --to).")
@click.option("--to", "new_version", default=None, help="Version migrated to (default: the current version).")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Parquet to write: item_id, old_sid, new_sid, changed.")
@overwrite_option
@quiet_option
def registry_mapping(database, old_version, new_version, output, overwrite, quiet):
    """Export the old -> new ID mapping a migration recorded (what `rqgmm ctr remap` applies)."""
    from rqgmm.io.atomic import check_output
    from rqgmm.registry import IDRegistry

    check_output(output, overwrite, inputs=[database])
    with IDRegistry(database) as store:
        old_version, new_version = store.migration(old_version, new_version)
        written = store.export_mapping(old_version, new_version, output, overwrite=overwrite)
    _say(quiet, f"wrote {written} item(s) of the migration {old_version} -> {new_version} to {output}")


@registry.command("retire")
@click.argument("database")
@click.argument("item_ids", nargs=-1, required=True)
@quiet_option
def registry_retire(database, item_ids, quiet):
    """Retire ITEM_IDS: their IDs are never handed out again."""
    from rqgmm.registry import IDRegistry

    with IDRegistry(database) as store:
        _say(quiet, f"retired {store.retire(item_ids)} item(s)")


@registry.command("export")
@click.argument("database")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Parquet file to write.")
@overwrite_option
@quiet_option
def registry_export(database, output, overwrite, quiet):
    """Write the active items and their IDs as Parquet."""
    from rqgmm.io.atomic import check_output
    from rqgmm.registry import IDRegistry

    check_output(output, overwrite, inputs=[database])
    with IDRegistry(database) as store:
        store.export(output, overwrite=overwrite)
    _say(quiet, f"wrote {output}")


@registry.command("check")
@click.argument("database")
@quiet_option
def registry_check(database, quiet):
    """Check the registry's consistency (unique IDs, retired IDs unused, IDs match codes)."""
    from rqgmm.registry import IDRegistry

    with IDRegistry(database) as store:
        problems = store.check()
        count, version = len(store.items()), store.current_version
    if problems:
        raise click.ClickException(f"{len(problems)} problem(s): " + "; ".join(problems[:5]))
    _say(quiet, f"consistent: {count} active item(s), current version {version}")


COMMANDS = (registry,)
