"""Engine-neutral row operations: what both engines and the dbx.pixels transformers call.

Rows are plain dicts or Arrow batches of the catalog's columns (:mod:`pixels.schema`):

* listing rows <-> :class:`~pixels.sources.ref.FileRef` (:func:`refs_to_batch`, :func:`ref_of`);
* paths and Spark file URIs -> file columns (:func:`uri_to_path`, :func:`path_refs`);
* DICOM attribute values from the ``meta`` JSON (:func:`tag_hex`, :func:`tag_value`);
* the columns a thumbnail needs (:data:`THUMBNAIL_INPUTS`) and the patch rows' schema
  (:data:`PATCH_SCHEMA`).

The per-file work itself (file -> catalog record, thumbnails, patches) is in
:mod:`pixels.dicom`. Nothing here knows about processes, Spark or tables: the local
engine, :mod:`pixels.engines.spark` and :mod:`pixels.transformers` import this module,
never the other way round.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import pyarrow as pa

from pixels.dicom.record import RecordOptions, catalog_batch
from pixels.errors import PixelsError
from pixels.schema import FILE_COLUMNS, SCHEMA, anonymous, row_id
from pixels.sources.local import make_ref
from pixels.sources.ref import FileRef

#: Columns of a listing DataFrame: the file columns, and ``error`` for refused entries.
REF_SCHEMA = pa.schema([SCHEMA.field(c.name) for c in FILE_COLUMNS] + [SCHEMA.field("error")])

#: Columns a thumbnail needs from a catalog row.
THUMBNAIL_INPUTS = frozenset(
    {"path", "meta", "frame_offsets", "frame_lengths", "TransferSyntaxUID"}
)
#: One row per patch (or per failed file, with only the source columns and ``error``).
PATCH_SCHEMA = pa.schema(
    [
        pa.field("source_path", pa.string(), nullable=False),
        pa.field("SOPInstanceUID", pa.string()),
        pa.field("frame", pa.int32()),
        pa.field("x", pa.int32()),
        pa.field("y", pa.int32()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("valid_width", pa.int32()),
        pa.field("valid_height", pa.int32()),
        pa.field("dtype", pa.string()),
        pa.field("samples", pa.int32()),
        pa.field("format", pa.string()),
        pa.field("data", pa.binary()),
        pa.field("error", pa.string()),
    ]
)


def refs_to_batch(
    refs: Iterable[FileRef], storage_options: dict[str, Any] | None = None
) -> pa.RecordBatch:
    """FileRefs as a record batch of :data:`REF_SCHEMA` (``storage_options``: for ``is_anon``)."""
    rows = [
        {
            "path": r.path,
            "is_anon": anonymous(r.path, storage_options),
            "rowId": row_id(r.path),
            "modificationTime": r.modificationTime,
            "length": r.length,
            "relative_path": r.relative_path,
            "local_path": r.local_path,
            "extension": r.extension,
            "path_tags": list(r.path_tags),
            "original_path": r.original_path,
            "version_tag": r.version_tag,
            "file_type": None,
            "error": r.error,
        }
        for r in refs
    ]
    return pa.RecordBatch.from_pylist(rows, schema=REF_SCHEMA)


def ref_of(row: dict[str, Any]) -> FileRef:
    """The FileRef of a listing (or catalog) row.

    A listing row's ``error`` (an entry the listing refused, such as an unsafe zip
    member) stays with the ref; the ``error`` of a catalog row (``cataloged_at``
    set) came from reading the file and does not stop a new read.
    """
    ref = FileRef.from_row(row)
    error = row.get("error")
    if error and row.get("meta") is None and row.get("cataloged_at") is None:
        ref = dataclasses.replace(ref, error=error)
    return ref


def uri_to_path(uri: str) -> tuple[str, str | None]:
    """A Spark/Hadoop file URI as the catalog's ``path`` and ``local_path``.

    ``file:/data/a.dcm`` -> (``/data/a.dcm``, ``/data/a.dcm``); ``s3a://b/k`` ->
    (``s3://b/k``, None); ``dbfs:/Volumes/c/s/v/a.dcm`` -> (same, ``/Volumes/c/s/v/a.dcm``).
    """
    if uri.startswith("file:"):
        rest = uri[len("file:") :]
        if rest.startswith("//"):
            rest = rest[2:]
            rest = rest[rest.index("/") :] if not rest.startswith("/") else rest
        path = "/" + rest.lstrip("/")
        if "%" in path and not os.path.exists(path):
            path = unquote(path)
        return path, path
    for scheme in ("s3a://", "s3n://"):
        if uri.startswith(scheme):
            return "s3://" + uri[len(scheme) :], None
    if uri.startswith("dbfs:/"):
        rest = "/" + uri[len("dbfs:") :].lstrip("/")
        return uri, rest if rest.startswith("/Volumes/") else "/dbfs" + rest
    return uri, None


def path_refs(rows: list[dict[str, Any]], input_col: str, base_path: str | None) -> list[Any]:
    """FileRefs (no file read) for rows holding a path or Spark file URI in ``input_col``."""
    base = None
    if base_path:
        base = uri_to_path(base_path)[0] if ":" in base_path.split("/", 1)[0] else base_path
        base = base.rstrip("/") + "/"
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    refs = []
    for r in rows:
        path, local = uri_to_path(r[input_col])
        if local is None and path.startswith("/") and "://" not in path:
            local = path  # a plain local path
        rel = path[len(base) :] if base and path.startswith(base) else path.lstrip("/")
        mtime = r.get("modificationTime") or epoch
        if mtime.tzinfo is None:
            mtime = mtime.replace(tzinfo=UTC)
        refs.append(make_ref(path, mtime, int(r.get("length") or 0), rel, local_path=local))
    return refs


def tag_hex(tag: str) -> str:
    """A DICOM keyword or ``(gggg,eeee)`` / ``ggggeeee`` tag as ``GGGGEEEE`` (the ``meta`` key)."""
    from pydicom.datadict import tag_for_keyword

    t = tag.replace("(", "").replace(")", "").replace(",", "").strip()
    if len(t) == 8 and all(c in "0123456789abcdefABCDEF" for c in t):
        return t.upper()
    found = tag_for_keyword(tag)
    if found is None:
        raise PixelsError(
            f"unknown DICOM keyword or tag {tag!r} (use e.g. 'Modality' or '00080060')"
        )
    return f"{found:08X}"


def tag_value(meta: str | None, tag: str) -> str | None:
    """The value of ``tag`` in a DICOM JSON ``meta`` string (multi-valued: joined with ``\\``)."""
    if not meta:
        return None
    try:
        element = json.loads(meta).get(tag)
    except ValueError:
        return None
    if not element or "Value" not in element:
        return None
    values = []
    for v in element["Value"]:
        if isinstance(v, dict):
            v = v.get("Alphabetic", json.dumps(v)) if element.get("vr") == "PN" else json.dumps(v)
        values.append(str(v))
    return "\\".join(values)


def catalog_rows(refs: list[FileRef], options: RecordOptions, workers: int = 1) -> pa.RecordBatch:
    """:func:`catalog_batch` of ``refs`` with ``workers`` threads (rows in ``refs``' order)."""
    if workers <= 1 or len(refs) < 2:
        return catalog_batch(refs, options)
    from concurrent.futures import ThreadPoolExecutor

    step = max(1, -(-len(refs) // workers))
    parts = [refs[i : i + step] for i in range(0, len(refs), step)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        batches = list(pool.map(lambda part: catalog_batch(part, options), parts))
    return pa.Table.from_batches(batches, schema=SCHEMA).combine_chunks().to_batches()[0]
