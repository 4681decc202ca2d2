"""Clustering the catalog table: every row rewritten in the order of study and series.

``pixels optimize --cluster`` (:meth:`pixels.catalog.Catalog.optimize`) orders the
rows by StudyInstanceUID, SeriesInstanceUID, so that each data file and each of its
Parquet row groups holds a narrow range of studies, and a look-up by study or
series (``pixels sql``, the DICOMweb server's row reads) skips every other file and
row group by their statistics.

The rewrite is a range-partitioned sort with bounded memory, whatever the table's
size (rows are ~10 kB each uncompressed, mostly ``meta``: 10M rows are ~100 GB, far
beyond what one sort can hold):

1. the boundaries of the output files are chosen from a sample of the first
   clustering column (each file a range of its values: a study never spans two);
2. every row is read once, in batches, and appended to the temporary file of its
   range (``_pixels/tmp/cluster-*``, Arrow IPC streams: no Parquet encoding);
3. each range (at most :data:`_SORT_BYTES` uncompressed) is sorted in memory by
   Arrow and appended to the data file being written, with min/max statistics
   for the clustering columns in the Parquet footer and in the ``add`` action's ``stats`` (Delta data skipping);
4. one commit removes every old file and adds the sorted ones: readers see the
   old version or the new one, never a mix; a failure leaves the table as it was.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import math
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError
from deltalake.transaction import AddAction, RemoveAction

import pixels.table.catalog_table as catalog_table
from pixels.errors import TableError
from pixels.schema import SCHEMA
from pixels.storage import is_local, local_path
from pixels.table import LOCK_DIR, CatalogTable, conform

__all__ = ["CLUSTER_COLUMNS", "cluster_table"]

#: What ``pixels optimize --cluster`` orders rows by.
CLUSTER_COLUMNS = ("StudyInstanceUID", "SeriesInstanceUID")
#: Rows per data file written (at least: a file ends after the range that reaches it).
_CLUSTER_ROWS = 200_000
#: Uncompressed bytes of one range, sorted in memory (rows are ~10 kB, mostly ``meta``).
_SORT_BYTES = 192 << 20
#: One value of the first clustering column in this many is sampled for the ranges.
_SAMPLE_EVERY = 16
#: Rows (at most) and uncompressed bytes read at a time while rows are spread over ranges.
_BATCH_ROWS = 32768
_BATCH_BYTES = 64 << 20
#: A batch whose rows of one range come in more runs than this (on average) is
#: reordered before its ranges are appended; otherwise its runs go out as slices.
_RUNS_PER_RANGE = 4
#: Data files sorted and written at once (threads: Arrow releases the GIL). Memory
#: peaks near ``_WORKERS * 2 * _SORT_BYTES`` (a range read back, then made contiguous).
_WORKERS = 2
#: Columns with Parquet min/max statistics in the files written: the keys a
#: reader filters on (statistics of ``meta``, kilobytes per row group, only made
#: every footer a reader opens larger).
_STAT_COLUMNS = (
    "path",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "Modality",
    "StudyDate",
    "PatientID",
    "AccessionNumber",
    "rowId",
)
#: Sorts after every UID (rows without a value go last, as ``NULLS LAST``).
_HIGHEST = "\U0010ffff"


def cluster_table(table: CatalogTable, columns: Sequence[str] = CLUSTER_COLUMNS) -> dict[str, Any]:
    """Rewrite every row in the order of ``columns`` (then ``path``): one commit.

    A total order, not delta-rs' Z-order: Z-order keys take the first bytes of
    each string, and UIDs share long prefixes (an organisation's root), so
    Z-order leaves them unordered. See the module docstring for how it is done in
    bounded memory. Runs under the table's writer lock, on top of the version
    read; local tables.

    Returns
    -------
    dict
        ``numFilesAdded`` and ``numFilesRemoved``.
    """
    if not is_local(table.uri):
        raise TableError("clustering is only supported for local tables", table.uri)
    with table._writer_lock():
        return _cluster_locked(table, table.delta(), list(columns))


def _ranges(files: list[str], column: str, n: int) -> list[str]:
    """``n - 1`` ascending boundaries splitting ``column``'s values into ``n`` ranges.

    Reads ``column`` alone (a few MB per 100k rows) and samples one value in
    :data:`_SAMPLE_EVERY` with Arrow, no Python object per row.
    """
    if n <= 1:
        return []
    chunks: list[pa.Array] = []
    for f in files:
        values = pq.read_table(f, columns=[column])[column].combine_chunks()
        picked = values.take(pa.array(range(0, len(values), _SAMPLE_EVERY), pa.int64()))
        chunks.append(picked.drop_null())
    if not chunks:
        return []
    sample = pa.concat_arrays(chunks)
    sample = sample.take(pc.sort_indices(sample))
    if not len(sample):
        return []
    first = sample[0].as_py()
    bounds = sorted({sample[len(sample) * i // n].as_py() for i in range(1, n)})
    return [b for b in bounds if b > first]


def _range_ids(keys: pa.ChunkedArray | pa.Array, bounds: list[str]) -> pa.Array:
    """The range of each key (``bisect_right`` over ``bounds``), computed per distinct
    key: a batch holds a few studies, not one Python object per row."""
    if isinstance(keys, pa.ChunkedArray):
        keys = keys.combine_chunks()
    keys = pc.fill_null(keys, _HIGHEST)
    distinct = pc.unique(keys)
    ids = pa.array([bisect.bisect_right(bounds, k) for k in distinct.to_pylist()], pa.int32())
    return ids.take(pc.index_in(keys, value_set=distinct))


def _spread(
    files: list[str], column: str, bounds: list[str], tmp: str, batch_rows: int
) -> list[tuple[str, int]]:
    """Append each row of ``files`` to the temporary file of its range; their paths and rows.

    The temporary files are Arrow IPC streams (LZ4 buffers): appending a slice is a
    write of its buffers, and reading a range back decodes nothing, where Parquet
    would encode and decode every ``meta`` value once more; one writer per range
    holds no buffered rows, so hundreds of ranges stay open at once.
    """
    writers: dict[int, pa.ipc.RecordBatchStreamWriter] = {}
    sinks: dict[int, pa.NativeFile] = {}
    counts: dict[int, int] = {}
    paths: dict[int, str] = {}
    options = pa.ipc.IpcWriteOptions(compression="lz4")
    try:
        for f in files:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=batch_rows):
                data = conform(batch)
                ids = _range_ids(data[column], bounds)
                starts = pc.run_end_encode(ids)
                if len(starts.run_ends) > _RUNS_PER_RANGE * len(pc.unique(ids)):
                    # ranges interleave: gather each range's rows (a copy); rows already
                    # grouped by study (a catalog run, a STOW) go out as slices, no copy
                    order = pc.sort_indices(ids)
                    data, ids = data.take(order), ids.take(order)
                    starts = pc.run_end_encode(ids)
                ends = starts.run_ends.to_pylist()
                for r, start, end in zip(
                    starts.values.to_pylist(), [0, *ends[:-1]], ends, strict=True
                ):
                    part = data.slice(start, end - start)
                    if r not in writers:
                        paths[r] = os.path.join(tmp, f"range-{r:06d}.arrow")
                        sinks[r] = pa.OSFile(paths[r], "wb")
                        writers[r] = pa.ipc.new_stream(sinks[r], SCHEMA, options=options)
                        counts[r] = 0
                    writers[r].write_table(part)
                    counts[r] += part.num_rows
    finally:
        for r, w in writers.items():
            w.close()
            sinks[r].close()
    return [(paths[r], counts[r]) for r in sorted(paths)]


class _FileStats:
    """Delta ``stats`` of a file written batch by batch: counts and min/max of the keys."""

    def __init__(self, columns: list[str]):
        self.rows = 0
        self.nulls: dict[str, int] = {f.name: 0 for f in SCHEMA if not pa.types.is_nested(f.type)}
        self.columns = columns
        self.lo: dict[str, str] = {}
        self.hi: dict[str, str] = {}

    def add(self, batch: pa.Table) -> None:
        self.rows += batch.num_rows
        for name in self.nulls:
            self.nulls[name] += batch.column(name).null_count
        for name in self.columns:
            mm = pc.min_max(batch.column(name))
            lo, hi = mm["min"].as_py(), mm["max"].as_py()
            if lo is not None and (name not in self.lo or lo < self.lo[name]):
                self.lo[name] = lo
            if hi is not None and (name not in self.hi or hi > self.hi[name]):
                self.hi[name] = hi

    def json(self) -> str:
        return json.dumps(
            {
                "numRecords": self.rows,
                "minValues": self.lo,
                "maxValues": self.hi,
                "nullCount": self.nulls,
            }
        )


class _Output:
    """The data files written, in order: each gets sorted ranges until it holds
    :data:`_CLUSTER_ROWS` rows, one row group of ``_ROW_GROUP`` rows at a time."""

    def __init__(self, root: str, columns: list[str]):
        self.root = root
        self.columns = columns
        self.adds: list[AddAction] = []
        self._writer: pq.ParquetWriter | None = None
        self._name = ""
        self._stats = _FileStats(columns)

    def write(self, data: pa.Table) -> None:
        if self._writer is None:
            self._name = f"part-00000-{uuid.uuid4()}-c000.zstd.parquet"
            self._writer = pq.ParquetWriter(
                os.path.join(self.root, self._name + ".tmp"),
                SCHEMA,
                compression="zstd",
                write_statistics=[c for c in _STAT_COLUMNS if c in SCHEMA.names],
                use_compliant_nested_type=True,
            )
            self._stats = _FileStats(self.columns)
        self._stats.add(data)
        self._writer.write_table(data, row_group_size=catalog_table._ROW_GROUP)

    def end_range(self) -> None:
        """A range was written whole: the file ends here if it is full."""
        if self._writer is not None and self._stats.rows >= _CLUSTER_ROWS:
            self.close()

    def close(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        self._writer = None
        path = os.path.join(self.root, self._name)
        os.replace(path + ".tmp", path)
        st = os.stat(path)
        self.adds.append(
            AddAction(
                path=self._name,
                size=st.st_size,
                partition_values={},
                modification_time=int(st.st_mtime * 1000),
                data_change=True,
                stats=self._stats.json(),
            )
        )

    def discard(self) -> None:
        """Remove every file written (the clustering failed)."""
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                os.remove(os.path.join(self.root, self._name + ".tmp"))
        for a in self.adds:
            with contextlib.suppress(OSError):
                os.remove(os.path.join(self.root, a.path))


def _sort_range(part: str, order: list[str], out: _Output) -> None:
    """Sort one range's rows in memory (by ``order``, nulls last) and append them to ``out``."""
    with pa.memory_map(part) as source:
        # one contiguous copy: ``take`` over many chunks would concatenate them at each call
        data = pa.ipc.open_stream(source).read_all().combine_chunks()
    idx = pc.sort_indices(data.select(order), [(c, "ascending", "at_end") for c in order])
    step = catalog_table._ROW_GROUP
    for start in range(0, len(idx), step):
        out.write(data.take(idx[start : start + step]))
    out.end_range()


def _groups(parts: list[tuple[str, int]]) -> list[list[tuple[str, int]]]:
    """Consecutive ranges, each group one data file of at least :data:`_CLUSTER_ROWS` rows
    (the last one smaller)."""
    groups: list[list[tuple[str, int]]] = [[]]
    rows = 0
    for part in parts:
        if rows >= _CLUSTER_ROWS:
            groups.append([])
            rows = 0
        groups[-1].append(part)
        rows += part[1]
    return [g for g in groups if g]


def _uncompressed(files: list[str]) -> int:
    """Uncompressed bytes of the rows of ``files`` (from their footers)."""
    n = 0
    for f in files:
        md = pq.read_metadata(f)
        n += sum(md.row_group(g).total_byte_size for g in range(md.num_row_groups))
    return n


def _cluster_locked(table: CatalogTable, dt: DeltaTable, columns: list[str]) -> dict[str, Any]:
    scan = table.scan()
    if not scan.direct or not scan.files:
        return {"numFilesAdded": 0, "numFilesRemoved": 0}
    root = local_path(table.uri)
    files = [local_path(u) for u in scan.files]
    total = sum(pq.read_metadata(f).num_rows for f in files)
    base = os.path.join(root, LOCK_DIR, "tmp")
    os.makedirs(base, exist_ok=True)
    # what a clustering killed midway left (this one holds the writer lock: no other runs)
    for name in os.listdir(base):
        if name.startswith("cluster-"):
            shutil.rmtree(os.path.join(base, name), ignore_errors=True)
    tmp = tempfile.mkdtemp(prefix="cluster-", dir=base)
    outs: list[_Output] = []
    try:
        row_bytes = max(1, _uncompressed(files) // max(total, 1))
        ranges = math.ceil(total / max(1, min(_CLUSTER_ROWS, _SORT_BYTES // row_bytes)))
        bounds = _ranges(files, columns[0], ranges)
        batch_rows = max(1, min(_BATCH_ROWS, _BATCH_BYTES // row_bytes))
        parts = _spread(files, columns[0], bounds, tmp, batch_rows)
        groups = _groups(parts)
        outs = [_Output(root, columns) for _ in groups]

        def write(i: int) -> None:
            for part, _rows in groups[i]:
                _sort_range(part, [*columns, "path"], outs[i])
                os.remove(part)
            outs[i].close()

        with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
            # Arrow reads, sorts, compresses with the GIL released: a thread per core
            for future in [pool.submit(write, i) for i in range(len(groups))]:
                future.result()
    except BaseException:
        for o in outs:
            o.discard()
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    adds = [a for o in outs for a in o.adds]
    now = int(time.time() * 1000)
    removes = [
        RemoveAction(
            path=os.path.relpath(f, root),
            data_change=True,
            deletion_timestamp=now,
            size=os.stat(f).st_size,
        )
        for f in files
    ]
    dt.update_incremental()
    if set(dt.file_uris()) != set(scan.files):
        for a in adds:
            os.remove(os.path.join(root, a.path))
        raise CommitFailedError("the table changed while it was clustered")
    dt.create_write_transaction([*removes, *adds], mode="append", schema=SCHEMA)
    dt.update_incremental()
    return {"numFilesAdded": len(adds), "numFilesRemoved": len(removes)}
