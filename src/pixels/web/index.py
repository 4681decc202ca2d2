"""The DICOMweb server's in-memory index of the catalog, following the Delta log.

The index is a few columnar tables in one in-memory DuckDB database (compressed,
about 100 bytes per instance), kept up to date file by file: a new table version
adds the rows of the data files it added and drops those of the files it removed
(:meth:`TableIndex.current`), never rebuilding the rest. Nothing per instance is
held in Python.

- ``inst_all``: one row per catalog row of a live data file (file id, row number,
  path, UIDs, ``InstanceNumber``, its group), ``keep`` marking the one row that
  stands for each SOP instance (:data:`_ORDER`: rows without error first, then the
  latest ``cataloged_at``, then the smallest path);
- ``grp``: the distinct combinations of the study and series level key columns
  (``PatientName`` ... ``BodyPartExamined``), with the number of kept rows of each:
  study and series searches match here (thousands of rows, not millions);
- ``ffirst``: per data file and series, the row with the smallest SOP Instance UID
  and the study/series-level part of its header (``qmeta``, the attributes QIDO
  returns at those levels, with ``StudyID`` and ``ReferringPhysicianName``);
- ``series_sum`` / ``study_sum``: counts, modalities, first instance and its
  ``qmeta``, recomputed for the studies and series a version touched only;
- the views ``inst`` (kept rows with their group's columns) and ``sgrp`` (live
  groups with ``StudyID`` / ``ReferringPhysicianName``).

Each update runs in one DuckDB transaction: requests keep answering from the
committed state while it runs (DuckDB's MVCC: readers never wait for it), and see
the whole of a version or none of it. Rows' other columns (``meta`` of any
instance, frame offsets) are read from the data files that hold them, by row
number (:meth:`Snapshot.instance_rows`).

Whether the table changed is checked on every request: for a local table, a
``stat`` of the next version's log file; for object stores, the Delta log at most
once a second. A version whose rows are not its files' rows (deletion vectors,
column mapping: :mod:`pixels.scan`) is read whole through delta-rs.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import os
import re
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pixels.scan import TableScan
from pixels.schema import SCHEMA, VIEW_NAME
from pixels.storage import is_local, local_path
from pixels.table import CatalogTable, sql_string
from pixels.web.levels import SERIES_TAGS, STUDY_TAGS

__all__ = ["QMETA_TAGS", "Snapshot", "TableIndex", "index_of"]

#: Study and series level key columns: one ``grp`` row per distinct combination.
GROUP_COLUMNS = (
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
)
#: Columns of the view ``inst`` (as the previous index had them).
KEY_COLUMNS = (
    "path",
    *GROUP_COLUMNS,
    "SOPInstanceUID",
    "SOPClassUID",
    "InstanceNumber",
)
#: Attributes kept in ``qmeta``: what QIDO returns at the study and series levels.
QMETA_TAGS = STUDY_TAGS | SERIES_TAGS
_STUDY_ID, _REFERRING = "00200010", "00080090"

#: Which row stands for a SOP instance held by several rows.
_ORDER = "ok DESC, cataloged_at DESC NULLS LAST, path"
_VALID = (
    "SOPInstanceUID IS NOT NULL AND StudyInstanceUID IS NOT NULL "
    "AND SeriesInstanceUID IS NOT NULL AND meta IS NOT NULL"
)
_GROUP_SQL = ", ".join(GROUP_COLUMNS)

_SCHEMA_SQL = f"""
CREATE TABLE ix.inst_all (fid INTEGER, _row BIGINT, gid UBIGINT, sh UBIGINT, seh UBIGINT,
  path VARCHAR,
  StudyInstanceUID VARCHAR, SeriesInstanceUID VARCHAR, SOPInstanceUID VARCHAR,
  SOPClassUID VARCHAR, InstanceNumber BIGINT, ok BOOLEAN, cataloged_at TIMESTAMPTZ,
  keep BOOLEAN);
CREATE TABLE ix.grp (gid UBIGINT, n BIGINT, PatientName VARCHAR, PatientID VARCHAR,
  PatientBirthDate DATE, PatientSex VARCHAR, StudyInstanceUID VARCHAR, StudyDate DATE,
  AccessionNumber VARCHAR, StudyDescription VARCHAR, SeriesInstanceUID VARCHAR,
  Modality VARCHAR, SeriesNumber BIGINT, SeriesDescription VARCHAR, BodyPartExamined VARCHAR);
CREATE TABLE ix.ffirst (fid INTEGER, SeriesInstanceUID VARCHAR, sop VARCHAR, path VARCHAR,
  qmeta VARCHAR, StudyID VARCHAR, ReferringPhysicianName VARCHAR);
CREATE TABLE ix.series_sum (SeriesInstanceUID VARCHAR, StudyInstanceUID VARCHAR,
  n_inst BIGINT, n BIGINT, first VARCHAR, first_sop VARCHAR, qmeta VARCHAR,
  StudyID VARCHAR, ReferringPhysicianName VARCHAR);
CREATE TABLE ix.study_sum (StudyInstanceUID VARCHAR, n_series BIGINT, n_inst BIGINT,
  mods VARCHAR[], first VARCHAR, first_sop VARCHAR, qmeta VARCHAR, d DATE);
CREATE VIEW ix.sgrp AS SELECT g.*, s.StudyID, s.ReferringPhysicianName
  FROM ix.grp g JOIN ix.series_sum s USING (SeriesInstanceUID) WHERE g.n > 0;
CREATE VIEW ix.inst AS SELECT i.path, {", ".join("g." + c for c in GROUP_COLUMNS)},
  i.SOPInstanceUID, i.SOPClassUID, i.InstanceNumber, s.StudyID, s.ReferringPhysicianName,
  i.fid, i._row FROM ix.inst_all i JOIN ix.grp g ON i.gid = g.gid
  LEFT JOIN ix.series_sum s ON s.SeriesInstanceUID = i.SeriesInstanceUID WHERE i.keep;
"""

_FFIRST = ("fid", "SeriesInstanceUID", "sop", "path", "qmeta", "StudyID", "ReferringPhysicianName")
_FFIRST_SCHEMA = pa.schema(
    [pa.field("fid", pa.int32())] + [pa.field(n, pa.string()) for n in _FFIRST[1:]]
)
#: Version of the saved ``ffirst`` rows of a data file (``_pixels/index/{file}.v1.arrow``).
_SIDECAR_VERSION = "v1"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_REMOTE_RECHECK_S = 1.0
#: Up to this many touched series and SOP instances are looked up as constants.
_INLINE = 4096
#: Rows added since the last checkpoint that make the next update compress the tables.
_CHECKPOINT_ROWS = 100_000
#: Footers of data files kept for row reads (the most recently used).
_FOOTERS = 256


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


def _qmeta(meta: str | None) -> tuple[str | None, str | None, str | None]:
    """The study/series level attributes of ``meta`` (JSON), its StudyID and referring physician."""
    if meta is None:
        return None, None, None
    try:
        js = json.loads(meta)
    except ValueError:
        return None, None, None
    kept = {
        k: v
        for k, v in js.items()
        if k in QMETA_TAGS
        and isinstance(v, dict)
        and "BulkDataURI" not in v
        and "InlineBinary" not in v
    }
    study_id = _first_value(js, _STUDY_ID)
    ref = _first_value(js, _REFERRING)
    if isinstance(ref, dict):
        ref = ref.get("Alphabetic")
    return (
        json.dumps(kept, separators=(",", ":")),
        study_id if isinstance(study_id, str) else None,
        ref if isinstance(ref, str) else None,
    )


def _first_value(js: dict[str, Any], tag: str) -> Any:
    item = js.get(tag)
    if not isinstance(item, dict):
        return None
    values = item.get("Value") or [None]
    return values[0]


class Snapshot:
    """A table version as the index saw it; queries run on the index's live tables.

    Each query sees a committed state of the index (a whole version); a request
    that started before an update may see the newer version in its next query.
    """

    def __init__(self, index: TableIndex, version: int | None):
        self._index = index
        self.version = version
        self._located = index._direct

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor of its own for one request (a DuckDB connection is not thread safe)."""
        cur = self._index._con.cursor()
        cur.execute("USE ix")
        return cur

    def rows(self, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        """Run a parameterised query over ``inst``, ``sgrp``, ``study_sum``, ``series_sum``."""
        cur = self.cursor()
        try:
            return cur.sql(sql, params=params).to_arrow_table().to_pylist()
        finally:
            cur.close()

    def metas(self, paths: Iterable[str], where: str = "", params: Any = ()) -> dict[str, str]:
        """``meta`` of the instance rows at ``paths`` (read from their data files)."""
        wanted = list(dict.fromkeys(paths))
        if not wanted:
            return {}
        cur = self.cursor()
        try:
            located = cur.execute(
                "SELECT path, fid, _row FROM inst WHERE list_contains(?, path)", [wanted]
            ).fetchall()
            found = self._index._read_located(cur, located, "meta") if self._located else None
            if found is None:
                self._index.view()
                sql = f"SELECT path, meta FROM memory.{VIEW_NAME} WHERE "
                if where:
                    sql += where + " AND "
                rows = cur.execute(sql + "list_contains(?, path)", [*params, wanted]).fetchall()
                return {p: m for p, m in rows if m is not None}
            return {p: r["meta"] for p, r in found.items() if r["meta"] is not None}
        finally:
            cur.close()

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
                "SELECT path, fid, _row, SeriesNumber, SeriesInstanceUID, InstanceNumber, "
                f"SOPInstanceUID FROM inst WHERE {cond}",
                params,
            ).fetchall()
            keyed.sort(key=_instance_order)
            located = [r[:3] for r in keyed]
            if not located:
                return []
            order = [r[0] for r in located]
            cols = columns if columns.strip() == "*" else columns + ", path"
            by_path = self._index._read_located(cur, located, cols) if self._located else None
            if by_path is None:
                self._index.view()
                found = (
                    cur.sql(
                        f"SELECT {cols} FROM memory.{VIEW_NAME} WHERE {cond} "
                        "AND list_contains(?, path)",
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
    """The index of a catalog table (see the module docstring), following its versions."""

    def __init__(self, table: CatalogTable):
        self.table = CatalogTable(table.uri, table.storage_options)
        local = "://" not in self.table.uri or self.table.uri.startswith("file://")
        root = self.table.uri.removeprefix("file://")
        self._log = os.path.join(root, "_delta_log") if local else None
        #: where each data file's ``ffirst`` rows are saved for the next start (local tables)
        self._cache = os.path.join(local_path(root), "_pixels", "index") if local else None
        con = duckdb.connect()
        con.execute("SET TimeZone='UTC'")
        # freed memory goes back to the system (else a start-up's peak stays resident)
        con.execute("SET allocator_flush_threshold='32MB'")
        con.execute("SET allocator_background_threads=true")
        con.execute("ATTACH ':memory:' AS ix (COMPRESS)")
        con.execute(_SCHEMA_SQL)
        self._con = con
        self._lock = threading.Lock()
        self._snap: Snapshot | None = None
        self._checked = 0.0
        self._direct = True
        #: data file URI -> file id, and back (ids are never reused)
        self._fids: dict[str, int] = {}
        self._uris: dict[int, str] = {}
        #: footer, row group starts and columns of local files read recently
        self._parquet: OrderedDict[str, tuple[pq.FileMetaData, list[int], list[str]]] = (
            OrderedDict()
        )
        self._parquet_lock = threading.Lock()
        self._rows_since_checkpoint = 0
        self._scan: TableScan | None = None
        self._view_version: tuple[int | None, int] | None = None
        self._view_lock = threading.Lock()
        #: seconds the last update took, and its counts (for benchmarks)
        self.last_update: dict[str, Any] = {}

    # ----------------------------------------------------------------- versions
    def _maybe_changed(self) -> bool:
        snap = self._snap
        if snap is None:
            return True
        if self._log is not None:
            nxt = -1 if snap.version is None else snap.version
            return os.path.exists(os.path.join(self._log, f"{nxt + 1:020d}.json"))
        return time.monotonic() - self._checked >= _REMOTE_RECHECK_S

    def current(self, min_version: int | None = None) -> Snapshot:
        """The snapshot of the table's current version (the index updated when the table changed).

        A request arriving while another one updates the index answers from the
        version before, without waiting, unless it needs ``min_version`` or later
        (a STOW-RS request, before it answers, waits for the version it committed).
        """
        snap = self._snap
        if snap is not None and not self._maybe_changed():
            return snap
        behind = snap is None or (
            min_version is not None and (snap.version is None or snap.version < min_version)
        )
        if not self._lock.acquire(blocking=behind):
            assert snap is not None
            return snap
        try:
            self._checked = time.monotonic()
            scan = self.table.scan()  # version and files read together
            if self._snap is None or self._snap.version != scan.version:
                self._update(scan)
                self._snap = Snapshot(self, scan.version)
            return self._snap
        finally:
            self._lock.release()

    # ------------------------------------------------------------------ updates
    def _update(self, scan: TableScan) -> None:
        t0 = time.perf_counter()
        files = list(scan.files) if scan.direct else [f"delta-rs:{scan.version}"]
        if scan.version is None:
            files = []
        live = set(files)
        removed = [self._fids[u] for u in list(self._fids) if u not in live]
        added = [u for u in files if u not in self._fids]
        for u in added:
            fid = len(self._uris)
            self._fids[u], self._uris[fid] = fid, u
        for fid in removed:
            del self._fids[self._uris[fid]]
        new_fids = [self._fids[u] for u in added]
        self._scan = scan
        if not scan.direct:
            self.view()  # the rows are read from the view: only delta-rs has them
        cur = self._con.cursor()
        try:
            cur.execute("BEGIN TRANSACTION")
            try:
                added_rows = self._apply(cur, scan, added, new_fids, removed)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                for u in added:
                    self._fids.pop(u, None)
                for fid in removed:
                    self._fids[self._uris[fid]] = fid
                raise
        finally:
            cur.close()
        self._direct = scan.direct
        self._drop_sidecars(removed)
        self._rows_since_checkpoint += added_rows
        if self._rows_since_checkpoint >= _CHECKPOINT_ROWS:
            # rows are compressed when checkpointed (about 4x less memory)
            self._con.execute("CHECKPOINT ix")
            self._rows_since_checkpoint = 0
        self.last_update = {
            "seconds": time.perf_counter() - t0,
            "added_files": len(added),
            "removed_files": len(removed),
            "version": scan.version,
        }

    def view(self) -> None:
        """Make ``memory.object_catalog`` the current version's rows (for reads the files
        cannot answer: a column a file lacks, a table read through delta-rs).

        Made on first use per version: binding it reads every data file's footer.
        """
        with self._view_lock:
            scan = self._scan
            if scan is None or self._view_version == (scan.version, len(scan.files)):
                return
            view = self._con.cursor()
            try:
                view.execute("USE memory")
                scan.register(view, VIEW_NAME)
            finally:
                view.close()
            self._view_version = (scan.version, len(scan.files))

    def _apply(
        self,
        cur: duckdb.DuckDBPyConnection,
        scan: TableScan,
        added: list[str],
        new_fids: list[int],
        removed: list[int],
    ) -> int:
        """Drop the rows of the ``removed`` files, add those of the ``added`` ones, and
        recompute what depends on the SOP instances, series and studies they touch.

        Work grows with the rows touched, plus one scan of two integer columns
        (``sh``, ``seh``: hashes of the SOP and Series Instance UIDs) of ``inst_all``;
        rows are found by file id, which the table's zone maps prune (ids grow with
        insertion order).
        """
        cur.execute("USE ix")
        touched = "gid, StudyInstanceUID, SeriesInstanceUID, sh, seh"
        if removed:
            gone = ", ".join(str(int(f)) for f in removed)  # file ids: integers made here
            cur.execute(
                f"CREATE OR REPLACE TABLE _touched AS SELECT {touched} FROM ix.inst_all "
                f"WHERE fid IN ({gone})"
            )
            cur.execute(f"DELETE FROM ix.inst_all WHERE fid IN ({gone})")
            cur.execute(f"DELETE FROM ix.ffirst WHERE fid IN ({gone})")
        else:
            cur.execute(
                f"CREATE OR REPLACE TABLE _touched AS SELECT {touched} FROM ix.inst_all LIMIT 0"
            )
        added_rows = 0
        if added:
            added_rows = self._load(cur, scan, added, new_fids)
            cur.execute(f"INSERT INTO _touched SELECT {touched} FROM _rows")
        # every live row of the series and SOP instances touched: the work set
        cols = (
            "fid, _row, gid, path, StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID, ok, "
            "cataloged_at, keep"
        )
        seh = [r[0] for r in cur.execute("SELECT DISTINCT seh FROM _touched").fetchall()]
        sh = [r[0] for r in cur.execute("SELECT DISTINCT sh FROM _touched").fetchall()]
        if len(seh) + len(sh) <= _INLINE:
            # constants (hashes computed here, never from a request): filters each scan
            # evaluates on one integer column before reading any other
            hits = " UNION ".join(
                f"SELECT fid, _row FROM ix.inst_all WHERE {c} IN ({', '.join(map(str, vs))})"
                for c, vs in (("seh", seh), ("sh", sh))
                if vs
            )
            cur.execute(
                f"CREATE OR REPLACE TABLE _hit AS {hits or 'SELECT 0 AS fid, 0 AS _row LIMIT 0'}"
            )
            cur.execute(
                f"CREATE OR REPLACE TABLE _aff AS SELECT {cols} FROM ix.inst_all "
                "SEMI JOIN _hit USING (fid, _row)"
            )
        else:
            cur.execute(
                f"CREATE OR REPLACE TABLE _aff AS SELECT {cols} FROM ix.inst_all "
                f"WHERE seh IN (SELECT seh FROM _touched) UNION SELECT {cols} FROM ix.inst_all "
                "WHERE sh IN (SELECT sh FROM _touched)"
            )
        # the row that stands for each SOP instance, again
        cur.execute(
            "CREATE OR REPLACE TABLE _keep AS SELECT fid, _row, k FROM (SELECT fid, _row, keep, "
            f"row_number() OVER (PARTITION BY SOPInstanceUID ORDER BY {_ORDER}) = 1 AS k "
            "FROM _aff) WHERE keep IS DISTINCT FROM k"
        )
        (changed,) = cur.execute("SELECT count(*) FROM _keep").fetchone() or (0,)
        if changed:
            cur.execute(
                "UPDATE ix.inst_all SET keep = r.k FROM _keep r "
                "WHERE inst_all.fid = r.fid AND inst_all._row = r._row"
            )
            cur.execute(
                "UPDATE _aff SET keep = r.k FROM _keep r "
                "WHERE _aff.fid = r.fid AND _aff._row = r._row"
            )
        cur.execute(
            "UPDATE ix.grp SET n = c.n FROM (SELECT t.gid, count(a.gid) AS n FROM "
            "(SELECT gid FROM _touched UNION SELECT gid FROM _aff) t LEFT JOIN _aff a "
            "ON a.gid = t.gid AND a.keep GROUP BY t.gid) c WHERE grp.gid = c.gid"
        )
        # the series and studies touched: their sums again, from their live rows
        cur.execute(
            "CREATE OR REPLACE TABLE _se AS SELECT SeriesInstanceUID AS s FROM _touched "
            "UNION SELECT SeriesInstanceUID FROM _aff"
        )
        cur.execute(
            "CREATE OR REPLACE TABLE _st AS SELECT StudyInstanceUID AS s FROM _touched "
            "UNION SELECT StudyInstanceUID FROM _aff"
        )
        cur.execute("DELETE FROM ix.series_sum WHERE SeriesInstanceUID IN (SELECT s FROM _se)")
        key = "(sop, path)"
        cur.execute(
            "INSERT INTO ix.series_sum SELECT c.SeriesInstanceUID, c.StudyInstanceUID, c.n_inst, "
            "g.n, c.first, c.first_sop, x.qmeta, x.StudyID, x.ReferringPhysicianName FROM "
            "(SELECT SeriesInstanceUID, any_value(StudyInstanceUID) AS StudyInstanceUID, "
            "count(*) AS n_inst, arg_min(path, (SOPInstanceUID, path)) AS first, "
            "min(SOPInstanceUID) AS first_sop FROM _aff WHERE keep "
            "GROUP BY SeriesInstanceUID) c "
            "LEFT JOIN (SELECT SeriesInstanceUID, min(SeriesNumber) AS n FROM ix.grp "
            "WHERE n > 0 AND SeriesInstanceUID IN (SELECT s FROM _se) GROUP BY SeriesInstanceUID) g "
            "USING (SeriesInstanceUID) LEFT JOIN "
            f"(SELECT SeriesInstanceUID, arg_min_null(qmeta, {key}) AS qmeta, "
            f"arg_min_null(StudyID, {key}) AS StudyID, "
            f"arg_min_null(ReferringPhysicianName, {key}) AS ReferringPhysicianName "
            "FROM ix.ffirst WHERE SeriesInstanceUID IN (SELECT s FROM _se) "
            "GROUP BY SeriesInstanceUID) x USING (SeriesInstanceUID)"
        )
        cur.execute("DELETE FROM ix.study_sum WHERE StudyInstanceUID IN (SELECT s FROM _st)")
        key = "(first_sop, first)"
        cur.execute(
            "INSERT INTO ix.study_sum SELECT s.StudyInstanceUID, s.n_series, s.n_inst, g.mods, "
            "s.first, s.first_sop, s.qmeta, g.d FROM "
            "(SELECT StudyInstanceUID, count(*) AS n_series, sum(n_inst) AS n_inst, "
            f"arg_min(first, {key}) AS first, min(first_sop) AS first_sop, "
            f"arg_min_null(qmeta, {key}) AS qmeta FROM ix.series_sum "
            "WHERE StudyInstanceUID IN (SELECT s FROM _st) GROUP BY StudyInstanceUID) s "
            "JOIN (SELECT StudyInstanceUID, max(StudyDate) AS d, "
            "list_sort(list(DISTINCT Modality) FILTER (Modality IS NOT NULL)) AS mods "
            "FROM ix.grp WHERE n > 0 AND StudyInstanceUID IN (SELECT s FROM _st) "
            "GROUP BY StudyInstanceUID) g USING (StudyInstanceUID)"
        )
        # the small work tables stay (replaced by the next update); these may be large
        cur.execute("DROP TABLE IF EXISTS _rows")
        cur.execute("DROP TABLE IF EXISTS _aff")
        return added_rows

    def _load(
        self,
        cur: duckdb.DuckDBPyConnection,
        scan: TableScan,
        added: list[str],
        new_fids: list[int],
    ) -> int:
        """Rows of the ``added`` data files into ``inst_all``, ``grp``, ``ffirst`` and ``_rows``."""
        cur.execute(
            "CREATE OR REPLACE TABLE _files AS "
            "SELECT unnest(?::VARCHAR[]) AS uri, unnest(?::INTEGER[]) AS fid",
            [added, new_fids],
        )
        cols = (
            f"path, {_GROUP_SQL}, SOPInstanceUID, SOPClassUID, InstanceNumber, "
            "error IS NULL AS ok, cataloged_at"
        )
        if scan.direct:
            scan.prepare(cur)
            listing = "[" + ", ".join(sql_string(u) for u in added) + "]"
            # the file URIs come from the Delta log, never from a request
            source = (
                f"(SELECT {cols}, file_row_number AS _row, f.fid FROM read_parquet({listing}, "
                "union_by_name=true, filename=true, file_row_number=true) p "
                f"JOIN _files f ON f.uri = p.filename WHERE {_VALID})"
            )
        else:
            # rows numbered here: (fid, _row) names a row in every update step, and
            # NULLs never join (delta-rs rows are read back by path, not by number)
            source = (
                f"(SELECT {cols}, row_number() OVER () - 1 AS _row, {new_fids[0]} AS fid "
                f"FROM memory.{VIEW_NAME} WHERE {_VALID})"
            )
        cur.execute(
            f"CREATE OR REPLACE TABLE _rows AS SELECT *, hash({_GROUP_SQL}) AS gid, "
            f"hash(SOPInstanceUID) AS sh, hash(SeriesInstanceUID) AS seh FROM {source}"
        )
        cur.execute(
            "INSERT INTO ix.inst_all SELECT fid, _row, gid, sh, seh, path, StudyInstanceUID, "
            "SeriesInstanceUID, SOPInstanceUID, SOPClassUID, InstanceNumber, ok, cataloged_at, "
            "true FROM _rows"
        )
        cur.execute(
            f"INSERT INTO ix.grp SELECT DISTINCT ON (gid) gid, 0, {_GROUP_SQL} FROM _rows "
            "WHERE gid NOT IN (SELECT gid FROM ix.grp)"
        )
        firsts = cur.execute(
            "SELECT fid, SeriesInstanceUID, min(SOPInstanceUID), "
            "arg_min(path, (SOPInstanceUID, path)), arg_min(_row, (SOPInstanceUID, path)) "
            "FROM _rows GROUP BY fid, SeriesInstanceUID ORDER BY fid"
        ).fetchall()
        by_fid: dict[int, list[tuple[Any, ...]]] = {}
        for row in firsts:
            by_fid.setdefault(row[0], []).append(row)
        parts = []
        for fid, rows in by_fid.items():
            held = self._sidecar(fid) if scan.direct else None
            if held is None or held.num_rows != len(rows):
                held = self._firsts_of(cur, scan, fid, rows)
                if scan.direct:
                    self._keep_sidecar(fid, held)
            parts.append(held)
        if parts:
            table = pa.concat_tables(parts)
            cur.register("_ffirst_new", table)
            try:
                cur.execute(f"INSERT INTO ix.ffirst SELECT {', '.join(_FFIRST)} FROM _ffirst_new")
            finally:
                cur.unregister("_ffirst_new")
        (n,) = cur.execute("SELECT count(*) FROM _rows").fetchone() or (0,)
        return int(n)

    def _firsts_of(
        self,
        cur: duckdb.DuckDBPyConnection,
        scan: TableScan,
        fid: int,
        rows: list[tuple[Any, ...]],
    ) -> pa.Table:
        """``ffirst`` rows of one data file: its series' first rows with their ``qmeta``."""
        metas: dict[int, str | None] = {}
        if scan.direct:
            located = [(str(i), fid, r[4]) for i, r in enumerate(rows)]
            found = self._read_located(cur, located, "meta", threads=True)
            if found is not None:
                metas = {int(k): v["meta"] for k, v in found.items()}
        missing = [i for i in range(len(rows)) if i not in metas]
        if missing and not scan.direct:  # (direct: a file without meta has no attributes)
            got = dict(
                cur.execute(
                    f"SELECT path, meta FROM memory.{VIEW_NAME} WHERE list_contains(?, path)",
                    [[rows[i][3] for i in missing]],
                ).fetchall()
            )
            for i in missing:
                metas[i] = got.get(rows[i][3])
        out: dict[str, list[Any]] = {k: [] for k in _FFIRST}
        for i, (f, series, sop, path, _) in enumerate(rows):
            for k, v in zip(_FFIRST, (f, series, sop, path, *_qmeta(metas.get(i))), strict=True):
                out[k].append(v)
        return pa.table(out, schema=_FFIRST_SCHEMA)

    # ------------------------------------------------------------------ sidecars
    def _sidecar_path(self, fid: int) -> str | None:
        if self._cache is None:
            return None
        name = os.path.basename(self._uris[fid].rstrip("/"))
        return os.path.join(self._cache, f"{name}.{_SIDECAR_VERSION}.arrow")

    def _sidecar(self, fid: int) -> pa.Table | None:
        """The ``ffirst`` rows of a data file saved by an earlier start (None: none saved)."""
        path = self._sidecar_path(fid)
        if path is None or not os.path.exists(path):
            return None
        try:
            with pa.memory_map(path) as src:
                table = pa.ipc.open_file(src).read_all()
        except (OSError, pa.ArrowInvalid):
            return None
        if not table.schema.equals(_FFIRST_SCHEMA.remove(0)):
            return None
        return table.add_column(
            0, _FFIRST_SCHEMA.field(0), pa.array([fid] * table.num_rows, pa.int32())
        )

    def _keep_sidecar(self, fid: int, table: pa.Table) -> None:
        """Save a data file's ``ffirst`` rows (best effort: a read-only table is fine)."""
        path = self._sidecar_path(fid)
        if path is None:
            return
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"
            with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_file(sink, _FFIRST_SCHEMA.remove(0)) as w:
                w.write_table(table.remove_column(0))
            os.replace(tmp, path)
        except OSError:
            return

    def _drop_sidecars(self, fids: list[int]) -> None:
        for fid in fids:
            path = self._sidecar_path(fid)
            if path is not None:
                with contextlib.suppress(OSError):
                    os.remove(path)

    # ---------------------------------------------------------------- row reads
    def _read_located(
        self,
        con: duckdb.DuckDBPyConnection,
        located: list[tuple[str, Any, int]],
        columns: str,
        *,
        threads: bool = False,
    ) -> dict[str, dict[str, Any]] | None:
        """Rows ``(key, file id or URI, row number)`` read from their files: ``columns`` by key.

        Local files are read with pyarrow, from the row groups that hold the rows
        (footers kept for the most recently read files); files on object stores
        with DuckDB (through the scan's file system). None when ``columns`` is more
        than a list of names or a file lacks one (written before a schema change):
        the caller then reads through the version's view.
        """
        simple, names = _names(columns)
        by_file: dict[str, dict[int, str]] = {}
        for key, f, row in located:
            uri = self._uris[f] if isinstance(f, int) else f
            by_file.setdefault(uri, {})[row] = key
        out: dict[str, dict[str, Any]] = {}
        for uri, rows in by_file.items():
            if simple and is_local(uri):
                found = self._read_parquet_rows(uri, sorted(rows), names, threads)
            else:
                found = self._read_duckdb_rows(con, uri, sorted(rows), columns)
            if found is None:
                return None
            for row, record in zip(sorted(rows), found, strict=True):
                out[rows[row]] = record
        return out

    def _footer(self, uri: str) -> tuple[pq.FileMetaData, list[int], list[str]]:
        with self._parquet_lock:
            info = self._parquet.get(uri)
            if info is not None:
                self._parquet.move_to_end(uri)
                return info
        md = pq.read_metadata(local_path(uri))
        starts = [0]
        for g in range(md.num_row_groups):
            starts.append(starts[-1] + md.row_group(g).num_rows)
        info = (md, starts, md.schema.to_arrow_schema().names)
        with self._parquet_lock:
            self._parquet[uri] = info
            while len(self._parquet) > _FOOTERS:
                self._parquet.popitem(last=False)
        return info

    def _read_parquet_rows(
        self, uri: str, rows: list[int], names: list[str] | None, threads: bool = False
    ) -> list[dict[str, Any]] | None:
        md, starts, present = self._footer(uri)
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
            table = f.read_row_groups(groups, columns=want, use_threads=threads)
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
