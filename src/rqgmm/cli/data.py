"""``rqgmm data``: export the real data sets that ship inside installed packages."""

from __future__ import annotations

from pathlib import Path

import click

from rqgmm.cli.options import overwrite_option, quiet_option


@click.group()
def data() -> None:
    """Export the real data sets that ship inside installed packages."""


@data.command("ml-100k")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Items Parquet to write.")
@overwrite_option
@quiet_option
def data_movielens(output, overwrite, quiet):
    """MovieLens-100k items with their MiniLM text embeddings (item_id, title, year, genres, text, embedding).

    For local use only: MovieLens' terms forbid redistributing the file."""
    import pyarrow.parquet as pq

    from rqgmm.data.movielens import items_table
    from rqgmm.io.atomic import atomic_path, check_output

    check_output(output, overwrite)
    table = items_table(progress=False if quiet else None)
    with atomic_path(output, overwrite=overwrite) as tmp:
        pq.write_table(table, tmp)
    if not quiet:
        click.echo(f"wrote {table.num_rows} items x {table.schema.field('embedding').type.list_size}-d embeddings"
                   f" to {output}")


COMMANDS = (data,)
