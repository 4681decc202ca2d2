"""The catalog's schema, defined once.

Everything else derives from :data:`COLUMNS`: the Arrow schema the Delta table is
written with, the Spark schema, and the column table in the README
(``python -m pixels.schema --markdown``).

File columns follow dbx.pixels' names (``path``, ``modificationTime``, ``length``,
``relative_path``, ``local_path``, ``extension``, ``path_tags``, ``meta``);
DICOM attributes are named by their DICOM keyword (``StudyInstanceUID``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa

from pixels.schema_names import COLUMN_NAMES
from pixels.schema_names import DESCRIPTION as DESCRIPTION
from pixels.schema_names import SCHEMA_VERSION as SCHEMA_VERSION
from pixels.schema_names import VIEW_NAME as VIEW_NAME


@dataclass(frozen=True, slots=True)
class Column:
    """One column of the catalog.

    Attributes
    ----------
    name : str
        Column name.
    type : pyarrow.DataType
        Arrow type.
    doc : str
        One line for the README.
    tag : int or None
        For key columns, the DICOM tag they are read from.
    """

    name: str
    type: pa.DataType
    doc: str
    tag: int | None = None


TIMESTAMP = pa.timestamp("us", tz="UTC")

#: Columns that describe the file itself (known before it is read). The first nine
#: are dbx.pixels' listing columns in dbx.pixels' order (code that reads them by
#: position keeps working); Pixels' own columns follow.
FILE_COLUMNS: tuple[Column, ...] = (
    Column(
        "path",
        pa.string(),
        "Absolute path or URL of the file; zip members as `zip://member::archive`.",
    ),
    Column(
        "modificationTime",
        TIMESTAMP,
        "Last modification time of the file (UTC), in whole milliseconds (see `MTIME_UNIT`).",
    ),
    Column("length", pa.int64(), "File size in bytes (zip member: uncompressed size)."),
    Column("original_path", pa.string(), "The archive a member came from; null for plain files."),
    Column("relative_path", pa.string(), "Path relative to the cataloged root, `/`-separated."),
    Column(
        "local_path",
        pa.string(),
        "Path on local disk holding the bytes, null for URLs and in-memory zip members.",
    ),
    Column("extension", pa.string(), "Lower-case file extension without the dot."),
    Column(
        "file_type",
        pa.string(),
        "Detected from magic bytes: dicom, png, jpeg, tiff, nifti, zip, gzip, unknown.",
    ),
    Column(
        "path_tags",
        pa.list_(pa.string()),
        "Words of `relative_path` as dbx.pixels splits it (at `_ . / : @` after a letter or digit; "
        "the last 5): `a/patient5397_1.dcm` -> `[a, patient5397, 1, dcm]`. Folders: "
        "`split(relative_path, '/')`.",
    ),
    Column(
        "is_anon",
        pa.bool_(),
        "True when the storage is read without credentials (local files, `anon=True` object "
        "stores), as dbx.pixels' `is_anon`; null for rows written before the column existed "
        "from URLs.",
    ),
    Column(
        "rowId",
        pa.int64(),
        "Stable id of the file's row: the first 8 bytes of BLAKE2b(`path`) as a signed 64-bit "
        "integer (the same for a path in every run and both engines; see `row_id`).",
    ),
    Column(
        "version_tag",
        pa.string(),
        "Version of the bytes as the listing gives it without reading them: `crc32:1a2b3c4d` for zip members, `etag:...` (or `version:...`) for objects in stores; null for local files.",
    ),
)

#: Columns produced by reading the DICOM header.
DICOM_COLUMNS: tuple[Column, ...] = (
    Column(
        "meta",
        pa.string(),
        "DICOM JSON model (PS3.18 F.2) of the header, bulk data as BulkDataURI.",
    ),
    Column(
        "forced",
        pa.bool_(),
        "True when the file had no preamble/`DICM` prefix and was read with force.",
    ),
)

#: Typed key columns, named by DICOM keyword; values come from the header.
KEY_COLUMNS: tuple[Column, ...] = (
    Column("PatientID", pa.string(), "(0010,0020) Patient ID.", 0x00100020),
    Column(
        "PatientName",
        pa.string(),
        "(0010,0010) Patient's Name as written (`Family^Given=Ideographic`).",
        0x00100010,
    ),
    Column(
        "PatientBirthDate",
        pa.date32(),
        "(0010,0030) Patient's Birth Date; null when absent or not a valid DA.",
        0x00100030,
    ),
    Column("PatientSex", pa.string(), "(0010,0040) Patient's Sex.", 0x00100040),
    Column("StudyInstanceUID", pa.string(), "(0020,000D) Study Instance UID.", 0x0020000D),
    Column(
        "StudyDate",
        pa.date32(),
        "(0008,0020) Study Date; null when absent or not a valid DA.",
        0x00080020,
    ),
    Column(
        "StudyTime",
        pa.string(),
        "(0008,0030) Study Time as ISO `HH:MM:SS[.ffffff]` (Delta has no time type); null when absent or not a valid TM.",
        0x00080030,
    ),
    Column("StudyDescription", pa.string(), "(0008,1030) Study Description.", 0x00081030),
    Column("AccessionNumber", pa.string(), "(0008,0050) Accession Number.", 0x00080050),
    Column("SeriesInstanceUID", pa.string(), "(0020,000E) Series Instance UID.", 0x0020000E),
    Column("SeriesNumber", pa.int64(), "(0020,0011) Series Number.", 0x00200011),
    Column("SeriesDescription", pa.string(), "(0008,103E) Series Description.", 0x0008103E),
    Column("Modality", pa.string(), "(0008,0060) Modality.", 0x00080060),
    Column("BodyPartExamined", pa.string(), "(0018,0015) Body Part Examined.", 0x00180015),
    Column("SOPInstanceUID", pa.string(), "(0008,0018) SOP Instance UID.", 0x00080018),
    Column("SOPClassUID", pa.string(), "(0008,0016) SOP Class UID.", 0x00080016),
    Column("InstanceNumber", pa.int64(), "(0020,0013) Instance Number.", 0x00200013),
    Column("Rows", pa.int32(), "(0028,0010) Rows.", 0x00280010),
    Column("Columns", pa.int32(), "(0028,0011) Columns.", 0x00280011),
    Column(
        "NumberOfFrames", pa.int32(), "(0028,0008) Number of Frames (null when absent).", 0x00280008
    ),
    Column("BitsAllocated", pa.int32(), "(0028,0100) Bits Allocated.", 0x00280100),
    Column(
        "PhotometricInterpretation",
        pa.string(),
        "(0028,0004) Photometric Interpretation.",
        0x00280004,
    ),
    Column(
        "TransferSyntaxUID",
        pa.string(),
        "(0002,0010) Transfer Syntax UID from the file meta (or as read).",
        0x00020010,
    ),
    Column("Manufacturer", pa.string(), "(0008,0070) Manufacturer.", 0x00080070),
)

#: Where each frame's bytes are, found during the header pass (one ranged read per frame).
FRAME_COLUMNS: tuple[Column, ...] = (
    Column(
        "frame_offsets",
        pa.list_(pa.int64()),
        "Byte offset in the file of each frame's data (encapsulated: its first fragment's value).",
    ),
    Column(
        "frame_lengths",
        pa.list_(pa.int64()),
        "Byte length of each frame (encapsulated: sum of its fragments).",
    ),
    Column(
        "frame_fragments",
        pa.list_(pa.list_(pa.int64())),
        "Only when a frame spans several fragments: per frame `[offset, length, offset, length, ...]` of its fragments; else null.",
    ),
    Column(
        "frame_bit_offsets",
        pa.list_(pa.int32()),
        "Only for 1-bit pixel data whose frames do not start on a byte: the starting bit in the first byte; else null.",
    ),
)

#: The thumbnail (``--thumbnails`` or ``pixels thumbnails``).
THUMBNAIL_COLUMNS: tuple[Column, ...] = (
    Column(
        "thumbnail",
        pa.binary(),
        "Thumbnail image bytes (JPEG or PNG), display pipeline applied, longest side `thumbnail_width`/`height`; null when not made or no pixel data.",
    ),
    Column("thumbnail_format", pa.string(), "`jpeg` or `png`."),
    Column("thumbnail_width", pa.int32(), "Thumbnail width in pixels."),
    Column("thumbnail_height", pa.int32(), "Thumbnail height in pixels."),
    Column(
        "thumbnail_frame",
        pa.int32(),
        "Frame shown (0-based; the middle frame of multi-frame files).",
    ),
    Column(
        "thumbnail_error",
        pa.string(),
        "Why the thumbnail could not be made (the rest of the row is fine); null otherwise.",
    ),
)

#: Bookkeeping columns.
STATUS_COLUMNS: tuple[Column, ...] = (
    Column(
        "error",
        pa.string(),
        "Why the file could not be read (names the file and, where known, the tag); null when fine.",
    ),
    Column("cataloged_at", TIMESTAMP, "When this row was written."),
)

#: Columns added after the first release (schema evolution appends them to old tables).
ADDED_COLUMNS: tuple[Column, ...] = (
    Column(
        "warnings",
        pa.list_(pa.string()),
        "Warnings from reading the file that did not stop it (pydicom: invalid VR values, implicit/explicit VR mismatch), each with the tag `(gggg,eeee)` where known; null when none.",
    ),
)

#: dbx.pixels' table columns first, in its order (path ... is_anon, meta), then Pixels' own.
_DBX_FILE_COLUMNS = 10
COLUMNS: tuple[Column, ...] = (
    FILE_COLUMNS[:_DBX_FILE_COLUMNS]
    + DICOM_COLUMNS[:1]
    + FILE_COLUMNS[_DBX_FILE_COLUMNS:]
    + DICOM_COLUMNS[1:]
    + KEY_COLUMNS
    + FRAME_COLUMNS
    + THUMBNAIL_COLUMNS
    + STATUS_COLUMNS
    + ADDED_COLUMNS
)

#: The Arrow schema of the catalog table.
SCHEMA: pa.Schema = pa.schema(
    [pa.field(c.name, c.type, nullable=c.name != "path") for c in COLUMNS]
)
if tuple(SCHEMA.names) != COLUMN_NAMES:  # the Arrow-free list (pixels.schema_names) must follow
    raise RuntimeError("pixels.schema_names.COLUMN_NAMES differs from the columns of SCHEMA")

#: Key columns by DICOM tag.
KEY_TAGS: dict[int, Column] = {c.tag: c for c in KEY_COLUMNS if c.tag is not None}

#: Columns that identify one version of one file: a row is replaced when any changes
#: (see :func:`same_version` for ``version_tag``).
IDENTITY: tuple[str, ...] = ("path", "length", "modificationTime", "version_tag")


#: Precision of ``modificationTime`` everywhere: milliseconds. Spark's file source
#: (Hadoop's ``FileStatus``) gives milliseconds, ``os.stat`` nanoseconds, S3 seconds,
#: zip members two seconds: every listing truncates to milliseconds
#: (:func:`mtime_ms`), so both engines write the same value for the same file, and
#: identities are compared in milliseconds (rows written at microseconds by older
#: versions still match). The column stays a microsecond timestamp (Delta's only one).
MTIME_UNIT = "ms"


def mtime_ms(value: datetime) -> datetime:
    """``value`` truncated to whole milliseconds (:data:`MTIME_UNIT`).

    Examples
    --------
    >>> from datetime import UTC
    >>> mtime_ms(datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)).microsecond
    123000
    """
    return value.replace(microsecond=value.microsecond - value.microsecond % 1000)


def _ms(value: Any) -> Any:
    return mtime_ms(value) if isinstance(value, datetime) else value


def same_version(held: tuple[Any, Any, str | None], listed: tuple[Any, Any, str | None]) -> bool:
    """The identity rule for one path: is ``listed`` the version the table holds?

    Both are ``(length, modificationTime, version_tag)``. Same length and time,
    and the same ``version_tag`` where both sides have one: a null tag (rows
    written before the column existed, Spark's file listing) is unknown, not a
    difference, so adding the column does not make every file look changed.
    Times compare in milliseconds (:data:`MTIME_UNIT`): rows written with
    microseconds by older versions match the same file listed now.

    Examples
    --------
    >>> same_version((10, 1, "crc32:00000001"), (10, 1, "crc32:00000002"))
    False
    >>> same_version((10, 1, None), (10, 1, "crc32:00000002"))
    True
    """
    if held[0] != listed[0] or _ms(held[1]) != _ms(listed[1]):
        return False
    return held[2] is None or listed[2] is None or held[2] == listed[2]


def row_id(path: str) -> int:
    """The ``rowId`` of the row of ``path``: stable across runs, engines and machines.

    The first 8 bytes of BLAKE2b over the UTF-8 path, as a signed 64-bit integer
    (Spark's and Delta's ``bigint``). A path's row keeps its id when the file changes.

    Examples
    --------
    >>> row_id("/data/a.dcm") == row_id("/data/a.dcm") != row_id("/data/b.dcm")
    True
    """
    import hashlib

    digest = hashlib.blake2b(path.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def anonymous(path: str, storage_options: dict[str, Any] | None = None) -> bool:
    """``is_anon`` of a file: read without credentials.

    Local files (and ``file:``, ``dbfs:``, ``/Volumes`` paths) are, as dbx.pixels
    says; an object-store URL is when its storage options say ``anon=True``.

    Examples
    --------
    >>> anonymous("/data/a.dcm"), anonymous("s3://b/a.dcm"), anonymous("s3://b/a.dcm", {"anon": True})
    (True, False, True)
    """
    head = path.split("::")[-1]  # a zip member: the archive's storage
    scheme = head.split("://", 1)[0] if "://" in head else ""
    if scheme in ("", "file", "dbfs", "zip"):
        return True
    anon = (storage_options or {}).get("anon")
    return str(anon).lower() in ("1", "true", "yes") if anon is not None else False


def empty_row() -> dict[str, Any]:
    """Return a row with every column set to null (``path`` must be filled in)."""
    return {c.name: None for c in COLUMNS}


def to_spark_schema() -> Any:
    """Return the catalog schema as a ``pyspark.sql.types.StructType``.

    Raises
    ------
    ImportError
        When pyspark is not installed (``pip install pixels-lake[spark]``).
    """
    try:
        from pyspark.sql.pandas.types import from_arrow_schema
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("to_spark_schema needs pyspark: pip install 'pixels-lake[spark]'") from e
    return from_arrow_schema(SCHEMA)


def markdown_table() -> str:
    """Return the columns as a Markdown table (used to write the README)."""
    lines = ["| column | type | meaning |", "|---|---|---|"]
    for c in COLUMNS:
        lines.append(f"| `{c.name}` | `{c.type}` | {c.doc} |")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    if "--markdown" in sys.argv:
        print(markdown_table())
