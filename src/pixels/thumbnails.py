"""Thumbnails for rows already in the catalog (``pixels thumbnails``), and ``DicomThumbnailExtractor``.

Rows are read from the table, never re-parsed from the files: the file is opened
only to read the chosen frame's bytes at the offsets the frame index gives.
The pass goes data file by data file: the rows of one Parquet file get their
thumbnails, a new file is written, and one Delta commit removes the old file
and adds the new one. A crash loses at most the file in progress; a re-run
skips rows that have a thumbnail (or a thumbnail error).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pixels.dicom.record import RecordOptions, frame_index_of, thumbnail_rows
from pixels.errors import QueryError, TableError
from pixels.schema import SCHEMA, THUMBNAIL_COLUMNS
from pixels.table import CatalogTable, conform
from pixels.transformers import DicomThumbnailExtractor

if TYPE_CHECKING:
    from pixels.engines.pool import FilePool

_THUMB_NAMES = [c.name for c in THUMBNAIL_COLUMNS]


@dataclass
class ThumbnailStats:
    """What a thumbnail pass did."""

    files: int = 0
    rows: int = 0
    made: int = 0
    errors: int = 0
    conflicts: int = 0
    seconds: float = 0.0


def _needs(table: pa.Table, where: str | None, force: bool) -> pa.Array:
    """Row mask: has a frame index, matches ``where``, and (unless ``force``) has no thumbnail yet."""
    import duckdb

    con = duckdb.connect()
    try:
        light = table.select([c for c in table.column_names if c not in ("thumbnail", "meta")])
        con.register("f", light.append_column("__row", pa.array(range(table.num_rows), pa.int64())))
        cond = "frame_offsets IS NOT NULL"
        if not force:
            cond += " AND thumbnail_format IS NULL AND thumbnail_error IS NULL"
        if where:
            cond += f" AND ({where})"
        try:
            hit = con.execute(f"SELECT list(__row) FROM f WHERE {cond}").fetchone()
        except duckdb.Error as e:
            raise QueryError(str(e)) from e
    finally:
        con.close()
    idx = (hit[0] if hit else None) or []
    mask = [False] * table.num_rows
    for i in idx:
        mask[i] = True
    return pa.array(mask, pa.bool_())


def run_thumbnails(
    table: CatalogTable,
    *,
    where: str | None = None,
    force: bool = False,
    workers: int | None = None,
    options: RecordOptions | None = None,
    chunk_rows: int = 32,
    progress: Callable[[ThumbnailStats], None] | None = None,
    pool: FilePool | None = None,
) -> ThumbnailStats:
    """Make the thumbnails the catalog lacks, one data file (one commit) at a time.

    Parameters
    ----------
    table : CatalogTable
        The catalog (local tables).
    where : str, optional
        SQL predicate restricting the rows (``"Modality = 'CT'"``).
    force : bool
        Make them again even where one exists.
    workers : int, optional
        Processes (default: CPUs; 0 = this process).
    options : RecordOptions, optional
        ``thumbnail_size``, ``thumbnail_format`` and the storage options used.
    pool : FilePool, optional
        Worker pool to use (``work=THUMBNAILS``; its options are the ones used);
        default: one started for this pass when there is more than a chunk to do.
        A worker that dies on a file (killed, out of memory, a decoder crash) costs
        that row a ``thumbnail_error`` naming the file; the pass goes on.
    """
    from deltalake.exceptions import CommitFailedError

    from pixels.engines.pool import THUMBNAILS
    from pixels.engines.pool import FilePool as _FilePool

    opts = options or RecordOptions(thumbnails=True)
    stats = ThumbnailStats()
    t0 = time.perf_counter()
    if "://" in table.uri and not table.uri.startswith("file://"):
        raise TableError(
            "thumbnail passes rewrite data files: only local tables are supported", table.uri
        )
    table.create()  # evolves an old table: thumbnail columns exist
    n_workers = (os.cpu_count() or 1) if workers is None else workers
    with contextlib.ExitStack() as stack:
        for uri in table.file_uris():
            data = conform(pq.read_table(uri))
            mask = _needs(data, where, force)
            todo = pc.sum(mask).as_py() or 0
            if not todo:
                continue
            rows = data.filter(mask).to_pylist()
            if pool is None and n_workers > 0 and len(rows) > chunk_rows:
                pool = stack.enter_context(_FilePool(n_workers, opts, work=THUMBNAILS))
            if pool is not None:
                items = list(zip(rows, range(len(rows)), strict=True))
                chunks = [items[i : i + chunk_rows] for i in range(0, len(items), chunk_rows)]
                found: list[dict[str, Any] | None] = [None] * len(rows)
                for covered, part in pool.run(chunks):
                    for (_, pos), res in zip(covered, part, strict=True):
                        found[pos] = res
                results = [r for r in found if r is not None]
                assert len(results) == len(rows)
            else:
                results = [
                    r
                    for i in range(0, len(rows), chunk_rows)
                    for r in thumbnail_rows(rows[i : i + chunk_rows], opts)
                ]
            data = _merge(data, mask, results)
            try:
                table.replace_file(uri, data)
            except CommitFailedError:
                stats.conflicts += 1  # another writer changed this file: the next run does it
                continue
            stats.files += 1
            stats.rows += len(results)
            stats.made += sum(1 for r in results if r["thumbnail_format"])
            stats.errors += sum(1 for r in results if r["thumbnail_error"])
            if progress:
                stats.seconds = time.perf_counter() - t0
                progress(stats)
    stats.seconds = time.perf_counter() - t0
    return stats


def _merge(data: pa.Table, mask: pa.Array, results: list[dict[str, Any]]) -> pa.Table:
    positions = [i for i, m in enumerate(mask.to_pylist()) if m]
    for name in _THUMB_NAMES:
        values = data.column(name).to_pylist()
        for pos, res in zip(positions, results, strict=True):
            values[pos] = res[name]
        data = data.set_column(
            data.schema.get_field_index(name),
            SCHEMA.field(name),
            pa.array(values, SCHEMA.field(name).type),
        )
    return data


def iter_thumbnail_rows(
    table: CatalogTable, where: str | None, limit: int
) -> Iterator[dict[str, Any]]:
    """Rows for a contact sheet: path, caption fields and the thumbnail (may be null)."""
    from pixels.sql import query

    cond = f"WHERE {where}" if where else ""
    result = query(
        table,
        "SELECT * EXCLUDE (meta) , meta FROM object_catalog "
        f"{cond} ORDER BY StudyInstanceUID, SeriesInstanceUID, InstanceNumber, path LIMIT {int(limit)}",
    )
    yield from result.to_pylist()


__all__ = [
    "DicomThumbnailExtractor",
    "ThumbnailStats",
    "frame_index_of",
    "run_thumbnails",
    "thumbnail_rows",
]
