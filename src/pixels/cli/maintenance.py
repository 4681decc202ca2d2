"""Table maintenance: ``pixels optimize``, ``pixels upgrade``, ``pixels schema``."""

from __future__ import annotations

import json

import click

from pixels.cli.options import (
    TABLE_OPTION,
    TABLE_STORAGE_OPTION,
    exit_on_error,
    parse_storage_options,
    require_table,
)

__all__ = ["optimize_cmd", "schema_cmd", "upgrade_cmd"]


@click.command("optimize")
@TABLE_OPTION
@click.option(
    "--retention-hours",
    type=click.IntRange(min=0),
    default=None,
    help="Delete files replaced more than this long ago [default: the table's "
    "delta.deletedFileRetentionDuration, else 168 (7 days), as Delta]. Readers of older "
    "versions (a running catalog, the server, time travel) need them; 0 deletes them now.",
)
@click.option(
    "--cluster",
    is_flag=True,
    help="Also order the rows by StudyInstanceUID, SeriesInstanceUID (rewrites every file; "
    "local tables) so look-ups by study or series skip the other row groups.",
)
@TABLE_STORAGE_OPTION
def optimize_cmd(
    table: str,
    retention_hours: int | None,
    cluster: bool = False,
    storage_option: tuple[str, ...] = (),
) -> None:
    """Compact the table's small files and vacuum files replaced long enough ago."""
    from pixels.catalog import Catalog

    options = parse_storage_options(storage_option)
    with exit_on_error():
        require_table(table, options)
    cat = Catalog(table, storage_options=options)
    metrics = cat.optimize(retention_hours=retention_hours, cluster=cluster)
    keys = ("numFilesAdded", "numFilesRemoved", "filesVacuumed", "rowsUpgraded")
    click.echo(json.dumps({k: metrics.get(k) for k in keys}))


@click.command("upgrade")
@TABLE_OPTION
@TABLE_STORAGE_OPTION
def upgrade_cmd(table: str, storage_option: tuple[str, ...] = ()) -> None:
    """Rewrite the rows an older Pixels wrote into the current schema (once; resumable).

    Old rows read with rowId and is_anon derived from their path until then; writes
    never rewrite them. Each data file is replaced in a commit of its own: a run
    stopped half-way goes on where it stopped when run again. `pixels optimize`
    does it too.
    """
    from pixels.errors import PixelsError
    from pixels.table import CatalogTable

    options = parse_storage_options(storage_option)
    with exit_on_error():
        require_table(table, options)
    t = CatalogTable(table, storage_options=options)
    try:
        metrics = t.upgrade()
    except PixelsError as e:
        raise click.ClickException(str(e)) from e
    click.echo(json.dumps(metrics))


@click.command("schema")
@click.option("--markdown", is_flag=True, help="As a Markdown table (used in the README).")
def schema_cmd(markdown: bool) -> None:
    """Print the catalog's columns."""
    from pixels.schema import SCHEMA, markdown_table

    click.echo(markdown_table() if markdown else str(SCHEMA))
