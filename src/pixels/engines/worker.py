"""What a catalog worker process imports: the per-file work and nothing else.

Kept apart from :mod:`pixels.engines.local` so workers never load deltalake,
DuckDB or the writer (tens of MB each).

A worker also:

- bounds its own memory (``RLIMIT_DATA``, see :func:`limit_memory`), so a hostile
  file ends in a ``MemoryError`` (an error row) instead of the machine's memory;
- records, before each file, which task and which file of it it is reading (one
  16-byte ``pwrite`` into a file of its own, see :func:`init`): when it dies, the
  parent knows which file it died on (:mod:`pixels.engines.pool`);
- turns anything a file raises, ``BaseException`` included (a Rust decoder's
  ``pyo3_runtime.PanicException`` is not an ``Exception``), into that file's error row.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import struct
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from pixels.dicom.notices import kept_warnings
from pixels.dicom.record import RecordOptions, catalog_record, file_columns, thumbnail_rows
from pixels.schema import SCHEMA, THUMBNAIL_COLUMNS
from pixels.sources.ref import FileRef

#: One progress record: task id, index of the file being read (-1: task finished).
PROGRESS = struct.Struct("<qq")

_progress_fd: int | None = None
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


def init(memory_limit: int | None = None, progress_dir: str | None = None) -> None:
    """Process-pool initializer: Ctrl-C ignored, no pandas, bounded memory, progress records."""
    global _progress_fd, _memory_limit, _pooled
    _pooled = True
    # Ctrl-C reaches the whole process group: the parent decides when workers stop
    # (it lets them finish their chunk), so an interrupt never costs a file its row
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    block_pandas()
    limit_memory(memory_limit)
    _memory_limit = memory_limit or None
    if progress_dir is not None:
        path = os.path.join(progress_dir, str(os.getpid()))
        _progress_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)


def _mark(task_id: int, index: int) -> None:
    if _progress_fd is not None:
        os.pwrite(_progress_fd, PROGRESS.pack(task_id, index), 0)


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
    # the task: each file's own block then only takes them over
    with kept_warnings() if _pooled else contextlib.nullcontext():
        for i, ref in enumerate(refs):
            _mark(task_id, i)
            try:
                rows.append(_explain_memory(catalog_record(ref, options)))
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as e:  # a decoder panic: this file's row, not the chunk
                rows.append(_explain_memory(error_row(ref, _failure(ref, e))))
    _mark(task_id, -1)
    return pa.RecordBatch.from_pylist(rows, schema=SCHEMA)


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
