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

import os
import threading
import time
import weakref
from collections.abc import Iterable
from typing import Any

import duckdb

from pixels.scan import TableScan
from pixels.schema import VIEW_NAME
from pixels.table import CatalogTable

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
        con.execute(
            f"CREATE TABLE inst AS SELECT {', '.join(KEY_COLUMNS)}, "
            "json_extract_string(meta, '$.\"00200010\".Value[0]') AS StudyID, "
            "json_extract_string(meta, '$.\"00080090\".Value[0].Alphabetic') "
            f"AS ReferringPhysicianName FROM {VIEW_NAME} {_DEDUP}"
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
        self._con = con
        self._first_meta: dict[str, str] = dict(self._read_meta(firsts, con)) if firsts else {}

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
        sql = f"SELECT path, meta FROM {VIEW_NAME} WHERE "
        if where:
            sql += where + " AND "
        rows = con.execute(sql + "list_contains(?, path)", [*params, paths]).fetchall()
        return [(p, m) for p, m in rows if m is not None]

    def metas(self, paths: Iterable[str], where: str = "", params: Any = ()) -> dict[str, str]:
        """``meta`` of the instance rows at ``paths``.

        ``where``/``params``: an extra condition (on UIDs) DuckDB can push down into
        the Parquet scan, to read less.
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
            order = [
                r[0]
                for r in cur.execute(
                    f"SELECT path FROM inst WHERE {cond} ORDER BY SeriesNumber NULLS LAST, "
                    "SeriesInstanceUID, InstanceNumber NULLS LAST, SOPInstanceUID",
                    params,
                ).fetchall()
            ]
            if not order:
                return []
            cols = columns if columns.strip() == "*" else columns + ", path"
            found = (
                cur.sql(
                    f"SELECT {cols} FROM {VIEW_NAME} WHERE {cond} AND list_contains(?, path)",
                    params=[*params, order],
                )
                .to_arrow_table()
                .to_pylist()
            )
        finally:
            cur.close()
        by_path = {r["path"]: r for r in found}
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
