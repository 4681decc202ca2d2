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
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from pixels.dicom.record import RecordOptions, catalog_batch, thumbnail_rows
from pixels.rows import (
    PATCH_SCHEMA,
    REF_SCHEMA,
    THUMBNAIL_INPUTS,
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


def meta_transform(df: Any, options: RecordOptions) -> Any:
    """Read every file of a listing DataFrame once: every catalog column, one row per file.

    Columns of ``df`` that are not catalog columns are passed through after them.
    """
    from pyspark.sql.types import StructType

    names = set(SCHEMA.names)
    extras = [f.name for f in df.schema.fields if f.name not in names]
    meta_md = _register(options)
    fields = [spark_field(f, meta_md if f.name == "meta" else None) for f in SCHEMA]
    fields += [df.schema[n] for n in extras]

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for chunk in _chunks(batches):
            refs = [ref_of(r) for r in chunk.to_pylist()]
            yield _with_extras(catalog_batch(refs, options), chunk, extras)

    return _step(df, run, StructType(fields))


_THUMB = [c.name for c in THUMBNAIL_COLUMNS]


def thumbnail_transform(df: Any, options: RecordOptions) -> Any:
    """Set the thumbnail columns of catalog rows (added when ``df`` lacks them)."""
    from pyspark.sql.types import StructType

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
