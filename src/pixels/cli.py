"""The ``pixels`` command."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from typing import Any

import click

DEFAULT_TABLE = "./catalog"

#: The catalog table option every command shares.
TABLE_OPTION = click.option(
    "--table", "-t", default=DEFAULT_TABLE, show_default=True, help="Delta table folder or URL."
)


def storage_option(help_text: str) -> Any:
    """The repeatable ``-o KEY=VALUE`` fsspec option."""
    return click.option(
        "--storage-option",
        "-o",
        "storage_option",
        multiple=True,
        metavar="KEY=VALUE",
        help=help_text,
    )


def _storage_options(pairs: tuple[str, ...]) -> dict[str, Any] | None:
    if not pairs:
        return None
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(
                f"expected KEY=VALUE, got {pair!r}", param_hint="--storage-option"
            )
        key, value = pair.split("=", 1)
        val: Any = value
        if value.lower() in ("true", "false"):
            val = value.lower() == "true"
        out[key] = val
    return out


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pixels-lake", prog_name="pixels")
def main() -> None:
    """Pixels: catalog medical image files into a SQL-queryable Delta Lake table."""


@main.command("catalog")
@click.argument("source")
@TABLE_OPTION
@click.option(
    "--workers",
    "-w",
    type=int,
    default=None,
    help="Worker processes [default: CPUs; 0 = in-process].",
)
@click.option("--pattern", "-p", default=None, help="Glob on file names, e.g. '*.dcm'.")
@click.option("--no-recursive", is_flag=True, help="Do not descend into sub-folders.")
@click.option("--no-archives", is_flag=True, help="Do not expand zip archives found in SOURCE.")
@click.option(
    "--extract-dir",
    default=None,
    help="Extract zip members here instead of reading them in memory.",
)
@click.option(
    "--retry-errors", is_flag=True, help="Read again unchanged files whose row has an error."
)
@click.option(
    "--commit-rows", type=int, default=2000, show_default=True, help="Rows per Delta commit."
)
@storage_option(
    "Object-store option for SOURCE and a table URL (repeatable), e.g. "
    "endpoint_url=http://127.0.0.1:9000."
)
@click.option(
    "--thumbnails", is_flag=True, help="Also make thumbnails, in the same pass over each file."
)
@click.option(
    "--thumbnail-size", type=int, default=256, show_default=True, help="Longest side of thumbnails."
)
@click.option(
    "--thumbnail-format",
    type=click.Choice(["jpeg", "png"]),
    default="jpeg",
    show_default=True,
    help="Thumbnail encoding.",
)
@click.option(
    "--worker-memory",
    default=None,
    help="Memory each worker may use, e.g. 4G (0: no limit); a file needing more gets an "
    "error row [default: PIXELS_WORKER_MEMORY, else 90% of RAM shared by the workers].",
)
@click.option(
    "--watch",
    is_flag=True,
    help="Keep running: catalog files as they appear or change in the folder SOURCE "
    "(inotify, or polling where there is none); Ctrl-C stops, a restart resumes.",
)
@click.option(
    "--poll", is_flag=True, help="With --watch: poll the folder even where inotify is available."
)
@click.option(
    "--poll-interval",
    type=float,
    default=2.0,
    show_default=True,
    help="With --watch: seconds between walks when polling.",
)
@click.option(
    "--settle",
    type=float,
    default=2.0,
    show_default=True,
    help="With --watch: seconds a file must stay unchanged (size, times) before it is read.",
)
@click.option(
    "--deletions",
    type=click.Choice(["keep", "remove"]),
    default="keep",
    show_default=True,
    help="With --watch: keep the rows of deleted files (as Auto Loader does) or remove them.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def catalog_cmd(
    source: str,
    table: str,
    workers: int | None,
    pattern: str | None,
    no_recursive: bool,
    no_archives: bool,
    extract_dir: str | None,
    retry_errors: bool,
    commit_rows: int,
    storage_option: tuple[str, ...],
    quiet: bool,
    thumbnails: bool = False,
    thumbnail_size: int = 256,
    thumbnail_format: str = "jpeg",
    worker_memory: str | None = None,
    watch: bool = False,
    poll: bool = False,
    poll_interval: float = 2.0,
    settle: float = 2.0,
    deletions: str = "keep",
) -> None:
    """List SOURCE (folder, file, zip, s3://... URL) and catalog new or changed files.

    With --watch, keep running and catalog files of the folder SOURCE as they are
    written (each once it has stopped changing), in small commits.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from pixels.catalog import Catalog
    from pixels.dicom.record import RecordOptions
    from pixels.engines.local import CatalogStats, run_catalog
    from pixels.engines.options import CatalogOptions
    from pixels.engines.worker import block_pandas
    from pixels.errors import PixelsError

    block_pandas()  # this command never builds a DataFrame: ~50 MB saved
    console = Console(stderr=True)
    memory: int | None = -1
    if worker_memory is not None:
        from pixels.engines.pool import parse_size

        try:
            memory = parse_size(worker_memory) or None
        except ValueError:
            raise click.BadParameter(
                f"not a size: {worker_memory!r} (examples: 4G, 512M, 0)",
                param_hint="--worker-memory",
            ) from None
    cat = Catalog(table, storage_options=_storage_options(storage_option))
    # one set of options for both engines (batch and --watch)
    config = CatalogOptions(
        workers=workers,
        pattern=pattern,
        recursive=not no_recursive,
        expand_archives=not no_archives,
        extract_dir=extract_dir,
        record=RecordOptions(
            storage_options=_storage_options(storage_option),
            thumbnails=thumbnails,
            thumbnail_size=thumbnail_size,
            thumbnail_format=thumbnail_format,
        ),
        retry_errors=retry_errors,
        worker_memory=memory,
        commit_rows=commit_rows,
    )
    if watch:
        _watch(
            console,
            source,
            cat.table,
            config.with_(commit_rows=min(commit_rows, 500)),
            quiet=quiet,
            poll=True if poll else None,
            poll_interval=poll_interval,
            reconcile_interval=max(5.0, 10 * poll_interval),
            settle=settle,
            deletions=deletions,
        )
        return
    progress = Progress(
        TextColumn("[bold]cataloging"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(
            "read · {task.fields[unchanged]} unchanged · {task.fields[errors]} errors · "
            "{task.fields[warned]} with warnings · {task.fields[rate]}"
        ),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
        transient=False,
    )
    task = progress.add_task("catalog", total=None, unchanged=0, errors=0, warned=0, rate="")

    def on_progress(s: CatalogStats) -> None:
        progress.update(
            task,
            completed=s.processed,
            total=max(s.listed - s.unchanged, s.processed) or None,
            unchanged=s.unchanged,
            errors=s.errors,
            warned=s.warned,
            rate="",
        )

    try:
        with progress:
            stats = run_catalog(source, cat.table, config, progress=on_progress)
    except PixelsError as e:
        _print_error(console, e)
        sys.exit(2)
    rate = (
        f"{stats.files_per_second:,.0f} files/s"
        if stats.processed
        else f"{stats.listed / stats.seconds if stats.seconds else 0:,.0f} files listed/s"
    )
    console.print(
        f"listed {stats.listed:,} · unchanged {stats.unchanged:,} · read {stats.processed:,} "
        f"({stats.dicom:,} DICOM) · written {stats.written:,} · errors {stats.errors:,} · "
        f"{stats.seconds:.1f} s ({rate}) -> {cat.table.uri}",
        soft_wrap=True,
    )
    for msg in stats.error_samples[:5]:
        console.print(f"  error: {msg}", highlight=False, markup=False, soft_wrap=True)
    if stats.errors > 5:
        console.print(
            f"  ... see all with: pixels sql --table {table} "
            '"SELECT path, error FROM object_catalog WHERE error IS NOT NULL"',
            markup=False,
            soft_wrap=True,
        )
    _print_warnings(console, stats, table)


def _print_error(console: Any, e: BaseException) -> None:
    """``error: <message>`` on one line (a path is never wrapped, nor read as markup)."""
    from rich.text import Text

    console.print(Text.assemble(("error:", "red"), " ", str(e)), soft_wrap=True)


def _watch(
    console: Any, source: str, table: Any, config: Any, *, quiet: bool, **kwargs: Any
) -> None:
    """``pixels catalog --watch``: run until Ctrl-C or SIGTERM, one line per commit."""
    import signal
    import time

    from pixels.engines.watch import Watcher, WatchStats
    from pixels.errors import PixelsError

    def on_commit(s: WatchStats, rows: int) -> None:
        if not quiet:
            console.print(
                f"{time.strftime('%H:%M:%S')} committed {rows:,} rows · total read "
                f"{s.processed:,} · errors {s.errors:,} · warnings {s.warned:,}",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )

    try:
        watcher = Watcher(source, table, config, on_commit=on_commit, **kwargs)
    except (PixelsError, ValueError) as e:
        _print_error(console, e)
        sys.exit(2)

    def stop(signum: int, frame: Any) -> None:
        if watcher.stopping and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now (committed rows stay)
        watcher.stop()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    if not quiet:
        console.print(
            f"watching {watcher.root} ({watcher.stats.mode}) -> {table.uri}; Ctrl-C stops",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    try:
        stats = watcher.run()
    except PixelsError as e:
        _print_error(console, e)
        sys.exit(2)
    except KeyboardInterrupt:  # a second Ctrl-C: what was committed stays
        console.print("interrupted: rows not committed are read again by the next run")
        sys.exit(130)
    console.print(
        f"watched {stats.seconds:.0f} s · read {stats.processed:,} ({stats.dicom:,} DICOM) · "
        f"written {stats.written:,} in {stats.commits:,} commits · removed {stats.removed:,} · "
        f"errors {stats.errors:,} -> {table.uri}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    for msg in stats.error_samples[:5]:
        console.print(f"  error: {msg}", highlight=False, markup=False, soft_wrap=True)
    _print_warnings(console, stats, table.uri)


def _print_warnings(console: Any, stats: Any, table: str) -> None:
    """The run's warnings by kind: files with each, a few example paths."""
    if not stats.warned:
        return
    console.print(
        f"warnings: {stats.warned:,} files read with warnings (kept in the `warnings` column)",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    kinds = sorted(stats.warning_kinds.items(), key=lambda kv: -kv[1][0])
    for kind, (n, paths) in kinds:
        console.print(f"  {n:,} × {kind}", highlight=False, markup=False, soft_wrap=True)
        for p in paths:
            console.print(f"      e.g. {p}", highlight=False, markup=False, soft_wrap=True)
    console.print(
        f"  ... see all with: pixels sql --table {table} "
        '"SELECT path, warnings FROM object_catalog WHERE warnings IS NOT NULL"',
        markup=False,
        soft_wrap=True,
    )


@main.command("sql")
@click.argument("query")
@TABLE_OPTION
@click.option(
    "--format",
    "-f",
    "fmt",
    type=click.Choice(["table", "csv", "json", "parquet"]),
    default="table",
    show_default=True,
    help="Output format (json = one object per line).",
)
@click.option("--output", "-O", default=None, help="Write to this file instead of standard output.")
@click.option(
    "--max-rows", type=int, default=100, show_default=True, help="Rows shown by --format table."
)
@storage_option("Object-store option for a table URL (repeatable), e.g. key=..., endpoint_url=...")
def sql_cmd(
    query: str,
    table: str,
    fmt: str,
    output: str | None,
    max_rows: int,
    storage_option: tuple[str, ...] = (),
) -> None:
    """Run a DuckDB QUERY over the view object_catalog."""
    from pixels.catalog import Catalog
    from pixels.errors import PixelsError, QueryError

    try:
        result = Catalog(table, storage_options=_storage_options(storage_option)).sql_arrow(query)
    except QueryError as e:
        click.echo(f"SQL error: {e}", err=True)
        sys.exit(1)
    except PixelsError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    _write_result(result, fmt, output, max_rows)


def _write_result(result: Any, fmt: str, output: str | None, max_rows: int) -> None:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if fmt == "parquet":
        if output is None and sys.stdout.isatty():
            raise click.UsageError("--format parquet needs --output FILE (or a pipe)")
        sink: Any = output if output else sys.stdout.buffer
        pq.write_table(result, sink)
        return
    if fmt == "csv":
        buf = io.BytesIO()
        pacsv.write_csv(_printable(result), buf)
        _emit(buf.getvalue().decode("utf-8"), output)
        return
    if fmt == "json":
        lines = [
            json.dumps(r, default=str, ensure_ascii=False) for r in _printable(result).to_pylist()
        ]
        _emit("\n".join(lines) + ("\n" if lines else ""), output)
        return
    from rich.console import Console
    from rich.table import Table

    with open(output, "w", encoding="utf-8") if output else contextlib.nullcontext(None) as fh:
        console = Console(file=fh, width=200 if output else None)
        t = Table(show_lines=False)
        for name in result.column_names:
            t.add_column(name, overflow="fold")
        for row in result.slice(0, max_rows).to_pylist():
            t.add_row(*(_cell(v) for v in row.values()))
        console.print(t)
        if result.num_rows > max_rows:
            console.print(
                f"({result.num_rows:,} rows, first {max_rows} shown; use --max-rows or --format csv)"
            )
        else:
            console.print(f"({result.num_rows:,} rows)")


def _printable(result: Any) -> Any:
    """Binary and nested columns turned into text for CSV/JSON."""
    import pyarrow as pa
    import pyarrow.compute as pc

    cols = []
    for name in result.column_names:
        col = result.column(name)
        if pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type):
            col = pc.binary_length(col).cast(pa.string())  # lengths, not raw bytes
            name = f"{name}_bytes"
        elif pa.types.is_list(col.type) or pa.types.is_struct(col.type):
            col = pa.array(
                [json.dumps(v, default=str) if v is not None else None for v in col.to_pylist()]
            )
        cols.append((name, col))
    return pa.table(dict(cols))


def _cell(v: Any, limit: int = 120) -> str:
    if v is None:
        return "∅"
    if isinstance(v, bytes):
        return f"<{len(v)} bytes>"
    s = str(v)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _emit(text: str, output: str | None) -> None:
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)


@main.command("thumbnails")
@TABLE_OPTION
@click.option(
    "--where", default=None, help="SQL predicate on the catalog, e.g. \"Modality = 'CT'\"."
)
@click.option("--force", is_flag=True, help="Make them again where one exists.")
@click.option("--size", "size", type=int, default=256, show_default=True, help="Longest side.")
@click.option(
    "--format", "fmt", type=click.Choice(["jpeg", "png"]), default="jpeg", show_default=True
)
@click.option("--workers", "-w", type=int, default=None, help="Worker processes [default: CPUs].")
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
    from pixels.engines.worker import block_pandas
    from pixels.errors import PixelsError, QueryError
    from pixels.table import CatalogTable
    from pixels.thumbnails import run_thumbnails

    block_pandas()
    opts = RecordOptions(
        thumbnails=True,
        thumbnail_size=size,
        thumbnail_format=fmt,
        storage_options=_storage_options(storage_option),
    )
    try:
        stats = run_thumbnails(
            CatalogTable(table), where=where, force=force, workers=workers, options=opts
        )
    except QueryError as e:
        click.echo(f"SQL error in --where: {e}", err=True)
        sys.exit(1)
    except PixelsError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    click.echo(
        f"thumbnails: {stats.made:,} made · {stats.errors:,} errors · {stats.rows:,} rows in "
        f"{stats.files:,} data files rewritten · {stats.conflicts:,} skipped (changed meanwhile) · "
        f"{stats.seconds:.1f} s",
        err=True,
    )


@main.command("show")
@TABLE_OPTION
@click.option("--where", default=None, help="SQL predicate, e.g. \"Modality = 'CT'\".")
@click.option("--out", "-O", required=True, help="Image to write (.png or .jpg).")
@click.option("--limit", type=int, default=48, show_default=True, help="At most this many tiles.")
@click.option("--columns", type=int, default=8, show_default=True, help="Tiles per row.")
@click.option("--size", type=int, default=256, show_default=True, help="Tile size in pixels.")
def show_cmd(table: str, where: str | None, out: str, limit: int, columns: int, size: int) -> None:
    """Write a contact sheet of the selected rows' thumbnails (made on the fly where missing)."""
    from pixels.dicom.contact import Tile, contact_sheet
    from pixels.dicom.record import RecordOptions, thumbnail_rows
    from pixels.errors import PixelsError, QueryError
    from pixels.table import CatalogTable
    from pixels.thumbnails import iter_thumbnail_rows

    opts = RecordOptions(thumbnails=True, thumbnail_size=size, thumbnail_format="png")
    tiles = []
    try:
        for row in iter_thumbnail_rows(CatalogTable(table), where, limit):
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
    except QueryError as e:
        click.echo(f"SQL error in --where: {e}", err=True)
        sys.exit(1)
    except PixelsError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    if not tiles:
        click.echo("no rows match", err=True)
        sys.exit(1)
    fmt = "jpeg" if out.lower().endswith((".jpg", ".jpeg")) else "png"
    with open(out, "wb") as fh:
        fh.write(contact_sheet(tiles, columns=columns, cell=size, fmt=fmt))
    shown = sum(1 for t in tiles if t.image)
    click.echo(f"wrote {out}: {len(tiles)} tiles ({shown} with an image)", err=True)


@main.command("patches")
@TABLE_OPTION
@click.option("--out", "-O", required=True, help="Delta table to write the patches to (appended).")
@click.option(
    "--where", default=None, help="SQL predicate on the catalog, e.g. \"Modality = 'MG'\"."
)
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
@click.option(
    "--format", "fmt", type=click.Choice(["png", "raw"]), default="png", show_default=True
)
@click.option("--frames", type=click.Choice(["all", "middle"]), default="all", show_default=True)
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
    from pixels.errors import PixelsError, QueryError
    from pixels.patching import write_patches

    try:
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
    except QueryError as e:
        click.echo(f"SQL error in --where: {e}", err=True)
        sys.exit(1)
    except PixelsError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    click.echo(
        f"patches: {stats['patches']:,} from {stats['files']:,} files · {stats['errors']:,} errors · "
        f"{stats['seconds']:.1f} s -> {out}",
        err=True,
    )


@main.command("segment")
@TABLE_OPTION
@click.option(
    "--where", default=None, help="SQL predicate on the catalog, e.g. \"Modality = 'CT'\"."
)
@click.option(
    "--model", "-m", default="ct-tissue", show_default=True, help="ct-tissue, bundle:PATH, ..."
)
@click.option("--force", is_flag=True, help="Segment again series that have a SEG by this model.")
@click.option("--workers", "-w", type=int, default=None, help="Processes [default: CPUs, max 4].")
@click.option(
    "--output", default=None, help="Folder for the SEGs [default: seg/ next to the table]."
)
@click.option("--labelmap", is_flag=True, help="Label Map SEGs instead of binary ones.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def segment_cmd(
    table: str,
    where: str | None,
    model: str,
    force: bool,
    workers: int | None,
    output: str | None,
    labelmap: bool,
    quiet: bool,
) -> None:
    """Segment the selected series with MODEL: one DICOM SEG per series, cataloged at once."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from pixels.catalog import Catalog
    from pixels.errors import PixelsError, QueryError
    from pixels.ml.segment import run_segment

    console = Console(stderr=True)
    bar = Progress(
        TextColumn("[bold]segmenting"), BarColumn(), MofNCompleteColumn(), console=console,
        disable=quiet,
    )  # fmt: skip
    task = bar.add_task("segment", total=None)

    def on_result(stats: object, r: object) -> None:
        bar.update(task, completed=len(stats.results), total=stats.series)  # type: ignore[attr-defined]
        if r.status == "error":  # type: ignore[attr-defined]
            console.print(f"  error: {r.message}", markup=False, highlight=False, soft_wrap=True)  # type: ignore[attr-defined]

    try:
        with bar:
            stats = run_segment(
                Catalog(table), model, where=where, force=force, workers=workers,
                output=output, labelmap=labelmap, progress=on_result,
            )  # fmt: skip
    except QueryError as e:
        console.print(f"SQL error in --where: {e}", markup=False, soft_wrap=True)
        sys.exit(1)
    except PixelsError as e:
        console.print(f"error: {e}", markup=False, soft_wrap=True)
        sys.exit(2)
    console.print(
        f"series {stats.series:,} · segmented {stats.segmented:,} · skipped {stats.skipped:,} "
        f"(already segmented) · errors {stats.errors:,} · {stats.seconds:.1f} s",
        soft_wrap=True,
    )
    if stats.errors:
        sys.exit(3)


@main.command("models")
def models_cmd() -> None:
    """List the segmentation models, whether each can run here, and why not."""
    from pixels.ml.models import available_models

    for info in available_models():
        mark = "ok " if info.available else "NO "
        click.echo(f"{mark} {info.name:<14} {info.description}")
        click.echo(f"    {info.reason}")


@main.command("serve")
@TABLE_OPTION
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind (loopback unless told otherwise).",
)
@click.option("--port", "-p", type=int, default=8042, show_default=True)
@click.option(
    "--token",
    default=None,
    envvar="PIXELS_TOKEN",
    help="Bearer token required on /dicomweb [env PIXELS_TOKEN].",
)
@click.option(
    "--storage-root",
    default=None,
    help="Where STOW-RS writes files [default: stow/ next to the table].",
)
@click.option(
    "--public-url", default=None, help="URL clients reach the server at (behind a proxy)."
)
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    metavar="NAME",
    help="Another host name clients may send in the Host header (repeatable; '*.example.org' "
    "patterns; '*' for any). Loopback names and the address bound are always allowed.",
)
@click.option(
    "--allow-unauthenticated",
    is_flag=True,
    help="Serve on an address other than loopback without a token (anyone who can reach "
    "it can read the catalog).",
)
@storage_option(
    "Object-store option for a table URL and the files it lists (repeatable), "
    "e.g. key=..., endpoint_url=..."
)
def serve_cmd(
    table: str,
    host: str,
    port: int,
    token: str | None,
    storage_root: str | None,
    public_url: str | None,
    allowed_hosts: tuple[str, ...],
    allow_unauthenticated: bool,
    storage_option: tuple[str, ...] = (),
) -> None:
    """Serve the catalog over DICOMweb (QIDO-RS, WADO-RS, STOW-RS) at /dicomweb, OHIF at /."""
    from pixels.errors import PixelsError
    from pixels.storage import delta_options, is_local
    from pixels.web.app import serve
    from pixels.web.ohif import installed_version
    from pixels.web.security import check_binding

    try:
        check_binding(host, token, allow_unauthenticated)
    except PixelsError as e:
        raise click.ClickException(str(e)) from e
    # the server reads the table (delta-rs) and the files it lists (fsspec) from
    # many places: -o options become this process's environment, read by both
    options = _storage_options(storage_option)
    if options:
        where = table if not is_local(table) else "s3://"
        os.environ.update(delta_options(where, options) or {})
    shown = f"[{host}]" if ":" in host else host
    base = public_url.rstrip("/") if public_url else f"http://{shown}:{port}"
    catalog = table if not is_local(table) else os.path.abspath(table)
    click.echo(f"DICOMweb: {base}/dicomweb  (catalog {catalog})", err=True)
    if installed_version():
        hint = "  (viewer URLs take ?token=...)" if token else ""
        click.echo(f"Viewer:   {base}/{hint}", err=True)
    else:
        click.echo("Viewer:   not installed (python -m pixels.web.ohif install)", err=True)
    try:
        serve(
            table,
            host=host,
            port=port,
            token=token,
            storage_root=storage_root,
            public_url=public_url,
            allowed_hosts=allowed_hosts,
            allow_unauthenticated=allow_unauthenticated,
        )
    except PixelsError as e:
        raise click.ClickException(str(e)) from e


@main.command("optimize")
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
@storage_option("Object-store option for a table URL (repeatable), e.g. key=..., endpoint_url=...")
def optimize_cmd(
    table: str,
    retention_hours: int | None,
    cluster: bool = False,
    storage_option: tuple[str, ...] = (),
) -> None:
    """Compact the table's small files and vacuum files replaced long enough ago."""
    from pixels.catalog import Catalog

    cat = Catalog(table, storage_options=_storage_options(storage_option))
    metrics = cat.optimize(retention_hours=retention_hours, cluster=cluster)
    keys = ("numFilesAdded", "numFilesRemoved", "filesVacuumed", "rowsUpgraded")
    click.echo(json.dumps({k: metrics.get(k) for k in keys}))


@main.command("upgrade")
@TABLE_OPTION
@storage_option("Object-store option for a table URL (repeatable), e.g. key=..., endpoint_url=...")
def upgrade_cmd(table: str, storage_option: tuple[str, ...] = ()) -> None:
    """Rewrite the rows an older Pixels wrote into the current schema (once; resumable).

    Old rows read with rowId and is_anon derived from their path until then; writes
    never rewrite them. Each data file is replaced in a commit of its own: a run
    stopped half-way goes on where it stopped when run again. `pixels optimize`
    does it too.
    """
    from pixels.errors import PixelsError
    from pixels.table import CatalogTable

    t = CatalogTable(table, storage_options=_storage_options(storage_option))
    if not t.exists():
        raise click.ClickException(f"no catalog table at {table}")
    try:
        metrics = t.upgrade()
    except PixelsError as e:
        raise click.ClickException(str(e)) from e
    click.echo(json.dumps(metrics))


@main.command("schema")
@click.option("--markdown", is_flag=True, help="As a Markdown table (used in the README).")
def schema_cmd(markdown: bool) -> None:
    """Print the catalog's columns."""
    from pixels.schema import SCHEMA, markdown_table

    click.echo(markdown_table() if markdown else str(SCHEMA))


@main.command("demo")
@click.option(
    "--table",
    "-t",
    default="./sample-catalog",
    show_default=True,
    help="Where to write the demo table.",
)
@click.option("--workers", "-w", type=int, default=None, help="Worker processes.")
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


if __name__ == "__main__":  # pragma: no cover
    main()
