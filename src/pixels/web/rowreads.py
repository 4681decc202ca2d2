"""Catalog rows read from the data files that hold them, by row number.

The server's index (:mod:`pixels.web.index`) knows, for each instance, its data
file and row number; a request's rows (``meta``, frame offsets, any column) are
read from there: local files with pyarrow, from the row groups that hold the rows
(footers kept for the most recently read files); files on object stores with
DuckDB (through the scan's file system).
"""

from __future__ import annotations

import bisect
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pixels.schema import SCHEMA
from pixels.storage import is_local, local_path
from pixels.table import sql_string
from pixels.table.footer import top_level_names

__all__ = ["RowReader", "column_names"]

#: Footers of data files kept for row reads (the most recently used).
_FOOTERS = 256
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def column_names(columns: str) -> tuple[bool, list[str] | None]:
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


class RowReader:
    """Reads rows named ``(key, file id or URI, row number)`` from their data files.

    Parameters
    ----------
    uris : mapping of int to str
        Data file URI of each file id (the index's, kept up to date by it).
    """

    def __init__(self, uris: Mapping[int, str]):
        self._uris = uris
        #: footer, row group starts and columns of local files read recently
        self._parquet: OrderedDict[str, tuple[pq.FileMetaData, list[int], list[str]]] = (
            OrderedDict()
        )
        self._lock = threading.Lock()

    def read(
        self,
        con: duckdb.DuckDBPyConnection,
        located: list[tuple[str, Any, int]],
        columns: str,
        *,
        threads: bool = False,
    ) -> dict[str, dict[str, Any]] | None:
        """Rows ``(key, file id or URI, row number)`` read from their files: ``columns`` by key.

        None when ``columns`` is more than a list of names or a file lacks one
        (written before a schema change): the caller then reads through the
        version's view.
        """
        simple, names = column_names(columns)
        by_file: dict[str, dict[int, str]] = {}
        for key, f, row in located:
            uri = self._uris[f] if isinstance(f, int) else f
            by_file.setdefault(uri, {})[row] = key
        out: dict[str, dict[str, Any]] = {}
        for uri, rows in by_file.items():
            if simple and is_local(uri):
                found = self._parquet_rows(uri, sorted(rows), names, threads)
            else:
                found = self._duckdb_rows(con, uri, sorted(rows), columns)
            if found is None:
                return None
            for row, record in zip(sorted(rows), found, strict=True):
                out[rows[row]] = record
        return out

    def _footer(self, uri: str) -> tuple[pq.FileMetaData, list[int], list[str]]:
        with self._lock:
            info = self._parquet.get(uri)
            if info is not None:
                self._parquet.move_to_end(uri)
                return info
        md = pq.read_metadata(local_path(uri))
        starts = [0]
        for g in range(md.num_row_groups):
            starts.append(starts[-1] + md.row_group(g).num_rows)
        info = (md, starts, top_level_names(md))
        with self._lock:
            self._parquet[uri] = info
            while len(self._parquet) > _FOOTERS:
                self._parquet.popitem(last=False)
        return info

    def _parquet_rows(
        self, uri: str, rows: list[int], names: list[str] | None, threads: bool = False
    ) -> list[dict[str, Any]] | None:
        md, starts, present = self._footer(uri)
        if names is None:
            want = list(present)
        elif all(n in present for n in names):
            want = names
        else:
            return None
        by_group: dict[int, list[int]] = {}
        for r in rows:  # (sorted: so are the groups, and the rows within each)
            g = bisect.bisect_right(starts, r) - 1
            by_group.setdefault(g, []).append(r - starts[g])
        records: list[dict[str, Any]] = []
        f = pq.ParquetFile(local_path(uri), metadata=md)
        try:
            # one row group at a time: the first rows of a file's series lie in most of its
            # groups, whose ``meta`` columns together are hundreds of MB
            for g, picked in by_group.items():
                table = f.read_row_group(g, columns=want, use_threads=threads)
                records.extend(_plain(table).take(picked).to_pylist())
                del table
        finally:
            f.close()
        if names is None:  # as the version's view: every column of the table's schema
            for record in records:
                for name in SCHEMA.names:
                    record.setdefault(name, None)
        return records

    @staticmethod
    def _duckdb_rows(
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
