"""Commands over the catalog's pixels: ``thumbnails``, ``show`` (a contact sheet), ``patches``."""

from __future__ import annotations

import sys

import click

from pixels.cli.options import (
    TABLE_OPTION,
    choice_option,
    exit_on_error,
    keep_pandas_out,
    parse_storage_options,
    require_table,
    storage_option,
    where_option,
    workers_option,
)

__all__ = ["patches_cmd", "show_cmd", "thumbnails_cmd"]


@click.command("thumbnails")
@TABLE_OPTION
@where_option("CT")
@click.option("--force", is_flag=True, help="Make them again where one exists.")
@click.option("--size", "size", type=int, default=256, show_default=True, help="Longest side.")
@choice_option("--format", "fmt", choices=["jpeg", "png"], default="jpeg")
@workers_option("Worker processes [default: CPUs].")
@storage_option("fsspec option to read the files (as given to `pixels catalog`).")
def thumbnails_cmd(
    table: str,
    where: str | None,
    force: bool,
    size: int,
    fmt: str,
    workers: int | None,
    storage_option: tuple[str, ...],
) -> None:
    """Make thumbnails for cataloged rows that lack one (only the frame shown is read)."""
    from pixels.dicom.record import RecordOptions
    from pixels.table import CatalogTable
    from pixels.thumbnails import run_thumbnails

    keep_pandas_out()  # this command never builds a DataFrame
    opts = RecordOptions(
        thumbnails=True,
        thumbnail_size=size,
        thumbnail_format=fmt,
        storage_options=parse_storage_options(storage_option),
    )
    with exit_on_error():
        require_table(table, opts.storage_options)
        stats = run_thumbnails(
            CatalogTable(table), where=where, force=force, workers=workers, options=opts
        )
    click.echo(
        f"thumbnails: {stats.made:,} made · {stats.errors:,} errors · {stats.rows:,} rows in "
        f"{stats.files:,} data files rewritten · {stats.conflicts:,} skipped (changed meanwhile) · "
        f"{stats.seconds:.1f} s",
        err=True,
    )


@click.command("show")
@TABLE_OPTION
@click.option("--where", default=None, help="SQL predicate, e.g. \"Modality = 'CT'\".")
@click.option("--out", "-O", required=True, help="Image to write (.png or .jpg).")
@click.option("--limit", type=int, default=48, show_default=True, help="At most this many tiles.")
@click.option("--columns", type=int, default=8, show_default=True, help="Tiles per row.")
@click.option("--size", type=int, default=256, show_default=True, help="Tile size in pixels.")
@storage_option("fsspec option to read the files and a table URL (as given to `pixels catalog`).")
def show_cmd(
    table: str,
    where: str | None,
    out: str,
    limit: int,
    columns: int,
    size: int,
    storage_option: tuple[str, ...],
) -> None:
    """Write a contact sheet of the selected rows' thumbnails (made on the fly where missing)."""
    from pixels.dicom.contact import Tile, contact_sheet
    from pixels.dicom.record import RecordOptions, thumbnail_rows
    from pixels.table import CatalogTable
    from pixels.thumbnails import iter_thumbnail_rows

    storage = parse_storage_options(storage_option)
    opts = RecordOptions(
        thumbnails=True, thumbnail_size=size, thumbnail_format="png", storage_options=storage
    )
    tiles = []
    with exit_on_error():
        require_table(table, storage)
        for row in iter_thumbnail_rows(CatalogTable(table, storage_options=storage), where, limit):
            image = row.get("thumbnail")
            if image is None and row.get("frame_offsets") and not row.get("error"):
                made = thumbnail_rows([row], opts)[0]
                image = made["thumbnail"]
            caption = " ".join(
                str(v)
                for v in (
                    row.get("Modality"),
                    row.get("SeriesDescription") or row.get("relative_path"),
                )
                if v
            )
            tiles.append(Tile(image, caption or row["path"]))
    if not tiles:
        click.echo("no rows match", err=True)
        sys.exit(1)
    fmt = "jpeg" if out.lower().endswith((".jpg", ".jpeg")) else "png"
    with open(out, "wb") as fh:
        fh.write(contact_sheet(tiles, columns=columns, cell=size, fmt=fmt))
    shown = sum(1 for t in tiles if t.image)
    click.echo(f"wrote {out}: {len(tiles)} tiles ({shown} with an image)", err=True)


@click.command("patches")
@TABLE_OPTION
@click.option("--out", "-O", required=True, help="Delta table to write the patches to (appended).")
@where_option("MG")
@click.option("--size", type=int, default=256, show_default=True, help="Patch size in pixels.")
@click.option("--stride", type=int, default=None, help="Step between patches [default: --size].")
@click.option("--pad", is_flag=True, help="Keep edge patches, padded, instead of dropping them.")
@click.option(
    "--min-foreground",
    type=float,
    default=None,
    help="Skip patches with less than this fraction above --background.",
)
@click.option(
    "--background",
    type=float,
    default=None,
    help="Stored value counted as background [default: the frame's minimum].",
)
@choice_option("--format", "fmt", choices=["png", "raw"], default="png")
@choice_option("--frames", choices=["all", "middle"], default="all")
def patches_cmd(
    table: str,
    out: str,
    where: str | None,
    size: int,
    stride: int | None,
    pad: bool,
    min_foreground: float | None,
    background: float | None,
    fmt: str,
    frames: str,
) -> None:
    """Cut the selected images into patches (rows with source, frame, x, y and the pixels)."""
    from pixels.catalog import Catalog
    from pixels.patching import write_patches

    with exit_on_error():
        require_table(table)
        stats = write_patches(
            Catalog(table),
            out,
            where=where,
            size=size,
            stride=stride,
            pad=pad,
            min_foreground=min_foreground,
            background=background,
            fmt=fmt,
            frames=frames,
        )
    click.echo(
        f"patches: {stats['patches']:,} from {stats['files']:,} files · {stats['errors']:,} errors · "
        f"{stats['seconds']:.1f} s -> {out}",
        err=True,
    )
