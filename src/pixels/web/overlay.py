"""The index's overlay: the newest commits, answered before they are merged into the index.

Merging a commit into the index's tables (:func:`pixels.web.index_tables.apply`)
rewrites rows of large compressed tables and commits them to the saved index (its
log written and synced): hundreds of milliseconds at 10M instances. A commit that
only adds instances is made visible sooner: its rows, and the COMPLETE rows of every
group, series and study it touches (their counts, first instances, modalities, study
search rows, as they are with the commit), go into a small in-memory database
``ov``; views named as the index's tables (``inst_all``, ``inst``, ``grp``, ``sgrp``,
``ffirst``, ``series_sum``, ``study_sum``, ``qs``, ``qs_new``, ``state``) show the
index's rows but those of the keys the overlay holds, and the overlay's rows::

    SELECT * FROM ix.grp ANTI JOIN ov.r_grp USING (gid)
    UNION ALL SELECT * EXCLUDE (ver) FROM ov.r_grp

(the per-file tables ``inst_all`` and ``ffirst``: the index's rows of the files before
the overlay's first, whose ids are the newest: ``ov.r_lo``).

A request's cursor reads them (``USE ov``) while the overlay holds a commit, and the
index's tables (``USE ix``) otherwise. The overlay's study search rows are in
``qs_new`` (``qs`` stays the index's ordered table without them).

Because a key's overlay row is complete and hides the index's, the views answer the
same before and after the index merges that commit: the merge runs after the answer
(:class:`pixels.web.index.TableIndex`), and a merged commit's overlay rows (each row
carries the ``ver`` that wrote it) are dropped a little later, at leisure.

Only a commit that adds data files whose SOP instances are all new takes this way
(:meth:`Overlay.add` says when it cannot); the overlay is never saved: a server
started again applies the versions the saved index has not merged.
"""

from __future__ import annotations

import threading
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt

from pixels.web.firsts import FFIRST
from pixels.web.index_tables import (
    _ORDER,
    _SGRP_SQL,
    FORMAT,
    GROUP_COLUMNS,
    _Firsts,
    _keys,
    _rowids,
    _study_search_rows,
    _within,
)
from pixels.web.sopkeys import SopKeys

__all__ = ["OVERLAY_TABLES", "Overlay"]

#: The index's tables the overlay holds rows of, and each one's key (None: rows of new
#: data files only, never hiding the index's).
OVERLAY_TABLES: dict[str, str | None] = {
    "inst_all": None,
    "ffirst": None,
    "grp": "gid",
    "series_sum": "seh",
    "study_sum": "sk",
    "qs_new": "sk",
}


#: ``ov.r_lo`` of an empty overlay (beyond any file id).
_NO_FID = 2**31 - 1
_FID_BELOW = "WHERE fid < (SELECT lo FROM ov.r_lo)"


class Overlay:
    """The overlay database ``ov`` of an index's connection (see the module docstring)."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self._con = con
        con.execute("ATTACH ':memory:' AS ov")
        for table in OVERLAY_TABLES:
            con.execute(f"CREATE TABLE ov.r_{table} AS SELECT *, 0 AS ver FROM ix.{table} LIMIT 0")
        con.execute("CREATE TABLE ov.r_state AS SELECT * FROM ix.state LIMIT 0")
        # the smallest file id the overlay holds (its files' rows are the newest: the
        # index's rows of files from there on are those of merged versions)
        con.execute(f"CREATE TABLE ov.r_lo AS SELECT {_NO_FID} AS lo")
        views = []
        for table, key in OVERLAY_TABLES.items():
            hide = f"ANTI JOIN ov.r_{table} USING ({key})" if key else _FID_BELOW
            base = f"ix.{table} {hide}"
            views.append(
                f"CREATE VIEW ov.{table} AS SELECT * FROM {base} "
                f"UNION ALL SELECT * EXCLUDE (ver) FROM ov.r_{table}"
            )
        # the ordered study search table without the overlay's studies (in its order)
        views.append("CREATE VIEW ov.qs AS SELECT * FROM ix.qs ANTI JOIN ov.r_qs_new USING (sk)")
        # (the index's once the overlay is empty: a request on a snapshot made while the
        # overlay held a version reads these views after that version's rows are dropped)
        views.append(
            "CREATE VIEW ov.state AS SELECT * FROM ov.r_state UNION ALL "
            "SELECT * FROM ix.state WHERE NOT EXISTS (SELECT 1 FROM ov.r_state)"
        )
        views.append(_SGRP_SQL.replace("ix.", "ov."))
        inst = con.execute(
            "SELECT sql FROM duckdb_views() WHERE database_name = 'ix' AND view_name = 'inst'"
        ).fetchone()
        assert inst is not None
        views.append(
            inst[0].replace("ix.", "ov.").replace("CREATE VIEW inst", "CREATE VIEW ov.inst")
        )
        for sql in views:
            con.execute(sql)
        #: the SOP hashes of each version the overlay holds (not yet in the index's keys)
        self._hashes: dict[int, npt.NDArray[np.uint64]] = {}
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- state
    @property
    def versions(self) -> list[int]:
        """The versions whose rows the overlay holds, oldest first."""
        with self._lock:
            return sorted(self._hashes)

    def held(self, hashes: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
        """Per SOP hash: whether a version the overlay holds has it."""
        with self._lock:
            parts = list(self._hashes.values())
        if not parts:
            return np.zeros(len(hashes), dtype=bool)
        return np.isin(hashes, np.concatenate(parts))

    def drop(self, cur: duckdb.DuckDBPyConnection, upto: int) -> None:
        """Drop the rows of versions up to ``upto`` (merged into the index: the index's
        rows say the same). The caller serialises it with :meth:`add`."""
        cur.execute("BEGIN TRANSACTION")
        try:
            for table in OVERLAY_TABLES:
                cur.execute(f"DELETE FROM ov.r_{table} WHERE ver <= ?", [upto])
            with self._lock:
                left = [v for v in self._hashes if v > upto]
            if not left:
                cur.execute("DELETE FROM ov.r_state")
            cur.execute(
                f"UPDATE ov.r_lo SET lo = coalesce((SELECT min(fid) FROM ov.r_inst_all), {_NO_FID})"
            )
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        with self._lock:
            for v in [v for v in self._hashes if v <= upto]:
                del self._hashes[v]

    def clear(self, cur: duckdb.DuckDBPyConnection) -> None:
        """Drop every row (each version merged)."""
        self.drop(cur, 1 << 62)

    # ------------------------------------------------------------------ add
    def add(
        self,
        cur: duckdb.DuckDBPyConnection,
        version: int,
        next_fid: int,
        keys: SopKeys,
        firsts: _Firsts,
        known: tuple[SopKeys, SopKeys] | None = None,
    ) -> bool:
        """Put version ``version``'s rows (the cursor's work table ``_rows``, as
        :func:`~pixels.web.index_tables.read_rows` made it; ``firsts``: their ``ffirst``
        rows, being read: waited for when needed) in, with the complete rows of the
        groups, series and studies they touch.

        Returns False, changing nothing, when a row's SOP instance may be held already
        (by the index: ``keys``, or by the overlay), or the rows have no first rows:
        the caller then merges. ``known``: the series and study hashes the index may
        hold; where it surely holds none of the rows' and the overlay is empty, their
        current rows are not looked up (there are none).
        """
        got = _keys(cur, "SELECT sh, seh, sk, fid FROM _rows")
        sh = got["sh"]
        if len(sh) == 0 or keys.maybe_held(sh).any() or self.held(sh).any():
            return False
        seh, sk = np.unique(got["seh"]), np.unique(got["sk"])
        rows = "_rows"
        if len(np.unique(sh)) < len(sh):
            # the row standing for each SOP instance held twice: among the commit's rows
            # (the instance is new); else each row stands for its own
            rows = "_nr"
            cur.execute(
                "CREATE OR REPLACE TEMP TABLE _nr AS SELECT * REPLACE (row_number() OVER "
                f"(PARTITION BY SOPInstanceUID ORDER BY {_ORDER}) = 1 AS keep) FROM _rows"
            )
        empty = not self.versions
        # the current rows (the index's, or the overlay's for the keys it holds) of the
        # touched studies' groups, the touched series and studies, the series' ffirst
        new_series = empty and known is not None and not known[0].maybe_held(seh).any()
        new_studies = empty and known is not None and not known[1].maybe_held(sk).any()
        self._current(cur, "grp", "sk", sk, "_cg", empty, none=new_studies)
        self._current(cur, "series_sum", "seh", seh, "_cs", empty, none=new_series)
        self._current(cur, "study_sum", "sk", sk, "_cst", empty, none=new_studies)
        self._current(cur, "ffirst", "seh", seh, "_cf", empty, none=new_series)
        ver = int(version)
        table = firsts.result()
        if table is None:
            return False
        cur.register("_ffirst_new", table)
        try:
            self._compute(cur, rows)
            cur.execute("BEGIN TRANSACTION")
            try:
                cur.execute(
                    "INSERT INTO ov.r_inst_all SELECT fid, _row, gid, sh, seh, path, "
                    "StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID, SOPClassUID, "
                    f"InstanceNumber, ok, cataloged_at, keep, {ver} FROM {rows}"
                )
                cur.execute(
                    f"INSERT INTO ov.r_ffirst SELECT {', '.join(FFIRST)}, "
                    f"hash(SeriesInstanceUID), {ver} FROM _ffirst_new"
                )
                for table, key, new in (
                    ("grp", "gid", "_ng"),
                    ("series_sum", "seh", "_ns"),
                    ("study_sum", "sk", "_nst"),
                    ("qs_new", "sk", "_nqs"),
                ):
                    if not empty:  # (the key's row of an older version the overlay holds)
                        cur.execute(
                            f"DELETE FROM ov.r_{table} WHERE {key} IN (SELECT {key} FROM {new})"
                        )
                    cur.execute(f"INSERT INTO ov.r_{table} SELECT *, {ver} FROM {new}")
                lo = int(got["fid"].min())  # (file ids: integers made here)
                cur.execute(f"UPDATE ov.r_lo SET lo = least(lo, {lo})")
                cur.execute("DELETE FROM ov.r_state")
                cur.execute("INSERT INTO ov.r_state VALUES (?, ?, ?)", [FORMAT, version, next_fid])
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        finally:
            cur.unregister("_ffirst_new")
        with self._lock:
            self._hashes[version] = np.asarray(sh, dtype=np.uint64)
        return True

    def _current(
        self,
        cur: duckdb.DuckDBPyConnection,
        table: str,
        key: str,
        values: Any,
        name: str,
        empty: bool,
        *,
        none: bool = False,
    ) -> None:
        """Temporary table ``name``: the current rows of ``table`` whose ``key`` is one
        of ``values`` (the index's found by row id: :func:`~pixels.web.index_tables._rowids`,
        less those the overlay holds; and the overlay's). ``none``: there are none (the
        overlay is empty and the index surely holds none of ``values``)."""
        if none:
            cur.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS FROM ix.{table} LIMIT 0")
            return
        cond = _within(cur, key, f"_k{name}", values)
        rowids = _rowids(cur, f"ix.{table}", cond)
        by_rowid = f"rowid IN ({', '.join(map(str, rowids))})" if rowids else "false"
        sql = f"SELECT * FROM ix.{table} WHERE {by_rowid}"
        if not empty:  # (``empty``: the overlay holds nothing)
            hidden = OVERLAY_TABLES[table]
            sql = f"SELECT * FROM ({sql})" + (
                f" ANTI JOIN ov.r_{table} USING ({hidden})" if hidden else f" {_FID_BELOW}"
            )
            sql += f" UNION ALL SELECT * EXCLUDE (ver) FROM ov.r_{table} WHERE {cond}"
        cur.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}")

    def _compute(self, cur: duckdb.DuckDBPyConnection, rows: str) -> None:
        """The overlay's rows of the commit's rows ``rows`` (work tables ``_ng``,
        ``_ns``, ``_nst``, ``_nqs``), from the current rows ``_cg``, ``_cs``, ``_cst``,
        ``_cf`` and the new ``ffirst`` rows ``_ffirst_new``: as
        :func:`~pixels.web.index_tables.apply` would make them (rows are only added:
        counts grow, firsts and dates only move one way)."""
        anyv = ", ".join(f"any_value({c}) AS {c}" for c in GROUP_COLUMNS)
        # groups: counts of kept rows added to the current ones
        cur.execute(
            "CREATE OR REPLACE TEMP TABLE _ng AS SELECT a.gid, coalesce(c.n, 0) + a.k AS n, "
            f"{', '.join('a.' + c for c in GROUP_COLUMNS)}, a.sk FROM (SELECT gid, "
            f"count(*) FILTER (keep) AS k, {anyv}, any_value(sk) AS sk FROM {rows} GROUP BY gid) a "
            "LEFT JOIN _cg c USING (gid)"
        )
        # the touched studies' live groups, as they are with the commit
        cur.execute(
            "CREATE OR REPLACE TEMP TABLE _lg AS SELECT * FROM (SELECT * FROM _cg "
            "ANTI JOIN _ng USING (gid) UNION ALL SELECT * FROM _ng) WHERE n > 0"
        )
        # series: counts added, the first instance the smaller, ``qmeta`` (and StudyID,
        # ReferringPhysicianName) from every ``ffirst`` row of the series again
        key = "(sop, path)"
        cur.execute(
            "CREATE OR REPLACE TEMP TABLE _ns AS SELECT a.SeriesInstanceUID, "
            "coalesce(c.StudyInstanceUID, a.StudyInstanceUID) AS StudyInstanceUID, "
            "coalesce(c.n_inst, 0) + a.k AS n_inst, least(c.n, a.n) AS n, "
            "CASE WHEN c.first IS NULL OR (a.first IS NOT NULL AND (a.first_sop < c.first_sop "
            "OR (a.first_sop = c.first_sop AND a.first < c.first))) THEN a.first ELSE c.first "
            "END AS first, CASE WHEN c.first IS NULL OR (a.first IS NOT NULL AND "
            "(a.first_sop < c.first_sop OR (a.first_sop = c.first_sop AND a.first < c.first))) "
            "THEN a.first_sop ELSE c.first_sop END AS first_sop, x.qmeta, x.StudyID, "
            "x.ReferringPhysicianName, a.seh, "
            "hash(coalesce(c.StudyInstanceUID, a.StudyInstanceUID)) AS sk FROM "
            "(SELECT SeriesInstanceUID, any_value(seh) AS seh, "
            "any_value(StudyInstanceUID) FILTER (keep) AS StudyInstanceUID, "
            "count(*) FILTER (keep) AS k, min(SeriesNumber) FILTER (keep) AS n, "
            "arg_min(path, (SOPInstanceUID, path)) FILTER (keep) AS first, "
            f"min(SOPInstanceUID) FILTER (keep) AS first_sop FROM {rows} GROUP BY SeriesInstanceUID) a "
            "LEFT JOIN _cs c USING (SeriesInstanceUID) LEFT JOIN "
            f"(SELECT SeriesInstanceUID, arg_min_null(qmeta, {key}) AS qmeta, "
            f"arg_min_null(StudyID, {key}) AS StudyID, "
            f"arg_min_null(ReferringPhysicianName, {key}) AS ReferringPhysicianName FROM "
            "(SELECT SeriesInstanceUID, sop, path, qmeta, StudyID, ReferringPhysicianName "
            "FROM _cf UNION ALL SELECT SeriesInstanceUID, sop, path, qmeta, StudyID, "
            "ReferringPhysicianName FROM _ffirst_new) GROUP BY SeriesInstanceUID) x "
            "USING (SeriesInstanceUID) WHERE c.SeriesInstanceUID IS NOT NULL OR a.k > 0"
        )
        # studies: series and instances added; modalities and date of the live groups;
        # the first instance (and its series' ``qmeta``) of the touched series' and the
        # study's, unless the study's came from a touched series (then its new row says)
        cur.execute(
            "CREATE OR REPLACE TEMP TABLE _nst AS WITH d AS (SELECT n.sk, "
            "any_value(n.StudyInstanceUID) AS StudyInstanceUID, "
            "count(*) FILTER (c.seh IS NULL) AS n_series, "
            "sum(n.n_inst - coalesce(c.n_inst, 0)) AS n_inst FROM _ns n "
            "LEFT JOIN _cs c USING (seh) GROUP BY n.sk), "
            "f AS (SELECT sk, arg_min(first, (first_sop, first, o)) AS first, "
            "arg_min(first_sop, (first_sop, first, o)) AS first_sop, "
            "arg_min(qmeta, (first_sop, first, o)) AS qmeta FROM ("
            "SELECT sk, first, first_sop, qmeta, 0 AS o FROM _ns UNION ALL "
            "SELECT sk, first, first_sop, qmeta, 1 FROM _cst WHERE first NOT IN "
            "(SELECT first FROM _cs WHERE first IS NOT NULL)) WHERE first IS NOT NULL "
            "GROUP BY sk), "
            "g AS (SELECT sk, max(StudyDate) AS d, list(DISTINCT Modality) "
            "FILTER (Modality IS NOT NULL) AS mods FROM _lg GROUP BY sk) "
            "SELECT coalesce(s.StudyInstanceUID, d.StudyInstanceUID) AS StudyInstanceUID, "
            "coalesce(s.n_series, 0) + coalesce(d.n_series, 0) AS n_series, "
            "coalesce(s.n_inst, 0) + coalesce(d.n_inst, 0) AS n_inst, "
            "list_sort(g.mods) AS mods, f.first, f.first_sop, f.qmeta, g.d, "
            "hash(coalesce(s.StudyInstanceUID, d.StudyInstanceUID)) AS sk FROM d FULL JOIN _cst s USING (sk) JOIN g USING (sk) LEFT JOIN f USING (sk)"
        )
        cur.execute("CREATE OR REPLACE TEMP TABLE _nqs AS " + _study_search_rows("_nst", "_lg"))
