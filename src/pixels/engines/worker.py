"""What a catalog worker process imports: the per-file work and nothing else.

Kept apart from :mod:`pixels.engines.local` so workers never load deltalake,
DuckDB or the writer (tens of MB each).

A worker also:

- bounds its own memory (``RLIMIT_DATA``, see :func:`limit_memory`), so a hostile
  file ends in a ``MemoryError`` (an error row) instead of the machine's memory;
- records, before each file, which task and which file of it it is reading (one
  16-byte record in a file of its own, written through a shared memory map, so no
  system call per file, see :func:`init`): when it dies, the
  parent knows which file it died on (:mod:`pixels.engines.pool`);
- turns anything a file raises, ``BaseException`` included (a Rust decoder's
  ``pyo3_runtime.PanicException`` is not an ``Exception``), into that file's error row.
"""

from __future__ import annotations

import contextlib
import dataclasses
import mmap
import operator
import os
import resource
import select
import signal
import struct
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from pixels.dicom.notices import kept_warnings
from pixels.dicom.record import (
    RecordOptions,
    catalog_record,
    file_columns,
    reads_whole,
    thumbnail_rows,
)
from pixels.schema import SCHEMA, THUMBNAIL_COLUMNS
from pixels.sources.readahead import ReadAhead
from pixels.sources.ref import FileRef

#: What the forkserver imports once for every worker it forks: this module and the header
#: reader and frame index it loads with the first file (pydicom, codecs). The parent of a
#: catalog run imports none of these: a no-op re-run never loads pydicom.
PRELOAD = ("pixels.engines.worker", "pixels.dicom.meta", "pixels.dicom.frames")

#: One progress record: task id, index of the file being read (-1: task finished).
PROGRESS = struct.Struct("<qq")

_progress: mmap.mmap | None = None
_pooled = False  # set by init: this process is a pool worker
_memory_limit: int | None = None


class NoPandas:
    """Import hook that refuses pandas (see :func:`init`)."""

    @staticmethod
    def find_spec(name: str, path: object = None, target: object = None) -> None:
        """Refuse ``pandas`` and its submodules; let every other import through."""
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("pandas is not loaded in pixels catalog processes")


def block_pandas() -> None:
    """Keep pandas out of this process.

    pyarrow imports pandas (~50 MB) on its first ``pa.array`` call only to test
    whether the input is a pandas object; catalog workers never build one.
    """
    if "pandas" not in sys.modules and not any(isinstance(f, NoPandas) for f in sys.meta_path):
        sys.meta_path.insert(0, NoPandas())


#: Memory a worker needs above its start-up size to read a small file.
_HEADROOM = 64 << 20


def _data_bytes() -> int | None:
    """This process's data memory (``VmData``), the figure ``RLIMIT_DATA`` bounds."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmData:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def limit_memory(max_bytes: int | None) -> None:
    """Bound this process's data memory (heap and anonymous mappings) to ``max_bytes``.

    Sets the soft ``RLIMIT_DATA`` (never above the hard limit): allocations past it
    fail, which Python reports as ``MemoryError`` (one file's error row) instead of
    the kernel killing a process, or the machine, later. ``None`` or ``0``: no limit.

    Raises
    ------
    MemoryError
        ``max_bytes`` is below what this process already holds plus 64 MiB.
    """
    if not max_bytes:
        return
    used = _data_bytes()
    if used is not None and max_bytes < used + _HEADROOM:
        raise MemoryError(
            f"worker memory limit {max_bytes} bytes is below what a worker holds before "
            f"reading any file ({used} bytes) plus {_HEADROOM} bytes"
        )
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    soft = max_bytes if hard == resource.RLIM_INFINITY else min(max_bytes, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


def _exit_when_gone(pid: int) -> None:
    """End this process when process ``pid`` (the run that started the pool) has ended.

    A worker's parent is the forkserver, not the run: a run killed (SIGKILL, the OOM
    killer, a SIGTERM without handler) leaves its workers waiting for tasks forever,
    and they hold the forkserver's pipe, so it stays too."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # no pidfd (not Linux, old kernel): asked every 2 s
        fd = None
    while True:
        if fd is not None:
            select.select([fd], [], [])
        else:
            time.sleep(2.0)
            try:
                os.kill(pid, 0)
                continue
            except PermissionError:
                continue
            except OSError:
                pass
        os._exit(1)  # nothing to deliver rows to


def init(
    memory_limit: int | None = None,
    progress_dir: str | None = None,
    run_pid: int | None = None,
) -> None:
    """Process-pool initializer: Ctrl-C ignored, no pandas, bounded memory, progress
    records, and the process ends when the run (``run_pid``) does."""
    global _progress, _memory_limit, _pooled
    _pooled = True
    if run_pid is not None:
        threading.Thread(
            target=_exit_when_gone, args=(run_pid,), name="pixels-run-watch", daemon=True
        ).start()
    # Ctrl-C reaches the whole process group: the parent decides when workers stop
    # (it lets them finish their chunk), so an interrupt never costs a file its row
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    block_pandas()
    limit_memory(memory_limit)
    _memory_limit = memory_limit or None
    if progress_dir is not None:
        path = os.path.join(progress_dir, str(os.getpid()))
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, PROGRESS.pack(0, -1))  # between tasks
            # a shared map: what it holds is the file's page, which the parent reads,
            # even after this process died
            _progress = mmap.mmap(fd, PROGRESS.size)
        finally:
            os.close(fd)


def _mark(task_id: int, index: int) -> None:
    if _progress is not None:
        PROGRESS.pack_into(_progress, 0, task_id, index)


def error_row(ref: FileRef, message: str) -> dict[str, Any]:
    """The row of a file that could not be cataloged (file columns and ``error``)."""
    row = file_columns(ref)
    row["error"] = message
    row["cataloged_at"] = datetime.now(UTC)
    return row


def _failure(ref: FileRef, e: BaseException) -> str:
    return f"{ref.path}: {type(e).__name__} while cataloging: {e}"


def _explain_memory(row: dict[str, Any]) -> dict[str, Any]:
    """Say which limit a ``MemoryError`` row ran into (and how to raise it)."""
    error = row.get("error")
    if _memory_limit and error and "MemoryError" in error:
        row["error"] = (
            f"{error.rstrip()} (out of memory: a worker may use {_memory_limit} bytes; "
            "raise it with PIXELS_WORKER_MEMORY or worker_memory=)"
        )
    return row


def run(refs: Sequence[FileRef], options: RecordOptions, task_id: int = 0) -> pa.RecordBatch:
    """Catalog one chunk of files (the task a worker runs); one row per file, always."""
    rows = []
    # in a pool worker (no other thread waits for the warnings' turn), set up once for
    # the task: each file's own block then only takes them over; the disk reads the
    # next files while one is parsed (ReadAhead)
    with (
        kept_warnings() if _pooled else contextlib.nullcontext(),
        ReadAhead(refs, reads_whole) as ahead,
    ):
        for i, ref in enumerate(refs):
            _mark(task_id, i)
            fd = ahead.take(i)
            try:
                rows.append(_explain_memory(catalog_record(ref, options, fd=fd)))
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as e:  # a decoder panic: this file's row, not the chunk
                rows.append(_explain_memory(error_row(ref, _failure(ref, e))))
            finally:
                if fd is not None:
                    os.close(fd)
    _mark(task_id, -1)
    return rows_batch(rows)


#: A catalog row's values in schema order (every row of :func:`catalog_record` has them all).
_ROW_VALUES = operator.itemgetter(*SCHEMA.names)
_TYPES = tuple(f.type for f in SCHEMA)


def rows_batch(rows: Sequence[dict[str, Any]]) -> pa.RecordBatch:
    """Catalog rows as a record batch: ``RecordBatch.from_pylist(rows, schema=SCHEMA)``.

    The columns are cut out in C (``itemgetter`` per row, ``zip`` to transpose) rather than
    by ``from_pylist``'s look-up of each column in each row; rows that lack a column
    (``from_pylist`` gives it null) take ``from_pylist`` itself.
    """
    if not rows:
        return pa.RecordBatch.from_pylist([], schema=SCHEMA)
    try:
        columns = list(zip(*map(_ROW_VALUES, rows), strict=True))
    except KeyError:
        return pa.RecordBatch.from_pylist(list(rows), schema=SCHEMA)
    arrays = [pa.array(c, type=t) for c, t in zip(columns, _TYPES, strict=True)]
    return pa.RecordBatch.from_arrays(arrays, schema=SCHEMA)


#: The fields of a :class:`FileRef`, in order: what :func:`pack_refs` sends of each ref.
_REF_FIELDS = tuple(f.name for f in dataclasses.fields(FileRef))
_ref_fields = operator.attrgetter(*_REF_FIELDS)

#: What a catalog task sends of its files: one tuple of :data:`_REF_FIELDS` per file.
PackedRefs = list[tuple[Any, ...]]


def pack_refs(refs: Sequence[FileRef]) -> PackedRefs:
    """The files of a task as plain tuples (pickled in C, unlike frozen dataclasses).

    A pickled :class:`FileRef` costs its sender and its worker ~10 us each (the
    dataclass's Python ``__setstate__``); a tuple of its fields ~1-2 us. The
    worker rebuilds the refs (:func:`run_packed`).
    """
    return [_ref_fields(r) for r in refs]


def unpack_refs(packed: PackedRefs) -> list[FileRef]:
    """The :class:`FileRef` objects of :func:`pack_refs`'s tuples."""
    return [FileRef(*t) for t in packed]


def encode_batch(batch: pa.RecordBatch) -> bytes:
    """``batch`` as Arrow IPC stream bytes (what a worker sends back, see :func:`decode_batch`).

    Pickling a record batch costs ~16 us per catalog row in the worker and ~7 in
    the parent (one Python object per buffer and column); the IPC stream ~2 each.
    """
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def decode_batch(data: bytes) -> pa.RecordBatch:
    """The record batch of :func:`encode_batch`'s bytes (zero-copy: it keeps ``data``)."""
    reader = pa.ipc.open_stream(data)
    batch = reader.read_next_batch()
    return batch


def run_packed(packed: PackedRefs, options: RecordOptions, task_id: int = 0) -> bytes:
    """:func:`run` on :func:`pack_refs`'s files; the rows as :func:`encode_batch` bytes.

    What a catalog pool task runs: both ways, the message is plain data that
    pickles in C.
    """
    return encode_batch(run(unpack_refs(packed), options, task_id))


def thumbnail_error_row(message: str) -> dict[str, Any]:
    """Thumbnail columns of a row whose thumbnail could not be made (``thumbnail_error``)."""
    cols: dict[str, Any] = {c.name: None for c in THUMBNAIL_COLUMNS}
    cols["thumbnail_error"] = message
    return cols


def thumbnails(
    rows: Sequence[dict[str, Any]], options: RecordOptions, task_id: int = 0
) -> list[dict[str, Any]]:
    """Thumbnail columns for a chunk of catalog rows (the task of a thumbnail pass)."""
    out = []
    for i, row in enumerate(rows):
        _mark(task_id, i)
        try:
            with kept_warnings():  # the catalog pass kept the header's; decoding's are dropped
                out.extend(thumbnail_rows([row], options))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as e:  # a decoder panic: this row's thumbnail_error only
            out.append(thumbnail_error_row(f"{row['path']}: {type(e).__name__}: {e}"))
    _mark(task_id, -1)
    return out
