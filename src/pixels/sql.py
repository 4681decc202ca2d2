"""SQL over the catalog with DuckDB.

The Delta table's current Parquet files are read with ``read_parquet`` (DuckDB's
delta extension cannot be installed offline); the view is named
``object_catalog``. Files written by older schema versions are read with
``union_by_name`` so added columns read as null.
"""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa

from pixels.errors import QueryError
from pixels.schema import SCHEMA, VIEW_NAME
from pixels.table import CatalogTable


def connect(
    table: CatalogTable, con: duckdb.DuckDBPyConnection | None = None
) -> duckdb.DuckDBPyConnection:
    """Return a DuckDB connection with the view ``object_catalog`` over ``table``.

    The view is pinned to the table version current at this call.
    """
    con = con or duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    uris = table.file_uris()
    if uris:
        con.execute(
            f"CREATE OR REPLACE VIEW {VIEW_NAME} AS "
            "SELECT * FROM read_parquet(" + _list_literal(uris) + ", union_by_name=true)"
        )
    else:
        con.register("_pixels_empty", SCHEMA.empty_table())
        con.execute(f"CREATE OR REPLACE VIEW {VIEW_NAME} AS SELECT * FROM _pixels_empty")
    return con


def _list_literal(items: list[str]) -> str:
    return "[" + ", ".join("'" + s.replace("'", "''") + "'" for s in items) + "]"


def query(table: CatalogTable, sql: str, params: list[Any] | None = None) -> pa.Table:
    """Run ``sql`` against ``object_catalog`` and return an Arrow table.

    Parameters
    ----------
    table : CatalogTable
        The catalog.
    sql : str
        A DuckDB query; the catalog is the view ``object_catalog``.
    params : list, optional
        Values for ``?`` placeholders (always prefer these to string building).

    Raises
    ------
    QueryError
        With DuckDB's own message when the query is invalid.
    """
    con = connect(table)
    try:
        rel = con.sql(sql, params=params or None)
        if rel is None:  # a statement that returns nothing (SET, CREATE ...)
            return pa.table({})
        return rel.to_arrow_table()
    except duckdb.Error as e:
        raise QueryError(str(e)) from e
    finally:
        con.close()
