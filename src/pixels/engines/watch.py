"""Continuous local ingest: ``pixels catalog DIR --table T --watch``.

The embedded engine's counterpart of Auto Loader streaming. It runs until stopped
(Ctrl-C, SIGTERM, or :attr:`Watcher.stop`) and keeps the table in step with a
local folder:

How changes are found
    With inotify (Linux, :mod:`pixels.engines.inotify`) every folder of the tree is
    watched and each file written, created, moved in or deleted is a *candidate*
    within a fraction of a second. Elsewhere, on network mounts (NFS, SMB, FUSE:
    changes made by other machines reach no local kernel) and with ``poll=True``,
    the tree is walked every ``poll_interval`` seconds and a file is a candidate when
    its ``st_ctime`` or ``st_mtime`` is not older than the previous walk (``ctime``
    catches files moved in or copied with ``cp -p``, whose ``mtime`` is old). A
    queue overflow (inotify) or too many candidates at once leads to a full walk.

Files still being written are waited for
    A candidate is read once its size, ``mtime`` and ``ctime`` have not changed for
    ``settle`` seconds (every write changes ``ctime``); a file last changed longer
    ago than that is read at once. A file that changes again after it was read is
    read again and its row replaced (the table's identity rule): a writer pausing
    longer than ``settle``, or a network server whose clock runs behind, costs a
    second read, never a wrong row. inotify reports changes to the folders it
    watches: a file reached through a symbolic link to another folder is seen
    changing only by a walk (``poll=True``).

Small, frequent commits; nothing lost
    Rows are committed every ``commit_seconds`` or ``commit_rows``, and at the end of
    each round of candidates. Every start begins with a walk of the whole tree
    through the table's identity rule (:func:`pixels.table.iter_new`), so a restart
    after Ctrl-C or ``kill -9`` reads exactly the files it had not committed, and
    files changed while it was stopped.

Deletions
    Auto Loader never propagates a deleted source file: its row stays. So does
    ``deletions="keep"``, the default (and what a batch ``pixels catalog`` run
    does). ``deletions="remove"`` deletes the rows of files (and of the members of
    archives) that are deleted or moved out of the tree, and, at start and after
    each full walk, of rows whose file is no longer there.

Bounded memory
    Nothing is kept per file seen: candidates waiting to settle (at most
    ``max_pending``; beyond that a full walk follows), deletions not yet committed
    (same bound), one watch per folder. The table is compacted every
    ``compact_every`` commits, so its file list (and the engine's per-file ranges)
    stays small over days of trickling files.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from pixels.engines import worker
from pixels.engines.inotify import (
    IN_CREATE,
    IN_DELETE,
    IN_DELETE_SELF,
    IN_IGNORED,
    IN_ISDIR,
    IN_MOVE_SELF,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    IN_Q_OVERFLOW,
    Inotify,
    WatchLimitError,
    available,
)
from pixels.engines.local import CatalogStats, _chunks
from pixels.engines.options import CatalogOptions
from pixels.engines.pool import FilePool
from pixels.errors import SourceError, SourceNotFoundError
from pixels.sources import expand_local
from pixels.sources.local import (
    is_hidden_dir,
    is_skipped_name,
    is_url,
    iter_local_dir,
    local_ref,
    os_path,
    stored_path,
)
from pixels.sources.ref import FileRef
from pixels.sql import query
from pixels.table import CatalogTable, iter_new, sql_string

log = logging.getLogger(__name__)

#: File systems whose changes made elsewhere no local inotify sees: polled.
NETWORK_FS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "9p",
        "afs",
        "ceph",
        "glusterfs",
        "lustre",
        "gpfs",
        "beegfs",
        "virtiofs",
        "davfs",
    }
)
DELETIONS = ("keep", "remove")


@dataclass
class WatchStats(CatalogStats):
    """What a watch has done so far (:class:`~pixels.engines.local.CatalogStats` and more).

    Attributes
    ----------
    mode : str
        ``inotify`` or ``poll``, and why polling where it was not asked for.
    walks : int
        Walks of the whole tree (the first one, overflows, polls).
    removed : int
        Rows deleted because their file was (``deletions="remove"``).
    last_commit : float
        ``time.time()`` of the last commit (0: none yet).
    """

    mode: str = ""
    walks: int = 0
    removed: int = 0
    last_commit: float = 0.0


CommitCallback = Callable[[WatchStats, int], None]


def filesystem_type(path: str) -> str | None:
    """The type of the file system ``path`` is on (``ext4``, ``nfs4``), from ``/proc/self/mountinfo``."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    real = os.path.realpath(path)
    best, fstype = "", None
    for line in lines:
        left, _, right = line.partition(" - ")
        parts = left.split()
        if len(parts) < 5 or not right:
            continue
        mount = parts[4].replace("\\040", " ")
        inside = real == mount or real.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, fstype = mount, right.split()[0]
    return fstype


def needs_polling(path: str) -> str | None:
    """Why ``path`` must be polled (no inotify, a network mount), or None."""
    if not available():
        return "no inotify on this platform"
    fstype = filesystem_type(path)
    if fstype is not None and (fstype in NETWORK_FS or fstype.startswith("fuse")):
        return f"{fstype} mount: changes made elsewhere are not reported"
    return None


@dataclass
class _Settling:
    """Candidates waiting for their size/mtime/ctime to stop changing (bounded)."""

    settle: float
    limit: int
    items: dict[str, tuple[tuple[int, int, int], float]] = field(default_factory=dict)
    overflowed: bool = False
    overflowed_at: float = 0.0

    def add(self, path: str) -> None:
        if path in self.items:
            return
        if len(self.items) >= self.limit:
            if not self.overflowed:  # a full walk finds it, once it had time to settle
                self.overflowed, self.overflowed_at = True, time.monotonic()
            return
        self.items[path] = ((-1, -1, -1), time.monotonic())

    def discard(self, path: str) -> None:
        self.items.pop(path, None)

    def discard_under(self, prefix: str) -> None:
        for p in [p for p in self.items if p.startswith(prefix)]:
            del self.items[p]

    def ready(self) -> list[tuple[str, os.stat_result]]:
        """Candidates unchanged for ``settle`` seconds (taken out), with their stat."""
        now_wall, now = time.time(), time.monotonic()
        out = []
        for path, (key, since) in list(self.items.items()):
            try:
                st = os.stat(path)
            except OSError:
                del self.items[path]  # gone (its deletion is handled apart)
                continue
            new = (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            age = now_wall - max(st.st_mtime, st.st_ctime)
            if new != key:
                if key[0] == -1 and age >= self.settle:  # last changed long ago
                    del self.items[path]
                    out.append((path, st))
                else:
                    self.items[path] = (new, now)
            elif now - since >= self.settle:
                del self.items[path]
                out.append((path, st))
        return out


class Watcher:
    """Keeps ``table`` in step with the local folder ``source`` until :meth:`stop`.

    Parameters
    ----------
    source : str
        A local folder.
    table : CatalogTable
        The catalog (created when missing).
    config : CatalogOptions, optional
        What to catalog and how, as for :func:`pixels.engines.local.run_catalog`
        (:class:`pixels.engines.options.CatalogOptions`; here ``commit_rows``
        defaults to 500 and ``commit_seconds`` to 2: commit when this many rows
        wait, or the oldest waited this long).
    poll : bool, optional
        True: poll; False: inotify (an error where there is none); None (default):
        inotify unless the platform or the mount (:func:`needs_polling`) rules it out.
    poll_interval : float
        Seconds between walks when polling.
    settle : float
        Seconds a file must stay unchanged before it is read.
    deletions : str
        ``keep`` (default, as Auto Loader) or ``remove`` (see the module docstring).
    max_pending : int
        Candidates and deletions held at once; beyond that a full walk follows.
    compact_every : int
        Compact the table's small files every this many commits (0: never).
    reconcile_interval : float
        Polling with ``deletions="remove"``: seconds between checks of the table's
        rows against the files on disk (there are no deletion events to tell).
    on_commit : callable, optional
        Called with the stats and the rows of each commit.
    **changes
        Options of ``config`` by name (``workers=0``, ``pattern="*.dcm"``, ...).
    """

    def __init__(
        self,
        source: str,
        table: CatalogTable,
        config: CatalogOptions | None = None,
        *,
        poll: bool | None = None,
        poll_interval: float = 2.0,
        settle: float = 2.0,
        deletions: str = "keep",
        max_pending: int = 50_000,
        compact_every: int = 200,
        reconcile_interval: float = 30.0,
        on_commit: CommitCallback | None = None,
        **changes: Any,
    ) -> None:
        if deletions not in DELETIONS:
            raise ValueError(f"deletions must be one of {', '.join(DELETIONS)}, not {deletions!r}")
        if is_url(source) and not source.startswith("file://"):
            raise SourceError(
                "--watch watches a local folder; for an object store run `pixels catalog` "
                "again (only new or changed objects are read) or stream with Spark "
                "(Catalog(spark).catalog(..., streaming=True))",
                source,
            )
        root = os.path.abspath(source.removeprefix("file://"))
        if not os.path.exists(root):
            raise SourceNotFoundError("source not found", source)
        if not os.path.isdir(root):
            raise SourceError("--watch needs a folder", source)
        self.root = root
        self.table = table
        c = (config or CatalogOptions()).with_(**changes)
        self.config = c
        self.workers = c.n_workers
        self.pattern = c.pattern
        self.recursive = c.recursive
        self.expand_archives = c.expand_archives
        self.extract_dir = c.extract_dir
        self.options = c.record
        self.retry_errors = c.retry_errors
        self.worker_memory = c.worker_memory
        why = needs_polling(root)
        if poll is False and why is not None:
            raise SourceError(f"cannot watch with inotify: {why}", source)
        self.poll = bool(poll) or why is not None
        self.poll_interval = poll_interval
        self.commit_rows = 500 if c.commit_rows is None else c.commit_rows
        self.commit_seconds = 2.0 if c.commit_seconds is None else c.commit_seconds
        self.deletions = deletions
        self.compact_every = compact_every
        self.reconcile_interval = reconcile_interval
        self._last_reconcile = 0.0
        self.on_commit = on_commit
        self.stats = WatchStats(
            mode="poll" + (f" ({why})" if why and not poll else "") if self.poll else "inotify"
        )
        self._settling = _Settling(settle, max_pending)
        self._gone: set[str] = set()  # deleted files (remove mode), not committed yet
        self._gone_dirs: set[str] = set()
        self._max_pending = max_pending
        self._stop = threading.Event()
        self._own = stored_path(os.path.join(table.uri, "")) if "://" not in table.uri else None
        self._own_os = os.path.join(os.path.abspath(table.uri), "") if self._own else None
        self._notify: Inotify | None = None
        self._dirs: dict[int, str] = {}  # watch descriptor -> folder (OS path)
        self._pool: FilePool | None = None
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._pending_replace: set[str] = set()
        self._pending_since = 0.0
        self._snapshot: list[str] = []
        self._walk_needed = True
        self._reconcile_needed = deletions == "remove"
        self._commits_since_compact = 0
        self._t0 = time.perf_counter()

    # ------------------------------------------------------------------ public
    def stop(self) -> None:
        """Ask the watch to end: the rows read so far are committed, then :meth:`run` returns."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stop.is_set()

    def run(self) -> WatchStats:
        """Watch until :meth:`stop`; returns the stats (everything read is committed)."""
        self.table.create()
        self.table.clean_orphans()
        try:
            if not self.poll:
                self._notify = Inotify()
                try:
                    self._watch_tree(self.root)
                except WatchLimitError as e:
                    self._poll_instead(e)
            last_walk = 0.0
            watermark: float | None = None
            while not self._stop.is_set():
                settled_overflow = (
                    self._settling.overflowed
                    and time.monotonic() - self._settling.overflowed_at >= self._settling.settle
                )
                if (
                    self._walk_needed
                    or settled_overflow
                    or (self.poll and time.monotonic() - last_walk >= self.poll_interval)
                ):
                    started = time.time()
                    full = self._walk_needed or self._settling.overflowed
                    self._walk_needed = self._settling.overflowed = False
                    last_walk = time.monotonic()
                    self._process(self._walk(None if full else watermark))
                    self._commit_if_due(force=True)  # the next look-ups see these rows
                    watermark = started
                    if self.deletions == "remove" and (
                        full or time.monotonic() - self._last_reconcile >= self.reconcile_interval
                    ):
                        self._reconcile_needed = True
                if self._reconcile_needed and not self._stop.is_set():
                    self._reconcile()
                self._wait(self._tick())
                self._process(self._ready_refs())
                self._commit_if_due(force=True)
        finally:
            try:
                self._commit_if_due(force=True)
            finally:
                self._close_notify()
                if self._pool is not None:
                    self._pool.close()
                self.stats.seconds = time.perf_counter() - self._t0
        return self.stats

    # ---------------------------------------------------------------- watching
    def _tick(self) -> float:
        return max(0.05, min(0.5, self._settling.settle / 4))

    def _poll_instead(self, e: WatchLimitError) -> None:
        """No more watches to be had: poll from now on (a full walk first: nothing missed)."""
        log.warning("%s: polling instead", e)
        self._close_notify()
        self.poll, self.stats.mode = True, f"poll ({e})"
        self._walk_needed = True

    def _close_notify(self) -> None:
        if self._notify is not None:
            self._notify.close()
            self._notify = None
            self._dirs.clear()

    def _skipped_dir(self, path: str) -> bool:
        name = os.path.basename(path)
        own = self._own_os
        return is_hidden_dir(name) or (own is not None and os.path.join(path, "").startswith(own))

    def _watch_tree(self, top: str) -> None:
        """Watch ``top`` and (recursively) its folders; one watch per folder."""
        assert self._notify is not None
        stack = [top]
        while stack:
            folder = stack.pop()
            wd = self._notify.add(folder)
            if wd is None:
                continue
            self._dirs[wd] = folder
            if not self.recursive:
                continue
            try:
                with os.scandir(folder) as it:
                    for entry in it:
                        with contextlib.suppress(OSError):
                            if entry.is_dir() and not self._skipped_dir(entry.path):
                                stack.append(entry.path)
            except OSError:
                continue

    def _unwatch_under(self, folder: str) -> None:
        assert self._notify is not None
        prefix = os.path.join(folder, "")
        for wd, path in list(self._dirs.items()):
            if path == folder or path.startswith(prefix):
                self._notify.remove(wd)
                del self._dirs[wd]

    def _wait(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for changes; note them as candidates."""
        if self._notify is None:
            self._stop.wait(timeout)
            return
        self._take_events(timeout)

    def _take_events(self, timeout: float) -> None:
        assert self._notify is not None
        for ev in self._notify.read(timeout):
            if self._notify is None:
                return  # fell back to polling on this batch of events
            if ev.mask & IN_Q_OVERFLOW:
                self._walk_needed = True
                continue
            folder = self._dirs.get(ev.wd)
            if folder is None:
                continue
            if ev.mask & IN_IGNORED:
                self._dirs.pop(ev.wd, None)
                continue
            if ev.mask & (IN_DELETE_SELF | IN_MOVE_SELF) and not ev.name:
                if folder == self.root:
                    log.warning("%s was removed or moved: watching stops", folder)
                    self._stop.set()
                continue
            path = os.path.join(folder, os.fsdecode(ev.name))
            if ev.mask & IN_ISDIR:
                if ev.mask & (IN_CREATE | IN_MOVED_TO):
                    if self.recursive and not self._skipped_dir(path):
                        try:
                            self._watch_tree(path)
                        except WatchLimitError as e:
                            self._poll_instead(e)
                            return
                        with contextlib.suppress(OSError):  # gone again already
                            for ref in iter_local_dir(path, relative_prefix=self._rel(path) + "/"):
                                if ref.local_path:
                                    self._settling.add(os_path(ref.local_path))
                elif ev.mask & (IN_DELETE | IN_MOVED_FROM):
                    self._unwatch_under(path)
                    self._settling.discard_under(os.path.join(path, ""))
                    self._deleted(path, folder=True)
                continue
            if is_skipped_name(ev.name.decode("utf-8", "surrogateescape")):
                continue
            if ev.mask & (IN_DELETE | IN_MOVED_FROM):
                self._settling.discard(path)
                self._deleted(path)
            else:
                self._settling.add(path)
                self._gone.discard(stored_path(path))

    def _deleted(self, path: str, folder: bool = False) -> None:
        if self.deletions != "remove":
            return
        if len(self._gone) + len(self._gone_dirs) >= self._max_pending:
            self._reconcile_needed = True  # found again by the reconcile walk
            return
        if folder:
            self._gone_dirs.add(stored_path(os.path.join(path, "")))
        else:
            self._gone.add(stored_path(path))

    def _rel(self, path: str) -> str:
        return os.path.relpath(path, self.root).replace(os.sep, "/")

    # ----------------------------------------------------------------- finding
    def _walk(self, watermark: float | None) -> Iterator[FileRef]:
        """Walk the tree: files changed since ``watermark`` (all when None) that are
        settled come out now, the others wait in the candidates."""
        self.stats.walks += 1
        margin = max(2.0, self._settling.settle)
        now = time.time()
        if not os.path.isdir(self.root):
            raise SourceNotFoundError("the watched folder is gone", self.root)
        for n, ref in enumerate(iter_local_dir(self.root, recursive=self.recursive)):
            if self._stop.is_set():
                return
            if self._notify is not None and n % 1000 == 999:
                self._take_events(0)  # a long walk: keep the kernel's event queue short
            if self._own is not None and ref.path.startswith(self._own):
                continue
            if ref.local_path is None or ref.error is not None:
                if watermark is None:
                    self.stats.listed += 1
                    yield ref  # an unreadable entry: its error row
                continue
            path = os_path(ref.local_path)
            try:
                st = os.stat(path)
            except OSError:
                continue
            changed = max(st.st_mtime, st.st_ctime)
            if watermark is not None and changed < watermark - margin:
                continue
            if now - changed >= self._settling.settle:
                self._settling.discard(path)  # read now: not again when it settles
                yield from self._refs(path, st)
            else:
                self._settling.add(path)

    def _refs(self, path: str, st: os.stat_result) -> Iterator[FileRef]:
        ref = local_ref(path, st, self._rel(path))
        for r in expand_local(
            iter([ref]),
            pattern=self.pattern,
            expand_archives=self.expand_archives,
            extract_dir=self.extract_dir,
            limits=self.options.limits,
        ):
            self.stats.listed += 1
            yield r

    def _ready_refs(self) -> Iterator[FileRef]:
        for path, st in self._settling.ready():
            if self._own_os is not None and path.startswith(self._own_os):
                continue
            yield from self._refs(path, st)

    # ---------------------------------------------------------------- reading
    def _process(self, refs: Iterable[FileRef]) -> None:
        """Read the new or changed files among ``refs``; commit as rows come."""
        refs = iter(refs)
        head = next(refs, None)
        if head is None:
            return  # nothing to read: the table is not even looked at
        self._snapshot = self.table.file_uris()
        todo = iter_new(
            self.table,
            itertools.chain([head], refs),
            retry_errors=self.retry_errors,
            snapshot=self._snapshot,
            chunk=500,
        )
        chunks = _chunks(todo, 16)
        if self.workers <= 0:
            for chunk in chunks:
                self._take(worker.run([r for r, _ in chunk], self.options), chunk)
                if self._stop.is_set():
                    return
            return
        first = next(chunks, None)
        if first is None:
            return
        if self._pool is None:
            self._pool = FilePool(
                self.workers, self.options, memory_limit=self.worker_memory
            ).__enter__()
        for items, batch in self._pool.run(_prepend(first, chunks)):
            self._take(batch, items)
            if self._stop.is_set():
                return  # what was read is committed by run(); the rest next time

    def _take(self, batch: pa.RecordBatch, items: list[tuple[FileRef, bool]]) -> None:
        s = self.stats
        s.processed += batch.num_rows
        err = batch.column("error")
        n_err = batch.num_rows - err.null_count
        s.errors += n_err
        if n_err and len(s.error_samples) < 10:
            for e in err.drop_null().to_pylist()[: 10 - len(s.error_samples)]:
                s.error_samples.append(e)
        s.dicom += sum(
            1
            for t, e in zip(batch.column("file_type").to_pylist(), err.to_pylist(), strict=True)
            if t == "dicom" and e is None
        )
        s.count_warnings(batch)
        if not self._pending:
            self._pending_since = time.monotonic()
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        self._pending_replace |= {r.path for r, changed in items if changed}
        self._commit_if_due()
        if self._notify is not None:
            self._take_events(0)  # keep the kernel's event queue short during long rounds

    def _commit_if_due(self, force: bool = False) -> None:
        if self._gone or self._gone_dirs:
            self._remove_gone()
        if not self._pending:
            return
        due = (
            force
            or self._pending_rows >= self.commit_rows
            or time.monotonic() - self._pending_since >= self.commit_seconds
        )
        if not due:
            return
        rows = self._pending_rows
        written = self.table.append(
            pa.Table.from_batches(self._pending),
            replace=self._pending_replace,
            checked=self._snapshot,
        )
        self._pending, self._pending_rows, self._pending_replace = [], 0, set()
        self.stats.written += written
        self.stats.commits += 1
        self.stats.last_commit = time.time()
        self.stats.seconds = time.perf_counter() - self._t0
        self._commits_since_compact += 1
        if self.on_commit is not None:
            self.on_commit(self.stats, rows)
        if self.compact_every and self._commits_since_compact >= self.compact_every:
            self._commits_since_compact = 0
            self.table.optimize(vacuum=False)
            self._snapshot = self.table.file_uris()

    # --------------------------------------------------------------- deletions
    def _remove_gone(self) -> None:
        """Delete the rows of files deleted since the last commit (still gone now)."""
        paths = {p for p in self._gone if not os.path.lexists(os_path(p))}
        dirs = {d for d in self._gone_dirs if not os.path.lexists(os_path(d.rstrip("/")))}
        self._gone.clear()
        self._gone_dirs.clear()
        if paths or dirs:
            self.stats.removed += self.table.remove_paths(paths, dirs)

    def _reconcile(self) -> None:
        """Delete the rows of files under the folder that are no longer there."""
        self._reconcile_needed = False
        self._last_reconcile = time.monotonic()
        if not self.table.exists():
            return
        root = stored_path(os.path.join(self.root, ""))
        got = query(
            self.table,
            "SELECT path, local_path, original_path FROM object_catalog "
            f"WHERE starts_with(path, {sql_string(root)}) "
            f"OR starts_with(original_path, {sql_string(root)})",
        )
        missing: set[str] = set()
        for path, local, archive in zip(
            got["path"].to_pylist(),
            got["local_path"].to_pylist(),
            got["original_path"].to_pylist(),
            strict=True,
        ):
            on_disk = archive or local or path
            if not os.path.lexists(os_path(on_disk)):
                missing.add(archive or path)
        del got
        if missing:
            self.stats.removed += self.table.remove_paths(missing)


def _prepend(
    first: list[tuple[FileRef, bool]], rest: Iterator[list[tuple[FileRef, bool]]]
) -> Iterator[list[tuple[FileRef, bool]]]:
    yield first
    yield from rest


def watch_catalog(
    source: str, table: CatalogTable, config: CatalogOptions | None = None, **kwargs: Any
) -> WatchStats:
    """Run a :class:`Watcher` until it is stopped (Ctrl-C); see it for the arguments."""
    watcher = Watcher(source, table, config, **kwargs)
    try:
        return watcher.run()
    except KeyboardInterrupt:
        return watcher.stats
