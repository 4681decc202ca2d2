"""The catalog's Delta Lake table: create, append, incremental state, compact.

The table is written with ``deltalake`` (delta-rs) and read through
:mod:`pixels.scan` (DuckDB over the version's Parquet files, or delta-rs where
the Delta protocol says the files alone do not hold the rows).

Writers coordinate in two ways:

* every commit is atomic (Delta's log), so a crash loses only uncommitted work;
* before a batch is committed it goes through the one identity rule
  (:func:`split_by_identity`): one row per path within the batch, rows whose
  identity (``path``, ``length``, ``modificationTime``) is already in the table
  are dropped, and rows whose path is there with another identity *replace* the
  old row. The look-up covers every data file the rows were not already compared
  with (a listing's snapshot), pruned by each file's ``path`` range. A commit is
  made only on top of the version that look-up read (never rebased over a
  concurrent commit: the writer looks up again), which makes check-and-commit
  atomic on object stores too; on local tables an advisory lock
  (``_pixels/writer.lock``) also keeps concurrent ``pixels catalog`` processes
  from racing.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import time
import uuid
from collections.abc import Collection, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from deltalake.schema import Schema as DeltaSchema
from deltalake.transaction import AddAction, RemoveAction

from pixels.errors import TableError
from pixels.scan import LOOKUP_SCHEMA, TableScan, protocol_features
from pixels.schema import IDENTITY, SCHEMA, SCHEMA_VERSION, VIEW_NAME, row_id, same_version
from pixels.storage import delta_options, is_local, local_path

#: Folder of the table for Pixels' own files (writer lock, leases, scratch space).
LOCK_DIR = "_pixels"
_LOCK_DIR = LOCK_DIR
#: Unreferenced data files younger than this are left alone (a live writer may commit them).
ORPHAN_MIN_AGE_HOURS = 24.0
#: A writer's lease not renewed for this long is a dead writer's.
LEASE_STALE_HOURS = 1.0
#: Delta's default ``delta.deletedFileRetentionDuration``: how long replaced files are kept.
DEFAULT_RETENTION_HOURS = 168
_NO_TIME = datetime.min.replace(tzinfo=UTC)
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


def sql_string(value: str) -> str:
    """Quote ``value`` as a SQL string literal (single quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


def conform(data: pa.Table | pa.RecordBatch) -> pa.Table:
    """Cast ``data`` to the catalog schema (column order, types, ``string_view`` -> ``string``).

    ``rowId`` is derived from ``path`` where missing (:func:`pixels.schema.row_id`).
    """
    table = pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data
    missing = [f for f in SCHEMA if f.name not in table.column_names]
    for f in missing:
        table = table.append_column(f, pa.nulls(table.num_rows, f.type))
    ids = table["rowId"]
    if ids.null_count:
        filled = [
            i if i is not None else (row_id(p) if p is not None else None)
            for i, p in zip(ids.to_pylist(), table["path"].to_pylist(), strict=True)
        ]
        table = table.set_column(
            table.schema.get_field_index("rowId"), "rowId", pa.array(filled, pa.int64())
        )
    return table.select(SCHEMA.names).cast(SCHEMA)


#: The table description, naming the schema version its rows are in (delta-rs
#: accepts no custom table property): an older one means rows to upgrade.
DESCRIPTION = f"Pixels catalog: one row per file (pixels schema {SCHEMA_VERSION})"


def upgrade_rows(data: pa.Table) -> pa.Table:
    """Rows written by an older Pixels, in the current schema (:data:`SCHEMA_VERSION` 2).

    ``rowId`` from ``path``; ``path_tags`` split again as dbx.pixels splits them;
    ``is_anon`` where the path says (local files; null for URLs: the storage options
    they were read with are not known).
    """
    from pixels.sources.local import path_tags_of

    paths = data["path"].to_pylist()
    rels = data["relative_path"].to_pylist() if "relative_path" in data.column_names else paths
    cols = {
        "rowId": pa.array([row_id(p) for p in paths], pa.int64()),
        "path_tags": pa.array(
            [list(path_tags_of(r)) if r is not None else None for r in rels],
            pa.list_(pa.string()),
        ),
        "is_anon": pa.array(
            [True if "://" not in p.split("::")[-1] else None for p in paths], pa.bool_()
        ),
    }
    for name, col in cols.items():
        if name in data.column_names:
            data = data.set_column(data.schema.get_field_index(name), name, col)
        else:
            data = data.append_column(name, col)
    return conform(data)


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

    def _evolve(self) -> None:
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
        if (dt.metadata().description or "") != DESCRIPTION:
            self._upgrade_rows()

    def _upgrade_rows(self) -> None:
        """Rewrite data files written before schema 2 (:func:`upgrade_rows`), then record it.

        Each file is replaced in its own commit, so a run killed half-way leaves a
        table whose every row is whole; the next run rewrites the remaining files
        (a file is old when it lacks the ``rowId`` column). Local tables only: on
        object stores old rows keep a null ``rowId`` (new rows always have one).
        """
        dt = self.delta()
        if _is_local(self.uri):
            for uri in list(dt.file_uris()):
                path = _local_path(uri)
                if "rowId" in pq.read_schema(path).names:
                    continue
                try:
                    self.replace_file(uri, upgrade_rows(pq.read_table(path)))
                except CommitFailedError:  # compacted or replaced meanwhile: look again
                    return self._upgrade_rows()
        with self._writer_lock():
            dt.update_incremental()
            if (dt.metadata().description or "") != DESCRIPTION:
                dt.alter.set_table_description(DESCRIPTION)

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
        return TableScan.of(self.delta(), self.uri, self.storage_options)

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
        if not _is_local(self.uri):
            yield
            return
        lock_dir = os.path.join(_local_path(self.uri), _LOCK_DIR)
        os.makedirs(lock_dir, exist_ok=True)
        with open(os.path.join(lock_dir, "writer.lock"), "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

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
        """
        table = conform(data)
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
        st = os.stat(path)
        stats = {
            "numRecords": table.num_rows,
            "nullCount": {
                f.name: table.column(f.name).null_count
                for f in table.schema
                if not pa.types.is_nested(f.type)
            },
        }
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

        Used by passes that add derived columns to existing rows (thumbnails).
        Raises :class:`CommitFailedError` when another writer removed the file
        meanwhile (the pass skips it; a later run does it).
        """
        if not _is_local(self.uri):
            raise TableError("rewriting data files is only supported for local tables", self.uri)
        add = self._write_file(conform(data))
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

    # ----------------------------------------------------------- maintenance
    def clean_orphans(self, min_age_hours: float = ORPHAN_MIN_AGE_HOURS) -> list[str]:
        """Delete data files that no commit references, left by writers that died.

        A writer killed between writing a data file and committing it (``kill -9``,
        a lost Spark driver) leaves a ``*.parquet`` or ``*.parquet.tmp`` file in the
        table folder that no version will ever read. Such a file is deleted when

        * no ``add`` or ``remove`` action in the Delta log names it (files a
          version still holds, or held, stay: :meth:`optimize` vacuums those);
        * it was last written more than ``min_age_hours`` ago (a live writer of
          another process or machine may still commit it);
        * no live Spark save holds a lease on its name (``_pixels/writers/``,
          renewed while the job runs).

        Local tables: it runs under the writer lock, so no local writer is between
        writing and committing a file. Tables on object stores (``s3://`` ...,
        through fsspec with the table's storage options) have no lock and no lease:
        the age rule alone keeps a live writer's files, so ``min_age_hours`` must
        exceed the longest a writer takes from writing a file to committing it.

        Returns
        -------
        list of str
            Names of the deleted files.
        """
        if not self.exists():
            return []
        from pixels.sources.remote import url_to_fs
        from pixels.storage import fsspec_options

        local = _is_local(self.uri)
        if local:
            fs, root = url_to_fs(_local_path(self.uri))
        else:
            # an instance of its own: fsspec shares instances, and a listing cached here
            # would hide files written later from the table's readers (DuckDB globs)
            options = {
                **fsspec_options(self.uri, self.storage_options),
                "skip_instance_cache": True,
            }
            fs, root = url_to_fs(self.uri, options)
        root = root.rstrip("/")
        cutoff = time.time() - min_age_hours * 3600
        with self._writer_lock():
            if local:
                _drop_stale_leases(self.uri)
            old = []
            for info in fs.ls(root, detail=True):
                name = str(info["name"]).rstrip("/").rsplit("/", 1)[-1]
                if name.startswith(("_", ".")) or not name.endswith((".parquet", ".parquet.tmp")):
                    continue
                mtime = _modified(info)
                if info.get("type") != "file" or mtime is None or mtime > cutoff:
                    continue  # an unknown age is never old enough
                old.append(name)
            if not old:
                return []
            logged = _logged_files(root, fs)
            live = live_leases(self.uri, LEASE_STALE_HOURS)
            gone = []
            for name in old:
                if name in logged or name.removesuffix(".tmp") in logged:
                    continue
                if any(name.startswith(f"part-{prefix}-") for prefix in live):
                    continue
                try:
                    fs.rm_file(f"{root}/{name}")
                except FileNotFoundError:
                    continue
                gone.append(name)
        return gone

    def optimize(
        self,
        vacuum: bool = True,
        retention_hours: int | None = None,
        compact: bool = True,
    ) -> dict[str, Any]:
        """Compact small files into larger ones, then vacuum files replaced long enough ago.

        ``compact=False`` only vacuums (after :func:`pixels.cluster.cluster_table`,
        whose files compaction would merge into large row groups).

        Files a compaction (or a replaced row) took out of the table stay on disk for
        the retention period: readers holding an older version (a running
        ``pixels catalog``'s snapshot, Spark executors, the DICOMweb server's index)
        keep reading them, and time travel to those versions works.

        Parameters
        ----------
        vacuum : bool
            Delete data files that left the table more than ``retention_hours`` ago.
        retention_hours : int, optional
            Default: the table's ``delta.deletedFileRetentionDuration``, else Delta's
            default of :data:`DEFAULT_RETENTION_HOURS` (7 days). A shorter value is
            taken as asked (``0`` deletes every replaced file now: readers of older
            versions then fail, and time travel to them is lost).
        compact : bool
            Compact small files (delta-rs' ``optimize.compact``).

        Returns
        -------
        dict
            The compaction metrics from delta-rs, ``filesVacuumed`` and ``orphansDeleted``
            (:meth:`clean_orphans`).
        """
        if retention_hours is not None and retention_hours < 0:
            raise ValueError(f"retention_hours must be >= 0, not {retention_hours}")
        dt = self.delta()
        with self._writer_lock():
            metrics = dict(dt.optimize.compact()) if compact else {}
            if vacuum:
                deleted = dt.vacuum(
                    retention_hours=retention_hours,
                    enforce_retention_duration=retention_hours is None,
                    dry_run=False,
                )
                metrics["filesVacuumed"] = len(deleted)
        if vacuum:
            metrics["orphansDeleted"] = len(self.clean_orphans())
        return metrics


def _modified(info: dict[str, Any]) -> float | None:
    """Last modification (Unix seconds) of an fsspec ``ls`` entry, None when unknown."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "mtime_ns"):
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, datetime):
            return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
        if isinstance(value, int | float):
            return value / 1e9 if key == "mtime_ns" else float(value)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
                return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    return None


def _logged_files(root: str, fs: Any = None) -> set[str]:
    """Every data file an ``add`` or ``remove`` action of the table's log names.

    ``root``: the table's folder on ``fs`` (an fsspec file system; default: local).
    """
    if fs is None:
        from pixels.sources.remote import url_to_fs

        fs, root = url_to_fs(root)
    out: set[str] = set()
    for path in fs.ls(f"{root}/_delta_log", detail=False):
        name = str(path).rstrip("/").rsplit("/", 1)[-1]
        if name.endswith(".json"):
            with fs.open(path, "rb") as fh:
                for line in fh.read().decode("utf-8").splitlines():
                    action = json.loads(line) if line.strip() else {}
                    for kind in ("add", "remove"):
                        if kind in action:
                            out.add(unquote(action[kind]["path"]))
        elif ".checkpoint" in name and name.endswith(".parquet"):
            with fs.open(path, "rb") as fh:
                checkpoint = pq.ParquetFile(fh)
                kinds = [k for k in ("add", "remove") if k in checkpoint.schema_arrow.names]
                data = checkpoint.read(columns=kinds)
            for kind in kinds:
                for item in data[kind].to_pylist():
                    if item and item.get("path"):
                        out.add(unquote(item["path"]))
    return out


def lease_path(uri: str, name: str) -> str | None:
    """Where a writer's lease on its data files named ``part-{name}-*`` lives (local tables)."""
    if not _is_local(uri):
        return None
    return os.path.join(_local_path(uri), _LOCK_DIR, "writers", name)


def _drop_stale_leases(uri: str) -> None:
    folder = os.path.join(_local_path(uri), _LOCK_DIR, "writers")
    live = live_leases(uri, LEASE_STALE_HOURS)
    with contextlib.suppress(FileNotFoundError):
        for e in os.scandir(folder):
            if e.name not in live:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(e.path)


def live_leases(uri: str, stale_hours: float = LEASE_STALE_HOURS) -> set[str]:
    """Names of the leases renewed within ``stale_hours`` (writers still running)."""
    if not _is_local(uri):
        return set()
    folder = os.path.join(_local_path(uri), _LOCK_DIR, "writers")
    cutoff = time.time() - stale_hours * 3600
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return set()
    out = set()
    for e in entries:
        try:
            if e.stat().st_mtime > cutoff:
                out.add(e.name)
        except OSError:
            continue
    return out


def _path_range(uri: str) -> tuple[str, str] | None:
    """``(min, max)`` of a local data file's ``path`` column from its footer (None: unknown)."""
    if not _is_local(uri):
        return None
    try:
        meta = pq.read_metadata(_local_path(uri))
        col = meta.schema.to_arrow_schema().get_field_index("path")
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


def one_per_path(data: pa.Table) -> pa.Table:
    """``data`` with one row per ``path``; rows keep their order.

    Part of the identity rule (:func:`split_by_identity`): the row with the newest
    ``modificationTime`` wins, then the one with the greater ``length``, then the
    later row. (The Spark engine applies the same order to DataFrames, which
    have no row order: :func:`pixels.engines.spark.catalog.one_row_per_path`.)
    """
    paths = data["path"]
    if len(pc.unique(paths)) == data.num_rows:
        return data
    lengths = data["length"].to_pylist() if "length" in data.column_names else [None] * len(paths)
    best: dict[str, tuple[int, tuple[Any, ...]]] = {}
    for i, (p, t, n) in enumerate(
        zip(paths.to_pylist(), data["modificationTime"].to_pylist(), lengths, strict=True)
    ):
        rank = (t is not None, t or _NO_TIME, n is not None, n or 0)
        held = best.get(p)
        if held is None or rank >= held[1]:
            best[p] = (i, rank)
    return data.take(pa.array(sorted(i for i, _ in best.values()), pa.int64()))


def split_by_identity(
    data: pa.Table,
    existing: pa.Table | None,
    *,
    keep: Collection[str] = (),
    keep_errors: bool = False,
) -> tuple[pa.Table, list[str]]:
    """Rows of ``data`` to write, and the paths among them whose old row they replace.

    The identity rule both writers follow: one row per path, always. Within
    ``data`` the row with the newest ``modificationTime`` (then the later row)
    stands for its path (:func:`one_per_path`). ``existing`` is a
    :meth:`CatalogTable.lookup` of ``data``'s paths (None: nothing held). A row
    whose identity (path, length, modificationTime, version_tag:
    :func:`~pixels.schema.same_version`) the table holds is dropped unless its
    path is in ``keep`` or, with ``keep_errors``, the held row has an error; a
    row whose path the table holds otherwise replaces it.
    """
    data = one_per_path(data)
    if existing is None or existing.num_rows == 0:
        return data, []
    held: dict[str, list[tuple[Any, Any, Any]]] = {}
    for p, n, t, v, e in zip(
        existing["path"].to_pylist(),
        existing["length"].to_pylist(),
        existing["modificationTime"].to_pylist(),
        existing["version_tag"].to_pylist(),
        existing["has_error"].to_pylist(),
        strict=True,
    ):
        kept_versions = held.setdefault(p, [])
        if not (keep_errors and e):
            kept_versions.append((n, t, v))
    rows: list[int] = []
    replace: list[str] = []
    tags = (
        data["version_tag"].to_pylist()
        if "version_tag" in data.column_names
        else [None] * data.num_rows
    )
    for i, (p, n, t, v) in enumerate(
        zip(
            data["path"].to_pylist(),
            data["length"].to_pylist(),
            data["modificationTime"].to_pylist(),
            tags,
            strict=True,
        )
    ):
        versions = held.get(p)
        if versions is None:
            rows.append(i)
            continue
        if p not in keep and any(same_version(h, (n, t, v)) for h in versions):
            continue
        rows.append(i)
        replace.append(p)
    return data.take(pa.array(rows, pa.int64())), replace


def iter_new(
    table: CatalogTable,
    refs: Iterable[Any],
    *,
    chunk: int = 5000,
    retry_errors: bool = False,
    snapshot: TableScan | Sequence[str] | None = None,
) -> Iterator[tuple[Any, bool]]:
    """Filter a stream of :class:`~pixels.sources.ref.FileRef` against the table.

    Yields ``(ref, changed)`` for refs not already in the table at the same
    identity; ``changed`` is True when the path is present with another identity
    (or, with ``retry_errors``, present with an error). Works chunk by chunk so
    memory does not grow with the number of files. ``snapshot`` pins the look-ups
    to a version (a :class:`TableScan`) or to those data files (default: the
    current version).
    """
    # the table as it was when the run started: rows this run adds come from this
    # same listing, so they never need looking up (an empty table: no look-ups)
    if snapshot is None:
        snapshot = table.scan()
    buf: list[Any] = []

    def flush(buf: list[Any]) -> Iterator[tuple[Any, bool]]:
        paths = pa.array([r.path for r in buf], pa.string())
        existing = table.lookup(paths, uris=snapshot)
        if existing.num_rows == 0:
            for r in buf:
                yield r, False
            return
        # the identity rule (same_version) on whole columns: no Python object per held row
        held = existing.take(pc.index_in(paths, value_set=existing["path"]))
        lengths = pa.array([r.length for r in buf], pa.int64())
        times = pa.array([r.modificationTime for r in buf], LOOKUP_SCHEMA.field(2).type)
        tags = pa.array([r.version_tag for r in buf], pa.string())
        held_us, listed_us = held["modificationTime"].cast(pa.int64()), times.cast(pa.int64())
        if (pc.min(held_us).as_py() or 0) < 0 or (pc.min(listed_us).as_py() or 0) < 0:
            yield from _flush_rows(buf, existing, retry_errors)  # (before 1970: floor in Python)
            return
        held_tag = held["version_tag"]
        same = pc.and_kleene(
            pc.and_kleene(
                pc.equal(held["length"], lengths),
                pc.equal(pc.divide(held_us, 1000), pc.divide(listed_us, 1000)),
            ),
            pc.or_kleene(
                pc.or_kleene(pc.is_null(held_tag), pc.is_null(tags)), pc.equal(held_tag, tags)
            ),
        )
        if retry_errors:
            same = pc.and_kleene(same, pc.invert(held["has_error"]))
        found = pc.is_valid(held["path"])
        todo = pc.invert(pc.fill_null(same, False))
        changed = found.to_pylist()
        for i in pc.indices_nonzero(todo).to_pylist():
            yield buf[i], changed[i]

    for ref in refs:
        buf.append(ref)
        if len(buf) >= chunk:
            yield from flush(buf)
            buf = []
    if buf:
        yield from flush(buf)


def _flush_rows(
    buf: list[Any], existing: pa.Table, retry_errors: bool
) -> Iterator[tuple[Any, bool]]:
    """:func:`iter_new`'s comparison row by row (:func:`same_version`), for times before 1970."""
    index: dict[str, tuple[tuple[Any, Any, Any], bool]] = {}
    for p, n, t, v, e in zip(
        existing["path"].to_pylist(),
        existing["length"].to_pylist(),
        existing["modificationTime"].to_pylist(),
        existing["version_tag"].to_pylist(),
        existing["has_error"].to_pylist(),
        strict=True,
    ):
        index[p] = ((n, t, v), e)
    for r in buf:
        hit = index.get(r.path)
        if hit is None:
            yield r, False
            continue
        same = same_version(hit[0], (r.length, r.modificationTime, r.version_tag))
        if same and not (retry_errors and hit[1]):
            continue
        yield r, True


__all__ = [
    "DEFAULT_RETENTION_HOURS",
    "IDENTITY",
    "ORPHAN_MIN_AGE_HOURS",
    "VIEW_NAME",
    "CatalogTable",
    "conform",
    "iter_new",
    "one_per_path",
    "split_by_identity",
    "sql_string",
]
