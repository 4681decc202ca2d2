"""Each data file's first row per series, saved beside the table by its writer.

A reader that indexes the table by series (the DICOMweb server's index,
:mod:`pixels.web.index`) needs, per data file and series, the row with the
smallest ``(SOPInstanceUID, path)`` and its header (``meta``). Finding that
header in the Parquet file means decoding the ``meta`` column of the row groups
that hold those rows: most of the work of indexing a new file. So the table's
own writer (:meth:`pixels.table.CatalogTable.append`, ``replace_file``) saves
those rows next to each local data file it writes, before its commit:
``{table}/_pixels/firsts/{data file name}.v2.arrow`` (Arrow IPC, zstd), with the
data file's size in its metadata. Of the header, only the part the reader keeps
is saved (:func:`pixels.dicom.qmeta.qmeta`, parsed here once: the reader's update
then parses no JSON).

The file is a cache: a reader checks it against the data file (size) and the
rows it read itself (series, row numbers), and falls back to the Parquet file
when it is absent or does not match (a table written by Spark, an older Pixels,
delta-rs' compaction; a writer that died between the data file and this one).
"""

from __future__ import annotations

import contextlib
import os

import pyarrow as pa
import pyarrow.compute as pc

from pixels.dicom.qmeta import qmeta

__all__ = [
    "FIRSTS_DIR",
    "FIRSTS_SCHEMA",
    "drop_firsts",
    "drop_stale_firsts",
    "firsts_of",
    "read_firsts",
    "write_firsts",
]

#: Folder of the saved rows, under the table's root.
FIRSTS_DIR = os.path.join("_pixels", "firsts")
#: One row per series of a data file: ``_row`` is the row's number in the file.
FIRSTS_SCHEMA = pa.schema(
    [
        pa.field("SeriesInstanceUID", pa.string()),
        pa.field("sop", pa.string()),
        pa.field("path", pa.string()),
        pa.field("_row", pa.int64()),
        pa.field("qmeta", pa.string()),
        pa.field("StudyID", pa.string()),
        pa.field("ReferringPhysicianName", pa.string()),
    ]
)
_VERSION = "v2"
#: Suffixes of the files older versions saved (their rows held the whole ``meta``).
_OLDER = (".v1.arrow",)
_SIZE = b"pixels.data_file_size"
_VALID = ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "meta")


def firsts_of(table: pa.Table) -> pa.Table:
    """The first row per series of ``table`` (the rows of one data file, in order).

    Rows lacking a SOP, study or series UID or ``meta`` are not counted; of a
    series' other rows, the one with the smallest ``(SOPInstanceUID, path)``.
    """
    valid = None
    for name in _VALID:
        ok = pc.is_valid(table[name])
        valid = ok if valid is None else pc.and_(valid, ok)
    rows = pc.indices_nonzero(valid) if valid is not None else pa.array([], pa.uint64())
    sub = pa.table(
        {
            "SeriesInstanceUID": table["SeriesInstanceUID"].take(rows),
            "sop": table["SOPInstanceUID"].take(rows),
            "path": table["path"].take(rows),
            "_row": rows.cast(pa.int64()),
        }
    )
    order = pc.sort_indices(
        sub, [("SeriesInstanceUID", "ascending"), ("sop", "ascending"), ("path", "ascending")]
    )
    sub = sub.take(order)
    series = sub["SeriesInstanceUID"].combine_chunks()
    n = len(series)
    if n == 0:
        return FIRSTS_SCHEMA.empty_table()
    changed = pc.not_equal(series.slice(1), series.slice(0, n - 1))
    first = pa.concat_arrays([pa.array([True]), changed.cast(pa.bool_())])
    out = sub.filter(first)
    parsed = [qmeta(m) for m in table["meta"].take(out["_row"]).cast(pa.string()).to_pylist()]
    for i, name in enumerate(("qmeta", "StudyID", "ReferringPhysicianName")):
        out = out.append_column(name, pa.array([p[i] for p in parsed], pa.string()))
    return out.cast(FIRSTS_SCHEMA)


def _path(root: str, data_name: str) -> str:
    return os.path.join(root, FIRSTS_DIR, f"{os.path.basename(data_name)}.{_VERSION}.arrow")


def write_firsts(root: str, data_name: str, table: pa.Table) -> None:
    """Save the first rows of the local data file ``data_name`` (written, under folder
    ``root``) whose rows are ``table``. Best effort: an error leaves no file."""
    path = _path(root, data_name)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        size = os.stat(os.path.join(root, data_name)).st_size
        rows = firsts_of(table)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        schema = FIRSTS_SCHEMA.with_metadata({_SIZE: str(size).encode()})
        options = pa.ipc.IpcWriteOptions(compression="zstd")
        with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_file(sink, schema, options=options) as w:
            w.write_table(rows.replace_schema_metadata(schema.metadata))
        os.replace(tmp, path)
    except (OSError, pa.ArrowException):
        with contextlib.suppress(OSError):
            os.remove(tmp)


def read_firsts(root: str, data_path: str) -> pa.Table | None:
    """The saved first rows of the local data file ``data_path`` (None: none, or not
    saved for this file: another size)."""
    path = _path(root, data_path)
    try:
        with pa.memory_map(path) as src:
            table = pa.ipc.open_file(src).read_all()
        size = os.stat(data_path).st_size
    except (OSError, pa.ArrowException):
        return None
    meta = table.schema.metadata or {}
    if meta.get(_SIZE) != str(size).encode() or not table.schema.equals(FIRSTS_SCHEMA):
        return None
    return table


def drop_firsts(root: str, data_paths: list[str]) -> None:
    """Remove the saved rows of data files gone from the table."""
    for p in data_paths:
        with contextlib.suppress(OSError):
            os.remove(_path(root, p))


def drop_stale_firsts(root: str) -> list[str]:
    """Remove the saved rows of data files no longer on disk (vacuumed, orphans deleted)
    under the local table folder ``root``; returns the names removed."""
    folder = os.path.join(root, FIRSTS_DIR)
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    gone = []
    for name in names:
        data = name.removesuffix(f".{_VERSION}.arrow")
        if data == name and name.endswith(_OLDER):
            data = ""  # saved by an older Pixels: never read again
        if data != name and not (data and os.path.exists(os.path.join(root, data))):
            with contextlib.suppress(OSError):
                os.remove(os.path.join(folder, name))
                gone.append(name)
    return gone
