"""The catalog's Delta Lake table (:class:`CatalogTable`): create, append, replace files."""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from deltalake.schema import Schema as DeltaSchema
from deltalake.transaction import AddAction, RemoveAction

from pixels.durable import Durable
from pixels.errors import TableError
from pixels.locks import lock_file, unlock_file
from pixels.scan import LOOKUP_SCHEMA, TableScan, protocol_features
from pixels.schema import SCHEMA
from pixels.storage import delta_options, is_local, local_path
from pixels.table import cleanup
from pixels.table.cleanup import _LOCK_DIR, ORPHAN_MIN_AGE_HOURS
from pixels.table.durability import sync_commits
from pixels.table.evolve import DESCRIPTION, conform, upgrade_rows, upgrade_table
from pixels.table.firsts import write_firsts
from pixels.table.footer import leaf_index
from pixels.table.identity import split_by_identity, sql_string

_RETRIES = 8
#: Commit only on top of the version the identity check read: delta-rs would
#: otherwise rebase an append over a concurrent one (appends never conflict in
#: Delta), and two writers could both add a file neither saw. A lost race raises
#: CommitFailedError and :meth:`CatalogTable.append` checks again. This, not the
#: local lock file, is what makes writers on object stores safe.
_ON_CHECKED_VERSION = CommitProperties(max_commit_retries=0)
#: Rows per Parquet row group: small enough for look-ups to skip by path statistics.
_ROW_GROUP = 2048


_is_local = is_local
_local_path = local_path


class CatalogTable:
    """A Delta Lake table holding the catalog.

    Parameters
    ----------
    uri : str
        Folder (or object-store URL) of the Delta table; created on first write.
    storage_options : dict, optional
        Options of the object store (credentials, endpoint), in fsspec's spelling
        (``key``, ``secret``, ``endpoint_url``) or delta-rs' (``AWS_ACCESS_KEY_ID``,
        ...): see :mod:`pixels.storage`. Default: the environment's.

    Examples
    --------
    >>> t = CatalogTable("./catalog")                 # doctest: +SKIP
    >>> t.append(batch)                                # doctest: +SKIP
    """

    def __init__(self, uri: str | os.PathLike[str], storage_options: dict[str, str] | None = None):
        uri = os.fspath(uri)
        self.uri = os.path.abspath(uri) if _is_local(uri) and "://" not in uri else uri
        # one spelling (delta-rs'); readers translate it back for fsspec (pixels.storage)
        self.storage_options = delta_options(self.uri, storage_options)
        self._dt: DeltaTable | None = None
        #: ``(min path, max path)`` of data files (None: unknown), to skip files in look-ups
        self._ranges: dict[str, tuple[str, str] | None] = {}
        self._con: duckdb.DuckDBPyConnection | None = None
        #: the folders of a local table whose entries are synced (:meth:`_sync_since`)
        self._durable = Durable(_local_path(self.uri)) if _is_local(self.uri) else None

    # ------------------------------------------------------------------ state
    def exists(self) -> bool:
        """True when a Delta table is at :attr:`uri`.

        Raises
        ------
        TableError
            When :attr:`uri` cannot be a table (a file, an unreadable folder).
        """
        if _is_local(self.uri) and os.path.isfile(_local_path(self.uri)):
            raise TableError("a file is in the way: a table is a folder", self.uri)
        try:
            return DeltaTable.is_deltatable(self.uri, storage_options=self.storage_options)
        except OSError as e:
            raise TableError(f"cannot read the table: {str(e).splitlines()[0]}", self.uri) from e

    def delta(self) -> DeltaTable:
        """The :class:`deltalake.DeltaTable`, refreshed to the latest version.

        Raises
        ------
        TableError
            When there is no table at :attr:`uri`.
        """
        try:
            if self._dt is None:
                self._dt = DeltaTable(self.uri, storage_options=self.storage_options)
            else:
                self._dt.update_incremental()
        except TableNotFoundError as e:
            raise TableError("no catalog table here (run `pixels catalog` first)", self.uri) from e
        return self._dt

    def create(self) -> None:
        """Create the table with the catalog schema unless it exists (safe to race).

        An existing table written by an older Pixels gets the columns added since
        (null in its old rows), so appends always carry the current schema.
        """
        if self.exists():
            self.check_writable()
            self._evolve()
            return
        if _is_local(self.uri):
            try:
                os.makedirs(_local_path(self.uri), exist_ok=True)
            except OSError as e:
                raise TableError(
                    f"cannot create the table folder: {e.strerror or e}", self.uri
                ) from e
        try:
            DeltaTable.create(
                self.uri,
                schema=SCHEMA,
                mode="ignore",
                name="object_catalog",
                description=DESCRIPTION,
                storage_options=self.storage_options,
            )
        except CommitFailedError:
            if not self.exists():  # somebody else created it at the same moment: fine
                raise
        if self._durable is not None:  # version 0 on disk before any commit after it
            sync_commits(_local_path(self.uri), self._durable, -1, 0)

    def _evolve(self) -> None:
        """Add the columns an older Pixels did not write (a metadata-only commit).

        The old rows are not rewritten here: they read with ``rowId`` and ``is_anon``
        derived from ``path`` (:attr:`needs_upgrade`) until :meth:`upgrade` rewrites
        them once.
        """
        dt = self.delta()
        have = set(dt.schema().to_arrow().names)
        missing = [f for f in SCHEMA if f.name not in have]
        if missing:
            with self._writer_lock():
                dt.update_incremental()
                have = set(dt.schema().to_arrow().names)
                missing = [f for f in SCHEMA if f.name not in have]
                if missing:
                    fields = DeltaSchema.from_arrow(pa.schema(missing)).fields
                    dt.alter.add_columns(list(fields))

    @property
    def needs_upgrade(self) -> bool:
        """True when rows written by an older Pixels may be in the table (see :meth:`upgrade`).

        The table's description names the schema its rows are in
        (:data:`~pixels.table.evolve.DESCRIPTION`); a table made by another writer
        (Spark's Delta writer) has none and is taken as possibly old.
        """
        if not self.exists():
            return False
        return (self.delta().metadata().description or "") != DESCRIPTION

    def upgrade(self, progress: Callable[[str], None] | None = None) -> dict[str, int]:
        """Rewrite rows written by an older Pixels into the current schema, once.

        See :func:`pixels.table.evolve.upgrade_table` (resumable, one commit per file).
        """
        return upgrade_table(self, progress)

    def check_writable(self) -> None:
        """Refuse a table whose rows are not its files' rows (see :mod:`pixels.scan`).

        Pixels writes plain Parquet files and rewrites whole files (replaced rows,
        thumbnails): in a table with deletion vectors or column mapping (written by
        Databricks or Spark) that could bring deleted rows back or write columns
        nobody reads. Such tables are read, never written, by this engine.

        Raises
        ------
        TableError
            Naming the protocol features.
        """
        features = protocol_features(self.delta())
        if features:
            raise TableError(
                "Pixels reads but does not write tables with "
                + "; ".join(features)
                + " (write them with Spark's Delta writer: Catalog(spark, ...) on Databricks)",
                self.uri,
            )

    def file_uris(self) -> list[str]:
        """Parquet files of the current version (empty list when there is no table).

        The rows of a version are not always the rows of its files (deletion
        vectors, column mapping): read them through :meth:`scan`.
        """
        if not self.exists():
            return []
        return list(self.delta().file_uris())

    def scan(self) -> TableScan:
        """The current version, to read (:class:`pixels.scan.TableScan`; no rows without a table)."""
        if not self.exists():
            return TableScan.empty(self.uri)
        dt = self.delta()
        legacy = (dt.metadata().description or "") != DESCRIPTION
        # every Pixels writer conforms its files to SCHEMA: a table in the current
        # schema with no column of anyone else's holds files of one set of columns
        uniform = not legacy and set(dt.schema().to_arrow().names) == set(SCHEMA.names)
        return TableScan.of(dt, self.uri, self.storage_options, legacy=legacy, uniform=uniform)

    def version(self) -> int:
        """Current table version."""
        return int(self.delta().version())

    def count(self) -> int:
        """Number of rows in the current version."""
        if not self.exists():
            return 0
        scan = self.scan()
        if not scan.direct:  # the log's record counts include rows deleted by vectors
            return int(scan.through_delta("SELECT count(*) AS n FROM t")["n"][0].as_py())
        return int(self.delta().count())

    # ------------------------------------------------------------ identities
    def lookup(
        self, paths: pa.Array | list[str], uris: TableScan | Sequence[str] | None = None
    ) -> pa.Table:
        """Return ``path, length, modificationTime, has_error`` of rows whose path is in ``paths``.

        ``uris`` pins the look-up to a version read earlier (a :class:`TableScan`), or
        to a snapshot of the table's files (default: the current version).
        """
        if isinstance(uris, TableScan):
            scan = uris
        elif uris is None:
            scan = self.scan()
        elif not uris:
            return LOOKUP_SCHEMA.empty_table()
        else:
            scan = self.scan().restricted(list(uris))
        return scan.lookup(self._duck(), paths)

    def _duck(self) -> duckdb.DuckDBPyConnection:
        """A small DuckDB connection for identity look-ups (bounded memory, reused)."""
        if self._con is None:
            self._con = duckdb.connect(config={"memory_limit": "64MB", "threads": 1})
            self._con.execute("SET TimeZone='UTC'")
            # look-ups repeat over the same data files: read each footer once
            self._con.execute("SET parquet_metadata_cache=true")
        return self._con

    # ----------------------------------------------------------------- writes
    @contextlib.contextmanager
    def _writer_lock(self) -> Iterator[None]:
        """Hold the local table's writer lock (``_pixels/writer.lock``) for the block, and
        make the commits made meanwhile durable before it is released
        (:mod:`pixels.table.durability`: a write that returned survives a power loss).

        The lock is an open file description lock (:func:`pixels.locks.lock_file`): on NFS
        a ``flock`` is a POSIX record lock of the process, dropped when any descriptor of
        the file in the process closes and never conflicting within it. Object-store
        tables have no lock (a commit is made only on the version checked) and nothing
        to sync (a PUT is durable once it succeeds).
        """
        if not _is_local(self.uri):
            yield
            return
        lock_dir = os.path.join(_local_path(self.uri), _LOCK_DIR)
        os.makedirs(lock_dir, exist_ok=True)
        with open(os.path.join(lock_dir, "writer.lock"), "a+") as fh:
            lock_file(fh.fileno())
            try:
                start = self._committed_version()
                try:
                    yield
                except BaseException:  # a commit made before the error counts too
                    with contextlib.suppress(Exception):
                        self._sync_since(start)
                    raise
                self._sync_since(start)
            finally:
                unlock_file(fh.fileno())

    def _committed_version(self) -> int:
        """The latest version of the table (-1 when there is none yet)."""
        try:
            return int(self.delta().version())
        except TableError:
            return -1

    def _sync_since(self, start: int) -> None:
        """``fsync`` the commits after version ``start`` of a local table, their data
        files and the folders naming them (:func:`pixels.table.durability.sync_commits`)."""
        if self._durable is not None:
            last = self._committed_version()
            sync_commits(_local_path(self.uri), self._durable, start, last)

    def append(
        self,
        data: pa.Table | pa.RecordBatch,
        replace: Iterable[str] = (),
        *,
        checked: Collection[str] | None = None,
    ) -> int:
        """Commit ``data`` so that each file appears once, at its latest identity.

        The rows go through :func:`split_by_identity` against every row of the
        table they were not already filtered against: one row per path within
        ``data`` (the newest ``modificationTime`` wins), rows whose identity is
        already in the table are dropped, and rows whose ``path`` is present with
        another ``length``/``modificationTime`` replace the old row in the same
        commit. Concurrent writers are retried with backoff.

        Parameters
        ----------
        data : pyarrow.Table or RecordBatch
            Rows in (or castable to) the catalog schema.
        replace : iterable of str
            Paths known to be in the table already (changed files, retried
            errors): their old rows are replaced by the new ones.
        checked : collection of str, optional
            Data files (URIs as :meth:`file_uris` gives them) the rows were already
            filtered against, such as the snapshot a listing was compared with
            (:func:`iter_new`): only the table's other files are looked up.
            Default: all of them.

        Returns
        -------
        int
            Number of rows written.

        Raises
        ------
        TableError
            A row has no ``path`` (no file behind it): nothing is written, and the
            error names those rows (their ``error``, else their UIDs).
        """
        try:
            table = conform(data)
        except TableError as e:  # rows without a path: refused, named, with the table's URI
            raise TableError(e.reason, self.uri) from e
        if table.num_rows == 0:
            return 0
        self.create()
        done = frozenset(checked) if checked is not None else None
        for attempt in range(_RETRIES):
            try:
                with self._writer_lock():
                    return self._append_locked(table, set(replace), done)
            except CommitFailedError as e:
                if attempt == _RETRIES - 1:
                    raise TableError(
                        f"commit failed after {_RETRIES} attempts: {e}", self.uri
                    ) from e
                time.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")  # pragma: no cover

    def _append_locked(
        self, table: pa.Table, known: set[str], checked: frozenset[str] | None
    ) -> int:
        dt = self.delta()
        paths = table["path"]
        lo, hi = pc.min(paths).as_py(), pc.max(paths).as_py()
        if len(self._ranges) > 2 * len(dt.file_uris()) + 64:  # files compacted away
            live = set(dt.file_uris())
            self._ranges = {u: r for u, r in self._ranges.items() if u in live}
        candidates = [
            u
            for u in dt.file_uris()
            if (checked is None or u not in checked) and self._may_hold(u, lo, hi)
        ]
        existing = self.lookup(paths, uris=candidates) if candidates else None
        table, replace = split_by_identity(table, existing, keep=known)
        if known:
            # changed files: their old rows may be in files the listing already compared with
            replace = sorted(set(replace) | (known & set(table["path"].to_pylist())))
        if table.num_rows == 0:
            return 0
        if replace:
            before = set(dt.file_uris())
            predicate = "path IN (" + ", ".join(sql_string(p) for p in replace) + ")"
            rows = table.filter(pc.is_in(table["path"], pa.array(replace)))
            write_deltalake(
                dt,
                rows,
                mode="overwrite",
                predicate=predicate,
                storage_options=self.storage_options,
                commit_properties=_ON_CHECKED_VERSION,
            )
            dt.update_incremental()
            table = table.filter(pc.invert(pc.is_in(table["path"], pa.array(replace))))
            # the files it wrote hold these rows and what survived of rewritten files
            for u in set(dt.file_uris()) - before:
                self._ranges.pop(u, None)
        if table.num_rows:
            if _is_local(self.uri):
                add = self._write_file(table)
                dt.create_write_transaction(
                    [add], mode="append", schema=SCHEMA, commit_properties=_ON_CHECKED_VERSION
                )
                self._ranges[os.path.join(_local_path(self.uri), add.path)] = (
                    pc.min(table["path"]).as_py(),
                    pc.max(table["path"]).as_py(),
                )
            else:
                write_deltalake(
                    dt,
                    table,
                    mode="append",
                    storage_options=self.storage_options,
                    commit_properties=_ON_CHECKED_VERSION,
                )
        dt.update_incremental()
        return table.num_rows + len(replace)

    def remove_paths(self, paths: Collection[str] = (), prefixes: Collection[str] = ()) -> int:
        """Delete the rows of files that are gone, in one commit; returns the rows deleted.

        A row goes when its ``path`` or ``original_path`` (the archive of a member) is
        in ``paths`` or starts with one of ``prefixes`` (a removed folder, ``/`` at the
        end). Used by ``pixels catalog --watch --deletions remove``.
        """
        if not (paths or prefixes) or not self.exists():
            return 0
        terms = []
        if paths:
            listed = ", ".join(sql_string(p) for p in sorted(paths))
            terms += [f"path IN ({listed})", f"original_path IN ({listed})"]
        for prefix in sorted(prefixes):
            terms += [
                f"starts_with(path, {sql_string(prefix)})",
                f"starts_with(original_path, {sql_string(prefix)})",
            ]
        with self._writer_lock():
            dt = self.delta()
            metrics = dt.delete(" OR ".join(terms))
            dt.update_incremental()
        self._ranges = {u: r for u, r in self._ranges.items() if u in set(dt.file_uris())}
        return int(metrics.get("num_deleted_rows", 0))

    def _may_hold(self, uri: str, lo: str, hi: str) -> bool:
        """Whether data file ``uri`` may hold a path in ``[lo, hi]`` (its Parquet statistics)."""
        if uri not in self._ranges:
            self._ranges[uri] = _path_range(uri)
        r = self._ranges[uri]
        return r is None or (r[0] <= hi and r[1] >= lo)

    def _write_file(self, table: pa.Table) -> AddAction:
        """Write ``table`` as a new Parquet data file of the table; return its ``add`` action.

        The file is complete (temp file + rename) before any commit references it,
        so a crash leaves at most an unreferenced file, never a half one.
        """
        name = f"part-00000-{uuid.uuid4()}-c000.zstd.parquet"
        path = os.path.join(_local_path(self.uri), name)
        pq.write_table(
            table,
            path + ".tmp",
            compression="zstd",
            row_group_size=_ROW_GROUP,
            write_statistics=True,
            use_compliant_nested_type=True,
        )
        os.replace(path + ".tmp", path)
        # the first row per series, for readers indexing by series (before the commit:
        # a crash in between leaves the file unreferenced, or a reader without it)
        write_firsts(_local_path(self.uri), name, table)
        st = os.stat(path)
        stats = _stats(table)
        return AddAction(
            path=name,
            size=st.st_size,
            partition_values={},
            modification_time=int(st.st_mtime * 1000),
            data_change=True,
            stats=json.dumps(stats),
        )

    def replace_file(self, old_uri: str, data: pa.Table) -> None:
        """Replace one data file by ``data`` (its rows, rewritten) in one commit.

        Used by passes that rewrite existing rows (thumbnails, :meth:`upgrade`).
        Raises :class:`CommitFailedError` when another writer removed the file
        meanwhile, or (object stores) committed first: the pass looks again or
        skips it, and a later run does it.
        Rows an older Pixels wrote are upgraded on the way (:func:`upgrade_rows`).
        """
        data = upgrade_rows(data)
        if _is_local(self.uri):
            add = self._write_file(data)
            root = _local_path(self.uri)
            old_path = _local_path(old_uri)
            remove = RemoveAction(
                path=os.path.relpath(old_path, root),
                data_change=True,
                deletion_timestamp=int(time.time() * 1000),
                size=os.stat(old_path).st_size,
            )
            with self._writer_lock():
                dt = self.delta()
                if old_uri not in set(dt.file_uris()):
                    os.remove(os.path.join(root, add.path))
                    raise CommitFailedError(f"{old_uri} was replaced meanwhile")
                dt.create_write_transaction([remove, add], mode="append", schema=SCHEMA)
                dt.update_incremental()
            return
        dt = self.delta()
        if old_uri not in set(dt.file_uris()):
            raise CommitFailedError(f"{old_uri} was replaced meanwhile")
        fs, root = self._fs()
        old_name = _relative(old_uri, self.uri)
        remove = RemoveAction(
            path=old_name,
            data_change=True,
            deletion_timestamp=int(time.time() * 1000),
            size=int(fs.info(f"{root}/{old_name}")["size"]),
        )
        add = self._write_remote_file(fs, root, data)
        try:
            # only on top of the version checked above: a concurrent commit (which may
            # have removed the file) fails this one, and the caller looks again
            dt.create_write_transaction(
                [remove, add], mode="append", schema=SCHEMA, commit_properties=_ON_CHECKED_VERSION
            )
        except CommitFailedError:
            with contextlib.suppress(FileNotFoundError):
                fs.rm_file(f"{root}/{add.path}")
            raise
        dt.update_incremental()

    def _fs(self) -> tuple[Any, str]:
        """The table's fsspec file system (an instance of its own) and its root folder."""
        from pixels.sources.remote import url_to_fs
        from pixels.storage import fsspec_options

        if _is_local(self.uri):
            fs, root = url_to_fs(_local_path(self.uri))
        else:
            # an instance of its own: fsspec shares instances, and a listing cached here
            # would hide files written later from the table's readers (DuckDB globs)
            options = {
                **fsspec_options(self.uri, self.storage_options),
                "skip_instance_cache": True,
            }
            fs, root = url_to_fs(self.uri, options)
        return fs, str(root).rstrip("/")

    def _write_remote_file(self, fs: Any, root: str, table: pa.Table) -> AddAction:
        """:meth:`_write_file` for object stores: one PUT (never visible half-written)."""
        name = f"part-00000-{uuid.uuid4()}-c000.zstd.parquet"
        with fs.open(f"{root}/{name}", "wb") as fh:
            pq.write_table(
                table,
                fh,
                compression="zstd",
                row_group_size=_ROW_GROUP,
                write_statistics=True,
                use_compliant_nested_type=True,
            )
        size = int(fs.info(f"{root}/{name}")["size"])
        return AddAction(
            path=name,
            size=size,
            partition_values={},
            modification_time=int(time.time() * 1000),
            data_change=True,
            stats=json.dumps(_stats(table)),
        )

    # ----------------------------------------------------------- maintenance
    def clean_orphans(self, min_age_hours: float = ORPHAN_MIN_AGE_HOURS) -> list[str]:
        """Delete data files that no commit references, left by writers that died.

        See :func:`pixels.table.cleanup.clean_orphans`; returns the names deleted.
        """
        return cleanup.clean_orphans(self, min_age_hours)

    def optimize(
        self,
        vacuum: bool = True,
        retention_hours: int | None = None,
        compact: bool = True,
    ) -> dict[str, Any]:
        """Compact small files into larger ones, then vacuum files replaced long enough ago.

        See :func:`pixels.table.cleanup.optimize` for the parameters and the metrics returned.
        """
        return cleanup.optimize(self, vacuum, retention_hours, compact)


def _stats(table: pa.Table) -> dict[str, Any]:
    """The ``stats`` of a data file's ``add`` action: row and null counts."""
    return {
        "numRecords": table.num_rows,
        "nullCount": {
            f.name: table.column(f.name).null_count
            for f in table.schema
            if not pa.types.is_nested(f.type)
        },
    }


def _relative(file_uri: str, table_uri: str) -> str:
    """A data file's path in the table's log (relative to the table, unquoted)."""
    from urllib.parse import unquote

    head = table_uri.rstrip("/") + "/"
    if not file_uri.startswith(head):
        raise TableError(f"{file_uri} is not a file of the table", table_uri)
    return unquote(file_uri[len(head) :])


def _path_range(uri: str) -> tuple[str, str] | None:
    """``(min, max)`` of a local data file's ``path`` column from its footer (None: unknown)."""
    if not _is_local(uri):
        return None
    try:
        meta = pq.read_metadata(_local_path(uri))
        col = leaf_index(meta, "path")
        if col is None:
            return None
        lo: str | None = None
        hi: str | None = None
        for g in range(meta.num_row_groups):
            st = meta.row_group(g).column(col).statistics
            if st is None or not st.has_min_max:
                return None
            lo = st.min if lo is None or st.min < lo else lo
            hi = st.max if hi is None or st.max > hi else hi
    except (OSError, ValueError, KeyError):
        return None
    if not isinstance(lo, str) or not isinstance(hi, str):
        return None
    return lo, hi


__all__ = ["CatalogTable"]
