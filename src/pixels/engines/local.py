"""The embedded engine: a process pool fed in chunks, Arrow batches into Delta.

It only schedules the per-file work of :mod:`pixels.dicom.record` and writes
the table; memory is bounded by the number of chunks in flight and the commit
size, never by the number of files.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pixels.dicom.notices import tally_warnings
from pixels.engines import worker
from pixels.engines.options import CatalogOptions
from pixels.engines.pool import CHUNK_FILES, RECYCLE_FILES, FilePool, chunks
from pixels.sources import RefBatch, iter_file_batches
from pixels.sources.local import stored_path
from pixels.sources.ref import FileRef
from pixels.table import CatalogTable, iter_new


@dataclass
class CatalogStats:
    """What a catalog run did.

    Attributes
    ----------
    listed : int
        Files (and archive members) found by the listing.
    unchanged : int
        Already in the table with the same identity, not read again.
    processed : int
        Files read in this run.
    written : int
        Rows committed by this run (files another writer committed first are not counted).
    errors : int
        Processed files whose row has ``error`` set.
    dicom : int
        Processed files read as DICOM without error.
    commits : int
        Delta commits made.
    seconds : float
        Wall time of the run.
    error_samples : list of str
        Up to 10 error messages, for the summary.
    warned : int
        Processed files whose row has ``warnings`` (read, with warnings from pydicom).
    warning_kinds : dict of str to list
        Kind of warning (:func:`~pixels.dicom.notices.warning_kind`) -> ``[files, example
        paths]`` (:func:`~pixels.dicom.notices.tally_warnings`): at most
        :data:`~pixels.dicom.notices.MAX_WARNING_KINDS` kinds (then ``"other"``), 3 paths each.
    """

    listed: int = 0
    unchanged: int = 0
    processed: int = 0
    written: int = 0
    errors: int = 0
    dicom: int = 0
    commits: int = 0
    seconds: float = 0.0
    error_samples: list[str] = field(default_factory=list)
    warned: int = 0
    warning_kinds: dict[str, list[Any]] = field(default_factory=dict)

    def count_warnings(self, batch: pa.RecordBatch | pa.Table) -> None:
        """Add the ``warnings`` of a batch of rows to :attr:`warned` and :attr:`warning_kinds`."""
        if "warnings" not in batch.schema.names:
            return
        col = batch.column("warnings")
        if col.null_count == len(col):
            return
        for path, found in zip(batch.column("path").to_pylist(), col.to_pylist(), strict=True):
            if not found:
                continue
            self.warned += 1
            tally_warnings(self.warning_kinds, path, found)

    @property
    def files_per_second(self) -> float:
        """Processed files per second of wall time."""
        return self.processed / self.seconds if self.seconds > 0 else 0.0


ProgressCallback = Callable[[CatalogStats], None]


def _chunks(
    items: Iterable[tuple[FileRef, bool]], size: int
) -> Iterator[list[tuple[FileRef, bool]]]:
    buf: list[tuple[FileRef, bool]] = []
    for item in items:
        buf.append(item)
        if len(buf) >= size:
            yield buf
            buf = []
    if buf:
        yield buf


class _Writer:
    """Commits batches from a background thread (delta-rs releases the GIL)."""

    def __init__(self, table: CatalogTable, stats: CatalogStats, checked: list[str]):
        self.table = table
        self.checked = frozenset(checked)
        self.stats = stats
        self.q: queue.Queue[tuple[list[pa.RecordBatch], set[str]] | None] = queue.Queue(maxsize=1)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="pixels-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            item = self.q.get()
            if item is None:
                return
            if self.error is not None:
                continue
            batches, replace = item
            try:
                written = self.table.append(
                    pa.Table.from_batches(batches), replace=replace, checked=self.checked
                )
                self.stats.written += written
                self.stats.commits += 1
            except BaseException as e:  # surfaced by close()
                self.error = e

    def put(self, batches: list[pa.RecordBatch], replace: set[str]) -> None:
        if self.error is not None:
            raise self.error
        self.q.put((batches, replace))

    def close(self) -> None:
        self.q.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error


def run_catalog(
    source: str,
    table: CatalogTable,
    config: CatalogOptions | None = None,
    *,
    chunk_files: int = CHUNK_FILES,
    commit_bytes: int = 32 << 20,
    lookup_files: int = 20_000,
    progress: ProgressCallback | None = None,
    **changes: Any,
) -> CatalogStats:
    """Catalog every file under ``source`` into ``table``; only new or changed files are read.

    Parameters
    ----------
    source : str
        Folder, file, zip archive or fsspec URL.
    table : CatalogTable
        Destination table (created when missing).
    config : CatalogOptions, optional
        What to catalog and how (:class:`pixels.engines.options.CatalogOptions`:
        workers, pattern, recursive, expand_archives, extract_dir, record options,
        retry_errors, worker_memory, commit_rows (default 2000), commit_seconds
        (default 30)); the same options the watch loop takes.
    chunk_files : int
        Files per task sent to a worker (the first tasks are smaller: :func:`chunks`).
    commit_bytes : int
        Also commit when this many bytes are pending (bounds memory and lost work).
    lookup_files : int
        Listed files compared with the table per identity look-up.
    progress : callable, optional
        Called with the running :class:`CatalogStats` after every chunk.
    **changes
        Options of ``config`` by name (``workers=0``; ``options=`` for ``record``).

    Returns
    -------
    CatalogStats
        Counts of the run; ``errors`` counts rows with an error (the run itself succeeds).
    """
    c = (config or CatalogOptions()).with_(**changes)
    pattern, recursive, expand_archives = c.pattern, c.recursive, c.expand_archives
    extract_dir, retry_errors, worker_memory = c.extract_dir, c.retry_errors, c.worker_memory
    commit_rows = 2000 if c.commit_rows is None else c.commit_rows
    commit_seconds = 30.0 if c.commit_seconds is None else c.commit_seconds
    opts = c.record
    n_workers = c.n_workers
    stats = CatalogStats()
    t0 = time.perf_counter()

    storage = opts.storage_options
    listing = iter_file_batches(
        source,
        pattern=pattern,
        recursive=recursive,
        expand_archives=expand_archives,
        extract_dir=extract_dir,
        limits=opts.limits,
        storage_options=storage,
    )

    # the table may live inside the folder being cataloged: never catalog its own files
    own = stored_path(os.path.join(table.uri, "")) if "://" not in table.uri else None

    def counted(batches: Iterable[RefBatch]) -> Iterator[RefBatch]:
        for b in batches:
            if own is not None and "\n" + own in "\n" + "\n".join(b.paths):
                b = b.take([i for i, p in enumerate(b.paths) if not p.startswith(own)])
            stats.listed += len(b)
            yield b

    table.create()
    table.clean_orphans()  # data files a killed run wrote but never committed
    # the listing is compared with this snapshot; commits check only the table's other files
    snapshot = table.file_uris()
    # listed entries are compared as columns; FileRefs are built for new or changed files only
    todo_refs = iter_new(
        table, counted(listing), chunk=lookup_files, retry_errors=retry_errors, snapshot=snapshot
    )

    writer = _Writer(table, stats, snapshot)
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    pending_bytes = 0
    pending_replace: set[str] = set()
    last_commit = time.monotonic()

    def take(batch: pa.RecordBatch, changed: set[str]) -> None:
        nonlocal pending_rows, pending_bytes, last_commit, pending, pending_replace
        stats.processed += batch.num_rows
        err = batch.column("error")
        n_err = batch.num_rows - err.null_count
        stats.errors += n_err
        if n_err and len(stats.error_samples) < 10:
            for e in pc.drop_null(err).to_pylist()[: 10 - len(stats.error_samples)]:
                stats.error_samples.append(e)
        is_dicom = pc.and_(pc.equal(batch.column("file_type"), "dicom"), pc.is_null(err))
        stats.dicom += int(pc.sum(is_dicom).as_py() or 0)
        stats.count_warnings(batch)
        pending.append(batch)
        pending_rows += batch.num_rows
        pending_bytes += batch.nbytes
        pending_replace |= changed
        now = time.monotonic()
        if (
            pending_rows >= commit_rows
            or pending_bytes >= commit_bytes
            or now - last_commit >= commit_seconds
        ):
            writer.put(pending, pending_replace)
            pending, pending_rows, pending_bytes, pending_replace, last_commit = (
                [],
                0,
                0,
                set(),
                now,
            )
        stats.unchanged = stats.listed - stats.processed - in_flight_files()
        if progress:
            progress(stats)

    pool: FilePool | None = None

    def in_flight_files() -> int:
        return pool.in_flight_files if pool is not None else 0

    try:
        if n_workers <= 0:
            # no message to save in this process: batches of 64 commit as often as before
            for chunk in _chunks(todo_refs, min(chunk_files, 64)):
                changed = {r.path for r, c in chunk if c}
                take(worker.run([r for r, _ in chunk], opts), changed)
        else:
            # fresh workers every RECYCLE_FILES files each: memory flat however long the run
            recycle = RECYCLE_FILES * n_workers
            with FilePool(
                n_workers, opts, memory_limit=worker_memory, recycle_files=recycle
            ) as pool:
                # workers start on the first file to read: a no-op re-run starts none
                for items, batch in pool.run(chunks(todo_refs, chunk_files)):
                    take(batch, {r.path for r, c in items if c})
        if pending:
            writer.put(pending, pending_replace)
            pending = []
    finally:
        writer.close()
        stats.seconds = time.perf_counter() - t0
        stats.unchanged = stats.listed - stats.processed
    if progress:
        progress(stats)
    return stats
