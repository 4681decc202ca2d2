"""SQL over the catalog with DuckDB.

The view ``object_catalog`` is one version of the table read through
:class:`pixels.scan.TableScan`: DuckDB over the version's Parquet files
(``union_by_name``, so columns added by later schema versions read as null; files
on object stores through fsspec, with the table's storage options), or delta-rs
where deletion vectors, column mapping or other protocol features decide which
rows the files hold.
"""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa

from pixels.errors import QueryError
from pixels.table import CatalogTable


def connect(
    table: CatalogTable, con: duckdb.DuckDBPyConnection | None = None
) -> duckdb.DuckDBPyConnection:
    """Return a DuckDB connection with the view ``object_catalog`` over ``table``.

    The view is pinned to the table version current at this call.
    """
    con = con or duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    table.scan().register(con)
    return con


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
