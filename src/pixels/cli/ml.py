"""``pixels segment`` (one DICOM SEG per series and model) and ``pixels models``."""

from __future__ import annotations

import sys

import click

from pixels.cli.options import (
    QUIET_OPTION,
    TABLE_OPTION,
    require_table,
    warning_lines,
    where_option,
    workers_option,
)

__all__ = ["models_cmd", "segment_cmd"]


@click.command("segment")
@TABLE_OPTION
@where_option("CT")
@click.option(
    "--model", "-m", default="ct-tissue", show_default=True, help="ct-tissue, bundle:PATH, ..."
)
@click.option("--force", is_flag=True, help="Segment again series that have a SEG by this model.")
@workers_option("Processes [default: CPUs, max 4].")
@click.option(
    "--output", default=None, help="Folder for the SEGs [default: seg/ next to the table]."
)
@click.option("--labelmap", is_flag=True, help="Label Map SEGs instead of binary ones.")
@QUIET_OPTION
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
        require_table(table)
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
    if stats.warned:
        console.print(
            f"warnings: {stats.warned:,} series with warnings (pydicom, highdicom)", markup=False
        )
        for line in warning_lines(stats.warning_kinds):
            console.print(line, markup=False, highlight=False, soft_wrap=True)
    if stats.errors:
        sys.exit(3)


@click.command("models")
def models_cmd() -> None:
    """List the segmentation models, whether each can run here, and why not."""
    from pixels.ml.models import available_models

    for info in available_models():
        mark = "ok " if info.available else "NO "
        click.echo(f"{mark} {info.name:<14} {info.description}")
        click.echo(f"    {info.reason}")
