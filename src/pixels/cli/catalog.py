"""``pixels catalog``: list a source and catalog new or changed files, once or ``--watch``."""

from __future__ import annotations

import sys
from typing import Any

import click

from pixels.cli.options import (
    QUIET_OPTION,
    TABLE_OPTION,
    choice_option,
    keep_pandas_out,
    parse_storage_options,
    print_error,
    storage_option,
    warning_lines,
    workers_option,
)

__all__ = ["catalog_cmd"]


def _watch_seconds(name: str, help_text: str) -> Any:
    """A ``--watch`` duration in seconds (default 2)."""
    return click.option(
        name, type=float, default=2.0, show_default=True, help=f"With --watch: {help_text}"
    )


@click.command("catalog")
@click.argument("source")
@TABLE_OPTION
@workers_option("Worker processes [default: CPUs; 0 = in-process].")
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
@choice_option(
    "--thumbnail-format", choices=["jpeg", "png"], default="jpeg", help_text="Thumbnail encoding."
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
@_watch_seconds("--poll-interval", "seconds between walks when polling.")
@_watch_seconds("--settle", "seconds a file must stay unchanged (size, times) before it is read.")
@choice_option(
    "--deletions",
    choices=["keep", "remove"],
    default="keep",
    help_text="With --watch: keep the rows of deleted files (as Auto Loader does) or remove them.",
)
@QUIET_OPTION
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
    from pixels.errors import PixelsError

    keep_pandas_out()  # this command never builds a DataFrame
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
    cat = Catalog(table, storage_options=parse_storage_options(storage_option))
    # one set of options for both engines (batch and --watch)
    config = CatalogOptions(
        workers=workers,
        pattern=pattern,
        recursive=not no_recursive,
        expand_archives=not no_archives,
        extract_dir=extract_dir,
        record=RecordOptions(
            storage_options=parse_storage_options(storage_option),
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
        print_error(console, e)
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
    if thumbnails and stats.unchanged:
        # a re-run reads only new or changed files: the rows of the others keep no thumbnail
        console.print(
            f"  note: --thumbnails made thumbnails for the files read; the {stats.unchanged:,} "
            f"unchanged files were not read again: pixels thumbnails --table {table} "
            "makes them for the rows that lack one",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )


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
        print_error(console, e)
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
        print_error(console, e)
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
    for line in warning_lines(stats.warning_kinds):
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    console.print(
        f"  ... see all with: pixels sql --table {table} "
        '"SELECT path, warnings FROM object_catalog WHERE warnings IS NOT NULL"',
        markup=False,
        soft_wrap=True,
    )
