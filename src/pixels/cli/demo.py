"""``pixels demo``: catalog pydicom's own files, query them, draw a contact sheet."""

from __future__ import annotations

import os

import click

from pixels.cli.catalog import catalog_cmd
from pixels.cli.images import show_cmd
from pixels.cli.options import workers_option
from pixels.cli.query import sql_cmd

__all__ = ["demo_cmd"]


@click.command("demo")
@click.option(
    "--table",
    "-t",
    default="./sample-catalog",
    show_default=True,
    help="Where to write the demo table.",
)
@workers_option("Worker processes.")
def demo_cmd(table: str, workers: int | None) -> None:
    """Catalog the real DICOM files bundled with pydicom (and pydicom-data if installed)."""
    from pydicom.data import get_testdata_file

    ct = get_testdata_file("CT_small.dcm", download=False)
    if ct is None:  # pragma: no cover - pydicom always ships it
        raise click.ClickException("pydicom's test files are missing")
    folders = [os.path.dirname(str(ct))]
    big = get_testdata_file("emri_small.dcm", download=False)  # from pydicom-data, if installed
    if big:
        folders.append(os.path.dirname(str(big)))
    ctx = click.get_current_context()
    for folder in folders:
        click.echo(f"$ pixels catalog {folder} --table {table} --thumbnails", err=True)
        ctx.invoke(
            catalog_cmd,
            source=folder,
            table=table,
            workers=workers,
            pattern=None,
            no_recursive=False,
            no_archives=False,
            extract_dir=None,
            retry_errors=False,
            commit_rows=2000,
            storage_option=(),
            quiet=False,
            thumbnails=True,
        )
    q = (
        "SELECT Modality, count(*) AS files, count(DISTINCT StudyInstanceUID) AS studies, "
        "count(error) AS errors FROM object_catalog GROUP BY 1 ORDER BY files DESC"
    )
    click.echo(f'\n$ pixels sql --table {table} "{q}"', err=True)
    ctx.invoke(sql_cmd, query=q, table=table, fmt="table", output=None, max_rows=100)
    sheet = os.path.join(os.path.dirname(os.path.abspath(table)), "sample-contact.png")
    where = "Modality IN ('CT', 'MR') AND thumbnail IS NOT NULL"
    click.echo(f'\n$ pixels show --table {table} --where "{where}" --out {sheet}', err=True)
    ctx.invoke(show_cmd, table=table, where=where, out=sheet, limit=32, columns=8, size=160)
