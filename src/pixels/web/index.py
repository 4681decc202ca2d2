"""The DICOMweb server's in-memory index of the catalog, one per table version.

Every request used to open a DuckDB connection, list the table's files and
de-duplicate all instances (reading every ``meta``) before answering. Instead,
once per table version, :class:`Snapshot` builds in one DuckDB connection:

- ``inst``: one row per SOP instance (de-duplicated as
  :data:`_DEDUP` below) with the key columns only, no ``meta``
  (``StudyID`` and ``ReferringPhysicianName`` are extracted from it once);
- ``study_sum`` / ``series_sum``: one row per study / series with the counts and
  modalities QIDO returns;
- in Python, the ``meta`` of each study's and series' first instance (the one
  QIDO returns attributes from), keyed by path.

Queries run on these small in-memory tables; ``meta`` for other rows is read from
the version's rows (:class:`pixels.scan.TableScan`: the Parquet files, local or on
an object store, or delta-rs where deletion vectors or column mapping apply)
with a predicate DuckDB pushes down (study / series UID).
Whether the table changed is checked on every request, cheaply: a ``stat`` of the
local ``_delta_log`` folder (remote tables: the Delta log, at most once a second),
so rows added by ``pixels catalog`` or STOW-RS are visible to the next request.
"""

from __future__ import annotations

import bisect
import os
import re
import threading
import time
import weakref
from collections.abc import Iterable
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pixels.scan import TableScan
from pixels.schema import SCHEMA, VIEW_NAME
from pixels.storage import is_local, local_path
from pixels.table import CatalogTable, sql_string

__all__ = ["Snapshot", "TableIndex", "index_of"]

#: Columns of the in-memory ``inst`` table (besides the two extracted from ``meta``).
KEY_COLUMNS = (
    "path",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "AccessionNumber",
    "StudyDescription",
    "SeriesInstanceUID",
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "BodyPartExamined",
    "SOPInstanceUID",
    "SOPClassUID",
    "InstanceNumber",
)

_DEDUP = (
    "WHERE SOPInstanceUID IS NOT NULL AND StudyInstanceUID IS NOT NULL "
    "AND SeriesInstanceUID IS NOT NULL AND meta IS NOT NULL "
    "QUALIFY row_number() OVER (PARTITION BY SOPInstanceUID "
    "ORDER BY (error IS NULL) DESC, cataloged_at DESC NULLS LAST, path) = 1"
)

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _names(columns: str) -> tuple[bool, list[str] | None]:
    """Whether ``columns`` is ``*`` or a list of names, and the names (None for ``*``)."""
    if columns.strip() == "*":
        return True, None
    names = [c.strip() for c in columns.split(",")]
    return all(_NAME.match(n) for n in names), names


def _plain(table: pa.Table) -> pa.Table:
    """``table`` with string/binary view columns (some writers use them) as plain ones."""
    fields = [
        f.with_type(pa.string())
        if pa.types.is_string_view(f.type)
        else f.with_type(pa.binary())
        if pa.types.is_binary_view(f.type)
        else f
        for f in table.schema
    ]
    target = pa.schema(fields, metadata=table.schema.metadata)
    return table if target.equals(table.schema) else table.cast(target)


def _instance_order(r: tuple[Any, ...]) -> tuple[Any, ...]:
    """Sort key of ``(.., SeriesNumber, SeriesInstanceUID, InstanceNumber, SOPInstanceUID)``: nulls last."""
    return (r[3] is None, r[3] or 0, r[4], r[5] is None, r[5] or 0, r[6])


_REMOTE_RECHECK_S = 1.0
#: A log folder modified more recently than this is checked through the Delta log.
_FRESH_NS = 200_000_000


class Snapshot:
    """The index of one table version (see the module docstring). Thread safe."""

    def __init__(self, scan: TableScan):
        self.version = scan.version
        con = duckdb.connect()
        con.execute("SET TimeZone='UTC'")
        scan.register(con, VIEW_NAME)
        # where each row lives (file, row number): a request then reads its rows from
        # their files alone instead of scanning the whole version (every file's
        # footer, schema and row groups: the fixed cost of each /metadata request)
        self._located = bool(scan.direct and scan.files)
        #: Footer, row group starts and columns of each local file read so far.
        self._parquet: dict[str, tuple[pq.FileMetaData, list[int], list[str]]] = {}
        if self._located:
            listing = "[" + ", ".join(sql_string(u) for u in scan.files) + "]"
            source = (
                f"read_parquet({listing}, union_by_name=true, filename=true, file_row_number=true)"
            )
            extra = "filename AS _uri, file_row_number AS _row"
        else:
            source, extra = VIEW_NAME, "NULL::VARCHAR AS _uri, NULL::BIGINT AS _row"
        con.execute(
            f"CREATE TABLE inst AS SELECT {', '.join(KEY_COLUMNS)}, "
            "json_extract_string(meta, '$.\"00200010\".Value[0]') AS StudyID, "
            "json_extract_string(meta, '$.\"00080090\".Value[0].Alphabetic') "
            f"AS ReferringPhysicianName, {extra} FROM {source} {_DEDUP}"
        )
        con.execute(
            "CREATE TABLE study_sum AS SELECT StudyInstanceUID, "
            "count(DISTINCT SeriesInstanceUID) AS n_series, count(*) AS n_inst, "
            "list_sort(list(DISTINCT Modality)) AS mods, arg_min(path, SOPInstanceUID) AS first "
            "FROM inst GROUP BY StudyInstanceUID"
        )
        con.execute(
            "CREATE TABLE series_sum AS SELECT SeriesInstanceUID, count(*) AS n_inst, "
            "arg_min(path, SOPInstanceUID) AS first FROM inst GROUP BY SeriesInstanceUID"
        )
        firsts = [
            r[0]
            for r in con.execute(
                "SELECT first FROM study_sum UNION SELECT first FROM series_sum"
            ).fetchall()
        ]
        self._first_meta: dict[str, str] = dict(self._read_meta(firsts, con)) if firsts else {}
        # requests query small in-memory tables (and read a few rows): one thread each
        # answers them several times faster than DuckDB's thread pool (its start and
        # synchronisation cost more than the work); building above used them all
        con.execute("SET threads = 1")
        self._con = con

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor of its own for one request (a DuckDB connection is not thread safe)."""
        return self._con.cursor()

    def rows(self, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        """Run a parameterised query over ``inst``, ``study_sum``, ``series_sum``."""
        cur = self.cursor()
        try:
            return cur.sql(sql, params=params).to_arrow_table().to_pylist()
        finally:
            cur.close()

    def _read_meta(
        self, paths: list[str], con: duckdb.DuckDBPyConnection, where: str = "", params: Any = ()
    ) -> list[tuple[str, str]]:
        if self._located:
            located = con.execute(
                "SELECT path, _uri, _row FROM inst WHERE list_contains(?, path)", [paths]
            ).fetchall()
            found = self._read_located(con, located, "meta")
            if found is not None:
                return [(p, r["meta"]) for p, r in found.items() if r["meta"] is not None]
        sql = f"SELECT path, meta FROM {VIEW_NAME} WHERE "
        if where:
            sql += where + " AND "
        rows = con.execute(sql + "list_contains(?, path)", [*params, paths]).fetchall()
        return [(p, m) for p, m in rows if m is not None]

    def _read_located(
        self, con: duckdb.DuckDBPyConnection, located: list[tuple[str, str, int]], columns: str
    ) -> dict[str, dict[str, Any]] | None:
        """Rows ``(path, file, row number)`` read from their files: ``columns`` by path.

        Local files are read with pyarrow, from their row groups that hold the rows
        (the footer parsed once per snapshot); files on object stores with DuckDB
        (through the scan's file system). None when ``columns`` is more than a list
        of names or a file lacks one (written before a schema change): the caller
        then reads through the version's view.
        """
        simple, names = _names(columns)
        by_file: dict[str, dict[int, str]] = {}
        for path, uri, row in located:
            by_file.setdefault(uri, {})[row] = path
        out: dict[str, dict[str, Any]] = {}
        for uri, rows in by_file.items():
            if simple and is_local(uri):
                found = self._read_parquet_rows(uri, sorted(rows), names)
            else:
                found = self._read_duckdb_rows(con, uri, sorted(rows), columns)
            if found is None:
                return None
            for row, record in zip(sorted(rows), found, strict=True):
                out[rows[row]] = record
        return out

    def _read_parquet_rows(
        self, uri: str, rows: list[int], names: list[str] | None
    ) -> list[dict[str, Any]] | None:
        info = self._parquet.get(uri)
        if info is None:
            md = pq.read_metadata(local_path(uri))
            starts = [0]
            for g in range(md.num_row_groups):
                starts.append(starts[-1] + md.row_group(g).num_rows)
            info = self._parquet[uri] = (md, starts, md.schema.to_arrow_schema().names)
        md, starts, present = info
        if names is None:
            want = list(present)
        elif all(n in present for n in names):
            want = names
        else:
            return None
        groups = sorted({bisect.bisect_right(starts, r) - 1 for r in rows})
        base, offset = {}, 0
        for g in groups:
            base[g], offset = offset, offset + starts[g + 1] - starts[g]
        f = pq.ParquetFile(local_path(uri), metadata=md)
        try:
            table = f.read_row_groups(groups, columns=want, use_threads=False)
        finally:
            f.close()
        picked = [
            base[g] + r - starts[g] for r in rows for g in [bisect.bisect_right(starts, r) - 1]
        ]
        records = _plain(table).take(picked).to_pylist()
        if names is None:  # as the version's view: every column of the table's schema
            for record in records:
                for name in SCHEMA.names:
                    record.setdefault(name, None)
        return records

    @staticmethod
    def _read_duckdb_rows(
        con: duckdb.DuckDBPyConnection, uri: str, rows: list[int], columns: str
    ) -> list[dict[str, Any]] | None:
        cols = "* EXCLUDE (file_row_number)" if columns.strip() == "*" else columns
        try:
            # the file URI comes from the Delta log, never from a request
            found = (
                con.sql(
                    f"SELECT {cols}, file_row_number AS _pixels_row FROM "
                    f"read_parquet({sql_string(uri)}, file_row_number=true) "
                    "WHERE list_contains(?, file_row_number) ORDER BY file_row_number",
                    params=[rows],
                )
                .to_arrow_table()
                .to_pylist()
            )
        except duckdb.BinderException:
            return None
        for r in found:
            del r["_pixels_row"]
        return found if len(found) == len(rows) else None

    def metas(self, paths: Iterable[str], where: str = "", params: Any = ()) -> dict[str, str]:
        """``meta`` of the instance rows at ``paths``.

        ``where``/``params``: an extra condition (on UIDs) DuckDB can push down into
        the Parquet scan, to read less, when rows are not read from their files.
        """
        out: dict[str, str] = {}
        missing = []
        for p in paths:
            m = self._first_meta.get(p)
            if m is None:
                missing.append(p)
            else:
                out[p] = m
        if missing:
            cur = self.cursor()
            try:
                out.update(self._read_meta(missing, cur, where, params))
            finally:
                cur.close()
        return out

    def instance_rows(
        self, study: str, series: str | None, sop: str | None, columns: str
    ) -> list[dict[str, Any]]:
        """Catalog rows (``columns``) of a study / series / instance, in series and instance order."""
        where = ["StudyInstanceUID = ?"]
        params: list[Any] = [study]
        if series is not None:
            where.append("SeriesInstanceUID = ?")
            params.append(series)
        if sop is not None:
            where.append("SOPInstanceUID = ?")
            params.append(sop)
        cond = " AND ".join(where)
        cur = self.cursor()
        try:
            # sorted here, not by DuckDB: its sort's setup cost several ms per query, more
            # than the rest of a small series' /metadata request
            keyed = cur.execute(
                f"SELECT path, _uri, _row, SeriesNumber, SeriesInstanceUID, InstanceNumber, "
                f"SOPInstanceUID FROM inst WHERE {cond}",
                params,
            ).fetchall()
            keyed.sort(key=_instance_order)
            located = [r[:3] for r in keyed]
            if not located:
                return []
            order = [r[0] for r in located]
            cols = columns if columns.strip() == "*" else columns + ", path"
            by_path = self._read_located(cur, located, cols) if self._located else None
            if by_path is None:
                found = (
                    cur.sql(
                        f"SELECT {cols} FROM {VIEW_NAME} WHERE {cond} AND list_contains(?, path)",
                        params=[*params, order],
                    )
                    .to_arrow_table()
                    .to_pylist()
                )
                by_path = {r["path"]: r for r in found}
        finally:
            cur.close()
        return [by_path[p] for p in order if p in by_path]


class TableIndex:
    """The current :class:`Snapshot` of a catalog table, rebuilt when the table changes."""

    def __init__(self, table: CatalogTable):
        self.table = CatalogTable(table.uri, table.storage_options)
        log = os.path.join(self.table.uri.removeprefix("file://"), "_delta_log")
        self._log = log if "://" not in self.table.uri or table.uri.startswith("file://") else None
        self._lock = threading.Lock()
        self._snap: Snapshot | None = None
        self._key: object = None
        self._checked = 0.0

    def _change_key(self) -> object:
        if self._log is not None:
            try:
                st = os.stat(self._log)
            except FileNotFoundError:
                return None
            if time.time_ns() - st.st_mtime_ns < _FRESH_NS:
                return object()  # changed just now: a second commit may share the mtime
            return (st.st_mtime_ns, st.st_ino, st.st_size)
        return None

    def current(self) -> Snapshot:
        """The snapshot of the table's current version."""
        if self._log is not None:
            key = self._change_key()
            snap = self._snap
            if snap is not None and key == self._key:
                return snap
        else:
            now = time.monotonic()
            snap = self._snap
            if snap is not None and now - self._checked < _REMOTE_RECHECK_S:
                return snap
            key = None
        with self._lock:
            if self._log is not None:
                key = self._change_key()
                if self._snap is not None and key == self._key:
                    return self._snap
            self._checked = time.monotonic()
            scan = self.table.scan()  # version and files read together
            if self._snap is None or self._snap.version != scan.version:
                self._snap = Snapshot(scan)
            self._key = key
            return self._snap


_INDEXES: weakref.WeakKeyDictionary[Any, TableIndex] = weakref.WeakKeyDictionary()
_INDEXES_LOCK = threading.Lock()


def index_of(state: Any) -> TableIndex:
    """The :class:`TableIndex` of a :class:`~pixels.web.state.WebState` (made on first use)."""
    idx = _INDEXES.get(state)
    if idx is None:
        with _INDEXES_LOCK:
            idx = _INDEXES.get(state)
            if idx is None:
                idx = _INDEXES[state] = TableIndex(state.table)
    return idx
