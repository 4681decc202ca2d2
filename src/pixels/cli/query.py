"""``pixels sql``: a DuckDB query over the catalog, printed as a table, CSV, JSON or Parquet.

The options are :data:`pixels.cli.sqlfast.SQL_OPTIONS` (which the console script's fast
path parses without click); this command reads the table with delta-rs
(:class:`pixels.sql.TableReader`) and writes the Arrow result.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from pixels.cli.options import exit_on_error, parse_storage_options
from pixels.cli.sqlfast import (
    BINARY,
    NESTED,
    PLAIN,
    SQL_OPTIONS,
    emit,
    printable_rows,
    write_json,
    write_table,
)

__all__ = ["sql_cmd"]


def _with_options(command: Any) -> Any:
    for opt in reversed(SQL_OPTIONS):
        command = click.option(
            *opt.decls,
            opt.dest,
            type=click.Choice(list(opt.choices)) if opt.choices else opt.type,
            default=opt.default,
            multiple=opt.multiple,
            metavar=opt.metavar,
            show_default=opt.show_default,
            help=opt.help,
        )(command)
    return command


@click.command("sql")
@click.argument("query")
@_with_options
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
        import io

        import pyarrow.csv as pacsv

        buf = io.BytesIO()
        pacsv.write_csv(_printable(result), buf)
        emit(buf.getvalue().decode("utf-8"), output)
        return
    names = result.column_names
    if fmt == "json":
        names, rows = printable_rows(names, _kinds(result), _rows(result))
        if output:
            with open(output, "w", encoding="utf-8") as fh:
                write_json(names, rows, fh)
        else:
            write_json(names, rows, sys.stdout)
        return
    write_table(names, _rows(result.slice(0, max_rows)), result.num_rows, max_rows, output)


def _rows(result: Any) -> list[list[Any]]:
    columns = [result.column(i).to_pylist() for i in range(result.num_columns)]
    return [list(r) for r in zip(*columns, strict=True)] if columns else []


def _kinds(result: Any) -> list[str]:
    import pyarrow as pa

    kinds = []
    for t in result.schema.types:
        if pa.types.is_binary(t) or pa.types.is_large_binary(t):
            kinds.append(BINARY)
        elif pa.types.is_list(t) or pa.types.is_struct(t):
            kinds.append(NESTED)
        else:
            kinds.append(PLAIN)
    return kinds


def _printable(result: Any) -> Any:
    """Binary and nested columns turned into text for CSV (:func:`printable_rows`)."""
    import pyarrow as pa

    columns = []
    for i, (name, kind) in enumerate(zip(result.column_names, _kinds(result), strict=True)):
        col = result.column(i)
        if kind != PLAIN:
            (name,), rows = printable_rows([name], [kind], [[v] for v in col.to_pylist()])
            col = pa.array([r[0] for r in rows], pa.string())
        columns.append((name, col))
    return pa.table(dict(columns))
