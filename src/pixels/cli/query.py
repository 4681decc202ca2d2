"""``pixels sql``: a DuckDB query over the catalog, printed as a table, CSV, JSON or Parquet."""

from __future__ import annotations

import contextlib
import io
import json
import sys
from typing import Any

import click

from pixels.cli.options import (
    TABLE_OPTION,
    TABLE_STORAGE_OPTION,
    choice_option,
    exit_on_error,
    parse_storage_options,
)

__all__ = ["sql_cmd"]


@click.command("sql")
@click.argument("query")
@TABLE_OPTION
@choice_option(
    "--format",
    "-f",
    "fmt",
    choices=["table", "csv", "json", "parquet"],
    default="table",
    help_text="Output format (json = one object per line).",
)
@click.option("--output", "-O", default=None, help="Write to this file instead of standard output.")
@click.option(
    "--max-rows", type=int, default=100, show_default=True, help="Rows shown by --format table."
)
@TABLE_STORAGE_OPTION
def sql_cmd(
    query: str,
    table: str,
    fmt: str,
    output: str | None,
    max_rows: int,
    storage_option: tuple[str, ...] = (),
) -> None:
    """Run a DuckDB QUERY over the view object_catalog."""
    # pixels.sql and its TableReader only, not pixels.catalog nor pixels.table: their
    # imports (pydicom, the engines, the writer's fsspec and Parquet) took most of a
    # point look-up's time at start-up
    from pixels.sql import TableReader
    from pixels.sql import query as run_query

    options = parse_storage_options(storage_option)
    with exit_on_error("SQL error"):
        result = run_query(TableReader(table, storage_options=options), query)
    _write_result(result, fmt, output, max_rows)


def _write_result(result: Any, fmt: str, output: str | None, max_rows: int) -> None:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        if output is None and sys.stdout.isatty():
            raise click.UsageError("--format parquet needs --output FILE (or a pipe)")
        sink: Any = output if output else sys.stdout.buffer
        pq.write_table(result, sink)
        return
    if fmt == "csv":
        import pyarrow.csv as pacsv

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

    cols = []
    for name in result.column_names:
        col = result.column(name)
        if pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type):
            import pyarrow.compute as pc  # only here: its import is ~0.1 s of a look-up

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
