"""Transformers with the dbx.pixels names, for both engines.

Each has ``transform(data)``: given a Spark DataFrame it returns a Spark
DataFrame (the work runs in the executors, see :mod:`pixels.engines.spark.transform`);
given an Arrow table or a pandas DataFrame it does the same work in this process
and returns an Arrow table. Either way the same per-file functions run.

Examples
--------
>>> from pixels import Catalog
>>> from pixels.dicom import DicomMetaExtractor, DicomThumbnailExtractor
>>> catalog = Catalog(spark, table="/lake/pixels/object_catalog")    # doctest: +SKIP
>>> meta_df = DicomMetaExtractor(catalog).transform(catalog.catalog("/data/dicom"))  # doctest: +SKIP
>>> catalog.save(DicomThumbnailExtractor().transform(meta_df))        # doctest: +SKIP
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from pixels.dicom.record import RecordOptions, catalog_batch, thumbnail_rows
from pixels.engines.spark.session import is_spark_dataframe
from pixels.errors import PixelsError
from pixels.rows import THUMBNAIL_INPUTS, path_refs, ref_of, refs_to_batch, tag_hex, tag_value
from pixels.schema import SCHEMA, THUMBNAIL_COLUMNS
from pixels.sources import ArchiveLimits

_THUMB_NAMES = [c.name for c in THUMBNAIL_COLUMNS]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _arrow(data: Any) -> pa.Table:
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return pa.Table.from_pandas(data, preserve_index=False)
    raise TypeError(
        f"expected a Spark DataFrame, an Arrow table or a pandas DataFrame, not {type(data).__name__}"
    )


def _set_columns(table: pa.Table, columns: dict[str, pa.Array]) -> pa.Table:
    for name, col in columns.items():
        field = SCHEMA.field(name) if name in SCHEMA.names else pa.field(name, col.type)
        if name in table.column_names:
            table = table.set_column(table.schema.get_field_index(name), field, col)
        else:
            table = table.append_column(field, col)
    return table


class PathExtractor:
    """File columns (``relative_path``, ``local_path``, ``extension``, ``path_tags``) from paths.

    For DataFrames of paths that did not come from :meth:`Catalog.catalog`
    (a list of files, a ``binaryFile`` listing). No file is read.

    Parameters
    ----------
    inputCol : str
        Column of paths or Spark file URIs (``file:/...``, ``s3a://...``).
    basePath : str, optional
        Root that ``relative_path`` is relative to.
    """

    def __init__(self, inputCol: str = "path", basePath: str | None = None):
        self.inputCol = inputCol
        self.basePath = basePath

    def transform(self, data: Any) -> Any:
        """Add the file columns (see the class docstring)."""
        if is_spark_dataframe(data):
            from pixels.engines.spark.transform import path_transform

            return path_transform(data, self.inputCol, self.basePath)
        table = _arrow(data)
        refs = path_refs(table.to_pylist(), self.inputCol, self.basePath)
        files = pa.Table.from_batches([refs_to_batch(refs)])
        rest = table.drop_columns(
            [c for c in table.column_names if c in files.column_names or c == self.inputCol]
        )
        for name in rest.column_names:
            files = files.append_column(rest.schema.field(name), rest.column(name))
        return files


class TagExtractor:
    """Columns of DICOM attribute values taken from ``meta`` (no file is read).

    Parameters
    ----------
    tags : list of str or dict
        DICOM keywords or ``ggggeeee`` tags; a dict maps output column -> tag.
    inputCol : str
        The DICOM JSON column.

    Examples
    --------
    >>> TagExtractor(["Modality", "SliceThickness"]).transform(meta_df)   # doctest: +SKIP
    """

    def __init__(self, tags: list[str] | dict[str, str], inputCol: str = "meta"):
        self.tags = dict(tags) if isinstance(tags, dict) else {t: t for t in tags}
        self.inputCol = inputCol

    def transform(self, data: Any) -> Any:
        """Add one string column per tag (multi-valued values joined with ``\\``)."""
        if is_spark_dataframe(data):
            from pixels.engines.spark.transform import tag_transform

            return tag_transform(data, self.tags, self.inputCol)
        table = _arrow(data)
        if self.inputCol not in table.column_names:
            raise PixelsError(
                f"TagExtractor needs the column {self.inputCol!r} (run DicomMetaExtractor first)"
            )
        metas = table.column(self.inputCol).to_pylist()
        resolved = {col: tag_hex(tag) for col, tag in self.tags.items()}
        new = {c.lower() for c in resolved}
        table = table.select([c for c in table.column_names if c.lower() not in new])
        for col, t in resolved.items():
            table = table.append_column(
                col, pa.array([tag_value(m, t) for m in metas], pa.string())
            )
        return table


class DicomMetaExtractor:
    """Read each file once: DICOM JSON ``meta``, typed key columns, frame index, errors.

    Parameters
    ----------
    catalog : Catalog or SparkCatalog, optional
        Supplies the storage options of the listed source.
    bulk_threshold : int
        Binary values longer than this go to ``meta`` as a BulkDataURI.
    storage_options : dict, optional
        fsspec options to open the files (default: the catalog's).
    limits : ArchiveLimits, optional
        Zip member limits.
    thumbnails : bool
        Also make the thumbnail in the same read (what :class:`DicomThumbnailExtractor` adds).
    """

    def __init__(
        self,
        catalog: Any = None,
        *,
        bulk_threshold: int = 1024,
        storage_options: dict[str, Any] | None = None,
        limits: ArchiveLimits | None = None,
        thumbnails: bool = False,
        thumbnail_size: int = 256,
        thumbnail_format: str = "jpeg",
    ):
        if storage_options is None and catalog is not None:
            storage_options = getattr(catalog, "source_storage_options", None)
        self.options = RecordOptions(
            bulk_threshold=bulk_threshold,
            storage_options=storage_options,
            limits=limits or ArchiveLimits(),
            thumbnails=thumbnails,
            thumbnail_size=thumbnail_size,
            thumbnail_format=thumbnail_format,
        )

    def transform(self, data: Any) -> Any:
        """Catalog rows for the files of a listing (Spark DataFrame in, Spark DataFrame out)."""
        if is_spark_dataframe(data):
            from pixels.engines.spark.transform import meta_transform

            return meta_transform(data, self.options)
        table = _arrow(data)
        refs = [ref_of(r) for r in table.to_pylist()]
        out = pa.Table.from_batches([catalog_batch(refs, self.options)], schema=SCHEMA)
        for name in table.column_names:
            if name not in SCHEMA.names:
                out = out.append_column(table.schema.field(name), table.column(name))
        return out


class DicomThumbnailExtractor:
    """Thumbnail columns for catalog rows (the frame read at the row's frame index).

    Parameters
    ----------
    max_size : int
        Longest side of the thumbnails.
    fmt : str
        ``"jpeg"`` (default) or ``"png"``.
    storage_options : dict, optional
        fsspec options to open files on object stores.

    Examples
    --------
    >>> rows = Catalog("./catalog").sql_arrow("SELECT * FROM object_catalog WHERE Modality = 'CT'")  # doctest: +SKIP
    >>> with_thumbs = DicomThumbnailExtractor(max_size=128).transform(rows)                          # doctest: +SKIP
    """

    def __init__(
        self, max_size: int = 256, fmt: str = "jpeg", storage_options: dict[str, Any] | None = None
    ):
        self.options = RecordOptions(
            thumbnails=True,
            thumbnail_size=max_size,
            thumbnail_format=fmt,
            storage_options=storage_options,
        )

    def transform(self, data: Any) -> Any:
        """Return the rows with the thumbnail columns set."""
        if is_spark_dataframe(data):
            from pixels.engines.spark.transform import thumbnail_transform

            return thumbnail_transform(data, self.options)
        table = _arrow(data)
        missing = sorted(THUMBNAIL_INPUTS - set(table.column_names))
        if missing:
            raise PixelsError(
                "DicomThumbnailExtractor needs catalog rows; missing columns: "
                f"{', '.join(missing)} (run DicomMetaExtractor first)"
            )
        rows = table.to_pylist()
        todo = [i for i, r in enumerate(rows) if r.get("frame_offsets")]
        made = dict(zip(todo, thumbnail_rows([rows[i] for i in todo], self.options), strict=True))
        columns = {}
        for n in _THUMB_NAMES:
            values = [made[i][n] if i in made else rows[i].get(n) for i in range(len(rows))]
            columns[n] = pa.array(values, SCHEMA.field(n).type)
        return _set_columns(table, columns)


__all__ = ["DicomMetaExtractor", "DicomThumbnailExtractor", "PathExtractor", "TagExtractor"]
