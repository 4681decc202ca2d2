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
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from pixels.deltalog import parquet_source, read_log
from pixels.schema_names import COLUMN_NAMES, DESCRIPTION, VIEW_NAME
from pixels.storage import delta_options, is_local, local_path

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa
    from deltalake import DeltaTable

    from pixels.scan import TableScan

# duckdb, pyarrow, deltalake, pixels.scan and pixels.errors are imported where used:
# ``pixels sql`` reading a plain local log (:func:`connect_from_log`) needs none of them

__all__ = ["TableReader", "connect", "connect_from_log", "duckdb_module", "point_values", "query"]


def duckdb_module() -> Any:
    """DuckDB's compiled engine, ``_duckdb``: what the ``duckdb`` package re-exports
    (``connect``, ``Error``, the connection class), without the package's own Python
    layer (its relational API and version look-up: ~0.25 s of CPU at import); the
    ``duckdb`` package where its engine is not a module of that name."""
    try:
        import _duckdb

        return _duckdb
    except ImportError:  # pragma: no cover - other DuckDB builds
        import duckdb

        return duckdb


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
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        from pixels.errors import TableError

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
        from pixels.scan import TableScan

        dt = self.delta()
        legacy = (dt.metadata().description or "") != DESCRIPTION
        uniform = not legacy and set(dt.schema().to_arrow().names) == set(COLUMN_NAMES)
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
    con = con or duckdb_module().connect()
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
    tree = select_tree(sql, con or duckdb_module().connect())
    return {} if tree is None else _point_values(tree, params)


def select_tree(sql: str, con: Any) -> dict[str, Any] | None:
    """``sql`` parsed by DuckDB (``json_serialize_sql``) when it is one ``SELECT``, else None."""
    try:
        # named: DuckDB names an unnamed call by printing it, which builds its keyword
        # table on first use (~4 ms of a process's first query)
        tree = json.loads(
            con.execute("SELECT json_serialize_sql(?) AS tree", [sql]).fetchall()[0][0]
        )
    except (duckdb_module().Error, ValueError, IndexError, TypeError):
        return None
    statements = tree.get("statements") if isinstance(tree, dict) else None
    if not isinstance(tree, dict) or tree.get("error") or not statements or len(statements) != 1:
        return None
    return tree


def _point_values(tree: dict[str, Any], params: list[Any]) -> dict[str, set[str]]:
    node = tree["statements"][0].get("node", {})
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
    import pyarrow as pa

    wanted = point_values(sql, params, con)
    if not wanted:
        return scan
    dt = table.delta()
    if dt.version() != scan.version:
        return scan
    # the Arrow stream, not ``pa.table``: that asks pandas first (importing it, 0.3-1.4 s)
    adds = pa.RecordBatchReader.from_stream(dt.get_add_actions(flatten=True)).read_all()
    root = table.uri.rstrip("/") + "/"
    by_path = {u[len(root) :] if u.startswith(root) else u: u for u in scan.files}
    row_of: dict[str, int] = {}
    for i, rel in enumerate(adds["path"].to_pylist()):
        uri = by_path.get(rel) or next((u for u in scan.files if u.endswith("/" + rel)), None)
        if uri is None:
            return scan  # the log and the scan disagree: read everything
        row_of[uri] = i
    if len(row_of) != len(scan.files):
        return scan
    order = [row_of[u] for u in scan.files]
    columns = {}
    for name in adds.column_names:
        if name.lower().startswith("min.") and f"max.{name[4:]}" in adds.column_names:
            los, his = adds[name].to_pylist(), adds[f"max.{name[4:]}"].to_pylist()
            columns[name[4:].lower()] = ([los[i] for i in order], [his[i] for i in order])
    keep = files_holding(scan.files, columns, wanted)
    return scan if keep is None else scan.restricted(keep)


def files_holding(
    files: Sequence[str],
    statistics: Mapping[str, tuple[Sequence[Any], Sequence[Any]]],
    wanted: Mapping[str, set[str]],
) -> list[str] | None:
    """The ``files`` whose statistics may hold the ``wanted`` values; None for all of them.

    ``statistics``: per lower-case column name, the minimums and maximums of each file
    (as ``files``; None where unknown). Only string statistics count (a date or number
    compared with a string is DuckDB's cast to make, not a range test here). When no
    file can hold the values, the first one is kept: it gives the view its columns.
    """
    ranges: list[tuple[Sequence[Any], Sequence[Any], set[str]]] = []
    for col, values in wanted.items():
        if col in statistics:
            los, his = statistics[col]
            if all(v is None or isinstance(v, str) for v in [*los, *his]):
                ranges.append((los, his, values))
    if not ranges:
        return None
    keep = [
        uri
        for i, uri in enumerate(files)
        if all(
            lo[i] is None or hi[i] is None or any(lo[i] <= v <= hi[i] for v in values)
            for lo, hi, values in ranges
        )
    ]
    if len(keep) == len(files):
        return None
    return keep or list(files[:1])


def connect_from_log(uri: str, sql: str, con: Any) -> bool:
    """Create the view ``object_catalog`` for running ``sql`` on ``con`` from the Delta
    log alone (:func:`pixels.deltalog.read_log`): no delta-rs, pyarrow or pixels.scan.

    The same view as :func:`connect` makes (the same files, pruned by the same
    statistics), for a local table whose version's files hold its rows and whose rows
    are in the current schema; False (nothing done) for any other table, and for a
    ``sql`` that is not one ``SELECT``: :func:`connect` then reads it.
    """
    if not is_local(uri):
        return False
    tree = select_tree(sql, con)
    if tree is None:
        return False
    root = os.path.abspath(local_path(uri))
    snap = read_log(root, con)
    if snap is None or snap.features or not snap.files or snap.description != DESCRIPTION:
        return False
    files: Sequence[str] = snap.files
    wanted = _point_values(tree, []) if len(files) > 1 else {}
    if wanted:
        files = files_holding(files, snap.bounds(wanted), wanted) or files
    uniform = set(snap.columns) == set(COLUMN_NAMES)
    con.execute("SET TimeZone='UTC'")
    try:  # the footers the view's binding read serve the query too (a data file never changes)
        con.execute("SET parquet_metadata_cache = true")
    except duckdb_module().Error:  # pragma: no cover - a DuckDB without the setting
        pass
    con.execute(
        f"CREATE OR REPLACE VIEW {VIEW_NAME} AS SELECT * FROM {parquet_source(files, uniform)}"
    )
    return True


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
    import pyarrow as pa

    from pixels.errors import QueryError

    con = connect(table, sql=sql, params=params)
    try:
        rel = con.sql(sql, params=params or None)
        if rel is None:  # a statement that returns nothing (SET, CREATE ...)
            return pa.table({})
        return rel.to_arrow_table()
    except duckdb_module().Error as e:
        raise QueryError(str(e)) from e
    finally:
        con.close()
