"""SQL over the catalog with DuckDB.

The view ``object_catalog`` is one version of the table read through
:class:`pixels.scan.TableScan`: DuckDB over the version's Parquet files
(``union_by_name``, so columns added by later schema versions read as null; files
on object stores through fsspec, with the table's storage options), or delta-rs
where deletion vectors, column mapping or other protocol features decide which
rows the files hold.

A query whose ``WHERE`` holds ``column = value`` (or ``column IN (...)``) on its one
reference to ``object_catalog`` reads only the data files whose Delta statistics
(``minValues``/``maxValues``, written by ``pixels optimize --cluster``) may hold a
value: at 10M rows in 50 clustered files, a look-up by StudyInstanceUID opens one
file's footer instead of 50 (each footer ~0.5 MB: 2,048-row row groups).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any, Protocol

import duckdb
import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from pixels.errors import QueryError, TableError
from pixels.scan import TableScan
from pixels.schema import DESCRIPTION, SCHEMA, VIEW_NAME
from pixels.storage import delta_options, is_local, local_path

__all__ = ["TableReader", "connect", "point_values", "query"]


class Readable(Protocol):
    """What :func:`connect` reads: a :class:`~pixels.table.CatalogTable` or a
    :class:`TableReader`."""

    uri: str

    def scan(self) -> TableScan: ...

    def delta(self) -> DeltaTable: ...


class TableReader:
    """A catalog table opened to read only: what ``pixels sql`` needs of
    :class:`~pixels.table.CatalogTable` (its URI, the current version's scan and the
    Delta log), without the writer's imports (the identity rule, the sources, fsspec,
    Parquet writing: about 0.3 s of CPU at the start of every ``pixels sql``).

    Raises
    ------
    TableError
        (from :meth:`scan`) When no catalog table is at ``uri`` or it cannot be read.
    """

    def __init__(self, uri: str | os.PathLike[str], storage_options: dict[str, Any] | None = None):
        uri = os.fspath(uri)
        self.uri = os.path.abspath(uri) if is_local(uri) and "://" not in uri else uri
        self.storage_options = delta_options(self.uri, storage_options)
        self._dt: DeltaTable | None = None

    def delta(self) -> DeltaTable:
        """The Delta table, loaded once (the version :meth:`scan` read)."""
        if self._dt is None:
            if is_local(self.uri) and os.path.isfile(local_path(self.uri)):
                raise TableError("a file is in the way: a table is a folder", self.uri)
            try:
                self._dt = DeltaTable(self.uri, storage_options=self.storage_options)
            except TableNotFoundError as e:
                raise TableError(
                    "no catalog table here (no _delta_log): run `pixels catalog` first, "
                    "or pass --table",
                    self.uri,
                ) from e
            except OSError as e:
                raise TableError(
                    f"cannot read the table: {str(e).splitlines()[0]}", self.uri
                ) from e
        return self._dt

    def scan(self) -> TableScan:
        """The current version, as :meth:`pixels.table.CatalogTable.scan` reads it."""
        dt = self.delta()
        legacy = (dt.metadata().description or "") != DESCRIPTION
        uniform = not legacy and set(dt.schema().to_arrow().names) == set(SCHEMA.names)
        return TableScan.of(dt, self.uri, self.storage_options, legacy=legacy, uniform=uniform)


def connect(
    table: Readable,
    con: duckdb.DuckDBPyConnection | None = None,
    *,
    sql: str | None = None,
    params: list[Any] | None = None,
) -> duckdb.DuckDBPyConnection:
    """Return a DuckDB connection with the view ``object_catalog`` over ``table``.

    The view is pinned to the table version current at this call. With ``sql``
    (and its ``params``), the view holds only the data files that query can find
    rows in (see the module docstring): for running that one query.
    """
    con = con or duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    scan = table.scan()
    if sql is not None and scan.direct and len(scan.files) > 1:
        scan = _pruned(table, scan, con, sql, params or [])
    scan.register(con)
    return con


def _conjuncts(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if node.get("type") == "CONJUNCTION_AND":
        for child in node.get("children", []):
            yield from _conjuncts(child)
    else:
        yield node


def _references(node: Any) -> Iterator[None]:
    """One item per reference to the view anywhere in a serialized statement."""
    if isinstance(node, dict):
        if (
            node.get("type") == "BASE_TABLE"
            and str(node.get("table_name", "")).lower() == VIEW_NAME.lower()
        ):
            yield None
        for v in node.values():
            yield from _references(v)
    elif isinstance(node, list):
        for v in node:
            yield from _references(v)


def _value(node: dict[str, Any], params: list[Any]) -> tuple[bool, Any]:
    """The constant (or bound ``?``) a node stands for: (False, None) when it is neither."""
    if node.get("class") == "CONSTANT":
        lit = node.get("value") or node.get("literal") or {}
        if isinstance(lit, dict) and "text" in lit and lit.get("kind", "STRING") == "STRING":
            return True, lit["text"]
        if isinstance(lit, dict) and lit.get("type", {}).get("id") == "VARCHAR":
            return True, lit.get("value")
        return False, None
    if node.get("class") == "PARAMETER":
        try:
            return True, params[int(node["identifier"]) - 1]
        except (KeyError, ValueError, IndexError, TypeError):
            return False, None
    return False, None


def _column(node: dict[str, Any], alias: str) -> str | None:
    if node.get("class") != "COLUMN_REF":
        return None
    names = node.get("column_names", [])
    if len(names) == 1 or (len(names) == 2 and names[0].lower() in (alias, VIEW_NAME.lower())):
        return str(names[-1]).lower()
    return None


def point_values(
    sql: str, params: list[Any], con: duckdb.DuckDBPyConnection | None = None
) -> dict[str, set[str]]:
    """The string values each column must equal for a row of ``object_catalog`` to match
    ``sql`` (lower-case column names; empty when the query is not that simple).

    Only a single ``SELECT`` whose one reference to ``object_catalog`` is its ``FROM``
    and whose ``WHERE`` is a conjunction counts: anything else (joins, subqueries or
    set operations over the view, ``OR``) leaves every file in.
    """
    runner = con or duckdb
    try:
        tree = json.loads(runner.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()[0][0])
    except (duckdb.Error, ValueError, IndexError, TypeError):
        return {}
    statements = tree.get("statements") or []
    if tree.get("error") or len(statements) != 1:
        return {}
    node = statements[0].get("node", {})
    source = node.get("from_table") or {}
    if (
        node.get("type") != "SELECT_NODE"
        or (node.get("cte_map") or {}).get("map")
        or source.get("type") != "BASE_TABLE"
        or str(source.get("table_name", "")).lower() != VIEW_NAME.lower()
        or source.get("schema_name")
        or sum(1 for _ in _references(tree)) != 1
        or not node.get("where_clause")
    ):
        return {}
    alias = str(source.get("alias") or VIEW_NAME).lower()
    found: dict[str, set[str]] = {}
    for cond in _conjuncts(node["where_clause"]):
        col, values = None, []
        if cond.get("type") == "COMPARE_EQUAL":
            for a, b in (
                (cond.get("left"), cond.get("right")),
                (cond.get("right"), cond.get("left")),
            ):
                col = _column(a or {}, alias)
                ok, v = _value(b or {}, params)
                if col and ok:
                    values = [v]
                    break
                col = None
        elif cond.get("type") == "COMPARE_IN":
            first, *rest = cond.get("children") or [{}]
            col = _column(first, alias)
            got = [_value(c, params) for c in rest]
            if not rest or not all(ok for ok, _ in got):
                col = None
            values = [v for _, v in got]
        if col and values and all(isinstance(v, str) for v in values):
            keep = set(values)
            found[col] = found[col] & keep if col in found else keep
    return found


def _pruned(
    table: Readable,
    scan: TableScan,
    con: duckdb.DuckDBPyConnection,
    sql: str,
    params: list[Any],
) -> TableScan:
    """``scan`` limited to the files whose Delta statistics may hold ``sql``'s values."""
    wanted = point_values(sql, params, con)
    if not wanted:
        return scan
    dt = table.delta()
    if dt.version() != scan.version:
        return scan
    # the Arrow stream, not ``pa.table``: that asks pandas first (importing it, 0.3-1.4 s)
    adds = pa.RecordBatchReader.from_stream(dt.get_add_actions(flatten=True)).read_all()
    names = {n.lower(): n for n in adds.column_names}
    ranges: list[tuple[list[Any], list[Any], set[str]]] = []
    for col, values in wanted.items():
        lo, hi = names.get(f"min.{col}"), names.get(f"max.{col}")
        if lo and hi:
            los, his = adds[lo].to_pylist(), adds[hi].to_pylist()
            # string statistics only (a date or number compared with a string is
            # DuckDB's cast to make, not a range test here)
            if all(v is None or isinstance(v, str) for v in [*los, *his]):
                ranges.append((los, his, values))
    if not ranges:
        return scan
    root = table.uri.rstrip("/") + "/"
    by_path = {u[len(root) :] if u.startswith(root) else u: u for u in scan.files}
    keep: list[str] = []
    for i, rel in enumerate(adds["path"].to_pylist()):
        uri = by_path.get(rel) or next((u for u in scan.files if u.endswith("/" + rel)), None)
        if uri is None:
            return scan  # the log and the scan disagree: read everything
        if all(
            lo[i] is None or hi[i] is None or any(lo[i] <= v <= hi[i] for v in values)
            for lo, hi, values in ranges
        ):
            keep.append(uri)
    if len(keep) == len(scan.files):
        return scan
    # no file can hold the values: one file still gives the view its columns
    return scan.restricted(keep or list(scan.files[:1]))


def query(table: Readable, sql: str, params: list[Any] | None = None) -> pa.Table:
    """Run ``sql`` against ``object_catalog`` and return an Arrow table.

    Parameters
    ----------
    table : CatalogTable or TableReader
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
    con = connect(table, sql=sql, params=params)
    try:
        rel = con.sql(sql, params=params or None)
        if rel is None:  # a statement that returns nothing (SET, CREATE ...)
            return pa.table({})
        return rel.to_arrow_table()
    except duckdb.Error as e:
        raise QueryError(str(e)) from e
    finally:
        con.close()
