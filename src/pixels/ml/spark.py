"""Segmentation on Spark: :class:`SegmentationTransformer`, one Python call per series.

The catalog rows are grouped by ``SeriesInstanceUID`` (``applyInPandas``); each
group runs :func:`pixels.ml.segment.segment_one`, the function ``pixels
segment`` runs locally, so the SEG written is the same (same UIDs, same path,
same voxels). The output has the catalog's columns, one row per series: the
SEG's catalog row, ready for ``catalog.save(...)``, or, for a series that could
not be segmented, an error row. Two more columns say what happened:
``ReferencedSeriesInstanceUID`` (the source series) and ``segment_status``
(``segmented`` or ``error``); ``save`` does not store them.

An error row has no file behind it, so its ``path`` is null (a catalog row's
``path`` names a file that exists): the series is in
``ReferencedSeriesInstanceUID`` and ``error`` says why, naming the series and,
where one file or tag is at fault, that file and tag (``series 1.2...: /data/ct/
004.dcm: mixed slice sizes...``). ``catalog.save(segs)`` stores the SEG rows and
not the error rows (it counts and names them, see
:meth:`pixels.engines.spark.catalog.SparkCatalog.save`); ``segs.where("error IS NOT
NULL")`` lists the failures. ``pixels segment`` reports them the same way, in its
summary rather than in the table.

Examples
--------
>>> from pixels import Catalog                                          # doctest: +SKIP
>>> from pixels.ml.spark import SegmentationTransformer                 # doctest: +SKIP
>>> catalog = Catalog(spark, table="/lake/catalog")                     # doctest: +SKIP
>>> ct = catalog.load().where("Modality = 'CT'")                        # doctest: +SKIP
>>> segs = SegmentationTransformer("ct-tissue", catalog=catalog).transform(ct)  # doctest: +SKIP
>>> catalog.save(segs)                                                  # doctest: +SKIP
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from pixels.errors import ModelError
from pixels.ml.models import Model, get_model
from pixels.ml.seg import SEG_SOP_CLASSES, default_root, segmentations
from pixels.ml.volume import ROW_COLUMNS, plan_rows
from pixels.schema import SCHEMA, empty_row

__all__ = ["SegmentationTransformer"]

#: The columns the output adds to the catalog's.
EXTRA = pa.schema(
    [pa.field("ReferencedSeriesInstanceUID", pa.string()), pa.field("segment_status", pa.string())]
)


def _table_uri(catalog: Any) -> tuple[str, dict[str, str] | None]:
    table = getattr(catalog, "table", None)
    if table is None:
        raise ModelError("the catalog has no table path (a metastore table): give output=")
    return str(table.uri), getattr(table, "storage_options", None)


def _seg_row(path: str, root: str) -> dict[str, Any]:
    from pixels.dicom.record import catalog_record
    from pixels.sources.local import local_ref

    rel = os.path.relpath(path, root).replace(os.sep, "/")
    return catalog_record(local_ref(path, os.stat(path), rel))


class SegmentationTransformer:
    """Segment each series of a catalog DataFrame; rows of the SEGs out.

    A series that cannot be segmented gives an error row with a null ``path``
    (see the module docstring): visible in the output, never stored by ``save``.

    Parameters
    ----------
    model : str or Model
        ``ct-tissue``, ``bundle:PATH`` (a folder every executor can read), a registered
        name, or a model object (pickled to the executors).
    catalog : Catalog or SparkCatalog, optional
        Gives the default ``output`` (``seg`` next to the table) and, unless
        ``force``, the series that already have a SEG by this model (skipped: no row).
    output : str, optional
        Local folder (shared by the executors) for the SEGs.
    labelmap : bool
        Label Map SEGs instead of binary ones.
    force : bool
        Segment series that already have a SEG by this model.
    """

    def __init__(
        self,
        model: str | Model = "ct-tissue",
        *,
        catalog: Any = None,
        output: str | None = None,
        labelmap: bool = False,
        force: bool = False,
    ) -> None:
        self.model = model
        self.catalog = catalog
        self.output = output
        self.labelmap = labelmap
        self.force = force

    def _done(self, name: str) -> set[str]:
        if self.force or self.catalog is None:
            return set()
        from pixels.catalog import Catalog

        uri, options = _table_uri(self.catalog)
        local = Catalog(uri, storage_options=options)
        if not local.table.exists():
            return set()
        return set(segmentations(local, name)["ReferencedSeriesInstanceUID"])

    def transform(self, df: Any) -> Any:
        """One row per series of ``df`` (catalog rows, any filter): its SEG's catalog row or an error row.

        Error rows have a null ``path``, the series in ``ReferencedSeriesInstanceUID``
        and the reason in ``error``; series that already have a SEG by this model
        give no row (unless ``force``).
        """
        from pyspark.sql.types import StructType

        from pixels.engines.spark.session import require_pyspark
        from pixels.engines.spark.transform import as_text, spark_field
        from pixels.ml.segment import SeriesResult, segment_one

        require_pyspark()
        m = get_model(self.model) if isinstance(self.model, str) else self.model
        if self.output:
            root = os.path.abspath(self.output)
        elif self.catalog is not None:
            root = default_root(_table_uri(self.catalog)[0])
        else:
            raise ModelError("SegmentationTransformer needs output= or catalog=")
        if "://" in root and not root.startswith("file://"):
            raise ModelError(
                f"the Spark transformer writes SEGs to a local or shared folder, not {root}"
            )
        root = root.removeprefix("file://")
        done = self._done(m.name)
        spec: str | Model = self.model
        labelmap = self.labelmap
        # path is nullable here: an error row has no file (save never stores it)
        out_schema = pa.schema(
            [f.with_nullable(True) if f.name == "path" else f for f in SCHEMA] + list(EXTRA)
        )
        df = as_text(df)  # a VARIANT meta (Spark 4 views) as the JSON text the table holds
        columns = [c for c in ROW_COLUMNS if c in df.columns]
        if "SeriesInstanceUID" not in columns or "meta" not in columns:
            raise ModelError("the DataFrame needs the catalog's SeriesInstanceUID and meta columns")

        def run(pdf: Any) -> Any:
            rows = pa.Table.from_pandas(pdf, preserve_index=False).to_pylist()
            uid = rows[0].get("SeriesInstanceUID") if rows else None
            images = [
                r
                for r in rows
                if (r.get("error") or r.get("Rows")) and r.get("SOPClassUID") not in SEG_SOP_CLASSES
            ]
            if not uid or not images:  # no image rows: a row Spark drops below
                uid, result = uid or "", SeriesResult(uid or "", "none")
            elif uid in done:
                result = SeriesResult(uid, "skipped")
            else:
                result = segment_one(plan_rows(uid, images), spec, root, labelmap=labelmap)
            if result.status == "segmented" and result.path:
                row = _seg_row(result.path, root)
            else:  # no SEG file: no path (the series is named below and in the message)
                row = empty_row()
                row.update(error=result.message, cataloged_at=datetime.now(UTC))
            row["ReferencedSeriesInstanceUID"] = uid
            row["segment_status"] = result.status
            return pa.Table.from_pylist([row], schema=out_schema).to_pandas()

        schema = StructType([spark_field(f) for f in out_schema])
        # every group returns one row (an empty pandas frame trips Spark's Arrow conversion);
        # the skipped series' rows are dropped here
        out = df.select(*columns).groupBy("SeriesInstanceUID").applyInPandas(run, schema)
        return out.where("segment_status IN ('segmented', 'error')")
