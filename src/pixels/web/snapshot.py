"""A table version as the server's index saw it: the queries requests run.

Queries run on the index's live tables (:mod:`pixels.web.index_tables`); each sees
a committed state of the index (a whole version), and a request that started
before an update may see the newer version in its next query. Rows' other
columns (``meta`` of any instance, frame offsets) are read from the data files
that hold them, by row number (:class:`pixels.web.rowreads.RowReader`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import duckdb

from pixels.schema import VIEW_NAME

if TYPE_CHECKING:
    from pixels.web.index import TableIndex

__all__ = ["Snapshot"]


def _instance_order(r: tuple[Any, ...]) -> tuple[Any, ...]:
    """Sort key of ``(.., SeriesNumber, SeriesInstanceUID, InstanceNumber, SOPInstanceUID)``: nulls last."""
    return (r[3] is None, r[3] or 0, r[4], r[5] is None, r[5] or 0, r[6])


class Snapshot:
    """A table version as the index saw it; queries run on the index's live tables.

    Each query sees a committed state of the index (a whole version); a request
    that started before an update may see the newer version in its next query.
    """

    def __init__(self, index: TableIndex, version: int | None, *, overlaid: bool = False):
        self._index = index
        self.version = version
        self._located = index.direct
        #: whether the index's overlay holds commits (:mod:`pixels.web.overlay`): queries
        #: then read its views, which have no ``rowid`` (:meth:`row_key`)
        self.overlaid = overlaid
        #: the database the queries' tables are named in (``USE`` it)
        self.schema = "ov" if overlaid else "ix"

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor of its own for one request (a DuckDB connection is not thread safe)."""
        cur = self._index.con.cursor()
        cur.execute(f"USE {self.schema}")
        return cur

    def row_key(self, key: str) -> str:
        """What names a row of ``study_sum`` (``key``: ``sk``) or ``series_sum``
        (``seh``) in a query: its ``rowid`` in the index's tables (read by row id), else
        ``key`` (the overlay's views have no row ids)."""
        return key if self.overlaid else "rowid"

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
            found = self._index.reader.read(cur, located, "meta") if self._located else None
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
        cur = self.cursor()
        try:
            # the data files that hold the series (``ffirst``: a row per file and series):
            # their ids let the scan of ``inst_all`` skip every other file's row groups
            # (ids grow with insertion order), else it reads a column of every row
            if series is not None:
                files = cur.execute(
                    "SELECT DISTINCT fid FROM ffirst WHERE SeriesInstanceUID = ?", [series]
                ).fetchall()
            else:
                files = cur.execute(
                    "SELECT DISTINCT fid FROM ffirst WHERE SeriesInstanceUID IN (SELECT "
                    "SeriesInstanceUID FROM grp WHERE StudyInstanceUID = ? AND n > 0)",
                    [study],
                ).fetchall()
            if not files:
                return []
            cond = " AND ".join(where)
            in_files = f"fid IN ({', '.join(str(int(f)) for (f,) in files)})"  # ids made here
            # sorted here, not by DuckDB: its sort's setup cost several ms per query, more
            # than the rest of a small series' /metadata request
            keyed = cur.execute(
                "SELECT path, fid, _row, SeriesNumber, SeriesInstanceUID, InstanceNumber, "
                f"SOPInstanceUID FROM inst WHERE {cond} AND {in_files}",
                params,
            ).fetchall()
            keyed.sort(key=_instance_order)
            located = [r[:3] for r in keyed]
            if not located:
                return []
            order = [r[0] for r in located]
            cols = columns if columns.strip() == "*" else columns + ", path"
            by_path = self._index.reader.read(cur, located, cols) if self._located else None
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
