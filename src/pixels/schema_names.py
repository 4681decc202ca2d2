"""The catalog's names that need no Arrow: the view, the table description, the column names.

:mod:`pixels.schema` defines the columns (with their Arrow types) and checks at import
that :data:`COLUMN_NAMES` lists them in order; this module exists so that a reader that
never touches Arrow (``pixels sql`` reading the Delta log with DuckDB alone) can tell a
table in the current schema without importing pyarrow (~0.1 s of a look-up's start).
"""

from __future__ import annotations

__all__ = ["COLUMN_NAMES", "DESCRIPTION", "SCHEMA_VERSION", "VIEW_NAME"]

#: Version of the table layout; stored in the Delta table's configuration.
SCHEMA_VERSION = 2
#: The table description, naming the schema version its rows are in (delta-rs
#: accepts no custom table property): an older one means rows to upgrade.
DESCRIPTION = f"Pixels catalog: one row per file (pixels schema {SCHEMA_VERSION})"

#: Name of the SQL view over the table.
VIEW_NAME = "object_catalog"

#: The catalog's columns in table order (:data:`pixels.schema.SCHEMA` ``.names``).
COLUMN_NAMES: tuple[str, ...] = (
    "path",
    "modificationTime",
    "length",
    "original_path",
    "relative_path",
    "local_path",
    "extension",
    "file_type",
    "path_tags",
    "is_anon",
    "meta",
    "rowId",
    "version_tag",
    "forced",
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "AccessionNumber",
    "SeriesInstanceUID",
    "SeriesNumber",
    "SeriesDescription",
    "Modality",
    "BodyPartExamined",
    "SOPInstanceUID",
    "SOPClassUID",
    "InstanceNumber",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "BitsAllocated",
    "PhotometricInterpretation",
    "TransferSyntaxUID",
    "Manufacturer",
    "frame_offsets",
    "frame_lengths",
    "frame_fragments",
    "frame_bit_offsets",
    "thumbnail",
    "thumbnail_format",
    "thumbnail_width",
    "thumbnail_height",
    "thumbnail_frame",
    "thumbnail_error",
    "error",
    "cataloged_at",
    "warnings",
)
