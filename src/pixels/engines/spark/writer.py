"""Writing Spark results into the catalog's Delta table without Delta's Spark jars.

Executors write Parquet data files straight into the table folder (one file
per task, rotated past a size), after dropping rows the table already holds at
the same identity; they return one small row per file. The driver then commits
every file in **one** Delta transaction with ``deltalake`` (``add`` actions with
row counts and null counts); rows of files that changed on disk replace their
old rows in that same commit. Nothing is visible before the commit; when the
job or the commit fails, the files of the attempt are deleted.

Rows without a ``path`` (no file behind them, such as the series a
:class:`pixels.ml.spark.SegmentationTransformer` could not segment) are not
stored: the tasks drop them, and the result counts and names them
(:attr:`SaveResult.no_path`, :attr:`SaveResult.no_path_errors`, and a warning).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pixels.errors import TableError
from pixels.schema import SCHEMA
from pixels.storage import fsspec_options, is_local, local_path
from pixels.table import (
    CatalogTable,
    conform,
    lease_path,
    one_per_path,
    split_by_identity,
    without_path,
)
from pixels.table.evolve import NAMED_ROWS

log = logging.getLogger(__name__)

#: One row per data file written by a task.
RESULT_SCHEMA = pa.schema(
    [
        pa.field("file", pa.string()),
        pa.field("size", pa.int64()),
        pa.field("rows", pa.int64()),
        pa.field("null_counts", pa.string()),
        pa.field("replaced", pa.list_(pa.string())),
        pa.field("skipped", pa.int64()),
        pa.field("lo", pa.string()),
        pa.field("hi", pa.string()),
        pa.field("ordered", pa.bool_()),
        pa.field("no_path", pa.int64()),
        pa.field("no_path_errors", pa.list_(pa.string())),
    ]
)

#: What :func:`save_dataframe` can do with the rows (see its ``mode``).
SAVE_MODES = ("append", "replace", "overwrite")

#: Rows per data file a task writes before starting another.
FILE_ROWS = 50_000
#: Rows per Parquet row group (as the local engine writes them).
_ROW_GROUP = 2048
#: A task also writes out what it holds past this many bytes (thumbnails make rows big).
FLUSH_BYTES = 32 << 20


@dataclass(frozen=True)
class WriteOptions:
    """What writer tasks need (pickled into the tasks)."""

    table_uri: str
    storage_options: dict[str, str] | None
    snapshot: tuple[str, ...]
    prefix: str
    reconcile: bool = True
    #: Rows whose file is in the table at the same identity replace it too (``mode="replace"``).
    keep_same: bool = False


def _open_out(opts: WriteOptions, name: str) -> Any:
    if is_local(opts.table_uri):
        return open(os.path.join(local_path(opts.table_uri), name), "wb")
    import fsspec

    return fsspec.open(
        opts.table_uri.rstrip("/") + "/" + name,
        "wb",
        **fsspec_options(opts.table_uri, opts.storage_options),
    ).open()


class _File:
    """One data file being written by a task."""

    def __init__(self, opts: WriteOptions):
        self.name = f"part-{opts.prefix}-{uuid.uuid4().hex}-c000.zstd.parquet"
        self.fh = _open_out(opts, self.name)
        self.writer = pq.ParquetWriter(
            self.fh,
            SCHEMA,
            compression="zstd",
            write_statistics=True,
            use_compliant_nested_type=True,
        )
        self.rows = 0
        self.nulls = {f.name: 0 for f in SCHEMA if not pa.types.is_nested(f.type)}
        self.lo: str | None = None
        self.hi: str | None = None
        #: Paths strictly increase through the file (so none repeats in it).
        self.ordered = True

    def write(self, table: pa.Table) -> None:
        self.writer.write_table(table, row_group_size=_ROW_GROUP)
        self.rows += table.num_rows
        for n in self.nulls:
            self.nulls[n] += table.column(n).null_count
        paths = table["path"].to_pylist()
        if paths:
            increasing = all(a < b for a, b in itertools.pairwise(paths))
            self.ordered = self.ordered and increasing and (self.hi is None or self.hi < paths[0])
            lo, hi = min(paths), max(paths)
            self.lo = lo if self.lo is None else min(self.lo, lo)
            self.hi = hi if self.hi is None else max(self.hi, hi)

    def close(self) -> dict[str, Any]:
        self.writer.close()
        size = self.fh.tell()
        self.fh.close()
        return {"file": self.name, "size": size, "rows": self.rows,
                "null_counts": json.dumps(self.nulls), "lo": self.lo, "hi": self.hi,
                "ordered": self.ordered}  # fmt: skip


def write_files(
    opts: WriteOptions,
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The ``mapInArrow`` function of writer tasks (input: catalog rows; output: :data:`RESULT_SCHEMA`)."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        table = CatalogTable(opts.table_uri, storage_options=opts.storage_options)
        current: _File | None = None
        results: list[dict[str, Any]] = []
        replaced: list[str] = []
        skipped = no_path = 0
        no_path_errors: list[str] = []
        pending: list[pa.RecordBatch] = []
        pending_rows = pending_bytes = 0

        def flush() -> None:
            # whole row groups, and one identity look-up per row group rather than per batch
            nonlocal current, skipped, no_path, pending, pending_rows, pending_bytes
            data, dropped, named = without_path(pa.Table.from_batches(pending))
            no_path += dropped
            no_path_errors.extend(named[: NAMED_ROWS - len(no_path_errors)])
            data = conform(data)
            pending, pending_rows, pending_bytes = [], 0, 0
            if opts.reconcile and opts.snapshot and data.num_rows:
                data, rep, dropped = _reconcile(
                    table, data, list(opts.snapshot), keep_same=opts.keep_same
                )
                replaced.extend(rep)
                skipped += dropped
            else:  # the identity rule holds for every write: one row per path
                kept = one_per_path(data)
                skipped += data.num_rows - kept.num_rows
                data = kept
            if data.num_rows == 0:
                return
            if current is None:
                current = _File(opts)
            current.write(data)
            if current.rows >= FILE_ROWS:
                results.append(current.close())
                current = None

        for batch in batches:
            if batch.num_rows == 0:
                continue
            pending.append(batch)
            pending_rows += batch.num_rows
            pending_bytes += batch.nbytes
            if pending_rows >= _ROW_GROUP or pending_bytes >= FLUSH_BYTES:
                flush()
        if pending:
            flush()
        if current is not None:
            results.append(current.close())
        if not results and (replaced or skipped or no_path):
            results.append(
                {"file": None, "size": 0, "rows": 0, "null_counts": None, "ordered": True}
            )
        for i, r in enumerate(results):
            r["replaced"] = replaced if i == 0 else []
            r["skipped"] = skipped if i == 0 else 0
            r["no_path"] = no_path if i == 0 else 0
            r["no_path_errors"] = no_path_errors if i == 0 else []
        if results:
            yield pa.RecordBatch.from_pylist(results, schema=RESULT_SCHEMA)

    return run


def _reconcile(
    table: CatalogTable, data: pa.Table, snapshot: list[str], *, keep_same: bool = False
) -> tuple[pa.Table, list[str], int]:
    """Drop rows held at the same identity (and fine); list paths whose old row is replaced.

    With ``keep_same`` no row is dropped: every row whose path is in the table replaces it.
    """
    existing = table.lookup(data["path"], uris=snapshot)
    keep = set(data["path"].to_pylist()) if keep_same else ()
    kept, replaced = split_by_identity(data, existing, keep=keep, keep_errors=True)
    return kept, replaced, data.num_rows - kept.num_rows


def _add_action(info: dict[str, Any], now: int) -> Any:
    """The Delta ``add`` action of a data file written by :class:`_File`."""
    from deltalake.transaction import AddAction

    stats = {"numRecords": info["rows"], "nullCount": json.loads(info["null_counts"])}
    return AddAction(
        path=info["file"],
        size=info["size"],
        partition_values={},
        modification_time=now,
        data_change=True,
        stats=json.dumps(stats),
    )


@dataclass
class SaveResult:
    """What :meth:`SparkCatalog.save` committed."""

    rows: int = 0
    files: int = 0
    replaced: int = 0
    skipped: int = 0
    version: int | None = None
    seconds: float = 0.0
    #: Transforms run in the writer tasks' own Python function (0: a separate stage).
    fused: int = 0
    #: Rows not stored because their ``path`` is null (no file behind them).
    no_path: int = 0
    #: The first of those rows, named by their ``error`` (else their UIDs).
    no_path_errors: list[str] = field(default_factory=list)


def _cleanup(table: CatalogTable, prefix: str) -> None:
    """Delete data files an aborted attempt left (named with its prefix)."""
    marker = f"part-{prefix}-"
    if is_local(table.uri):
        root = local_path(table.uri)
        if os.path.isdir(root):
            for name in os.listdir(root):
                if name.startswith(marker):
                    os.remove(os.path.join(root, name))
        return
    import fsspec

    fs, root = fsspec.core.url_to_fs(table.uri, **(table.storage_options or {}))
    for p in fs.glob(root.rstrip("/") + "/" + marker + "*"):
        fs.rm(p)


def save_dataframe(
    df: Any,
    table: CatalogTable,
    *,
    mode: str = "append",
    app_id: str | None = None,
    batch_id: int | None = None,
    user_metadata: str | None = None,
) -> SaveResult:
    """Write the catalog rows of ``df`` to ``table`` in one Delta commit (see the module docstring).

    Parameters
    ----------
    df : pyspark.sql.DataFrame
        Rows with (at least) the catalog's columns; other columns are dropped, and
        rows whose ``path`` is null are not stored (counted and named in the result).
    table : CatalogTable
        The table (created when missing).
    mode : {"append", "replace", "overwrite"}
        ``append`` adds new files and replaces the rows of changed ones;
        ``replace`` also replaces the rows of unchanged files (rows re-derived from
        the table, such as added thumbnails); ``overwrite`` replaces the whole
        table content.
    app_id, batch_id : str, int, optional
        Streaming: the commit records ``(app_id, batch_id)`` as a Delta application
        transaction, and a batch already committed is skipped (exactly once).
    user_metadata : str, optional
        Recorded as the commit's ``userMetadata`` (``DESCRIBE HISTORY`` shows it).
    """
    from deltalake import CommitProperties, Transaction
    from deltalake.transaction import AddAction, RemoveAction

    if mode not in SAVE_MODES:
        raise ValueError(f"mode must be one of {', '.join(SAVE_MODES)}, not {mode!r}")
    t0 = time.perf_counter()
    result = SaveResult()
    table.create()
    dt = table.delta()
    if app_id is not None and batch_id is not None:
        done = dt.transaction_version(app_id)
        if done is not None and done >= batch_id:
            result.seconds = time.perf_counter() - t0
            return result
    snapshot_version = dt.version()
    snapshot = tuple(dt.file_uris())
    prefix = uuid.uuid4().hex[:12]
    table.clean_orphans()
    with _Lease(lease_path(table.uri, prefix)):
        opts = WriteOptions(table.uri, table.storage_options, snapshot, prefix,
                            reconcile=mode != "overwrite", keep_same=mode == "replace")  # fmt: skip
        from pyspark.sql.types import StructType

        from pixels.engines.spark.transform import as_text, pipeline_of, spark_field

        missing = [n for n in ("path", "length", "modificationTime") if n not in df.columns]
        if missing:
            raise TableError(f"cannot save rows without the columns {missing}", table.uri)
        cols = [n for n in SCHEMA.names if n in df.columns]
        out_schema = StructType([spark_field(f) for f in RESULT_SCHEMA])
        try:
            chain = pipeline_of(df)
            if chain is not None:
                # the transforms and the writer in one Python function per task
                base, fns = chain
                job = base.mapInArrow(_fused(fns, write_files(opts)), out_schema)
                result.fused = len(fns)
            else:
                job = as_text(df).select(*cols).mapInArrow(write_files(opts), out_schema)
            rows = job.collect()
            result.no_path = sum(r["no_path"] or 0 for r in rows)
            result.no_path_errors = [e for r in rows for e in (r["no_path_errors"] or [])][
                :NAMED_ROWS
            ]
            if result.no_path:
                log.warning(
                    "pixels: %d row(s) without a path (no file behind them) not stored in %s: %s",
                    result.no_path,
                    table.uri,
                    "; ".join(result.no_path_errors),
                )
            written, dropped = _one_row_per_path(
                table, [r.asDict() for r in rows if r["file"]], opts
            )
            result.skipped += dropped
            replaced = sorted({p for r in rows for p in (r["replaced"] or [])})
            result.skipped += sum(r["skipped"] or 0 for r in rows)
            now = int(time.time() * 1000)
            actions: list[AddAction | RemoveAction] = [_add_action(r, now) for r in written]
            with table._writer_lock():
                dt = table.delta()
                if mode == "overwrite":
                    actions += [_remove(table, uri, now) for uri in dt.file_uris()]
                else:
                    if dt.version() != snapshot_version:
                        # another writer committed meanwhile: reconcile against what it added
                        actions, more, dropped = _recheck(
                            table, actions, set(dt.file_uris()) - set(snapshot), opts, now
                        )
                        result.skipped += dropped
                        replaced = sorted(set(replaced) | more)
                    if replaced:
                        actions += _rewrite_without(table, dt, replaced, prefix, now)
                if not actions:
                    result.seconds = time.perf_counter() - t0
                    return result
                props = None
                if (app_id is not None and batch_id is not None) or user_metadata is not None:
                    props = CommitProperties(
                        app_transactions=[Transaction(app_id, batch_id)]
                        if app_id is not None and batch_id is not None
                        else None,
                        custom_metadata={"userMetadata": user_metadata}
                        if user_metadata is not None
                        else None,
                    )
                dt.create_write_transaction(
                    actions, mode="append", schema=SCHEMA, commit_properties=props
                )
                dt.update_incremental()
            result.rows = sum(r["rows"] for r in written)
            result.files = len(written)
            result.replaced = len(replaced)
            result.version = int(dt.version())
        except BaseException:
            _cleanup(table, prefix)
            raise
        result.seconds = time.perf_counter() - t0
        return result


class _Lease:
    """A lease on the data files a save writes, renewed while it runs (see
    :meth:`pixels.table.CatalogTable.clean_orphans`): its executors may write files
    long before the driver commits them."""

    RENEW_SECONDS = 60.0

    def __init__(self, path: str | None):
        self.path = path
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _Lease:
        if self.path is not None:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            with open(self.path, "w"):
                pass
            self._thread = threading.Thread(target=self._renew, name="pixels-lease", daemon=True)
            self._thread.start()
        return self

    def _renew(self) -> None:
        while not self._stop.wait(self.RENEW_SECONDS):
            with contextlib.suppress(OSError):
                os.utime(self.path)  # type: ignore[arg-type]

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)


def _overlapping(files: list[dict[str, Any]]) -> set[int]:
    """Indexes of files that may share a path with another (path ranges overlap, or unordered)."""
    out = {i for i, f in enumerate(files) if not f.get("ordered", False) or f.get("lo") is None}
    spans = sorted((f["lo"], f["hi"], i) for i, f in enumerate(files) if f.get("lo") is not None)
    active: list[tuple[str, int]] = []
    for lo, hi, i in spans:
        active = [(h, j) for h, j in active if h >= lo]
        if active:
            out.add(i)
            out.update(j for _, j in active)
        active.append((hi, i))
    return out


def _one_row_per_path(
    table: CatalogTable, files: list[dict[str, Any]], opts: WriteOptions
) -> tuple[list[dict[str, Any]], int]:
    """The identity rule across the files of one save: one row per path.

    Each task keeps one row per path among its own rows; rows of one path that
    reached two tasks (an unpartitioned DataFrame, a stream's micro-batch) are
    found here, among the files whose path ranges overlap, and all but the row
    :func:`~pixels.table.one_per_path` picks are removed from the uncommitted files.
    Returns the files to commit and the number of rows removed.
    """
    suspects = sorted(_overlapping(files))
    if not suspects:
        return files, 0
    root = table.uri.rstrip("/") + "/"
    parts = []
    for i in suspects:
        with _open_in(table, root + files[i]["file"]) as fh:
            t = pq.read_table(fh, columns=["path", "modificationTime"])
        n = t.num_rows
        parts.append(
            t.append_column("file", pa.array([i] * n, pa.int64())).append_column(
                "row", pa.array(range(n), pa.int64())
            )
        )
    rows = pa.concat_tables(parts)
    if len(pc.unique(rows["path"])) == rows.num_rows:
        return files, 0
    kept = one_per_path(rows)
    keep = set(zip(kept["file"].to_pylist(), kept["row"].to_pylist(), strict=True))
    drop: dict[int, list[int]] = {}
    for f, r in zip(rows["file"].to_pylist(), rows["row"].to_pylist(), strict=True):
        if (f, r) not in keep:
            drop.setdefault(f, []).append(r)
    out = list(files)
    fix = WriteOptions(table.uri, table.storage_options, (), opts.prefix, reconcile=False)
    for i, gone in drop.items():
        uri = root + files[i]["file"]
        with _open_in(table, uri) as fh:
            data = conform(pq.read_table(fh))
        mask = np.ones(data.num_rows, dtype=bool)
        mask[gone] = False
        data = data.filter(pa.array(mask))
        _delete(table, uri)
        if data.num_rows:
            f = _File(fix)
            f.write(data)
            out[i] = f.close()
        else:
            out[i] = {}
    return [f for f in out if f], sum(len(g) for g in drop.values())


def _fused(fns: list[Any], writer: Any) -> Any:
    """One ``mapInArrow`` function: the transforms, then the writer."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for fn in fns:
            batches = fn(batches)
        return writer(batches)

    return run


def _remove(table: CatalogTable, uri: str, now: int) -> Any:
    from deltalake.transaction import RemoveAction

    return RemoveAction(path=_relative(table, uri), data_change=True, deletion_timestamp=now)


def _relative(table: CatalogTable, uri: str) -> str:
    root = table.uri.rstrip("/") + "/"
    if uri.startswith(root):
        return uri[len(root) :]
    if is_local(table.uri):
        return os.path.relpath(local_path(uri), local_path(table.uri))
    return uri.rsplit("/", 1)[-1]


def _rewrite_without(
    table: CatalogTable, dt: Any, paths: list[str], prefix: str, now: int
) -> list[Any]:
    """Remove the rows of ``paths`` from the data files holding them (remove + add actions)."""
    import duckdb

    uris = list(dt.file_uris())
    con = duckdb.connect(config={"memory_limit": "256MB", "threads": 1})
    try:
        table.scan().prepare(con)  # object stores: through fsspec
        con.register("gone", pa.table({"path": pa.array(paths, pa.string())}))
        hit = con.execute(
            "SELECT DISTINCT filename FROM read_parquet(?, filename=true, union_by_name=true) "
            "WHERE path IN (SELECT path FROM gone)",
            [uris],
        ).fetchall()
    finally:
        con.close()
    actions: list[Any] = []
    gone = pa.array(paths, pa.string())
    opts = WriteOptions(table.uri, table.storage_options, (), prefix, reconcile=False)
    for (uri,) in hit:
        uri = next((u for u in uris if u == uri or u.endswith(uri.rsplit("/", 1)[-1])), uri)
        with _open_in(table, uri) as fh:
            data = conform(pq.read_table(fh))
        kept = data.filter(pc.invert(pc.is_in(data["path"], gone)))
        actions.append(_remove(table, uri, now))
        if kept.num_rows:
            f = _File(opts)
            f.write(kept)
            actions.append(_add_action(f.close(), now))
    return actions


def _open_in(table: CatalogTable, uri: str) -> Any:
    if is_local(uri):
        return open(local_path(uri), "rb")
    import fsspec

    return fsspec.open(uri, "rb", **fsspec_options(uri, table.storage_options)).open()


def _recheck(
    table: CatalogTable, actions: list[Any], foreign: set[str], opts: WriteOptions, now: int
) -> tuple[list[Any], set[str], int]:
    """Drop from our new files the rows another writer committed at the same identity.

    Returns the actions to commit, the paths whose rows they replace and the
    number of rows dropped.
    """
    if not foreign:
        return actions, set(), 0
    kept: list[Any] = []
    replaced: set[str] = set()
    skipped = 0
    root = table.uri.rstrip("/") + "/"
    for a in actions:
        uri = root + a.path
        with _open_in(table, uri) as fh:
            data = conform(pq.read_table(fh))
        fixed, rep, dropped = _reconcile(table, data, sorted(foreign), keep_same=opts.keep_same)
        replaced |= set(rep)
        skipped += dropped
        if not dropped:
            kept.append(a)
            continue
        if fixed.num_rows:
            f = _File(WriteOptions(table.uri, table.storage_options, (), opts.prefix, False))
            f.write(fixed)
            kept.append(_add_action(f.close(), now))
        _delete(table, uri)
    return kept, replaced, skipped


def _delete(table: CatalogTable, uri: str) -> None:
    if is_local(uri):
        os.remove(local_path(uri))
        return
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri, **fsspec_options(uri, table.storage_options))
    fs.rm(path)
