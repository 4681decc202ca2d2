"""The per-file work on Spark: the local engine's functions inside ``mapInArrow``.

Each transform sends Arrow batches of rows to Python workers, slices them into
small chunks (a chunk's files are read one after the other, so memory stays at
one chunk), and calls the same pure functions the local engine calls:
:func:`pixels.dicom.record.catalog_batch`, :func:`pixels.dicom.record.thumbnail_rows`,
:meth:`pixels.patching.DicomPatcher.rows_of`. Output columns carry the catalog's
own types, derived from :data:`pixels.schema.SCHEMA`.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from pixels.dicom.record import RecordOptions, thumbnail_rows
from pixels.rows import (
    PATCH_SCHEMA,
    REF_SCHEMA,
    THUMBNAIL_INPUTS,
    catalog_rows,
    path_refs,
    ref_of,
    refs_to_batch,
    tag_hex,
    tag_value,
)
from pixels.schema import SCHEMA, THUMBNAIL_COLUMNS

if TYPE_CHECKING:
    from pixels.patching import DicomPatcher

#: Rows handed to the per-file functions at a time.
CHUNK_ROWS = 64

#: Field metadata key naming the options a column was made with (see :func:`options_of`).
STEP_KEY = "pixels.step"

# options of the transforms of this process, by the token stored in field metadata
_STEPS: dict[str, RecordOptions] = {}


def _register(options: RecordOptions) -> dict[str, str]:
    token = uuid.uuid4().hex
    _STEPS[token] = options
    return {STEP_KEY: token}


def options_of(df: Any, column: str) -> RecordOptions | None:
    """The options the pixels transform that made ``column`` of ``df`` used (None if none)."""
    if column not in df.columns:
        return None
    token = (df.schema[column].metadata or {}).get(STEP_KEY)
    return _STEPS.get(token) if token else None


BatchFn = Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]

#: Attribute naming the (input DataFrame, batch function) a pixels transform made a DataFrame from.
_STEP_ATTR = "_pixels_step"


def _step(df: Any, fn: BatchFn, schema: Any) -> Any:
    """``df.mapInArrow(fn, schema)``, remembering how (see :func:`pipeline_of`)."""
    out = df.mapInArrow(fn, schema)
    with contextlib.suppress(AttributeError):  # a DataFrame that takes no attributes: no fusion
        setattr(out, _STEP_ATTR, (df, fn))
    return out


def pipeline_of(df: Any) -> tuple[Any, list[BatchFn]] | None:
    """The DataFrame a chain of pixels transforms started from, and their batch functions.

    ``save`` runs the chain and the writer in one Python function (one worker per
    task, rows crossing the JVM once) when ``df`` is the direct output of pixels
    transforms; a DataFrame changed afterwards (filtered, columns added) is not.
    """
    fns: list[BatchFn] = []
    base = df
    while True:
        step = base.__dict__.get(_STEP_ATTR) if hasattr(base, "__dict__") else None
        if step is None:
            break
        base, fn = step
        fns.insert(0, fn)
    return (base, fns) if fns else None


def spark_field(field: pa.Field, metadata: dict[str, str] | None = None) -> Any:
    """An Arrow field as a Spark ``StructField`` (nullability and metadata kept)."""
    from pyspark.sql.pandas.types import from_arrow_type
    from pyspark.sql.types import StructField

    return StructField(field.name, from_arrow_type(field.type), field.nullable, metadata or {})


def _chunks(batches: Iterator[pa.RecordBatch], size: int = CHUNK_ROWS) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        for start in range(0, batch.num_rows, size):
            yield batch.slice(start, size)


def _with_extras(out: pa.RecordBatch, chunk: pa.RecordBatch, extras: list[str]) -> pa.RecordBatch:
    if not extras:
        return out
    arrays = list(out.columns) + [chunk.column(n) for n in extras]
    names = list(out.schema.names) + extras
    return pa.RecordBatch.from_arrays(arrays, names=names)


#: Attribute of a DataFrame whose ``meta`` is a VARIANT: the same rows with ``meta`` as text.
_TEXT_ATTR = "_pixels_text"

log = logging.getLogger(__name__)
_warned_variant = False


def has_variant(spark: Any) -> bool:
    """Whether ``spark`` has the VARIANT type and ``parse_json`` (Spark 4+)."""
    try:
        return int(str(spark.version).split(".")[0]) >= 4
    except ValueError:
        return False


def is_variant(df: Any, column: str = "meta") -> bool:
    """Whether ``column`` of ``df`` is a VARIANT."""
    return column in df.columns and df.schema[column].dataType.typeName() == "variant"


def as_variant(df: Any, permissive: bool = False) -> Any:
    """``df`` with ``meta`` as a VARIANT (Spark 4; unchanged on Spark 3.5, logged once).

    ``permissive``: ``try_parse_json`` and a ``_corrupt_record`` column with the
    text of rows that did not parse, as dbx.pixels. The DataFrame remembers its
    text form (:func:`as_text`), so saving it stores the JSON exactly as read.
    """
    global _warned_variant
    if is_variant(df) or "meta" not in df.columns:
        return df
    if not has_variant(df.sparkSession):
        if not _warned_variant:
            log.warning(
                "Spark %s has no VARIANT type: 'meta' stays JSON text (query it with "
                "get_json_object(meta, '$.00100010.Value[0].Alphabetic'))",
                df.sparkSession.version,
            )
            _warned_variant = True
        return df
    from pyspark.sql import functions as sf

    source = df
    md = df.schema["meta"].metadata
    # rows without a header (bad files, non-DICOM files) are SQL NULL, so that
    # `WHERE meta IS NULL` finds them as it does on the text column. (pyspark 4's
    # DataFrame.toArrow() fails on a NULL variant, in its cast to the variant's Arrow
    # type; toPandas() and collect() read them: load(variant=False) for Arrow.)
    parse = "try_parse_json" if permissive else "parse_json"
    variant = f"{parse}(meta)"
    if permissive:
        df = df.withColumn(
            "_corrupt_record",
            sf.expr("CASE WHEN meta IS NOT NULL AND try_parse_json(meta) IS NULL THEN meta END"),
        )
    out = df.withColumn("meta", sf.expr(variant).alias("meta", metadata=md))
    text = as_text(source)
    with contextlib.suppress(AttributeError):
        setattr(out, _TEXT_ATTR, text)
        step = text.__dict__.get(_STEP_ATTR)
        if step is not None:  # save() still fuses the transforms with the writer
            setattr(out, _STEP_ATTR, step)
    return out


def as_text(df: Any) -> Any:
    """``df`` with ``meta`` as JSON text (what the table stores and the transforms read).

    A DataFrame made by :func:`as_variant` gives back the text it was made from;
    any other VARIANT ``meta`` is written out with ``to_json``.
    """
    text = df.__dict__.get(_TEXT_ATTR) if hasattr(df, "__dict__") else None
    if text is not None:
        return text
    if not is_variant(df):
        return df
    from pyspark.sql import functions as sf

    md = df.schema["meta"].metadata
    text = "CASE WHEN meta IS NULL OR is_variant_null(meta) THEN NULL ELSE to_json(meta) END"
    return df.withColumn("meta", sf.expr(text).alias("meta", metadata=md))


def meta_transform(
    df: Any,
    options: RecordOptions,
    *,
    variant: bool = False,
    permissive: bool = False,
    workers: int = 1,
) -> Any:
    """Read every file of a listing DataFrame once: every catalog column, one row per file.

    Columns of ``df`` that are not catalog columns are passed through after them.
    ``variant``: ``meta`` as a VARIANT where Spark has one (:func:`as_variant`);
    ``workers``: threads reading files at once in each task.
    """
    from pyspark.sql.types import StructType

    if variant:
        return as_variant(meta_transform(df, options, workers=workers), permissive)
    names = set(SCHEMA.names)
    extras = [f.name for f in df.schema.fields if f.name not in names]
    meta_md = _register(options)
    fields = [spark_field(f, meta_md if f.name == "meta" else None) for f in SCHEMA]
    fields += [df.schema[n] for n in extras]

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for chunk in _chunks(batches, CHUNK_ROWS * max(1, workers)):
            refs = [ref_of(r) for r in chunk.to_pylist()]
            yield _with_extras(catalog_rows(refs, options, workers), chunk, extras)

    return _step(df, run, StructType(fields))


_THUMB = [c.name for c in THUMBNAIL_COLUMNS]


def thumbnail_transform(df: Any, options: RecordOptions) -> Any:
    """Set the thumbnail columns of catalog rows (added when ``df`` lacks them)."""
    from pyspark.sql.types import StructType

    df = as_text(df)
    missing = sorted(THUMBNAIL_INPUTS - set(df.columns))
    if missing:
        from pixels.errors import PixelsError

        raise PixelsError(
            f"DicomThumbnailExtractor needs catalog rows; missing columns: {', '.join(missing)} "
            "(run DicomMetaExtractor first)"
        )
    md = _register(options)
    fields = [
        spark_field(SCHEMA.field(f.name), md if f.name == "thumbnail" else None)
        if f.name in _THUMB
        else f
        for f in df.schema.fields
    ]
    fields += [
        spark_field(SCHEMA.field(n), md if n == "thumbnail" else None)
        for n in _THUMB
        if n not in df.columns
    ]
    out_names = [f.name for f in fields]

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for chunk in _chunks(batches):
            rows = chunk.to_pylist()
            made = {n: [] for n in _THUMB}  # type: dict[str, list[Any]]
            todo = [i for i, r in enumerate(rows) if r.get("frame_offsets")]
            results = thumbnail_rows([rows[i] for i in todo], options) if todo else []
            by_row = dict(zip(todo, results, strict=True))
            for i, r in enumerate(rows):
                res = by_row.get(i)
                for n in _THUMB:
                    made[n].append(res[n] if res is not None else r.get(n))
            arrays = []
            for n in out_names:
                if n in made:
                    arrays.append(pa.array(made[n], SCHEMA.field(n).type))
                else:
                    arrays.append(chunk.column(n))
            yield pa.RecordBatch.from_arrays(arrays, names=out_names)

    return _step(df, run, StructType(fields))


def patch_transform(df: Any, patcher: DicomPatcher) -> Any:
    """Patch rows (:data:`pixels.rows.PATCH_SCHEMA`) of the files of catalog rows."""
    from pyspark.sql.types import StructType

    schema = StructType([spark_field(f) for f in PATCH_SCHEMA])
    df = as_text(df)

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for chunk in _chunks(batches, 8):
            yield from patcher.transform(chunk)

    return df.mapInArrow(run, schema)


def path_transform(df: Any, input_col: str, base_path: str | None) -> Any:
    """File columns derived from a column of paths or Spark file URIs (no file is read)."""
    from pyspark.sql.types import StructType

    names = set(REF_SCHEMA.names)
    extras = [f.name for f in df.schema.fields if f.name not in names and f.name != input_col]
    fields = [spark_field(f) for f in REF_SCHEMA] + [df.schema[n] for n in extras]

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            refs = path_refs(batch.to_pylist(), input_col, base_path)
            yield _with_extras(refs_to_batch(refs), batch, extras)

    return df.mapInArrow(run, StructType(fields))


def tag_transform(df: Any, tags: dict[str, str], input_col: str = "meta") -> Any:
    """Columns of DICOM attribute values read from the ``meta`` JSON (no file is read).

    ``tags`` maps output column -> DICOM keyword or ``ggggeeee`` tag. Values are
    strings (multi-valued: joined with ``\\``; person names: their Alphabetic form).
    """
    from pyspark.sql.types import StringType, StructField, StructType

    from pixels.errors import PixelsError

    df = as_text(df)
    resolved = {col: tag_hex(t) for col, t in tags.items()}
    # a tag named like an existing column replaces it (Spark matches names case-insensitively)
    new = {c.lower() for c in resolved}
    kept = [f for f in df.schema.fields if f.name.lower() not in new]
    fields = kept + [StructField(c, StringType(), True) for c in resolved]

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            metas = batch.column(input_col).to_pylist()
            arrays = [batch.column(f.name) for f in kept]
            for tag in resolved.values():
                arrays.append(pa.array([tag_value(m, tag) for m in metas], pa.string()))
            yield pa.RecordBatch.from_arrays(arrays, names=[f.name for f in fields])

    if input_col not in df.columns:
        raise PixelsError(
            f"TagExtractor needs the column {input_col!r} (run DicomMetaExtractor first)"
        )
    return df.mapInArrow(run, StructType(fields))


def path_words_transform(df: Any, input_col: str, output_col: str, base_path: str | None) -> Any:
    """dbx.pixels' ``TagExtractor``: ``relative_path`` and the words of each path in ``output_col``."""
    from pyspark.sql.types import ArrayType, StringType, StructField, StructType

    from pixels.sources.local import path_tags_of

    if input_col not in df.columns:
        from pixels.errors import PixelsError

        raise PixelsError(f"TagExtractor needs the column {input_col!r} of paths")
    kept = [f for f in df.schema.fields if f.name not in ("relative_path", output_col)]
    fields = [
        *kept,
        StructField("relative_path", StringType(), True),
        StructField(output_col, ArrayType(StringType()), True),
    ]

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            refs = path_refs(batch.to_pylist(), input_col, base_path)
            arrays = [batch.column(f.name) for f in kept]
            arrays.append(pa.array([r.relative_path for r in refs], pa.string()))
            arrays.append(
                pa.array(
                    [list(path_tags_of(r.relative_path, keep=None)) for r in refs],
                    pa.list_(pa.string()),
                )
            )
            yield pa.RecordBatch.from_arrays(arrays, names=[f.name for f in fields])

    return df.mapInArrow(run, StructType(fields))
