"""The index's tables, and how a version's added and removed data files change them.

The index (:mod:`pixels.web.index`) is a few columnar tables in one DuckDB
database (``ix``: a file next to the table, or in memory), about 100 bytes per
instance, kept up to date file by file (:func:`apply`):

- ``inst_all``: one row per catalog row of a live data file (file id, row number,
  path, UIDs, ``InstanceNumber``, its group), ``keep`` marking the one row that
  stands for each SOP instance (:data:`_ORDER`: rows without error first, then the
  latest ``cataloged_at``, then the smallest path);
- ``grp``: the distinct combinations of the study and series level key columns
  (``PatientName`` ... ``BodyPartExamined``), with the number of kept rows of each:
  study and series searches match here (thousands of rows, not millions); ``sk``,
  the study's key (the hash of its UID, also in ``study_sum``), joins them to studies;
- ``ffirst``: per data file and series, the row with the smallest SOP Instance UID
  and the study/series-level part of its header (:mod:`pixels.web.firsts`);
- ``series_sum`` / ``study_sum``: counts, modalities, first instance and its
  ``qmeta``, recomputed for the studies and series a version touched only;
- ``files`` / ``state``: the data files indexed (id, URI) and the table version
  the tables stand for, so that an index saved in a file resumes where it was;
- the views ``inst`` (kept rows with their group's columns) and ``sgrp`` (live
  groups with ``StudyID`` / ``ReferringPhysicianName``).

Work tables of an update are temporary (the connection's, in memory or spilled).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from pixels.scan import TableScan
from pixels.schema import VIEW_NAME
from pixels.table import sql_string
from pixels.web.firsts import FFIRST, Sidecars, firsts_table
from pixels.web.rowreads import RowReader
from pixels.web.sopkeys import SopKeys

__all__ = ["FORMAT", "GROUP_COLUMNS", "KEY_COLUMNS", "SCHEMA_SQL", "UPGRADES", "apply"]

#: Version of the tables' layout: an index saved with another one is built again,
#: unless :data:`UPGRADES` turns it into this one.
FORMAT = 2

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

#: Which row stands for a SOP instance held by several rows.
_ORDER = "ok DESC, cataloged_at DESC NULLS LAST, path"
_VALID = (
    "SOPInstanceUID IS NOT NULL AND StudyInstanceUID IS NOT NULL "
    "AND SeriesInstanceUID IS NOT NULL AND meta IS NOT NULL"
)
_GROUP_SQL = ", ".join(GROUP_COLUMNS)

_SGRP_SQL = """CREATE OR REPLACE VIEW ix.sgrp AS SELECT g.*, s.StudyID, s.ReferringPhysicianName
  FROM ix.grp g JOIN ix.series_sum s USING (SeriesInstanceUID) WHERE g.n > 0;"""
#: The study key ``sk`` of ``grp`` and ``study_sum``: the hash of the StudyInstanceUID
#: (as ``gid``, ``sh`` and ``seh`` are), so that searches join studies on integers.
_SK = "hash(StudyInstanceUID)"

SCHEMA_SQL = f"""
CREATE TABLE ix.inst_all (fid INTEGER, _row BIGINT, gid UBIGINT, sh UBIGINT, seh UBIGINT,
  path VARCHAR,
  StudyInstanceUID VARCHAR, SeriesInstanceUID VARCHAR, SOPInstanceUID VARCHAR,
  SOPClassUID VARCHAR, InstanceNumber BIGINT, ok BOOLEAN, cataloged_at TIMESTAMPTZ,
  keep BOOLEAN);
CREATE TABLE ix.grp (gid UBIGINT, n BIGINT, PatientName VARCHAR, PatientID VARCHAR,
  PatientBirthDate DATE, PatientSex VARCHAR, StudyInstanceUID VARCHAR, StudyDate DATE,
  AccessionNumber VARCHAR, StudyDescription VARCHAR, SeriesInstanceUID VARCHAR,
  Modality VARCHAR, SeriesNumber BIGINT, SeriesDescription VARCHAR, BodyPartExamined VARCHAR,
  sk UBIGINT);
CREATE TABLE ix.ffirst (fid INTEGER, SeriesInstanceUID VARCHAR, sop VARCHAR, path VARCHAR,
  qmeta VARCHAR, StudyID VARCHAR, ReferringPhysicianName VARCHAR);
CREATE TABLE ix.series_sum (SeriesInstanceUID VARCHAR, StudyInstanceUID VARCHAR,
  n_inst BIGINT, n BIGINT, first VARCHAR, first_sop VARCHAR, qmeta VARCHAR,
  StudyID VARCHAR, ReferringPhysicianName VARCHAR);
CREATE TABLE ix.study_sum (StudyInstanceUID VARCHAR, n_series BIGINT, n_inst BIGINT,
  mods VARCHAR[], first VARCHAR, first_sop VARCHAR, qmeta VARCHAR, d DATE, sk UBIGINT);
{_SGRP_SQL}
CREATE VIEW ix.inst AS SELECT i.path, {", ".join("g." + c for c in GROUP_COLUMNS)},
  i.SOPInstanceUID, i.SOPClassUID, i.InstanceNumber, s.StudyID, s.ReferringPhysicianName,
  i.fid, i._row FROM ix.inst_all i JOIN ix.grp g ON i.gid = g.gid
  LEFT JOIN ix.series_sum s ON s.SeriesInstanceUID = i.SeriesInstanceUID WHERE i.keep;
CREATE TABLE ix.files (fid INTEGER, uri VARCHAR);
CREATE TABLE ix.state (format INTEGER, version BIGINT, next_fid INTEGER);
"""

#: SQL that turns an index saved with an older :data:`FORMAT` (the key) into the current
#: one in place (seconds at 10M instances: it touches the per-group and per-study tables
#: only), instead of building it again.
UPGRADES = {
    1: f"""
ALTER TABLE ix.grp ADD COLUMN sk UBIGINT;
UPDATE ix.grp SET sk = {_SK};
ALTER TABLE ix.study_sum ADD COLUMN sk UBIGINT;
UPDATE ix.study_sum SET sk = {_SK};
{_SGRP_SQL}
UPDATE ix.state SET format = {FORMAT};
""",
}


#: Up to this many touched series and SOP instances are looked up as constants.
_INLINE = 4096


def _ints(values: list[int]) -> str:
    """Integers made here (file ids, hashes; never from a request) as SQL constants."""
    return ", ".join(str(int(v)) for v in values)


def _fids(cur: duckdb.DuckDBPyConnection, sql: str) -> list[int]:
    """The file ids a query returns, in order."""
    return sorted(int(r[0]) for r in cur.execute(sql).fetchall())


def apply(
    cur: duckdb.DuckDBPyConnection,
    scan: TableScan,
    added: list[str],
    new_fids: list[int],
    removed: list[int],
    *,
    uris: Mapping[int, str],
    sidecars: Sidecars,
    reader: RowReader,
    keys: SopKeys,
    stats: dict[str, Any] | None = None,
) -> int:
    """Drop the rows of the ``removed`` files, add those of the ``added`` ones, and
    recompute what depends on the SOP instances, series and studies they touch.

    Work grows with the rows touched, not with the table: the rows of the touched
    series are found in the data files that hold them (``ffirst``) by file id, which
    the table's zone maps prune (ids grow with insertion order); rows sharing a SOP
    instance with an added row are looked up only for the hashes ``keys`` may hold
    (a removed row's SOP instance always: that look-up reads the ``sh`` column of
    every row). The touched studies' sums read their series' narrow columns, then the
    ``qmeta`` of one series per study. ``stats`` gets the number of SOP hashes looked
    up and of data files read. Returns the number of rows added.
    """
    stats = {} if stats is None else stats
    cur.execute("USE ix")
    touched = "gid, StudyInstanceUID, SeriesInstanceUID, sh, seh"
    if removed:
        gone = ", ".join(str(int(f)) for f in removed)  # file ids: integers made here
        cur.execute(
            f"CREATE OR REPLACE TEMP TABLE _touched AS SELECT {touched} FROM ix.inst_all "
            f"WHERE fid IN ({gone})"
        )
        cur.execute(f"DELETE FROM ix.inst_all WHERE fid IN ({gone})")
        cur.execute(f"DELETE FROM ix.ffirst WHERE fid IN ({gone})")
        (stats["removed_rows"],) = cur.execute("SELECT count(*) FROM _touched").fetchone() or (0,)
    else:
        cur.execute(
            f"CREATE OR REPLACE TEMP TABLE _touched AS SELECT {touched} FROM ix.inst_all LIMIT 0"
        )
    added_rows = 0
    if added:
        added_rows = _load(cur, scan, added, new_fids, uris, sidecars, reader)
        cur.execute(f"INSERT INTO _touched SELECT {touched} FROM _rows")
    # every live row of the series and SOP instances touched: the work set, found by
    # narrow columns first (file ids, hashes), its other columns read for those rows only
    cols = (
        "fid, _row, gid, path, StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID, ok, "
        "cataloged_at, keep"
    )
    # the series' rows lie in the data files that hold them (``ffirst``, a row per file
    # and series, added files included): file ids let zone maps skip the other files'
    # row groups (ids grow with insertion order)
    files = _fids(
        cur,
        "SELECT DISTINCT fid FROM ix.ffirst "
        "WHERE SeriesInstanceUID IN (SELECT SeriesInstanceUID FROM _touched)",
    )
    seh = [r[0] for r in cur.execute("SELECT DISTINCT seh FROM _touched").fetchall()]
    series_hits = (
        f"SELECT fid, _row FROM ix.inst_all WHERE fid IN ({_ints(files)}) AND "
        + (f"seh IN ({_ints(seh)})" if len(seh) <= _INLINE else "seh IN (SELECT seh FROM _touched)")
        if files and seh
        else "SELECT 0::INTEGER AS fid, 0::BIGINT AS _row WHERE false"
    )
    # the SOP instances: a removed row's twin may be any row; an added row's only one
    # whose hash ``keys`` may hold (a commit of new instances: none, no scan)
    sh = [r[0] for r in cur.execute("SELECT DISTINCT sh FROM _touched").fetchall()]
    if added:
        new = cur.execute("SELECT sh FROM _rows").fetchnumpy()["sh"].astype(np.uint64)
        maybe = set(new[keys.maybe_held(new)].tolist())
        if removed:
            gone_sh = cur.execute(
                "SELECT DISTINCT sh FROM _touched EXCEPT SELECT sh FROM _rows"
            ).fetchall()
            maybe.update(r[0] for r in gone_sh)
        keys.add(new)
        sh = sorted(maybe)
    if not sh:
        sop_hits = "SELECT 0::INTEGER AS fid, 0::BIGINT AS _row WHERE false"
    elif len(sh) <= _INLINE:
        # constants (hashes computed here, never from a request): a filter on one column
        sop_hits = f"SELECT fid, _row FROM ix.inst_all WHERE sh IN ({_ints(sh)})"
    else:
        cur.execute("CREATE OR REPLACE TEMP TABLE _sh AS SELECT unnest(?::UBIGINT[]) AS sh", [sh])
        sop_hits = "SELECT fid, _row FROM ix.inst_all WHERE sh IN (SELECT sh FROM _sh)"
    cur.execute(f"CREATE OR REPLACE TEMP TABLE _hit AS {series_hits} UNION {sop_hits}")
    hit_files = _fids(cur, "SELECT DISTINCT fid FROM _hit")
    cur.execute(
        f"CREATE OR REPLACE TEMP TABLE _aff AS SELECT {cols} FROM ix.inst_all "
        f"SEMI JOIN _hit USING (fid, _row) WHERE fid IN ({_ints(hit_files) or 'NULL'})"
    )
    stats["sop_lookups"] = len(sh)
    stats["files_read"] = len(hit_files)
    # the row that stands for each SOP instance, again
    cur.execute(
        "CREATE OR REPLACE TEMP TABLE _keep AS SELECT fid, _row, k FROM (SELECT fid, _row, keep, "
        f"row_number() OVER (PARTITION BY SOPInstanceUID ORDER BY {_ORDER}) = 1 AS k "
        "FROM _aff) WHERE keep IS DISTINCT FROM k"
    )
    (changed,) = cur.execute("SELECT count(*) FROM _keep").fetchone() or (0,)
    if changed:
        cur.execute(
            "UPDATE ix.inst_all SET keep = r.k FROM _keep r "
            "WHERE inst_all.fid = r.fid AND inst_all._row = r._row "
            f"AND inst_all.fid IN ({_ints(hit_files)})"
        )
        cur.execute(
            "UPDATE _aff SET keep = r.k FROM _keep r WHERE _aff.fid = r.fid AND _aff._row = r._row"
        )
    cur.execute(
        "UPDATE ix.grp SET n = c.n FROM (SELECT t.gid, count(a.gid) AS n FROM "
        "(SELECT gid FROM _touched UNION SELECT gid FROM _aff) t LEFT JOIN _aff a "
        "ON a.gid = t.gid AND a.keep GROUP BY t.gid) c WHERE grp.gid = c.gid"
    )
    # the series and studies touched: their sums again, from their live rows
    cur.execute(
        "CREATE OR REPLACE TEMP TABLE _se AS SELECT SeriesInstanceUID AS s FROM _touched "
        "UNION SELECT SeriesInstanceUID FROM _aff"
    )
    cur.execute(
        "CREATE OR REPLACE TEMP TABLE _st AS SELECT StudyInstanceUID AS s FROM _touched "
        "UNION SELECT StudyInstanceUID FROM _aff"
    )
    cur.execute("DELETE FROM ix.series_sum WHERE SeriesInstanceUID IN (SELECT s FROM _se)")
    se_files = _fids(
        cur, "SELECT DISTINCT fid FROM ix.ffirst WHERE SeriesInstanceUID IN (SELECT s FROM _se)"
    )
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
        f"FROM ix.ffirst WHERE fid IN ({_ints(se_files) or 'NULL'}) "
        "AND SeriesInstanceUID IN (SELECT s FROM _se) "
        "GROUP BY SeriesInstanceUID) x USING (SeriesInstanceUID)"
    )
    cur.execute("DELETE FROM ix.study_sum WHERE StudyInstanceUID IN (SELECT s FROM _st)")
    key = "(first_sop, first)"
    # the narrow columns of the studies' series first; then the ``qmeta`` of the one
    # series per study that gives it (reading every series' ``qmeta`` costs 10x more)
    cur.execute(
        "CREATE OR REPLACE TEMP TABLE _ss AS SELECT StudyInstanceUID, count(*) AS n_series, "
        f"sum(n_inst) AS n_inst, arg_min(first, {key}) AS first, min(first_sop) AS first_sop, "
        f"arg_min(SeriesInstanceUID, {key}) AS qse FROM ix.series_sum "
        "WHERE StudyInstanceUID IN (SELECT s FROM _st) GROUP BY StudyInstanceUID"
    )
    # found by row id: the scan then reads those rows' ``qmeta`` only (7 ms instead of
    # 78 for 40 series among 76k)
    rids = [
        r[0]
        for r in cur.execute(
            "SELECT rowid FROM ix.series_sum WHERE SeriesInstanceUID IN (SELECT qse FROM _ss)"
        ).fetchall()
    ]
    cur.execute(
        "INSERT INTO ix.study_sum SELECT s.StudyInstanceUID, s.n_series, s.n_inst, g.mods, "
        "s.first, s.first_sop, q.qmeta, g.d, hash(s.StudyInstanceUID) FROM _ss s "
        "JOIN (SELECT StudyInstanceUID, max(StudyDate) AS d, "
        "list_sort(list(DISTINCT Modality) FILTER (Modality IS NOT NULL)) AS mods "
        "FROM ix.grp WHERE n > 0 AND StudyInstanceUID IN (SELECT s FROM _st) "
        "GROUP BY StudyInstanceUID) g USING (StudyInstanceUID) "
        "LEFT JOIN (SELECT SeriesInstanceUID AS qse, qmeta FROM ix.series_sum "
        "WHERE rowid IN (SELECT unnest(?::BIGINT[]))) q USING (qse)",
        [rids],
    )
    # the small work tables stay (replaced by the next update); these may be large
    cur.execute("DROP TABLE IF EXISTS _rows")
    cur.execute("DROP TABLE IF EXISTS _aff")
    return added_rows


def _load(
    cur: duckdb.DuckDBPyConnection,
    scan: TableScan,
    added: list[str],
    new_fids: list[int],
    uris: Mapping[int, str],
    sidecars: Sidecars,
    reader: RowReader,
) -> int:
    """Rows of the ``added`` data files into ``inst_all``, ``grp``, ``ffirst`` and ``_rows``."""
    cur.execute(
        "CREATE OR REPLACE TEMP TABLE _files AS "
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
            f"{scan.union_by_name}, filename=true, file_row_number=true) p "
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
        f"CREATE OR REPLACE TEMP TABLE _rows AS SELECT *, hash({_GROUP_SQL}) AS gid, "
        f"hash(SOPInstanceUID) AS sh, hash(SeriesInstanceUID) AS seh FROM {source}"
    )
    cur.execute(
        "INSERT INTO ix.inst_all SELECT fid, _row, gid, sh, seh, path, StudyInstanceUID, "
        "SeriesInstanceUID, SOPInstanceUID, SOPClassUID, InstanceNumber, ok, cataloged_at, "
        "true FROM _rows"
    )
    cur.execute(
        f"INSERT INTO ix.grp SELECT DISTINCT ON (gid) gid, 0, {_GROUP_SQL}, {_SK} FROM _rows "
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
        held = sidecars.get(uris[fid], fid) if scan.direct else None
        if held is None or held.num_rows != len(rows):
            held = _firsts_of(cur, scan, fid, rows, reader)
            if scan.direct:
                sidecars.put(uris[fid], held)
        parts.append(held)
    if parts:
        table = pa.concat_tables(parts)
        cur.register("_ffirst_new", table)
        try:
            cur.execute(f"INSERT INTO ix.ffirst SELECT {', '.join(FFIRST)} FROM _ffirst_new")
        finally:
            cur.unregister("_ffirst_new")
    (n,) = cur.execute("SELECT count(*) FROM _rows").fetchone() or (0,)
    return int(n)


def _firsts_of(
    cur: duckdb.DuckDBPyConnection,
    scan: TableScan,
    fid: int,
    rows: list[tuple[Any, ...]],
    reader: RowReader,
) -> pa.Table:
    """``ffirst`` rows of one data file: its series' first rows with their ``qmeta``."""
    metas: dict[int, str | None] = {}
    if scan.direct:
        located = [(str(i), fid, r[4]) for i, r in enumerate(rows)]
        found = reader.read(cur, located, "meta", threads=True)
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
    return firsts_table(rows, metas)
