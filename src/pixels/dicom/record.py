"""Per-file work of the catalog: one :class:`FileRef` in, one catalog row out.

Pure functions: no process pool, no table, no Spark. Engines call
:func:`catalog_batch` on chunks of refs and write what comes back.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, BinaryIO

import pyarrow as pa

from pixels.dicom.codecs import EXPLICIT_BE, NATIVE_SYNTAXES
from pixels.dicom.notices import kept_warnings
from pixels.errors import DicomReadError, PixelsError
from pixels.schema import (
    KEY_COLUMNS,
    SCHEMA,
    THUMBNAIL_COLUMNS,
    anonymous,
    empty_row,
    row_id,
)
from pixels.sources import ArchiveLimits, detect_file_type, open_file
from pixels.sources.local import os_path
from pixels.sources.ref import FileRef

if TYPE_CHECKING:  # (pydicom, which they import, is loaded with the first file read)
    from pixels.dicom.meta import Header

#: Bytes read to detect the file type (NIfTI-1 keeps its magic at offset 344).
HEAD_BYTES = 512

#: Local files of at most this many bytes are read whole with one system call and parsed
#: from memory (the header, pixel data and frame index reads then cost none each).
WHOLE_FILE_BYTES = 1 << 20

#: File types that are images Pixels knows but does not read as DICOM.
IMAGE_TYPES = frozenset({"png", "jpeg", "jpeg2000", "tiff", "nifti"})


@dataclass(frozen=True, slots=True)
class RecordOptions:
    """Options of the per-file work (picklable, sent to worker processes).

    Attributes
    ----------
    bulk_threshold : int
        Binary elements longer than this (base64 length) go to the meta as a
        BulkDataURI instead of inline.
    storage_options : dict or None
        fsspec options for URLs (credentials, endpoint).
    limits : ArchiveLimits
        Safety limits for zip members.
    thumbnails : bool
        Also make the thumbnail, in the same pass over the file.
    thumbnail_size, thumbnail_format : int, str
        Longest side and ``jpeg``/``png``.
    remove_un_tags : bool
        Leave elements of VR ``UN`` out of ``meta``, in sequence items too
        (dbx.pixels' ``remove_un_tags``); key columns and the frame index are unchanged.
    """

    bulk_threshold: int = 1024
    storage_options: dict[str, Any] | None = None
    limits: ArchiveLimits = field(default_factory=ArchiveLimits)
    thumbnails: bool = False
    thumbnail_size: int = 256
    thumbnail_format: str = "jpeg"
    remove_un_tags: bool = False


def without_un(meta: str) -> str:
    """``meta`` (DICOM JSON text) without its ``UN`` elements, at every sequence depth."""

    def clean(ds: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for tag, el in ds.items():
            if not isinstance(el, dict) or el.get("vr") == "UN":
                continue
            if el.get("vr") == "SQ" and isinstance(el.get("Value"), list):
                el = {**el, "Value": [clean(i) if isinstance(i, dict) else i for i in el["Value"]]}
            out[tag] = el
        return out

    return json.dumps(clean(json.loads(meta)), separators=(",", ":"))


_KEY_NAMES = tuple(col.name for col in KEY_COLUMNS)
_KEY_SET = frozenset(_KEY_NAMES)
#: :func:`~pixels.schema.empty_row`, copied for each row (every value None).
_EMPTY_ROW = empty_row()


def file_columns(ref: FileRef, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The row's file columns, from the listing alone (``storage_options``: for ``is_anon``)."""
    row = _EMPTY_ROW.copy()
    row.update(
        rowId=row_id(ref.path),
        is_anon=anonymous(ref.path, storage_options),
        path=ref.path,
        modificationTime=ref.modificationTime,
        length=ref.length,
        relative_path=ref.relative_path,
        local_path=ref.local_path,
        extension=ref.extension,
        path_tags=list(ref.path_tags),
        original_path=ref.original_path,
        version_tag=ref.version_tag,
    )
    return row


def catalog_record(
    ref: FileRef, options: RecordOptions | None = None, *, fd: int | None = None
) -> dict[str, Any]:
    """Read one file once and return its catalog row (never raises for bad input).

    A file that cannot be read becomes a row with ``error`` set (naming the file
    and, where known, the tag); non-DICOM images get their ``file_type``. ``fd``: the
    local file already open at offset 0 (a :class:`~pixels.sources.readahead.ReadAhead`
    descriptor, closed by the caller), read instead of opening the path when the file
    is read whole (:func:`reads_whole`).

    Examples
    --------
    >>> row = catalog_record(ref)                   # doctest: +SKIP
    >>> row["Modality"], row["error"]               # doctest: +SKIP
    ('CT', None)
    """
    opts = options or RecordOptions()
    row = file_columns(ref, opts.storage_options)
    if ref.error:
        row["error"] = ref.error
        row["cataloged_at"] = datetime.now(UTC)
        return row
    with kept_warnings() as kept:  # pydicom's warnings go to the row, not the terminal
        _read_into(row, ref, opts, fd)
    row["warnings"] = kept or None
    row["cataloged_at"] = datetime.now(UTC)
    return row


def _read_into(
    row: dict[str, Any], ref: FileRef, opts: RecordOptions, fd: int | None = None
) -> None:
    """Fill ``row`` from the file's bytes (a failure sets ``error``, never raises)."""
    try:
        whole = _small_local_file(ref, fd)
        if whole is not None:
            _read_file(row, whole, ref.path, opts)
        else:
            with open_file(ref, storage_options=opts.storage_options, limits=opts.limits) as fp:
                _read_file(row, fp, ref.path, opts)
    except PixelsError as e:
        row["error"] = str(e)
    except Exception as e:  # any other failure is still one bad row, never a lost batch
        row["error"] = f"{ref.path}: {type(e).__name__}: {e}"


def _read_file(row: dict[str, Any], fp: BinaryIO, path: str, opts: RecordOptions) -> None:
    from pixels.dicom.meta import read_header

    head = fp.read(HEAD_BYTES)
    ftype = detect_file_type(head, path)
    row["file_type"] = ftype
    if not head:
        row["error"] = f"{path}: empty file (0 bytes)"
    elif ftype == "dicom":
        fp.seek(0)
        header = read_header(fp, path=path, bulk_threshold=opts.bulk_threshold)
        _fill_dicom(row, fp, header, path, opts)
    elif ftype not in IMAGE_TYPES:
        row["error"] = (
            f"{path}: not a DICOM file (no 'DICM' prefix at byte 128 and no "
            f"DICOM element at the start; detected type: {ftype})"
        )


def reads_whole(ref: FileRef) -> bool:
    """Whether :func:`catalog_record` reads the file whole with one ``read`` (a small local file)."""
    return ref.local_path is not None and 0 < ref.length <= WHOLE_FILE_BYTES


def _small_local_file(ref: FileRef, fd: int | None = None) -> BinaryIO | None:
    """A small local file's bytes, read with one ``read``, as an in-memory file.

    None (read it through :func:`~pixels.sources.open_file`, which names what is
    wrong) when it is not a local file of at most :data:`WHOLE_FILE_BYTES` bytes, cannot
    be opened or read, or no longer has the length it was listed with. ``fd``: the file
    opened already (read from offset 0, left open).
    """
    if not reads_whole(ref):
        return None
    assert ref.local_path is not None
    own = fd is None
    try:
        if fd is None:
            fd = os.open(os_path(ref.local_path), os.O_RDONLY)
    except OSError:
        return None
    try:
        data = os.read(fd, ref.length + 1) if own else os.pread(fd, ref.length + 1, 0)
    except OSError:
        return None
    finally:
        if own:
            os.close(fd)
    if len(data) != ref.length:
        return None
    whole = io.BytesIO(data)
    whole.name = ref.local_path  # as an open file's (pydicom's filename)
    return whole


def header_record(
    ref: FileRef,
    fp: BinaryIO,
    header: Header,
    options: RecordOptions | None = None,
    warnings: list[str] | None = None,
) -> dict[str, Any]:
    """The catalog row of a DICOM file whose header was read already from ``fp``.

    The same row as :func:`catalog_record` makes from the same bytes, without reading
    the header again: STOW-RS reads each part once, to check it and to catalog it
    (``fp`` holds the part, ``ref`` names the file it was stored as). ``warnings``:
    what the header read raised (:func:`~pixels.dicom.notices.kept_warnings`).
    """
    opts = options or RecordOptions()
    row = file_columns(ref, opts.storage_options)
    row["file_type"] = "dicom"
    with kept_warnings() as kept:
        try:
            _fill_dicom(row, fp, header, ref.path, opts)
        except PixelsError as e:
            row["error"] = str(e)
        except Exception as e:  # as catalog_record: one bad row, never a raise
            row["error"] = f"{ref.path}: {type(e).__name__}: {e}"
    row["warnings"] = list(dict.fromkeys([*(warnings or []), *kept])) or None
    row["cataloged_at"] = datetime.now(UTC)
    return row


def _fill_dicom(
    row: dict[str, Any], fp: BinaryIO, header: Header, path: str, opts: RecordOptions
) -> None:
    """Fill ``row`` from a DICOM file's header (read from ``fp``) and its frame index."""
    from pixels.dicom.keycols import TIME_COLUMNS  # (loaded with the header reader)

    row["meta"] = header.meta
    row["forced"] = header.forced
    keys = header.keys
    if keys.keys() == _KEY_SET:  # (key_values gives every key column)
        row.update(keys)
        for name in TIME_COLUMNS:
            value = keys[name]
            if isinstance(value, dt.time):
                row[name] = value.isoformat()
    else:
        for name in _KEY_NAMES:
            value = keys.get(name)
            row[name] = value.isoformat() if isinstance(value, dt.time) else value
    if header.problem:
        row["error"] = f"{path}: {header.problem}"
    else:
        if header.trailing:  # the header and pixel data are whole: keep them
            row["error"] = f"{path}: {header.trailing}"
        _add_frames(row, fp, header, path)
        if opts.thumbnails and row["frame_offsets"]:
            add_thumbnail(row, fp, header.model or header.meta, opts)
    if opts.remove_un_tags and row["meta"]:
        row["meta"] = without_un(row["meta"])


def _add_frames(row: dict[str, Any], fp: BinaryIO, header: Header, path: str) -> None:
    """Fill the frame index columns; a malformed pixel data keeps the header and sets ``error``."""
    from pixels.dicom.frames import index_from_header

    model = header.model if header.model is not None else json.loads(header.meta)
    try:
        index = index_from_header(fp, model, path=path, transfer_syntax=header.transfer_syntax)
    except DicomReadError as e:
        row["error"] = str(e)
        return
    if index is None:
        return
    row["frame_offsets"] = list(index.offsets)
    row["frame_lengths"] = list(index.lengths)
    if index.fragments is not None and any(len(f) > 1 for f in index.fragments):
        row["frame_fragments"] = [[x for pair in frame for x in pair] for frame in index.fragments]
    if index.bit_offsets is not None:
        row["frame_bit_offsets"] = list(index.bit_offsets)


def add_thumbnail(row: dict[str, Any], fp: BinaryIO, meta: Any, opts: RecordOptions) -> None:
    """Fill the thumbnail columns of ``row`` (a decode failure goes to ``thumbnail_error`` only)."""
    from pixels.dicom.thumb import thumbnail_from_file

    for col in THUMBNAIL_COLUMNS:
        row[col.name] = None
    try:
        thumb = thumbnail_from_file(
            fp,
            meta,
            row.get("TransferSyntaxUID") or "",
            path=row["path"],
            max_size=opts.thumbnail_size,
            fmt=opts.thumbnail_format,
            index=frame_index_of(row),
        )
    except PixelsError as e:
        row["thumbnail_error"] = str(e)
        return
    except Exception as e:  # a codec failing on a broken frame: still only this column
        row["thumbnail_error"] = f"{row['path']}: {type(e).__name__}: {e}"
        return
    if thumb is not None:
        row.update(
            thumbnail=thumb.data,
            thumbnail_format=thumb.format,
            thumbnail_width=thumb.width,
            thumbnail_height=thumb.height,
            thumbnail_frame=thumb.frame,
        )


def thumbnail_rows(rows: Sequence[dict[str, Any]], options: RecordOptions) -> list[dict[str, Any]]:
    """Thumbnail columns for catalog rows (pure: one open and one frame read per row)."""
    out = []
    for row in rows:
        cols = dict(row)
        try:
            with open_file(
                FileRef.from_row(row),
                storage_options=options.storage_options,
                limits=options.limits,
            ) as fp:
                add_thumbnail(cols, fp, row["meta"], options)
        except Exception as e:  # the file vanished or cannot be opened: say so in this row
            for name in _THUMB_NAMES:
                cols[name] = None
            cols["thumbnail_error"] = str(e) if row["path"] in str(e) else f"{row['path']}: {e}"
        out.append({k: cols[k] for k in _THUMB_NAMES})
    return out


_THUMB_NAMES = [c.name for c in THUMBNAIL_COLUMNS]


def frame_index_of(row: dict[str, Any], transfer_syntax: str | None = None) -> Any:
    """Rebuild a :class:`~pixels.dicom.frames.FrameIndex` from a catalog row (None without one)."""
    from pixels.dicom.frames import FrameIndex

    offsets = row.get("frame_offsets")
    if not offsets:
        return None
    ts = transfer_syntax or row.get("TransferSyntaxUID") or ""
    encapsulated = ts not in NATIVE_SYNTAXES
    lengths = row["frame_lengths"]
    fragments = row.get("frame_fragments")
    frags: tuple[tuple[tuple[int, int], ...], ...] | None = None
    if encapsulated:
        if fragments is None:
            frags = tuple(((o, n),) for o, n in zip(offsets, lengths, strict=True))
        else:
            frags = tuple(tuple((f[i], f[i + 1]) for i in range(0, len(f), 2)) for f in fragments)
    bits = row.get("frame_bit_offsets")
    swapped = False
    if ts == EXPLICIT_BE and row.get("meta"):  # bit-packed OW: words byte-swapped
        meta = json.loads(row["meta"])
        allocated = ((meta.get("00280100") or {}).get("Value") or [None])[0]
        swapped = allocated == 1 and (meta.get("7FE00010") or {}).get("vr") == "OW"
    return FrameIndex(
        tuple(offsets), tuple(lengths), frags, encapsulated, tuple(bits) if bits else None, swapped
    )


def catalog_batch(refs: Sequence[FileRef], options: RecordOptions | None = None) -> pa.RecordBatch:
    """Catalog several files and return their rows as one Arrow record batch."""
    rows = [catalog_record(r, options) for r in refs]
    return pa.RecordBatch.from_pylist(rows, schema=SCHEMA)
