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

from pixels.dicom.record import RecordOptions, thumbnail_rows
from pixels.engines.spark.session import is_spark_dataframe
from pixels.errors import PixelsError
from pixels.patching import DicomPatcher as _Patcher
from pixels.rows import (
    THUMBNAIL_INPUTS,
    catalog_rows,
    path_refs,
    ref_of,
    refs_to_batch,
    tag_hex,
    tag_value,
)
from pixels.schema import SCHEMA, THUMBNAIL_COLUMNS
from pixels.sources import ArchiveLimits
from pixels.sources.local import path_tags_of

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
    tagsCol : str
        Accepted for dbx.pixels code (which ignores it too): the words of the path
        are always in ``path_tags``.
    basePath : str, optional
        Root that ``relative_path`` is relative to (dbx.pixels' default ``dbfs:/``
        leaves other paths whole, without their leading ``/``).
    """

    def __init__(
        self, inputCol: str = "path", tagsCol: str = "tags", basePath: str | None = "dbfs:/"
    ):
        self.inputCol = inputCol
        self.tagsCol = tagsCol
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

    dbx.pixels' ``TagExtractor(inputCol="path", outputCol="tags", basePath="dbfs:/")``
    splits paths into words instead; called that way (no list of tags: only
    keyword arguments, or a column name first) it does the same here: ``outputCol``
    gets the words of ``relative_path`` as :data:`path_tags <pixels.schema.COLUMNS>`
    splits them (all of them).

    Parameters
    ----------
    tags : list of str or dict
        DICOM keywords or ``ggggeeee`` tags; a dict maps output column -> tag.
    inputCol : str
        The DICOM JSON column (dbx.pixels form: the path column).
    outputCol, basePath : str
        dbx.pixels form only: the column of path words, and the root paths are relative to.

    Examples
    --------
    >>> TagExtractor(["Modality", "SliceThickness"]).transform(meta_df)   # doctest: +SKIP
    >>> TagExtractor(inputCol="path", outputCol="tags").transform(catalog_df)  # doctest: +SKIP
    """

    def __init__(
        self,
        tags: list[str] | dict[str, str] | str | None = None,
        inputCol: str | None = None,
        outputCol: str | None = None,
        basePath: str | None = None,
    ):
        self.path_words = tags is None or isinstance(tags, str)
        if self.path_words:
            # dbx.pixels' signature: (inputCol="path", outputCol="tags", basePath="dbfs:/")
            if isinstance(tags, str):  # positional: (inputCol, outputCol, basePath)
                inputCol, outputCol, basePath = tags, inputCol, outputCol
            self.inputCol = inputCol or "path"
            self.outputCol = outputCol or "tags"
            self.basePath: str | None = basePath if basePath is not None else "dbfs:/"
            self.tags: dict[str, str] = {}
            return
        if outputCol is not None or basePath is not None:
            raise PixelsError(
                "TagExtractor: outputCol and basePath belong to the path form "
                "(TagExtractor(inputCol='path', outputCol='tags')); with a list of DICOM tags "
                "each tag is its own column"
            )
        assert tags is not None
        self.tags = dict(tags) if isinstance(tags, dict) else {t: t for t in tags}
        self.inputCol = inputCol or "meta"
        self.outputCol = ""
        self.basePath = None

    def transform(self, data: Any) -> Any:
        """Add one string column per tag (multi-valued values joined with ``\\``)."""
        if self.path_words:
            return self._path_words(data)
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

    def _path_words(self, data: Any) -> Any:
        if is_spark_dataframe(data):
            from pixels.engines.spark.transform import path_words_transform

            return path_words_transform(data, self.inputCol, self.outputCol, self.basePath)
        table = _arrow(data)
        if self.inputCol not in table.column_names:
            raise PixelsError(f"TagExtractor needs the column {self.inputCol!r} of paths")
        refs = path_refs(table.to_pylist(), self.inputCol, self.basePath)
        words = [list(path_tags_of(r.relative_path, keep=None)) for r in refs]
        return _set_columns(
            table.drop_columns([c for c in table.column_names if c == self.outputCol]),
            {
                "relative_path": pa.array([r.relative_path for r in refs], pa.string()),
                self.outputCol: pa.array(words, pa.list_(pa.string())),
            },
        )


#: ``method`` values of :class:`DicomThumbnailExtractor`: dbx.pixels' renderers
#: (matplotlib with scale bars, Pillow) are all Pixels' display pipeline here.
THUMBNAIL_METHODS = ("pixels", "matplotlib", "pillow")


def _check_path_col(name: str, what: str) -> None:
    if name not in ("local_path", "path"):
        raise PixelsError(
            f"{what}: inputCol={name!r} is not supported: Pixels opens each file from its "
            "catalog row ('path', with 'local_path'/'original_path'); run PathExtractor("
            f"inputCol={name!r}) first to make catalog rows of a column of paths"
        )


class DicomMetaExtractor:
    """Read each file once: DICOM JSON ``meta``, typed key columns, frame index, errors.

    The arguments before ``*`` are dbx.pixels', in its order and with its defaults.

    Parameters
    ----------
    catalog : Catalog or SparkCatalog, optional
        Supplies the storage options of the listed source.
    inputCol : {"local_path", "path"}
        Accepted as dbx.pixels names it: each file is opened from its catalog row.
    outputCol : str
        ``"meta"`` (the table's column; another name is refused, saying so).
    basePath : str
        Accepted (dbx.pixels does not use it either).
    deep : bool
        ``False`` (the default): the header is read and reading stops before the pixel
        data, as dbx.pixels. ``True`` (dbx.pixels' pixel statistics in ``meta``) is
        refused: Pixels keeps ``meta`` pure DICOM JSON and indexes the frames instead.
    useVariant : bool
        On Spark 4, ``meta`` of the returned DataFrame is a ``VARIANT`` (``meta:['00100010']``
        paths work); :meth:`SparkCatalog.save` stores it as JSON text, the table's one
        definition. Spark 3.5 has no VARIANT: ``meta`` stays text (logged once).
        Arrow/pandas input: always text.
    maxWorkers : int, optional
        Threads reading files at once in each Spark task (or in this process for
        Arrow/pandas input); default 1 (one file after the other).
    remove_un_tags : bool
        Leave elements of VR ``UN`` out of ``meta`` (in sequences too).
    permissive : bool
        With a VARIANT ``meta``: ``try_parse_json`` instead of ``parse_json`` and a
        ``_corrupt_record`` column holding the text of rows that did not parse (the
        JSON Pixels writes always parses; bad files are rows with ``error`` set, in
        either mode).
    bulk_threshold : int
        Binary values longer than this go to ``meta`` as a BulkDataURI.
    storage_options : dict, optional
        fsspec options to open the files (default: the catalog's).
    limits : ArchiveLimits, optional
        Zip member limits.
    thumbnails : bool
        Also make the thumbnail in the same read (what :class:`DicomThumbnailExtractor` adds).
    """

    MAX_WORKERS = 1

    def __init__(
        self,
        catalog: Any = None,
        inputCol: str = "local_path",
        outputCol: str = "meta",
        basePath: str = "dbfs:/",
        deep: bool = False,
        useVariant: bool = True,
        maxWorkers: int | None = None,
        remove_un_tags: bool = False,
        permissive: bool = False,
        *,
        bulk_threshold: int = 1024,
        storage_options: dict[str, Any] | None = None,
        limits: ArchiveLimits | None = None,
        thumbnails: bool = False,
        thumbnail_size: int = 256,
        thumbnail_format: str = "jpeg",
    ):
        _check_path_col(inputCol, "DicomMetaExtractor")
        if outputCol != "meta":
            raise PixelsError(
                f"DicomMetaExtractor: outputCol={outputCol!r} is not supported: the header is "
                "the column 'meta' of the catalog table (rename it after transform if needed)"
            )
        if deep:
            raise PixelsError(
                "DicomMetaExtractor(deep=True) is not supported: Pixels keeps 'meta' pure DICOM "
                "JSON (pixel data as BulkDataURI) and indexes the frames instead; read pixels "
                "with pixels.dicom.read_frames or DicomPatcher"
            )
        if maxWorkers is not None and int(maxWorkers) < 1:
            raise PixelsError(f"DicomMetaExtractor: maxWorkers must be >= 1, not {maxWorkers}")
        if storage_options is None and catalog is not None:
            storage_options = getattr(catalog, "source_storage_options", None)
        self.catalog = catalog
        self.inputCol = inputCol
        self.outputCol = outputCol
        self.basePath = basePath
        self.deep = deep
        self.useVariant = useVariant
        self.maxWorkers = int(maxWorkers) if maxWorkers is not None else self.MAX_WORKERS
        self.remove_un_tags = remove_un_tags
        self.permissive = permissive
        self.options = RecordOptions(
            bulk_threshold=bulk_threshold,
            storage_options=storage_options,
            limits=limits or ArchiveLimits(),
            thumbnails=thumbnails,
            thumbnail_size=thumbnail_size,
            thumbnail_format=thumbnail_format,
            remove_un_tags=remove_un_tags,
        )

    def transform(self, data: Any) -> Any:
        """Catalog rows for the files of a listing (Spark DataFrame in, Spark DataFrame out)."""
        if is_spark_dataframe(data):
            from pixels.engines.spark.transform import meta_transform

            return meta_transform(
                data,
                self.options,
                variant=self.useVariant,
                permissive=self.permissive,
                workers=self.maxWorkers,
            )
        table = _arrow(data)
        refs = [ref_of(r) for r in table.to_pylist()]
        out = pa.Table.from_batches([catalog_rows(refs, self.options, self.maxWorkers)])
        for name in table.column_names:
            if name not in SCHEMA.names:
                out = out.append_column(table.schema.field(name), table.column(name))
        return out


class DicomThumbnailExtractor:
    """Thumbnail columns for catalog rows (the frame read at the row's frame index).

    The arguments before ``*`` are dbx.pixels', in its order. dbx.pixels puts a
    Spark image struct in ``thumbnail``; the table keeps one definition (the image
    bytes, ``thumbnail_format``, size...), and
    :func:`pixels.engines.spark.views.with_thumbnail_image` (or
    ``catalog.load(thumbnail_image=True)``) gives the image struct that
    Databricks' ``display()`` shows.

    Parameters
    ----------
    inputCol : {"local_path", "path"}
        Accepted as dbx.pixels names it: each file is opened from its catalog row.
    outputCol : str
        ``"thumbnail"`` (another name is refused, saying so).
    method : {"matplotlib", "pillow", "pixels"}
        dbx.pixels' renderer; every method is Pixels' display pipeline (modality
        LUT, window, photometric interpretation), without matplotlib's axes.
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
        self,
        inputCol: str = "local_path",
        outputCol: str = "thumbnail",
        method: str = "matplotlib",
        *,
        max_size: int = 256,
        fmt: str = "jpeg",
        storage_options: dict[str, Any] | None = None,
    ):
        _check_path_col(inputCol, type(self).__name__)
        if outputCol != "thumbnail":
            raise PixelsError(
                f"{type(self).__name__}: outputCol={outputCol!r} is not supported: thumbnails "
                "are the catalog's 'thumbnail' columns; for a Spark image struct column use "
                f"pixels.engines.spark.views.with_thumbnail_image(df, {outputCol!r})"
            )
        if method not in THUMBNAIL_METHODS:
            raise PixelsError(
                f"{type(self).__name__}: unknown method {method!r}: expected one of "
                + ", ".join(THUMBNAIL_METHODS)
            )
        self.inputCol = inputCol
        self.outputCol = outputCol
        self.method = method
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


class DicomPillowThumbnailExtractor(DicomThumbnailExtractor):
    """dbx.pixels' Pillow thumbnail transformer: :class:`DicomThumbnailExtractor` (``method="pillow"``)."""

    def __init__(
        self,
        inputCol: str = "local_path",
        outputCol: str = "thumbnail",
        method: str = "pillow",
        **kw: Any,
    ):
        super().__init__(inputCol, outputCol, method, **kw)


class DicomPatcher(_Patcher):
    """Tiles of the frames of catalog rows (:class:`pixels.patching.DicomPatcher`).

    Also takes dbx.pixels' arguments: ``size_x``/``size_y`` and ``stride_x``/``stride_y``
    (square tiles: each pair must be equal), ``inputCol``, ``outputCol``, ``basePath``.
    One row per tile (:data:`pixels.rows.PATCH_SCHEMA`: ``x``, ``y``, ``data``, ...).
    """

    def __init__(
        self,
        size: int | None = None,
        stride: int | None = None,
        *,
        size_x: int | None = None,
        size_y: int | None = None,
        stride_x: int | None = None,
        stride_y: int | None = None,
        inputCol: str = "path",
        outputCol: str = "patch",
        basePath: str = "dbfs:/",
        **kw: Any,
    ):
        for a, b, what in ((size_x, size_y, "size"), (stride_x, stride_y, "stride")):
            if a is not None and b is not None and a != b:
                raise PixelsError(
                    f"DicomPatcher: {what}_x={a} and {what}_y={b} differ: Pixels makes square "
                    f"tiles (give one {what})"
                )
        size = size if size is not None else (size_x or size_y or 256)
        stride = stride if stride is not None else (stride_x or stride_y)
        _check_path_col(inputCol, "DicomPatcher")
        if outputCol != "patch":
            raise PixelsError(
                f"DicomPatcher: outputCol={outputCol!r} is not supported: each tile is a row "
                "whose bytes are in 'data' (see pixels.rows.PATCH_SCHEMA)"
            )
        super().__init__(size, stride, **kw)
        self.inputCol, self.outputCol, self.basePath = inputCol, outputCol, basePath


#: What Pixels offers instead of dbx.pixels' de-identification transformers.
_USE_DEID = (
    "Pixels de-identifies a catalog with the DICOM PS3.15 Basic Profile instead: "
    "`pixels deid --table T --out DIR --key-file KEY` or pixels.deid.deidentify_table(...) "
    "(README, De-identification)"
)


class _NotBuilt:
    """A dbx.pixels name whose feature Pixels does not have: the error says what to use."""

    _what = f"dbx.pixels' de-identification transformers are not in Pixels; {_USE_DEID}"

    def __init__(self, *args: Any, **kwargs: Any):
        raise NotImplementedError(f"{type(self).__name__}: {self._what}")


class DicomAnonymizerExtractor(_NotBuilt):
    """dbx.pixels' metadata de-identification: not in Pixels (NotImplementedError naming ``pixels deid``)."""


class DicomMetaAnonymizerExtractor(_NotBuilt):
    """dbx.pixels' metadata de-identification: not in Pixels (NotImplementedError naming ``pixels deid``)."""


class PresidioTransformer(_NotBuilt):
    """dbx.pixels' Presidio PHI detection: not in Pixels (NotImplementedError naming ``pixels deid``)."""


class Redactor(_NotBuilt):
    """dbx.pixels' pixel redaction: not in Pixels (NotImplementedError naming ``pixels deid``)."""


class VLMPhiExtractor(_NotBuilt):
    """dbx.pixels' VLM PHI detection: not in Pixels (NotImplementedError naming ``pixels deid``)."""


class DicomPlot(_NotBuilt):
    """dbx.pixels' plotting: not in Pixels (raises NotImplementedError saying what to use)."""

    _what = (
        "not in Pixels: make thumbnails (DicomThumbnailExtractor) and look at them with "
        "`pixels show --table T --out sheet.png`, or decode frames with pixels.dicom.read_frames"
    )


class StowProcessor(_NotBuilt):
    """dbx.pixels' STOW-RS processor: Pixels' server takes STOW-RS itself (raises NotImplementedError)."""

    _what = (
        "not needed in Pixels: `pixels serve --table T` accepts STOW-RS at /dicomweb/studies "
        "and catalogs what it stores at once"
    )


__all__ = [
    "DicomAnonymizerExtractor",
    "DicomMetaAnonymizerExtractor",
    "DicomMetaExtractor",
    "DicomPatcher",
    "DicomPillowThumbnailExtractor",
    "DicomPlot",
    "DicomThumbnailExtractor",
    "PathExtractor",
    "PresidioTransformer",
    "Redactor",
    "StowProcessor",
    "TagExtractor",
    "VLMPhiExtractor",
]
