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
  the study's key (the hash of its UID, also in ``study_sum`` and ``series_sum``),
  joins them to studies;
- ``ffirst``: per data file and series, the row with the smallest SOP Instance UID
  and the study/series-level part of its header (:mod:`pixels.web.firsts`);
- ``series_sum`` / ``study_sum``: counts, modalities, first instance and its
  ``qmeta``, recomputed for the studies and series a version touched only; ``seh``
  (in ``ffirst`` and ``series_sum``: the hash of the SeriesInstanceUID, as in
  ``inst_all``) and ``sk`` find an update's rows without reading their VARCHARs;
- ``qs`` / ``qs_new``: the study search table (:data:`STUDY_SEARCH`): one row per
  study with its study-level key columns (``pn``: ``PatientName`` lower-cased),
  modalities, counts and ``qmeta`` (stored uncompressed: a page of answers reads only
  its rows). ``qs`` is kept in the order studies are answered in (:data:`STUDY_ORDER`),
  so that a search reads it from the start and stops at its page; the studies an
  update touches leave it for ``qs_new``, which :func:`sort_study_search` merges back
  (:func:`study_search_due` says when);
- ``files`` / ``state``: the data files indexed (id, URI) and the table version
  the tables stand for, so that an index saved in a file resumes where it was;
- the views ``inst`` (kept rows with their group's columns) and ``sgrp`` (live
  groups with ``StudyID`` / ``ReferringPhysicianName``).

Work tables of an update are temporary (the connection's, in memory or spilled).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from pixels.scan import TableScan
from pixels.schema import VIEW_NAME
from pixels.storage import is_local, local_path
from pixels.table import sql_string
from pixels.table.firsts import read_firsts
from pixels.table.footer import leaf_index
from pixels.web.firsts import FFIRST, Sidecars, firsts_table, parsed_firsts_table
from pixels.web.rowreads import RowReader
from pixels.web.sopkeys import SopKeys

__all__ = [
    "FORMAT",
    "GROUP_COLUMNS",
    "KEY_COLUMNS",
    "SCHEMA_SQL",
    "STUDY_ORDER",
    "STUDY_SEARCH",
    "UPGRADES",
    "apply",
    "modality_key",
    "sort_study_search",
    "study_search_due",
]

#: Version of the tables' layout: an index saved with another one is built again,
#: unless :data:`UPGRADES` turns it into this one.
FORMAT = 4

#: Study-level key columns of ``grp``: a study search on these alone reads ``qs``.
STUDY_SEARCH = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "AccessionNumber",
    "StudyDescription",
)
#: Study and series level key columns: one ``grp`` row per distinct combination.
GROUP_COLUMNS = (
    *STUDY_SEARCH,
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
_VALID_KEYS = (
    "SOPInstanceUID IS NOT NULL AND StudyInstanceUID IS NOT NULL AND SeriesInstanceUID IS NOT NULL"
)
_VALID = f"{_VALID_KEYS} AND meta IS NOT NULL"
_GROUP_SQL = ", ".join(GROUP_COLUMNS)

_SGRP_SQL = """CREATE OR REPLACE VIEW ix.sgrp AS SELECT g.*, s.StudyID, s.ReferringPhysicianName
  FROM ix.grp g JOIN ix.series_sum s USING (SeriesInstanceUID) WHERE g.n > 0;"""
#: The study key ``sk`` of ``grp``, ``study_sum`` and ``series_sum``: the hash of the
#: StudyInstanceUID (as ``gid``, ``sh`` and ``seh`` are), so that searches join studies
#: on integers.
_SK = "hash(StudyInstanceUID)"

#: The order studies are answered in (and ``qs`` is kept in).
STUDY_ORDER = "d DESC NULLS LAST, StudyInstanceUID"
#: ``qs`` and ``qs_new``: ``mixed`` marks a study whose live groups differ in a column of
#: :data:`STUDY_SEARCH` (its columns are then NULL: searched through ``grp``); ``pn`` is
#: ``lower(PatientName)`` (what ``ILIKE`` compares); ``modstr`` the modalities as
#: ``\MR\CT\``, each with ``%`` and ``\\`` percent-encoded (:func:`modality_key`): a
#: study has modality ``m`` when ``modstr`` contains ``modality_key(m)``, a test DuckDB
#: runs in the scan (a test of the list does not).
_QS_DEF = """(sk UBIGINT, d DATE, StudyInstanceUID VARCHAR, mixed BOOLEAN,
  PatientName VARCHAR, pn VARCHAR, PatientID VARCHAR, PatientBirthDate DATE, PatientSex VARCHAR,
  StudyDate DATE, AccessionNumber VARCHAR, StudyDescription VARCHAR, mods VARCHAR[],
  modstr VARCHAR, n_series BIGINT, n_inst BIGINT,
  first VARCHAR USING COMPRESSION uncompressed, qmeta VARCHAR USING COMPRESSION uncompressed)"""
_QS_SQL = f"""CREATE TABLE ix.qs {_QS_DEF};
CREATE TABLE ix.qs_new {_QS_DEF};
"""
#: Studies in ``qs_new`` that make the next update's checkpoint thread sort them into
#: ``qs`` (and more than a sixteenth of ``qs``).
_QS_NEW_MAX = 2048


def modality_key(modality: str) -> str:
    """What ``modstr`` contains when a study has ``modality`` (see :data:`_QS_DEF`)."""
    return "\\" + modality.replace("%", "%25").replace("\\", "%5C") + "\\"


def _study_search_rows(studies: str, groups: str) -> str:
    """``qs`` rows of the studies of ``studies`` (``study_sum`` or a table of its rows),
    from ``groups`` (their live ``grp`` rows, or more)."""
    same = ", ".join(STUDY_SEARCH)
    cols = [c for c in STUDY_SEARCH if c != "StudyInstanceUID"]
    one = ", ".join(f"CASE WHEN same THEN {c} END AS {c}" for c in cols)
    anyv = ", ".join(f"any_value({c}) AS {c}" for c in cols)
    # (the groups agree when their hashes of these columns do: a DISTINCT aggregate
    # beside the others cost 10-15 ms a statement)
    return (
        "SELECT s.sk, s.d, s.StudyInstanceUID, NOT g.same, g.PatientName, lower(g.PatientName), "
        "g.PatientID, g.PatientBirthDate, g.PatientSex, g.StudyDate, g.AccessionNumber, "
        "g.StudyDescription, s.mods, '\\' || array_to_string(list_transform(s.mods, "
        "lambda m: replace(replace(m, '%', '%25'), '\\', '%5C')), '\\') || '\\', "
        "s.n_series, s.n_inst, s.first, s.qmeta "
        f"FROM {studies} s JOIN (SELECT sk, same, {one} FROM (SELECT sk, "
        f"min(hash({same})) = max(hash({same})) AS same, {anyv} FROM {groups} GROUP BY sk)) g "
        "USING (sk)"
    )


def sort_study_search(cur: duckdb.DuckDBPyConnection) -> None:
    """Merge ``qs_new`` into ``qs``, in :data:`STUDY_ORDER` (the caller's transaction;
    readers see the tables before or after)."""
    cur.execute(
        "CREATE OR REPLACE TEMP TABLE _qs AS SELECT * FROM ix.qs UNION ALL SELECT * FROM ix.qs_new"
    )
    cur.execute("DROP TABLE ix.qs")
    cur.execute("DELETE FROM ix.qs_new")
    cur.execute(f"CREATE TABLE ix.qs {_QS_DEF}")
    cur.execute(f"INSERT INTO ix.qs SELECT * FROM _qs ORDER BY {STUDY_ORDER}")
    cur.execute("DROP TABLE _qs")


def study_search_due(cur: duckdb.DuckDBPyConnection) -> bool:
    """Whether ``qs_new`` holds enough studies for :func:`sort_study_search`."""
    row = cur.execute(
        "SELECT (SELECT count(*) FROM ix.qs_new), (SELECT count(*) FROM ix.qs)"
    ).fetchone()
    return row is not None and row[0] > max(_QS_NEW_MAX, row[1] // 16)


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
  qmeta VARCHAR, StudyID VARCHAR, ReferringPhysicianName VARCHAR, seh UBIGINT);
CREATE TABLE ix.series_sum (SeriesInstanceUID VARCHAR, StudyInstanceUID VARCHAR,
  n_inst BIGINT, n BIGINT, first VARCHAR, first_sop VARCHAR, qmeta VARCHAR,
  StudyID VARCHAR, ReferringPhysicianName VARCHAR, seh UBIGINT, sk UBIGINT);
CREATE TABLE ix.study_sum (StudyInstanceUID VARCHAR, n_series BIGINT, n_inst BIGINT,
  mods VARCHAR[], first VARCHAR, first_sop VARCHAR, qmeta VARCHAR, d DATE, sk UBIGINT);
{_SGRP_SQL}
CREATE VIEW ix.inst AS SELECT i.path, {", ".join("g." + c for c in GROUP_COLUMNS)},
  i.SOPInstanceUID, i.SOPClassUID, i.InstanceNumber, s.StudyID, s.ReferringPhysicianName,
  i.fid, i._row FROM ix.inst_all i JOIN ix.grp g ON i.gid = g.gid
  LEFT JOIN ix.series_sum s ON s.SeriesInstanceUID = i.SeriesInstanceUID WHERE i.keep;
{_QS_SQL}CREATE TABLE ix.files (fid INTEGER, uri VARCHAR);
CREATE TABLE ix.state (format INTEGER, version BIGINT, next_fid INTEGER);
"""

#: Format 1 to 2: the study key ``sk`` of ``grp`` and ``study_sum`` (searches).
_TO_2 = f"""
ALTER TABLE ix.grp ADD COLUMN sk UBIGINT;
UPDATE ix.grp SET sk = {_SK};
ALTER TABLE ix.study_sum ADD COLUMN sk UBIGINT;
UPDATE ix.study_sum SET sk = {_SK};
{_SGRP_SQL}
"""
#: Format 2 to 3: the hash columns updates find the per-series rows by.
_TO_3 = f"""
ALTER TABLE ix.ffirst ADD COLUMN seh UBIGINT;
UPDATE ix.ffirst SET seh = hash(SeriesInstanceUID);
ALTER TABLE ix.series_sum ADD COLUMN seh UBIGINT;
ALTER TABLE ix.series_sum ADD COLUMN sk UBIGINT;
UPDATE ix.series_sum SET seh = hash(SeriesInstanceUID), sk = {_SK};
"""
#: Format 3 to 4: the study search table, sorted.
_TO_4 = f"""{_QS_SQL}
INSERT INTO ix.qs {_study_search_rows("ix.study_sum", "(SELECT * FROM ix.grp WHERE n > 0)")}
  ORDER BY {STUDY_ORDER};
"""
_DONE = f"UPDATE ix.state SET format = {FORMAT};"

#: SQL that turns an index saved with an older :data:`FORMAT` (the key) into the current
#: one in place (seconds at 10M instances: it touches the per-group, per-series and
#: per-study tables only), instead of building it again.
UPGRADES = {1: _TO_2 + _TO_3 + _TO_4 + _DONE, 2: _TO_3 + _TO_4 + _DONE, 3: _TO_4 + _DONE}


#: Up to this many touched keys are looked up as constants.
_INLINE = 4096

_EMPTY = np.empty(0, dtype=np.uint64)
Keys = dict[str, npt.NDArray[Any]]


def _ints(values: Any) -> str:
    """Integers made here (file ids, hashes, row ids; never from a request) as SQL constants."""
    return ", ".join(str(int(v)) for v in values)


def _keys(cur: duckdb.DuckDBPyConnection, sql: str) -> Keys:
    """The columns a query returns, as NumPy arrays (hashes as unsigned 64-bit)."""
    got = cur.execute(sql).fetchnumpy()
    return {
        k: np.asarray(v, dtype=np.int64 if k in ("fid", "rowid") else np.uint64)
        for k, v in got.items()
    }


def _within(cur: duckdb.DuckDBPyConnection, col: str, name: str, values: Any) -> str:
    """A filter ``col IN (values)``: constants up to :data:`_INLINE` of them, else a
    temporary table ``name``."""
    if len(values) <= _INLINE:
        return f"{col} IN ({_ints(values)})" if len(values) else "false"
    cur.execute(
        f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT unnest(?::UBIGINT[]) AS k", [values]
    )
    return f"{col} IN (SELECT k FROM {name})"


def _rowids(cur: duckdb.DuckDBPyConnection, table: str, cond: str) -> list[int]:
    """Row ids of ``table``'s rows matching ``cond`` (a filter on its hash columns).

    A per-series or per-study table is searched in two steps: this scan reads only the
    hash column; the rows' other columns are then read by row id (``rowid IN (...)``).
    DuckDB takes an ``IN`` list of constants as a join, not a filter of the scan: a
    scan that also projects the VARCHAR columns reads them for every row (60 ms
    instead of 3 for 30 studies of 29k at 10M, loaded machine).
    """
    return [int(r[0]) for r in cur.execute(f"SELECT rowid FROM {table} WHERE {cond}").fetchall()]


def _by_rowid(rowids: list[int]) -> str:
    """The filter of :func:`_rowids`' second step (row ids made here)."""
    return f"rowid IN ({_ints(rowids)})" if rowids else "false"


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
    root: str | None = None,
    known: tuple[SopKeys, SopKeys] | None = None,
) -> int:
    """Drop the rows of the ``removed`` files, add those of the ``added`` ones, and
    recompute what depends on the SOP instances, series and studies they touch.

    Work grows with the rows touched, not with the table (the per-series and
    per-study tables are not scanned but for their hash columns, 8 bytes a row):

    - the touched series and studies are the hashes (``seh``, ``sk``) of the rows
      removed and added, and of the rows sharing a SOP instance with them (a twin's
      series may be another one, read whole); those rows are looked up only for
      the hashes ``keys`` may hold (a removed row's SOP instance always: that look-up
      reads the ``sh`` column of every row);
    - the touched series' rows lie in the data files that hold them (``ffirst``), read
      by file id, which the table's zone maps prune (ids grow with insertion order);
    - the rows of ``grp``, ``ffirst``, ``series_sum`` and ``study_sum`` are found by
      their hash columns, then read by row id (:func:`_rowids`);
    - the added files' ``ffirst`` rows (their first rows' ``meta``) are read in a
      thread while the rest goes on (local files).

    ``stats`` gets the number of SOP hashes looked up and of data files read.
    ``root``: the local table's folder, where its writer saved each data file's
    first rows (:mod:`pixels.table.firsts`); None: none saved (read from the files).
    ``known``: the series and study hashes the index may hold, given the added rows'.
    Returns the number of rows added.
    """
    stats = {} if stats is None else stats
    cur.execute("USE ix")
    # the keys (hashes) of the rows removed and added: groups, studies, series, SOPs
    gone: Keys = {"gid": _EMPTY, "sk": _EMPTY, "seh": _EMPTY, "sh": _EMPTY}
    if removed:
        ids = _ints(removed)  # file ids: integers made here
        gone = _keys(
            cur,
            f"SELECT gid, {_SK} AS sk, seh, sh FROM ix.inst_all WHERE fid IN ({ids})",
        )
        cur.execute(f"DELETE FROM ix.inst_all WHERE fid IN ({ids})")
        cur.execute(f"DELETE FROM ix.ffirst WHERE fid IN ({ids})")
        stats["removed_rows"] = len(gone["sh"])
    new: Keys = {"gid": _EMPTY, "sk": _EMPTY, "seh": _EMPTY, "sh": _EMPTY}
    firsts: _Firsts | None = None
    try:
        if added:
            new, firsts = _load(cur, scan, added, new_fids, uris, sidecars, reader, root)
        _update(cur, gone, new, firsts, removed=bool(removed), keys=keys, stats=stats)
        if known is not None:
            known[0].add(np.unique(new["seh"]))
            known[1].add(np.unique(new["sk"]))
    finally:
        if firsts is not None:
            firsts.result()  # (its thread ended before the transaction does)
    if firsts is not None:
        stats["firsts_saved"] = firsts.saved
    # the small work tables stay (replaced by the next update); these may be large
    cur.execute("DROP TABLE IF EXISTS _rows")
    cur.execute("DROP TABLE IF EXISTS _aff")
    return len(new["sh"])


def _update(
    cur: duckdb.DuckDBPyConnection,
    gone: Keys,
    new: Keys,
    firsts: _Firsts | None,
    *,
    removed: bool,
    keys: SopKeys,
    stats: dict[str, Any],
) -> None:
    """:func:`apply` once the rows are in and out: keeps, counts and sums again."""
    # the SOP instances: a removed row's twin may be any row; an added row's only one
    # whose hash ``keys`` may hold (a commit of new instances: none, no scan)
    if len(new["sh"]):
        maybe = new["sh"][keys.maybe_held(new["sh"])]
        if removed:
            maybe = np.concatenate([maybe, np.setdiff1d(gone["sh"], new["sh"])])
        keys.add(new["sh"])
        sh = np.unique(maybe)
    else:
        sh = np.unique(gone["sh"])
    stats["sop_lookups"] = len(sh)
    seh = np.unique(np.concatenate([gone["seh"], new["seh"]]))
    sk = np.unique(np.concatenate([gone["sk"], new["sk"]]))
    if len(sh):
        # the series of the rows sharing a SOP instance with a touched one: touched too,
        # all their rows read (a twin's series may be another one than its own)
        twins = _keys(
            cur,
            f"SELECT DISTINCT seh, {_SK} AS sk FROM ix.inst_all "
            f"WHERE {_within(cur, 'sh', '_ksh', sh)}",
        )
        seh = np.union1d(seh, twins["seh"])
        sk = np.union1d(sk, twins["sk"])
    in_seh = _within(cur, "seh", "_kse", seh)
    # the touched series' ``ffirst`` rows held (an added file's come from ``firsts``):
    # the data files that hold those series, whose ids let zone maps skip the other
    # files' row groups of ``inst_all`` (ids grow with insertion order)
    held = _keys(cur, f"SELECT rowid, fid FROM ix.ffirst WHERE {in_seh}")
    old_files = sorted(set(held["fid"].tolist()))
    new_files = sorted(set(new.get("fid", _EMPTY).tolist()))
    files = sorted(set(old_files) | set(new_files))
    in_files = f"fid IN ({_ints(files) or 'NULL'})"
    # every live row of the touched series: the work set. The added rows are
    # ``_rows``; the others are read from the files that hold them, found by narrow
    # columns first (file ids, hashes), their other columns read for those rows only
    cols = "path, StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID, ok, cataloged_at"
    parts = (
        [f"SELECT fid, _row, gid, seh, sh, sk, {cols}, true AS keep FROM _rows"]
        if new_files
        else []
    )
    # a commit of new series only: the work set is the added rows (not copied)
    aff = "_rows" if new_files and not old_files else "_aff"
    if old_files or not parts:
        held_in = f"fid IN ({_ints(old_files) or 'NULL'})"
        parts.append(
            f"SELECT fid, _row, gid, seh, sh, {_SK} AS sk, {cols}, keep "
            "FROM ix.inst_all SEMI JOIN "
            f"(SELECT fid, _row FROM ix.inst_all WHERE {held_in} AND {in_seh}) "
            f"USING (fid, _row) WHERE {held_in}"
        )
    if aff == "_aff":
        cur.execute(f"CREATE OR REPLACE TEMP TABLE _aff AS {' UNION ALL '.join(parts)}")
    stats["files_read"] = len(files)
    # the row that stands for each SOP instance, again: only where one is not kept or
    # a SOP hash is held by two rows (else every row stands for itself)
    row = cur.execute(
        f"SELECT count(*) FILTER (NOT keep), count(*) - count(DISTINCT sh) FROM {aff}"
    ).fetchone()
    if row is not None and (row[0] or row[1]):
        cur.execute(
            "CREATE OR REPLACE TEMP TABLE _keep AS SELECT fid, _row, k FROM (SELECT fid, _row, "
            f"keep, row_number() OVER (PARTITION BY SOPInstanceUID ORDER BY {_ORDER}) = 1 AS k "
            f"FROM {aff}) WHERE keep IS DISTINCT FROM k"
        )
        cur.execute(
            "UPDATE ix.inst_all SET keep = r.k FROM _keep r "
            f"WHERE inst_all.fid = r.fid AND inst_all._row = r._row AND inst_all.{in_files}"
        )
        cur.execute(
            f"UPDATE {aff} SET keep = r.k FROM _keep r WHERE {aff}.fid = r.fid AND {aff}._row = r._row"
        )
    # the groups of the touched series: their counts of kept rows (every live row of
    # those series is in ``_aff``; a group whose rows all went has none)
    gids = np.unique(np.concatenate([gone["gid"], new["gid"]]))
    grp_rows = [
        int(r[0])
        for r in cur.execute(
            "SELECT rowid FROM ix.grp WHERE gid IN "
            f"(SELECT unnest(?::UBIGINT[]) UNION SELECT gid FROM {aff})",
            [gids],
        ).fetchall()
    ]
    cur.execute(
        "UPDATE ix.grp SET n = coalesce(c.n, 0) FROM (SELECT g.rowid AS r, a.n FROM ix.grp g "
        f"LEFT JOIN (SELECT gid, count(*) FILTER (keep) AS n FROM {aff} GROUP BY gid) a "
        f"USING (gid) WHERE g.{_by_rowid(grp_rows)}) c WHERE grp.rowid = c.r"
    )
    # the series touched: their sums again, from their live rows and ``ffirst`` rows
    ffirst = (
        "SELECT SeriesInstanceUID, sop, path, qmeta, StudyID, ReferringPhysicianName "
        f"FROM ix.ffirst WHERE {_by_rowid(held['rowid'].tolist())}"
    )
    if firsts is not None:
        table = firsts.result()
        if table is not None:
            cur.register("_ffirst_new", table)
            cur.execute(
                f"INSERT INTO ix.ffirst SELECT {', '.join(FFIRST)}, hash(SeriesInstanceUID) "
                "FROM _ffirst_new"
            )
            ffirst += (
                " UNION ALL SELECT SeriesInstanceUID, sop, path, qmeta, StudyID, "
                "ReferringPhysicianName FROM _ffirst_new"
            )
    try:
        if old_files or removed:  # (else no touched series had a row before)
            cur.execute(f"DELETE FROM ix.series_sum WHERE {in_seh}")
        key = "(sop, path)"
        cur.execute(
            "INSERT INTO ix.series_sum SELECT c.SeriesInstanceUID, c.StudyInstanceUID, "
            "c.n_inst, g.n, c.first, c.first_sop, x.qmeta, x.StudyID, x.ReferringPhysicianName, "
            "c.seh, hash(c.StudyInstanceUID) FROM "
            "(SELECT SeriesInstanceUID, any_value(seh) AS seh, "
            "any_value(StudyInstanceUID) AS StudyInstanceUID, "
            "count(*) AS n_inst, arg_min(path, (SOPInstanceUID, path)) AS first, "
            f"min(SOPInstanceUID) AS first_sop FROM {aff} WHERE keep "
            "GROUP BY SeriesInstanceUID) c "
            "LEFT JOIN (SELECT SeriesInstanceUID, min(SeriesNumber) AS n FROM ix.grp "
            f"WHERE {_by_rowid(grp_rows)} AND n > 0 GROUP BY SeriesInstanceUID) g "
            "USING (SeriesInstanceUID) LEFT JOIN "
            f"(SELECT SeriesInstanceUID, arg_min_null(qmeta, {key}) AS qmeta, "
            f"arg_min_null(StudyID, {key}) AS StudyID, "
            f"arg_min_null(ReferringPhysicianName, {key}) AS ReferringPhysicianName "
            f"FROM ({ffirst}) GROUP BY SeriesInstanceUID) x USING (SeriesInstanceUID)"
        )
    finally:
        if firsts is not None:
            with contextlib.suppress(duckdb.Error):
                cur.unregister("_ffirst_new")
    # the studies touched (a twin's too, and any a touched series' rows name)
    if aff != "_rows":  # (the added rows' are in ``sk``)
        sk = np.union1d(sk, _keys(cur, f"SELECT DISTINCT sk FROM {aff}")["sk"])
    in_sk = _within(cur, "sk", "_kst", sk)
    cur.execute(f"DELETE FROM ix.study_sum WHERE {in_sk}")
    key = "(first_sop, first)"
    series_rows = _by_rowid(_rowids(cur, "ix.series_sum", in_sk))
    group_rows = _by_rowid(_rowids(cur, "ix.grp", in_sk))
    # the narrow columns of the studies' series first; then the ``qmeta`` of the one
    # series per study that gives it, by row id (reading every series' ``qmeta`` costs
    # 10x more)
    cur.execute(
        "CREATE OR REPLACE TEMP TABLE _ss AS SELECT StudyInstanceUID, count(*) AS n_series, "
        f"sum(n_inst) AS n_inst, arg_min(first, {key}) AS first, min(first_sop) AS first_sop, "
        f"arg_min(rowid, {key}) AS qrow FROM ix.series_sum WHERE {series_rows} "
        "GROUP BY StudyInstanceUID"
    )
    qrows = [int(r[0]) for r in cur.execute("SELECT qrow FROM _ss").fetchall()]
    # (the studies' live groups and sums made apart first: the study search's rows are
    # made of them too; a second read of ``grp`` decoded its columns again: 25 ms at 10M)
    cur.execute(
        f"CREATE OR REPLACE TEMP TABLE _g AS SELECT * FROM ix.grp WHERE {group_rows} AND n > 0"
    )
    cur.execute(
        "CREATE OR REPLACE TEMP TABLE _st AS SELECT s.StudyInstanceUID, s.n_series, s.n_inst, "
        "g.mods, s.first, s.first_sop, q.qmeta, g.d, hash(s.StudyInstanceUID) AS sk FROM _ss s "
        "JOIN (SELECT StudyInstanceUID, max(StudyDate) AS d, "
        "list_sort(list(DISTINCT Modality) FILTER (Modality IS NOT NULL)) AS mods "
        "FROM _g GROUP BY StudyInstanceUID) g USING (StudyInstanceUID) "
        "LEFT JOIN (SELECT rowid AS qrow, qmeta FROM ix.series_sum "
        f"WHERE {_by_rowid(qrows)}) q USING (qrow)"
    )
    cur.execute("INSERT INTO ix.study_sum SELECT * FROM _st")
    # their rows of the study search: out of ``qs`` (kept in order), into ``qs_new``
    cur.execute(f"DELETE FROM ix.qs WHERE {in_sk}")
    cur.execute(f"DELETE FROM ix.qs_new WHERE {in_sk}")
    cur.execute("INSERT INTO ix.qs_new " + _study_search_rows("_st", "_g"))


class _Firsts:
    """The added files' ``ffirst`` rows, read in a thread of their own when ``background``
    (their ``meta`` is most of an update's reading) while the update goes on."""

    def __init__(self, work: Callable[[_Firsts], pa.Table | None], *, background: bool):
        self._work = work
        #: files whose first rows their writer saved (none read from the file; known
        #: once :meth:`result` returned)
        self.saved = 0
        self._table: pa.Table | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._run, name="pixels-ffirst", daemon=True)
            self._thread.start()
        else:
            self._run()

    def _run(self) -> None:
        try:
            self._table = self._work(self)
        except BaseException as e:  # raised again by result()
            self._error = e

    def result(self) -> pa.Table | None:
        """The rows (None: no added row), once read; the reading's error, raised here."""
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise self._error
        return self._table


def read_rows(
    cur: duckdb.DuckDBPyConnection,
    scan: TableScan,
    added: list[str],
    new_fids: list[int],
    uris: Mapping[int, str],
    sidecars: Sidecars,
    reader: RowReader,
    root: str | None = None,
) -> _Firsts:
    """Rows of the ``added`` data files into the cursor's work table ``_rows`` (each with
    its keys ``gid``, ``sh``, ``seh``, ``sk`` and ``keep`` true); their ``ffirst`` rows
    (being read: :meth:`_Firsts.result`)."""
    if scan.direct and len(added) > 1:  # the files' ids, joined by file name
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
        # ``meta`` is not read (its nulls) where the files' statistics say it has none
        valid = _VALID_KEYS if _meta_never_null(added) else _VALID
        # the file URIs come from the Delta log, never from a request
        if len(added) == 1:  # (no join on file names)
            source = (
                f"(SELECT {cols}, file_row_number AS _row, {int(new_fids[0])} AS fid "
                f"FROM read_parquet({listing}, {scan.union_by_name}, file_row_number=true) "
                f"WHERE {valid})"
            )
        else:
            source = (
                f"(SELECT {cols}, file_row_number AS _row, f.fid FROM read_parquet({listing}, "
                f"{scan.union_by_name}, filename=true, file_row_number=true) p "
                f"JOIN _files f ON f.uri = p.filename WHERE {valid})"
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
        f"hash(SOPInstanceUID) AS sh, hash(SeriesInstanceUID) AS seh, "
        f"{_SK} AS sk, true AS keep FROM {source}"
    )
    # each file's series' first rows: their ``meta`` read (in a thread for local files)
    # while the rows go in
    firsts = cur.execute(
        "SELECT fid, SeriesInstanceUID, min(SOPInstanceUID), "
        "arg_min(path, (SOPInstanceUID, path)), arg_min(_row, (SOPInstanceUID, path)) "
        "FROM _rows GROUP BY fid, SeriesInstanceUID ORDER BY fid"
    ).fetchall()
    by_fid: dict[int, list[tuple[Any, ...]]] = {}
    for row in firsts:
        by_fid.setdefault(row[0], []).append(row)

    # the files whose writer saved their first rows (:mod:`pixels.table.firsts`): no
    # ``meta`` read from the data file (their saved ``meta`` is parsed); the others'
    # are read from the data files
    def work(pending: _Firsts) -> pa.Table | None:
        saved: dict[int, pa.Table] = {}
        if scan.direct and root is not None:
            for fid, rows in by_fid.items():
                got = _saved_firsts(root, uris[fid], rows)
                if got is not None:
                    saved[fid] = got
        pending.saved = len(saved)
        parts = list(saved.values())
        for fid, rows in by_fid.items():
            if fid in saved:
                continue
            held = sidecars.get(uris[fid], fid) if scan.direct else None
            if held is None or held.num_rows != len(rows):
                held = _firsts_of(cur, scan, fid, rows, reader)
                if scan.direct:
                    sidecars.put(uris[fid], held)
            parts.append(held)
        return pa.concat_tables(parts) if parts else None

    # a local file's rows are read with pyarrow and its saved first rows parsed (the
    # cursor, busy with the update, is not used); others through the cursor, before
    # the update goes on
    local = scan.direct and all(is_local(uris[f]) for f in by_fid)
    return _Firsts(work, background=local and bool(by_fid))


def _load(
    cur: duckdb.DuckDBPyConnection,
    scan: TableScan,
    added: list[str],
    new_fids: list[int],
    uris: Mapping[int, str],
    sidecars: Sidecars,
    reader: RowReader,
    root: str | None = None,
) -> tuple[Keys, _Firsts]:
    """Rows of the ``added`` data files into ``inst_all``, ``grp`` and ``_rows``; their
    keys (``fid``, ``gid``, ``sk``, ``seh``, ``sh``: one entry per row), and their
    ``ffirst`` rows (being read)."""
    pending = read_rows(cur, scan, added, new_fids, uris, sidecars, reader, root)
    try:
        cur.execute(
            "INSERT INTO ix.inst_all SELECT fid, _row, gid, sh, seh, path, StudyInstanceUID, "
            "SeriesInstanceUID, SOPInstanceUID, SOPClassUID, InstanceNumber, ok, cataloged_at, "
            "true FROM _rows"
        )
        keys = _keys(cur, "SELECT fid, gid, sk, seh, sh FROM _rows")
        # the groups not yet held: looked up by their hashes (an anti-join would hash
        # every ``grp`` row)
        gids = np.unique(keys["gid"])
        held = _keys(cur, f"SELECT gid FROM ix.grp WHERE {_within(cur, 'gid', '_kg', gids)}")
        fresh = np.setdiff1d(gids, held["gid"])
        if len(fresh):
            cur.execute(
                f"INSERT INTO ix.grp SELECT DISTINCT ON (gid) gid, 0, {_GROUP_SQL}, sk "
                f"FROM _rows WHERE {_within(cur, 'gid', '_kg', fresh)}"
            )
        return keys, pending
    except BaseException:
        pending.result()
        raise


def _meta_never_null(uris: list[str]) -> bool:
    """Whether the local Parquet files ``uris`` have a ``meta`` column without a null in
    any row group, by their footers' statistics (False when any is unknown)."""
    for uri in uris:
        if not is_local(uri):
            return False
        try:
            footer = pq.read_metadata(local_path(uri))
            col = leaf_index(footer, "meta")
            if col is None:
                return False
            for g in range(footer.num_row_groups):
                stats = footer.row_group(g).column(col).statistics
                if stats is None or not stats.has_null_count or stats.null_count != 0:
                    return False
        except (OSError, ValueError, pa.ArrowException):
            return False
    return True


def _saved_firsts(root: str, uri: str, rows: list[tuple[Any, ...]]) -> pa.Table | None:
    """``ffirst`` rows of a local data file from the first rows its writer saved, when
    they are those of ``rows`` (``(fid, series, sop, path, _row)``, as read from the
    file); None otherwise (none saved, or another file's)."""
    if not is_local(uri):
        return None
    table = read_firsts(root, local_path(uri))
    if table is None or table.num_rows != len(rows):
        return None
    saved = {
        r["SeriesInstanceUID"]: (
            (r["sop"], r["path"], r["_row"]),
            (r["qmeta"], r["StudyID"], r["ReferringPhysicianName"]),
        )
        for r in table.to_pylist()
    }
    parsed: dict[int, tuple[str | None, str | None, str | None]] = {}
    for i, (_, series, sop, path, row) in enumerate(rows):
        got = saved.get(series)
        if got is None or got[0] != (sop, path, row):
            return None
        parsed[i] = got[1]
    return parsed_firsts_table(rows, parsed)


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
