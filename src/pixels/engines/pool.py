"""Worker processes for per-file work that survive a worker dying.

A hostile file can kill the process reading it: the kernel's out-of-memory killer,
a segfault or an ``abort()`` in a native decoder. :class:`ProcessPoolExecutor` then
fails every task in flight (``BrokenProcessPool``) and accepts no more. A file must
cost its own row, never the run, so :class:`FilePool`:

1. restarts the pool;
2. finds the file: before each file a worker records which task and which file of
   it it is reading (:func:`pixels.engines.worker.run`); the files being read when
   the pool broke are *suspects*, every other file of the lost tasks is submitted
   again as usual;
3. reads each suspect *alone* (nothing else in flight): if it kills its worker
   again, it gets an error row naming it and how the worker died; otherwise it
   gets its row (it was an innocent bystander: another worker died, or the kill
   came from outside).

A task that fails without the pool breaking (an exception that cannot be sent
back) is split into one task per file, and a one-file task that fails becomes that
file's error row.

Worker memory is bounded with ``RLIMIT_DATA`` (:func:`default_memory_limit`,
``PIXELS_WORKER_MEMORY``), so one file cannot drive a worker to the machine's
memory: allocations past the limit fail with ``MemoryError`` (an error row).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pyarrow as pa

from pixels.dicom.record import RecordOptions
from pixels.engines import worker
from pixels.errors import PixelsError
from pixels.schema import SCHEMA
from pixels.sources.ref import FileRef

#: Environment variable overriding the per-worker memory limit (bytes, or ``4G``, ``512M``; ``0``: none).
MEMORY_ENV = "PIXELS_WORKER_MEMORY"
_GiB = 1 << 30
_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": _GiB, "t": 1 << 40}

#: A file to read and whether its path is already in the table (carried through).
Item = tuple[FileRef, bool]
_T = TypeVar("_T")

#: Files per task of a long run (:func:`chunks`): one IPC message each way per task.
CHUNK_FILES = 256
#: Files in the first tasks of a run, so that a small run still spreads over the workers.
FIRST_CHUNK = 16
#: Files a worker reads before the pool is replaced by fresh workers (:class:`FilePool`'s
#: ``recycle_files`` is this times the number of workers in a long catalog run).
RECYCLE_FILES = 50_000


def chunks(
    items: Iterable[_T], size: int = CHUNK_FILES, first: int = FIRST_CHUNK
) -> Iterator[list[_T]]:
    """``items`` in lists (tasks) that grow from ``first`` to ``size``, in order.

    The k-th list holds ``min(size, first * 2 ** (k // 2))`` items (the last one
    fewer): a run of a few hundred files is still spread over the workers, and a
    long run sends few large messages (each task costs the parent a future, a
    pickled request, an unpickled batch and a bookkeeping step, whatever its size).

    Examples
    --------
    >>> [len(c) for c in chunks(range(200), size=64, first=16)]
    [16, 16, 32, 32, 64, 40]
    """
    first = max(1, min(first, size))
    buf: list[_T] = []
    n = 0
    want = first
    for item in items:
        buf.append(item)
        if len(buf) >= want:
            yield buf
            buf = []
            n += 1
            want = min(size, first << (n // 2))
    if buf:
        yield buf


def parse_size(text: str) -> int:
    """``"4G"``, ``"512m"``, ``"1073741824"`` -> bytes.

    Raises
    ------
    ValueError
        When ``text`` is not a size.
    """
    t = text.strip().lower().removesuffix("b").removesuffix("i")
    try:
        if t and t[-1] in _UNITS:
            return int(float(t[:-1]) * _UNITS[t[-1]])
        return int(t)
    except ValueError:
        raise ValueError(f"{MEMORY_ENV}: not a size: {text!r} (examples: 4G, 512M, 0)") from None


def default_memory_limit(n_workers: int) -> int | None:
    """Memory each worker may use: ``PIXELS_WORKER_MEMORY`` or 90% of RAM shared by the workers.

    Never below 1 GiB; ``None`` when there is no limit (``PIXELS_WORKER_MEMORY=0``,
    or the RAM size is unknown).
    """
    env = os.environ.get(MEMORY_ENV)
    if env is not None:
        return parse_size(env) or None
    try:
        ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    return max(_GiB, int(ram * 0.9) // max(1, n_workers))


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Start workers without re-running the caller's script in them.

    ``forkserver``/``spawn`` children import the parent's ``__main__`` file, so a
    script that calls :meth:`Catalog.catalog` without an ``if __name__ ==
    "__main__"`` guard would run again in every worker. The workers need nothing
    from ``__main__``: hide it while they start.
    """
    main = sys.modules.get("__main__")
    saved: dict[str, object] = {
        k: main.__dict__[k] for k in ("__file__", "__spec__") if main and k in main.__dict__
    }
    try:
        if main is not None:
            main.__dict__.pop("__file__", None)
            main.__dict__["__spec__"] = None
        yield
    finally:
        if main is not None:
            main.__dict__.pop("__spec__", None)
            main.__dict__.update(saved)


def start_pool(
    n_workers: int, *, memory_limit: int | None = -1, progress_dir: str | None = None
) -> ProcessPoolExecutor:
    """A process pool with all ``n_workers`` started now (forkserver: no inherited threads).

    ``memory_limit``: bytes of data memory per worker (``-1``: :func:`default_memory_limit`;
    ``None``: no limit). ``progress_dir``: where workers record the file they are reading.
    """
    if memory_limit == -1:
        memory_limit = default_memory_limit(n_workers)
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(worker.PRELOAD))
    pool = ProcessPoolExecutor(
        max_workers=n_workers,
        mp_context=ctx,
        initializer=worker.init,
        initargs=(memory_limit, progress_dir, os.getpid()),
    )
    with _main_module_hidden():
        warm = [pool.submit(os.getpid) for _ in range(n_workers)]
        for f in warm:
            f.result()
    return pool


def _error_batch(ref: FileRef, message: str) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([worker.error_row(ref, message)], schema=SCHEMA)


def _thumbnail_error(row: dict[str, Any], message: str) -> list[dict[str, Any]]:
    return [worker.thumbnail_error_row(message)]


@dataclass(frozen=True)
class Work:
    """What a :class:`FilePool` runs on each chunk, and what a file it died on gets.

    ``run(pack(payloads), options, task_id)`` runs in the worker (a module-level function
    of :mod:`pixels.engines.worker`, which records progress with the task id) and returns
    the results of the payloads, in order, which ``load`` turns into what the pool yields
    (in the parent); ``error(payload, message)`` is the result of a payload whose worker
    died on it; ``path(payload)`` names its file. ``pack`` and ``load`` keep the messages
    plain data, cheap to pickle both ways.
    """

    run: Callable[[Any, RecordOptions, int], Any]
    error: Callable[[Any, str], Any]
    path: Callable[[Any], str]
    pack: Callable[[list[Any]], Any] = list
    load: Callable[[Any], Any] = lambda result: result


#: Cataloging: payloads are :class:`FileRef` (sent as tuples), a result is a record batch
#: of catalog rows (sent as Arrow IPC bytes).
CATALOG = Work(
    worker.run_packed, _error_batch, lambda ref: ref.path, worker.pack_refs, worker.decode_batch
)
#: A thumbnail pass: payloads are catalog rows, a result is a list of thumbnail columns.
THUMBNAILS = Work(worker.thumbnails, _thumbnail_error, lambda row: row["path"])


@dataclass
class _Task:
    id: int
    items: list[tuple[Any, Any]]
    alone: bool = False  # a suspect: read with nothing else in flight
    lost: int = 0  # times lost in a breakage with no file identified


@dataclass
class FilePool:
    """Catalogs chunks of files in worker processes; a dying worker costs one error row.

    Parameters
    ----------
    n_workers : int
        Worker processes.
    options : RecordOptions
        Per-file options sent with each task.
    memory_limit : int or None
        Data memory per worker in bytes; ``-1`` (default) for
        :func:`default_memory_limit`, ``None`` for no limit.
    max_inflight : int
        Tasks in flight at once (default: 4 per worker).
    work : Work
        What runs on each chunk: :data:`CATALOG` (default) or :data:`THUMBNAILS`.
        Items are ``(payload, carried)`` pairs; only the payload goes to the worker.
    recycle_files : int
        Once this many files were submitted to the running workers, the pool lets
        the tasks in flight finish and starts fresh workers (``0``: never). A
        worker's memory grows with what it has read (allocator fragmentation, the
        header caches refilled again and again), and a fresh worker, forked from
        the forkserver, shares its pages: so the memory of a long run stays that
        of its first ``recycle_files`` files. (``ProcessPoolExecutor``'s
        ``max_tasks_per_child`` hangs on Python 3.11, hence a whole new pool.)

    Examples
    --------
    >>> with FilePool(4, RecordOptions()) as pool:             # doctest: +SKIP
    ...     for items, batch in pool.run(chunks):
    ...         write(batch)
    """

    n_workers: int
    options: RecordOptions
    memory_limit: int | None = -1
    max_inflight: int = 0
    work: Work = CATALOG
    recycle_files: int = 0
    #: Times the pool was restarted after a worker died.
    restarts: int = 0
    #: Times fresh workers replaced the running ones (``recycle_files``).
    recycled: int = 0
    _pool: ProcessPoolExecutor | None = field(default=None, repr=False)
    _dir: str | None = field(default=None, repr=False)
    _procs: list[Any] = field(default_factory=list, repr=False)
    _inflight: dict[Future[Any], _Task] = field(default_factory=dict, repr=False)
    _next_id: int = 0
    _submitted: int = 0  # files submitted to the running workers

    def __enter__(self) -> FilePool:
        if self.max_inflight <= 0:
            self.max_inflight = 4 * self.n_workers
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers and remove the progress records."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    @property
    def in_flight_files(self) -> int:
        """Files submitted whose rows have not come back yet."""
        return sum(len(t.items) for t in self._inflight.values())

    def reading(self) -> dict[int, Any]:
        """Worker process id -> the payload (file) it is reading now (diagnostics, tests)."""
        tasks = {t.id: t for t in list(self._inflight.values())}
        out: dict[int, Any] = {}
        for pid, (task_id, index) in self._records(consume=False).items():
            task = tasks.get(task_id)
            if task is not None and 0 <= index < len(task.items):
                out[pid] = task.items[index][0]
        return out

    # ---------------------------------------------------------------- internals
    def _start(self) -> ProcessPoolExecutor:
        if self._pool is None:
            if self._dir is None:
                self._dir = tempfile.mkdtemp(prefix="pixels-workers-")
            try:
                self._pool = start_pool(
                    self.n_workers, memory_limit=self.memory_limit, progress_dir=self._dir
                )
            except BrokenProcessPool as e:
                limit = self.memory_limit
                if limit == -1:
                    limit = default_memory_limit(self.n_workers)
                hint = f" (worker memory limit {limit} bytes: too small?)" if limit else ""
                raise PixelsError(f"the worker processes could not start{hint}") from e
            self._procs = list(getattr(self._pool, "_processes", {}).values())
            self._submitted = 0
        return self._pool

    def _recycle_due(self) -> bool:
        """Whether the running workers have been given ``recycle_files`` files."""
        return (
            self.recycle_files > 0
            and self._pool is not None
            and self._submitted >= self.recycle_files
        )

    def _recycle(self) -> None:
        """Stop the (idle) workers; the next submit starts fresh ones."""
        assert self._pool is not None and not self._inflight
        self._pool.shutdown(wait=True)
        self._pool = None
        self._records(consume=True)  # the old workers' progress records
        self.recycled += 1

    def _task(self, items: list[tuple[Any, Any]], alone: bool = False, lost: int = 0) -> _Task:
        self._next_id += 1
        return _Task(self._next_id, items, alone, lost)

    def _submit(self, task: _Task) -> None:
        pool = self._start()
        refs = [r for r, _ in task.items]
        fut = pool.submit(self.work.run, self.work.pack(refs), self.options, task.id)
        self._inflight[fut] = task
        self._submitted += len(refs)

    def _records(self, consume: bool) -> dict[int, tuple[int, int]]:
        """Worker pid -> (task id, index of the file it reads; -1 when between tasks)."""
        out: dict[int, tuple[int, int]] = {}
        if self._dir is None:
            return out
        for name in os.listdir(self._dir):
            path = os.path.join(self._dir, name)
            try:
                with open(path, "rb") as f:
                    data = f.read(worker.PROGRESS.size)
                if consume:
                    os.unlink(path)
            except FileNotFoundError:
                continue
            if len(data) == worker.PROGRESS.size and name.isdigit():
                out[int(name)] = worker.PROGRESS.unpack(data)
        return out

    def _reading(self) -> dict[int, int]:
        """Task id -> index of the file a worker was reading when the pool broke."""
        return {t: i for t, i in self._records(consume=True).values() if i >= 0}

    def _how_died(self) -> str:
        """How the workers that were not stopped by the pool itself ended."""
        codes = sorted(
            {p.exitcode for p in self._procs if p.exitcode not in (None, 0, -signal.SIGTERM)}
        )
        if not codes:
            return "the worker process died"
        parts = []
        for code in codes:
            if code < 0:
                try:
                    parts.append(f"killed by {signal.Signals(-code).name}")
                except ValueError:
                    parts.append(f"killed by signal {-code}")
            else:
                parts.append(f"exit code {code}")
        return "the worker process died (" + ", ".join(parts) + ")"

    def _broken(
        self, pending: deque[_Task], suspects: deque[_Task]
    ) -> Iterator[tuple[list[Any], Any]]:
        """The pool broke: keep finished results, find the files being read, restart."""
        assert self._pool is not None
        self._pool.shutdown(wait=True, cancel_futures=True)  # workers are gone after this
        self._pool = None
        self.restarts += 1
        how = self._how_died()
        reading = self._reading()
        inflight, self._inflight = self._inflight, {}
        for fut, task in inflight.items():
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                yield task.items, self.work.load(fut.result())
                continue
            if task.alone:
                ((ref, _),) = task.items
                msg = (
                    f"{self.work.path(ref)}: {how} while reading this file, and again when it was read "
                    "alone (out of memory, a crash in a decoder, or killed); file skipped"
                )
                yield task.items, self.work.error(ref, msg)
                continue
            index = reading.get(task.id)
            if index is None:  # lost before a file was started: again, then one by one
                if task.lost >= 1:
                    suspects.extend(self._task([it], alone=True) for it in task.items)
                else:
                    pending.append(self._task(task.items, lost=task.lost + 1))
                continue
            suspects.append(self._task([task.items[index]], alone=True))
            rest = task.items[:index] + task.items[index + 1 :]
            if rest:
                pending.append(self._task(rest, lost=task.lost))

    def _failed(
        self, task: _Task, e: BaseException, pending: deque[_Task]
    ) -> Iterator[tuple[list[Any], Any]]:
        """A task raised without breaking the pool: split it, or one file's error row."""
        if len(task.items) > 1:
            pending.extend(self._task([it]) for it in task.items)
            return
        ((ref, _),) = task.items
        msg = f"{self.work.path(ref)}: {type(e).__name__} in the worker: {e}"
        yield task.items, self.work.error(ref, msg)

    # ------------------------------------------------------------------- run
    def run(self, chunks: Iterable[list[Any]]) -> Iterator[tuple[list[Any], Any]]:
        """Catalog every chunk; yields ``(items, batch)`` as results come back (any order).

        Every file of every chunk comes back exactly once, in some batch: its row,
        or an error row when its worker died on it. ``items`` are the chunk's
        items that the batch covers (a superset after a split).
        """
        if self.max_inflight <= 0:
            self.max_inflight = 4 * self.n_workers
        source = iter(chunks)
        exhausted = False
        pending: deque[_Task] = deque()  # resubmitted after a breakage or a split
        suspects: deque[_Task] = deque()  # read alone, one at a time
        while True:
            alone_running = any(t.alone for t in self._inflight.values())
            while len(self._inflight) < self.max_inflight and not alone_running:
                if self._recycle_due():
                    if self._inflight:
                        break  # the workers finish what they have, then make way
                    self._recycle()
                if pending:
                    task = pending.popleft()
                elif suspects:
                    if self._inflight:
                        break  # a suspect runs with nothing else in flight
                    task = suspects.popleft()
                    alone_running = True
                elif not exhausted:
                    chunk = next(source, None)
                    if chunk is None:
                        exhausted = True
                        continue
                    task = self._task(list(chunk))
                else:
                    break
                self._submit(task)
            if not self._inflight:
                if exhausted and not pending and not suspects:
                    return
                continue
            done, _ = wait(list(self._inflight), return_when=FIRST_COMPLETED)
            for fut in done:
                got = self._inflight.get(fut)
                if got is None:  # already handled by a breakage
                    continue
                try:
                    batch = self.work.load(fut.result())
                except BrokenProcessPool:
                    yield from self._broken(pending, suspects)
                    break
                except (KeyboardInterrupt, SystemExit):
                    raise
                except BaseException as e:
                    del self._inflight[fut]
                    yield from self._failed(got, e, pending)
                    continue
                del self._inflight[fut]
                yield got.items, batch
