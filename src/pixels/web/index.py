"""The DICOMweb server's index of the catalog, following the Delta log.

The index is a few columnar tables in one DuckDB database
(:mod:`pixels.web.index_tables`: about 100 bytes per instance), kept up to date
file by file: a new table version adds the rows of the data files it added and
drops those of the files it removed (:meth:`TableIndex.current`), never
rebuilding the rest. Nothing per instance is held in Python.

For a local table the database is a file next to it
(``_pixels/index/index.duckdb``) holding the tables with the data files and the
version they stand for: a server started again opens it (DuckDB reads its pages
when a query needs them) and applies only the versions committed since, so
start-up does not grow with the table. A first build adds the data files in
chunks of about :data:`_CHUNK_ROWS` rows, each committed with the files it
indexed: its memory is bounded (DuckDB spills beyond :data:`_MEMORY_LIMIT`) and a
build that was stopped resumes at the next chunk. When the file cannot be used
(a read-only folder, another process holding it, a table on an object store) the
database is in memory and built at start.

An update's work grows with its commit, not with the table: the rows sharing a
SOP instance with a new row are looked up only for the hashes that
:class:`~pixels.web.sopkeys.SopKeys` (the index's SOP hashes, sorted, read in the
background at start) may hold; the touched series' rows are found by data file.

Each update runs in one DuckDB transaction: requests keep answering from the
committed state while it runs (DuckDB's MVCC: readers never wait for it), and see
the whole of a version or none of it (a first build answers its first request
when every chunk is in).

A version that only adds new SOP instances (a STOW-RS or catalog commit) is not
merged before it answers: its rows, and the complete rows of the groups, series
and studies it touches, go into the index's overlay (:mod:`pixels.web.overlay`,
in memory; requests then read views over both), and a thread of its own merges it
into the tables afterwards (:meth:`TableIndex.merge`), one version at a time, while
later versions go on into the overlay; a merged version's overlay rows are dropped
a little later. Any other version (files removed, a twin of an indexed instance, a
first build, rows not read from the files) merges the overlay first. The overlay
is never saved: a server started again applies the versions not merged.

Whether the table changed is checked on every request: for a local table, a
``stat`` of the next version's log file; for object stores, the Delta log at most
once a second. A version whose rows are not its files' rows (deletion vectors,
column mapping: :mod:`pixels.scan`) is read whole through delta-rs.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import time
import weakref
from typing import Any

import duckdb
import pyarrow.parquet as pq

from pixels.scan import TableScan
from pixels.schema import VIEW_NAME
from pixels.storage import is_local, local_path
from pixels.table import CatalogTable, sql_string
from pixels.table.firsts import drop_firsts
from pixels.web import index_tables
from pixels.web.firsts import QMETA_TAGS, Sidecars
from pixels.web.overlay import Overlay
from pixels.web.rowreads import RowReader
from pixels.web.snapshot import Snapshot
from pixels.web.sopkeys import SopKeys

__all__ = ["INDEX_FILE", "QMETA_TAGS", "Snapshot", "TableIndex", "index_of"]

#: The saved index of a local table, under ``{table}/_pixels/index/``.
INDEX_FILE = "index.duckdb"
_REMOTE_RECHECK_S = 1.0
#: Rows added since the last checkpoint that make the next update compress the tables.
_CHECKPOINT_ROWS = 100_000
#: DuckDB's own checkpoint threshold for a saved index (beyond :data:`_CHECKPOINT_ROWS`' log).
_WAL_LIMIT = "1GB"
#: Rows of data files added per transaction when many files are new (a first build).
_CHUNK_ROWS = 500_000
#: DuckDB's memory for an index saved in a file (beyond it, pages are evicted or spilled).
_MEMORY_LIMIT = "1GB"
#: A commit of more rows than this is merged at once, not held in the overlay.
_OVERLAY_ROWS = 200_000
#: Seconds a merged version's overlay rows stay before they are dropped (a query that
#: began before the merge read the index's tables as they were then: the overlay's
#: rows stand in for them until it ends).
_DROP_AFTER_S = 0.5


def _remove(path: str) -> None:
    """Remove a saved index and its write-ahead log."""
    for suffix in ("", ".wal"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path + suffix)


class TableIndex:
    """The index of a catalog table (see the module docstring), following its versions.

    Parameters
    ----------
    table : CatalogTable
        The table.
    persist : bool
        Keep the index in ``{table}/_pixels/index/index.duckdb`` (local tables,
        when the file can be opened): a later start resumes from it. False: in
        memory, built at start.
    merge : bool
        Merge the commits the overlay holds into the index in a thread of its own as
        soon as they answer (:attr:`auto_merge`). False: only when :meth:`merge` is
        called, or an update cannot use the overlay (tests see both states).
    """

    def __init__(self, table: CatalogTable, *, persist: bool = True, merge: bool = True):
        self.table = CatalogTable(table.uri, table.storage_options)
        local = "://" not in self.table.uri or self.table.uri.startswith("file://")
        root = self.table.uri.removeprefix("file://")
        self._log = os.path.join(root, "_delta_log") if local else None
        #: where the index and each data file's ``ffirst`` rows are saved (local tables)
        self._dir = local_path(root).rstrip("/") + "/" if local else None
        folder = os.path.join(local_path(root), "_pixels", "index") if local else None
        self._sidecars = Sidecars(folder)
        con = duckdb.connect()
        con.execute("SET TimeZone='UTC'")
        # freed memory goes back to the system (else a start-up's peak stays resident)
        con.execute("SET allocator_flush_threshold='32MB'")
        con.execute("SET allocator_background_threads=true")
        self.con = con
        #: DuckDB's threads by default (the machine's cores): a merge that is not the
        #: overlay's (a first build, removed files) runs on them (:meth:`_update`)
        self._duck_threads = int(con.execute("SELECT current_setting('threads')").fetchone()[0])  # type: ignore[index]
        # else one: the index's statements are small (an overlay update's, a request's),
        # and one thread does them in less time than two (materializing 10k rows: 15
        # against 25 ms; QIDO study searches at 10M: the same p50, a shorter tail), while
        # requests answered at once each have a core
        con.execute("SET threads = 1")
        #: the file the index is kept in (None: in memory)
        self.path = self._open(os.path.join(folder, INDEX_FILE) if persist and folder else None)
        self._lock = threading.Lock()
        self._snap: Snapshot | None = None
        self._checked = 0.0
        #: True when the rows of the indexed version are read from its files directly
        self.direct = True
        #: data file URI -> file id, and back (ids are never reused)
        self._fids: dict[str, int] = {}
        self._uris: dict[int, str] = {}
        self._next_fid = 0
        self._version: int | None = None
        #: which SOP hashes the index may hold (updates look up only those)
        self.keys = SopKeys()
        #: which series and study hashes it may hold (a commit of new series and
        #: studies looks up no current rows of them: :meth:`Overlay.add`)
        self.series_keys = SopKeys(
            "SELECT seh FROM ix.series_sum UNION ALL SELECT seh FROM ix.ffirst"
        )
        self.study_keys = SopKeys("SELECT sk FROM ix.grp")
        self._stats: dict[str, int] = {}  # counts of the update in progress
        self._resume()
        self.reader = RowReader(self._uris)
        self._rows_since_checkpoint = 0
        self._checkpoint_due = False
        #: the study search's new studies are due to be sorted in (:meth:`_checkpoint_later`)
        self._sort_due = False
        self._checkpointer: threading.Thread | None = None
        self._scan: TableScan | None = None
        self._view_version: tuple[int | None, int] | None = None
        self._view_lock = threading.Lock()
        #: seconds the last update took, and its counts (for benchmarks)
        self.last_update: dict[str, Any] = {}
        #: the newest commits, answered before they are merged (:mod:`pixels.web.overlay`)
        self.overlay = Overlay(self.con)
        #: merge the overlay's commits in the background as soon as they answer
        self.auto_merge = merge
        #: the overlay's versions not merged yet: (scan, added files, their ids), oldest first
        self._pending: list[tuple[TableScan, list[str], list[int]]] = []
        #: held while a merge writes the index (one at a time; never waits for ``_lock``)
        self._merge_lock = threading.Lock()
        self._merger: threading.Thread | None = None
        #: the newest merged version whose overlay rows are not dropped yet, and when merged
        self._merged: tuple[int, float] | None = None
        self._closing = False
        self._pending_lock = threading.Lock()
        #: held while the overlay is written and the snapshot replaced (after ``_lock``
        #: and ``_merge_lock`` when taken with them)
        self._ov_lock = threading.Lock()
        #: the error of the last background merge that failed (the next update merges again)
        self.merge_error: BaseException | None = None
        #: seconds the last merge took, and its counts (for benchmarks)
        self.last_merge: dict[str, Any] = {}
        #: the merge threads started, for :func:`_stop_merges`
        self._threads: list[threading.Thread] = []
        _OPEN.add(self)

    # ------------------------------------------------------------------ storage
    def _open(self, path: str | None) -> str | None:
        """Attach ``ix``: the saved index at ``path`` when usable, else a new one in memory."""
        if path is not None:
            for attempt in (1, 2):
                try:
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    self._attach(path)
                    return path
                except (OSError, duckdb.Error) as e:
                    # held by another process or this one, read-only, or damaged
                    with contextlib.suppress(duckdb.Error):
                        self.con.execute("DETACH DATABASE IF EXISTS ix")
                    if attempt == 2 or "not a valid DuckDB database" not in str(e):
                        break
                    _remove(path)  # not an index (a damaged file): made again
        self.con.execute("ATTACH ':memory:' AS ix (COMPRESS)")
        self.con.execute(index_tables.SCHEMA_SQL)
        self.con.execute("INSERT INTO ix.state VALUES (?, NULL, 0)", [index_tables.FORMAT])
        return None

    def _attach(self, path: str) -> None:
        con = self.con
        con.execute(f"ATTACH {sql_string(path)} AS ix")
        tables = {
            r[0]
            for r in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = 'ix'"
            ).fetchall()
        }
        if "state" in tables:
            row = con.execute("SELECT format FROM ix.state").fetchone()
            if row is not None and row[0] == index_tables.FORMAT:
                return
            if row is not None and row[0] in index_tables.UPGRADES:
                # an older layout turned into this one in place (one transaction)
                con.execute("BEGIN TRANSACTION")
                try:
                    con.execute(index_tables.UPGRADES[row[0]])
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                con.execute("COMMIT")
                return
        # a new file, or one saved by another layout: built again
        if tables:
            con.execute("DETACH DATABASE ix")
            _remove(path)
            con.execute(f"ATTACH {sql_string(path)} AS ix")
        con.execute("BEGIN TRANSACTION")
        con.execute(index_tables.SCHEMA_SQL)
        con.execute("INSERT INTO ix.state VALUES (?, NULL, 0)", [index_tables.FORMAT])
        con.execute("COMMIT")

    def _resume(self) -> None:
        """The data files and version the saved tables stand for (none in a new index)."""
        if self.path is not None:
            self.con.execute(f"SET memory_limit='{_MEMORY_LIMIT}'")
            # checkpoints are the index's own (:data:`_CHECKPOINT_ROWS`), never one
            # DuckDB makes inside an update's COMMIT when the log passes 16 MB (0.5-1.5 s
            # of a 10k-row commit at 10M rows)
            self.con.execute(f"SET checkpoint_threshold='{_WAL_LIMIT}'")
            self.con.execute(f"SET temp_directory={sql_string(self.path + '.tmp')}")
        for fid, saved in self.con.execute("SELECT fid, uri FROM ix.files").fetchall():
            uri = (
                self._dir + saved
                if self._dir and not saved.startswith(("/", "delta-rs:"))
                else saved
            )
            self._fids[uri], self._uris[fid] = fid, uri
        row = self.con.execute("SELECT version, next_fid FROM ix.state").fetchone()
        assert row is not None
        self._version, self._next_fid = row[0], row[1]
        if any(u.startswith("delta-rs:") for u in self._fids):
            self.direct = False
        if self._fids:  # read while the first requests are answered; an update waits for it
            for keys in (self.keys, self.series_keys, self.study_keys):
                keys.load(self.con, background=True)

    def _saved_name(self, uri: str) -> str:
        """``uri`` as the saved index holds it: relative to the table (a copied table's
        index stays valid)."""
        if self._dir and uri.startswith(self._dir):
            return uri[len(self._dir) :]
        return uri

    def close(self) -> None:
        """Close the database (the saved file stays, for the next start; versions the
        overlay holds but were not merged are applied again then)."""
        self._closing = True
        for thread in self._threads:
            thread.join()  # a merge in progress ends first
        if self._checkpointer is not None:
            self._checkpointer.join()  # a checkpoint in progress ends first
        with self._lock, self._merge_lock:
            for keys in (self.keys, self.series_keys, self.study_keys):
                keys.ready()  # its read, if still running, ends first
            self.con.close()

    # ----------------------------------------------------------------- versions
    def _maybe_changed(self) -> bool:
        snap = self._snap
        if snap is None:
            return True
        if self._log is not None:
            nxt = -1 if snap.version is None else snap.version
            return os.path.exists(os.path.join(self._log, f"{nxt + 1:020d}.json"))
        return time.monotonic() - self._checked >= _REMOTE_RECHECK_S

    def current(self, min_version: int | None = None) -> Snapshot:
        """The snapshot of the table's current version (the index updated when the table changed).

        A request arriving while another one updates the index answers from the
        version before, without waiting, unless it needs ``min_version`` or later
        (a STOW-RS request, before it answers, waits for the version it committed).
        """
        snap = self._snap
        behind = snap is None or (
            min_version is not None and (snap.version is None or snap.version < min_version)
        )
        # (a remote table is re-checked only every _REMOTE_RECHECK_S: a version asked for
        # is read at once, or a STOW-RS answer would come before its instances are found)
        if not behind and not self._maybe_changed():
            assert snap is not None
            return snap
        if not self._lock.acquire(blocking=behind):
            assert snap is not None
            return snap
        try:
            self._checked = time.monotonic()
            self._drop_merged()
            scan = self._next_scan()  # version and files read together
            if self._snap is None or self._snap.version != scan.version:
                merged = not self._overlay_update(scan)
                if merged:
                    with self._merge_lock:  # the overlay's versions merged first
                        self._merge_pending()
                        self._clear_overlay()
                        self._update(scan)
                with self._ov_lock:
                    overlaid = bool(self.overlay.versions)
                    self._snap = Snapshot(self, scan.version, overlaid=overlaid)
                # (after a merge in the background, its thread does this)
                if merged and (self._checkpoint_due or self._sort_due):
                    self._checkpoint_later()
            return self._snap
        finally:
            self._lock.release()

    def _next_scan(self) -> TableScan:
        """The table's current version: the commits after the indexed one replayed onto
        its files where they can be (:meth:`~pixels.scan.TableScan.followed`), else the
        table read."""
        scan, snap = self._scan, self._snap
        if scan is not None and snap is not None and scan.version == snap.version:
            followed = scan.followed()
            if followed is not None:
                return followed
        return self.table.scan()

    # ------------------------------------------------------------------ overlay
    def _overlay_update(self, scan: TableScan) -> bool:
        """Version ``scan`` into the overlay (:mod:`pixels.web.overlay`), merged later;
        False when it cannot go there (a first build, files removed, a SOP instance
        that may be indexed already, rows not read from the files, too many rows)."""
        if self._snap is None or not scan.direct or not self.direct or scan.version is None:
            return False
        files = list(scan.files)
        live = set(files)
        if any(u not in live for u in self._fids):
            return False
        added = [u for u in files if u not in self._fids]
        if not added or not all(is_local(u) for u in added):
            return False
        rows = 0
        for uri in added:
            try:
                rows += pq.read_metadata(local_path(uri)).num_rows
            except (OSError, ValueError):
                return False  # (the merge tells its error)
        if rows > _OVERLAY_ROWS:
            return False
        t0 = time.perf_counter()
        fids = list(range(self._next_fid, self._next_fid + len(added)))
        for fid, u in zip(fids, added, strict=True):
            self._uris[fid] = u
        cur = self.con.cursor()
        try:
            firsts = index_tables.read_rows(
                cur, scan, added, fids, self._uris, self._sidecars, self.reader, self._dir
            )
            try:  # (the first rows are parsed while the overlay looks up the current rows)
                with self._ov_lock:
                    held = self.overlay.add(
                        cur,
                        scan.version,
                        fids[-1] + 1,
                        self.keys,
                        firsts,
                        known=(self.series_keys, self.study_keys),
                    )
            finally:
                firsts.result()  # (its thread ended; its error raised)
        finally:
            cur.close()
        if not held:
            return False
        for fid, u in zip(fids, added, strict=True):
            self._fids[u] = fid
        self._next_fid = fids[-1] + 1
        self._scan = scan
        with self._pending_lock:
            self._pending.append((scan, added, fids))
        self.last_update = {
            "seconds": time.perf_counter() - t0,
            "added_files": len(added),
            "removed_files": 0,
            "chunks": 0,
            "version": scan.version,
            "overlay": True,
            "sop_lookups": 0,
            "files_read": 0,
            "commit_ms": 0,
            "firsts_saved": firsts.saved,
        }
        if self.auto_merge:
            self._merge_later()
        return True

    def merge(self) -> None:
        """Merge the versions the overlay holds into the index now, and drop their
        overlay rows (which the views then no longer need)."""
        with self._merge_lock:
            self._merge_pending()
        time.sleep(_DROP_AFTER_S)  # (queries begun before the merge end first)
        self._drop_merged(force=True)

    def _merge_later(self) -> None:
        """Merge the pending versions in a thread of its own (one at a time)."""
        with self._pending_lock:
            if self._merger is not None:
                return  # (it merges every pending version before it ends)
            self._merger = threading.Thread(
                target=self._merge_run, name="pixels-index-merge", daemon=True
            )
            self._merger.start()
            # (kept until it ends, its drop after the merge included: joined at exit)
            self._threads = [t for t in self._threads if t.is_alive()] + [self._merger]

    def _merge_run(self) -> None:
        try:
            while not self._closing:
                with self._merge_lock:
                    with self._pending_lock:
                        if not self._pending or not self.auto_merge:
                            self._merger = None
                            break
                    self._merge_next()
        except Exception as e:  # the next update tries again (its fallback merges first)
            self.merge_error = e
            with self._pending_lock:
                self._merger = None
            return
        if self._closing:
            return
        time.sleep(_DROP_AFTER_S)
        if not self._closing:
            self._drop_merged()

    def _merge_pending(self) -> None:
        """Merge every pending version (the caller holds ``_merge_lock``)."""
        while self._merge_next():
            pass

    def _merge_next(self) -> bool:
        """Merge the oldest pending version into the index (the caller holds
        ``_merge_lock``); False when none is pending."""
        with self._pending_lock:
            if not self._pending:
                return False
            scan, added, fids = self._pending[0]
        t0 = time.perf_counter()
        stats: dict[str, Any] = {}
        self._commit(scan, added, [], True, fids=fids, into=stats)
        with self._pending_lock:
            self._pending.pop(0)
        assert scan.version is not None  # (the overlay holds versions of a table)
        self._merged = (scan.version, time.monotonic())
        self.last_merge = {"seconds": time.perf_counter() - t0, "version": scan.version} | stats
        if self._checkpoint_due or self._sort_due:
            sort, self._sort_due = self._sort_due, False
            checkpoint, self._checkpoint_due = self._checkpoint_due, False
            self._maintain(sort, checkpoint)
        return True

    def _drop_merged(self, *, force: bool = False) -> None:
        """Drop the overlay rows of the merged versions, once they were merged
        :data:`_DROP_AFTER_S` ago; with the overlay empty, requests read the index's
        tables again. (Under ``_ov_lock``, which an update holds while it adds to the
        overlay and makes its snapshot: requests never wait for it.)"""
        with self._ov_lock:
            merged = self._merged
            if merged is None or (not force and time.monotonic() - merged[1] < _DROP_AFTER_S):
                return
            cur = self.con.cursor()
            try:
                self.overlay.drop(cur, merged[0])
            finally:
                cur.close()
            if self._merged == merged:
                self._merged = None
            snap = self._snap
            if snap is not None and snap.overlaid and not self.overlay.versions:
                self._snap = Snapshot(self, snap.version, overlaid=False)

    def _clear_overlay(self) -> None:
        """Empty the overlay (every version merged: the caller holds ``_lock`` and
        ``_merge_lock``)."""
        with self._ov_lock:
            if not self.overlay.versions:
                return
            cur = self.con.cursor()
            try:
                self.overlay.clear(cur)
            finally:
                cur.close()
            self._merged = None

    # ------------------------------------------------------------------ updates
    def _update(self, scan: TableScan) -> None:
        t0 = time.perf_counter()
        files = list(scan.files) if scan.direct else [f"delta-rs:{scan.version}"]
        if scan.version is None:
            files = []
        live = set(files)
        removed = [self._fids[u] for u in list(self._fids) if u not in live]
        added = [u for u in files if u not in self._fids]
        self._scan = scan
        if not scan.direct:
            self.view()  # the rows are read from the view: only delta-rs has them
        chunks = (self._chunks(added) if scan.direct else [added]) or [[]]
        self._stats = {}
        # (on every core: a first build's chunks, a version's removed rows; requests
        # answered meanwhile too)
        self.con.execute(f"SET threads = {self._duck_threads}")
        try:
            for k, chunk in enumerate(chunks):
                self._commit(scan, chunk, removed if k == 0 else [], k == len(chunks) - 1)
        finally:
            self.con.execute("SET threads = 1")
        self.direct = scan.direct
        self.last_update = {
            "seconds": time.perf_counter() - t0,
            "added_files": len(added),
            "removed_files": len(removed),
            "chunks": len(chunks) if added else 0,
            "version": scan.version,
            # SOP hashes looked up in every row (none for a commit of new instances),
            # data files whose rows were read
            "sop_lookups": self._stats.get("sop_lookups", 0),
            "files_read": self._stats.get("files_read", 0),
            "commit_ms": self._stats.get("commit_ms", 0),
            # added files whose first rows their writer saved (no ``meta`` read)
            "firsts_saved": self._stats.get("firsts_saved", 0),
        }

    def _checkpoint_later(self) -> None:
        """Checkpoint the index (and sort the study search's new studies in, when due:
        :func:`~pixels.web.index_tables.sort_study_search`) in a thread of its own once
        the update in progress has let go of the lock (the next update waits for it;
        requests do not)."""
        checkpoint, self._checkpoint_due = self._checkpoint_due, False
        sort, self._sort_due = self._sort_due, False

        def run() -> None:
            with self._lock, self._merge_lock:
                self._maintain(sort, checkpoint)

        self._checkpointer = threading.Thread(
            target=run, name="pixels-index-checkpoint", daemon=True
        )
        self._checkpointer.start()

    def _maintain(self, sort: bool, checkpoint: bool) -> None:
        """Sort the study search's new studies in and checkpoint (no other index write
        runs: the caller holds ``_merge_lock``), on every core (the next update may wait)."""
        self.con.execute(f"SET threads = {self._duck_threads}")
        try:
            self._maintain_now(sort, checkpoint)
        finally:
            self.con.execute("SET threads = 1")

    def _maintain_now(self, sort: bool, checkpoint: bool) -> None:
        if sort:
            cur = self.con.cursor()
            try:
                cur.execute("BEGIN TRANSACTION")
                try:
                    index_tables.sort_study_search(cur)
                    cur.execute("COMMIT")
                except duckdb.Error:
                    cur.execute("ROLLBACK")  # the next update tries again
            finally:
                cur.close()
        if not checkpoint:
            return
        try:
            self.con.execute("CHECKPOINT ix")
        except duckdb.Error:
            self._rows_since_checkpoint = _CHECKPOINT_ROWS  # the next update tries

    def _chunks(self, added: list[str]) -> list[list[str]]:
        """``added`` in runs of about :data:`_CHUNK_ROWS` rows (by their footers, local files)."""
        if len(added) <= 1 or not all(is_local(u) for u in added):
            return [added] if added else []
        chunks: list[list[str]] = [[]]
        rows = 0
        for uri in added:
            try:
                n = pq.read_metadata(local_path(uri)).num_rows
            except (OSError, ValueError):
                n = 0  # read (and its error told) by the update itself
            if chunks[-1] and rows + n > _CHUNK_ROWS:
                chunks.append([])
                rows = 0
            chunks[-1].append(uri)
            rows += n
        return chunks

    def _commit(
        self,
        scan: TableScan,
        added: list[str],
        removed: list[int],
        last: bool,
        *,
        fids: list[int] | None = None,
        into: dict[str, Any] | None = None,
    ) -> int:
        """One transaction: ``removed`` file ids out, ``added`` files in; the version when
        ``last``. ``fids``: the ids the overlay gave the added files (a merge); ``into``:
        where the counts go (else the update's)."""
        given = fids is not None
        new_fids = (
            fids if fids is not None else list(range(self._next_fid, self._next_fid + len(added)))
        )
        next_fid = new_fids[-1] + 1 if given and new_fids else self._next_fid + len(added)
        for fid, u in zip(new_fids, added, strict=True):
            self._uris[fid] = u
        cur = self.con.cursor()
        stats: dict[str, Any] = {}
        try:
            cur.execute("BEGIN TRANSACTION")
            try:
                n = 0
                if added or removed:
                    n = index_tables.apply(
                        cur,
                        scan,
                        added,
                        new_fids,
                        removed,
                        uris=self._uris,
                        sidecars=self._sidecars,
                        reader=self.reader,
                        keys=self.keys,
                        stats=stats,
                        root=self._dir,
                        known=(self.series_keys, self.study_keys),
                    )
                if removed:
                    gone = ", ".join(str(int(f)) for f in removed)  # ids made here
                    cur.execute(f"DELETE FROM ix.files WHERE fid IN ({gone})")
                if added:
                    cur.execute(
                        "INSERT INTO ix.files SELECT unnest(?::INTEGER[]), unnest(?::VARCHAR[])",
                        [new_fids, [self._saved_name(u) for u in added]],
                    )
                if last and (added or removed):
                    self._sort_due = index_tables.study_search_due(cur)
                version = scan.version if last else self._version
                cur.execute("UPDATE ix.state SET version = ?, next_fid = ?", [version, next_fid])
                t0 = time.perf_counter()
                cur.execute("COMMIT")
                stats["commit_ms"] = round((time.perf_counter() - t0) * 1e3, 1)
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        finally:
            cur.close()
        if not given:
            for fid, u in zip(new_fids, added, strict=True):
                self._fids[u] = fid
            self._next_fid += len(added)
        for fid in removed:
            self._fids.pop(self._uris[fid], None)
        dropped = [self._uris[f] for f in removed]
        self._sidecars.drop(dropped)
        if self._dir is not None:  # the writer's first rows of files gone (a local table)
            drop_firsts(self._dir, [local_path(u) for u in dropped if is_local(u)])
        if last:
            self._version = scan.version
        totals = self._stats if into is None else into
        for k, v in stats.items():
            totals[k] = totals.get(k, 0) + v
        if self.keys.removed(stats.get("removed_rows", 0)):
            self.keys.load(self.con, background=False)  # stale hashes dropped
        self._rows_since_checkpoint += n
        if self._rows_since_checkpoint >= _CHECKPOINT_ROWS:
            # rows are compressed when checkpointed (about 4x less memory, or written out):
            # between the chunks of a build now; after a version's update, once its
            # snapshot answers (:meth:`_checkpoint_later`: 0.3-1.5 s at 10M rows)
            if last:
                self._checkpoint_due = True
            else:
                self.con.execute("CHECKPOINT ix")
            self._rows_since_checkpoint = 0
        return n

    def view(self) -> None:
        """Make ``memory.object_catalog`` the current version's rows (for reads the files
        cannot answer: a column a file lacks, a table read through delta-rs).

        Made on first use per version: binding it reads every data file's footer.
        """
        with self._view_lock:
            scan = self._scan
            if scan is None or self._view_version == (scan.version, len(scan.files)):
                return
            view = self.con.cursor()
            try:
                view.execute("USE memory")
                scan.register(view, VIEW_NAME)
            finally:
                view.close()
            self._view_version = (scan.version, len(scan.files))


#: Every open index: their merges end before the interpreter does (a thread killed inside
#: DuckDB at exit aborts the process).
_OPEN: weakref.WeakSet[TableIndex] = weakref.WeakSet()


@atexit.register
def _stop_merges() -> None:
    for index in list(_OPEN):
        index._closing = True
        for thread in [*index._threads, index._checkpointer]:
            if thread is not None:
                thread.join(timeout=60)


_INDEXES: weakref.WeakKeyDictionary[Any, TableIndex] = weakref.WeakKeyDictionary()
_INDEXES_LOCK = threading.Lock()


def index_of(state: Any) -> TableIndex:
    """The :class:`TableIndex` of a :class:`~pixels.web.state.WebState` (made on first use)."""
    idx = _INDEXES.get(state)
    if idx is None:
        with _INDEXES_LOCK:
            idx = _INDEXES.get(state)
            if idx is None:
                idx = _INDEXES[state] = TableIndex(state.table)
    return idx
