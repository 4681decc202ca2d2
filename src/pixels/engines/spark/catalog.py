"""The Spark engine's catalog: the dbx.pixels API on any Spark 3.5+/4.x.

``Catalog(spark, table=...)`` (see :class:`pixels.Catalog`) returns a
:class:`SparkCatalog`. It lists files into a DataFrame (:meth:`SparkCatalog.catalog`),
the transformers of :mod:`pixels.transformers` add the catalog columns, and
:meth:`SparkCatalog.save` writes them to the same Delta table the local engine
writes — with Spark's own Delta writer when the session has Delta Lake, else
Parquet files from the executors committed by the driver with ``deltalake``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
from dataclasses import dataclass, replace
from typing import Any

from pixels.engines.spark.listing import (
    UNIT_SCHEMA,
    ListOptions,
    list_units,
    plan_units,
    stream_refs,
)
from pixels.engines.spark.session import default_parallelism, delta_configured
from pixels.engines.spark.transform import (
    as_text,
    as_variant,
    has_variant,
    meta_transform,
    options_of,
    spark_field,
    thumbnail_transform,
)
from pixels.engines.spark.writer import SAVE_MODES, SaveResult, save_dataframe
from pixels.errors import PixelsError
from pixels.rows import REF_SCHEMA
from pixels.schema import SCHEMA, VIEW_NAME, anonymous, row_id
from pixels.sources import ArchiveLimits
from pixels.sources.local import is_url
from pixels.table import CatalogTable


def _is_table_name(table: str) -> bool:
    """``catalog.schema.table`` / ``schema.table`` / ``table`` rather than a path or URL."""
    return (
        "/" not in table and "\\" not in table and "://" not in table and not table.startswith(".")
    )


def _volume_root(volume: str | None) -> str | None:
    """A Unity Catalog volume name ``cat.schema.vol`` as ``/Volumes/cat/schema/vol``; paths unchanged."""
    if volume is None:
        return None
    if _is_table_name(volume) and volume.count(".") == 2:
        return "/Volumes/" + volume.replace(".", "/")
    return volume


log = logging.getLogger(__name__)

#: dbx.pixels' default table (``Catalog(spark)``). Without Delta Lake in the session it is
#: kept under ``spark.sql.warehouse.dir`` and shown as the temporary view ``object_catalog``.
DEFAULT_TABLE = "main.pixels_solacc.object_catalog"

_GLOB = set("*?[")
_USER_METADATA_CONF = "spark.databricks.delta.commitInfo.userMetadata"


def split_glob(path: str) -> tuple[str, str | None]:
    """A path with glob characters as (the folder before the first glob, the rest as a pattern).

    ``/data/*.zip`` -> (``/data``, ``*.zip``); ``/data/*/ct/*.dcm`` -> (``/data``,
    ``*/ct/*.dcm``: matched on relative paths). A path without globs is returned whole.
    """
    scheme, sep, rest = path.partition("://")
    if not sep:
        scheme, rest = "", path
    parts = rest.split("/")
    for i, part in enumerate(parts):
        if _GLOB & set(part):
            root = "/".join(parts[:i]) or "/"
            return (f"{scheme}://{root}" if sep else root), "/".join(parts[i:])
    return path, None


#: A batch listing gets one partition per this many files (up to 4 per task slot).
ROWS_PER_TASK_MIN = 32

#: Schema of Spark's ``binaryFile`` source (a streaming source needs it spelled out).
_BINARY_FILE_DDL = "path STRING, modificationTime TIMESTAMP, length BIGINT, content BINARY"


def unseen(listing: Any, existing: Any, *, retry_errors: bool = False) -> Any:
    """Rows of ``listing`` whose identity (path, length, modificationTime) is not in ``existing``.

    A Spark left anti join: what the listing does when the table is written by
    Spark's own Delta Lake (the driver cannot look the files up with deltalake).
    Rows held with an error count as absent when ``retry_errors``.
    """
    from pyspark.sql import functions as sf

    # times compare in milliseconds (pixels.schema.MTIME_UNIT): older rows hold microseconds
    ms = "_pixels_mtime_ms"
    have = existing.select(
        "path", "length", sf.date_trunc("millisecond", "modificationTime").alias(ms), "error"
    )
    if retry_errors:
        have = have.where("error IS NULL")
    have = have.drop("error")
    keyed = listing.withColumn(ms, sf.date_trunc("millisecond", "modificationTime"))
    return keyed.join(have, on=["path", "length", ms], how="left_anti").drop(ms)


def one_row_per_path(df: Any) -> Any:
    """Rows of ``df`` with one row per ``path`` (:func:`pixels.table.one_per_path` in Spark).

    The newest ``modificationTime`` wins; among equal times, the row with the
    greater ``length``, then any one (a DataFrame has no row order).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as sf

    rank = "_pixels_rank"
    order = Window.partitionBy("path").orderBy(
        sf.col("modificationTime").desc_nulls_last(), sf.col("length").desc_nulls_last()
    )
    return df.withColumn(rank, sf.row_number().over(order)).where(sf.col(rank) == 1).drop(rank)


#: When a row of the source replaces the table's row of the same path (``MERGE``'s condition).
CHANGED_SQL = (
    "t.length <> s.length OR date_trunc('MILLISECOND', t.modificationTime) <> "
    "date_trunc('MILLISECOND', s.modificationTime) OR t.version_tag <> s.version_tag "
    "OR t.error IS NOT NULL"
)


def merge_sql(target: str, view: str, mode: str = "append") -> str:
    """The ``MERGE`` statement saving the rows of ``view`` into the Delta table ``target``.

    ``append``: new paths are inserted, rows of changed files (or held with an
    error) replace theirs (:data:`CHANGED_SQL`); ``replace``: every matched row is
    replaced. ``view`` must hold one row per path (:func:`one_row_per_path`).
    """
    when = "" if mode == "replace" else f"AND ({CHANGED_SQL}) "
    return (
        f"MERGE INTO {target} t USING {view} s ON t.path = s.path "
        f"WHEN MATCHED {when}THEN UPDATE SET * "
        "WHEN NOT MATCHED THEN INSERT *"
    )


def with_legacy_columns(df: Any) -> Any:
    """``df`` with ``rowId`` and ``is_anon`` derived from ``path`` where an older Pixels left them null.

    What ``pixels upgrade`` writes (:func:`pixels.table.evolve.upgrade_rows`), shown
    on read until then: ``rowId`` is :func:`pixels.schema.row_id` (a Python UDF,
    evaluated only for the null rows of the queries that read the column).
    """
    from pyspark.sql import functions as sf

    from pixels.scan import LEGACY_ANON_SQL

    ids = sf.udf(lambda p: row_id(p), "bigint")  # no type hints: pyspark 4 warns on row_id's
    if "rowId" in df.columns:
        df = df.withColumn("rowId", sf.coalesce(sf.col("rowId"), ids(sf.col("path"))))
    if "is_anon" in df.columns:
        df = df.withColumn("is_anon", sf.coalesce(sf.col("is_anon"), sf.expr(LEGACY_ANON_SQL)))
    return df


@dataclass(frozen=True)
class _Stream:
    """What a streaming :meth:`SparkCatalog.catalog` call was asked (for :meth:`save`)."""

    root: str
    recursive: bool
    options: ListOptions
    checkpoint: str


class SparkCatalog:
    """A catalog of medical image files built with Apache Spark (dbx.pixels API).

    Create it with ``Catalog(spark, table=...)``.

    Parameters
    ----------
    spark : pyspark.sql.SparkSession
        The session.
    table : str
        Path or URL of the Delta table (the same table the local engine writes), or a
        metastore table name (``catalog.schema.table``).
    volume : str, optional
        A folder (or Unity Catalog volume ``cat.schema.vol``) for stream checkpoints
        and extracted zip members when no other place is given.
    storage_options : dict, optional
        Object-store options for the table (delta-rs / fsspec).

    Examples
    --------
    >>> from pixels import Catalog
    >>> from pixels.dicom import DicomMetaExtractor, DicomThumbnailExtractor
    >>> catalog = Catalog(spark, table="/lake/pixels/object_catalog")     # doctest: +SKIP
    >>> catalog_df = catalog.catalog("/data/dicom")                          # doctest: +SKIP
    >>> meta_df = DicomMetaExtractor(catalog).transform(catalog_df)          # doctest: +SKIP
    >>> catalog.save(DicomThumbnailExtractor().transform(meta_df))           # doctest: +SKIP
    >>> catalog.load().groupBy("Modality").count().show()                    # doctest: +SKIP
    """

    def __init__(
        self,
        spark: Any,
        table: str = DEFAULT_TABLE,
        volume: str | None = None,
        *,
        storage_options: dict[str, str] | None = None,
        location: str | None = None,
    ):
        if spark is None:
            raise PixelsError("Catalog(spark, ...) needs a SparkSession (got None)")
        self.spark = spark
        self.volume = _volume_root(volume)
        table = os.fspath(table)
        self.table_name: str | None = table if _is_table_name(table) else None
        self.location = location
        self.use_spark_delta = delta_configured(spark)
        self._anon: bool | None = None
        self._trigger: str | None = None
        where = ""
        if location is not None:
            pass
        elif self.table_name is not None and not self.use_spark_delta:
            # no Delta in this session: keep the table under the warehouse, by name
            warehouse = spark.conf.get("spark.sql.warehouse.dir", "spark-warehouse")
            where = os.path.join(warehouse.removeprefix("file:"), *self.table_name.split("."))
        elif self.table_name is not None:
            where = ""
        else:
            where = table
        location = location if location is not None else where
        self.table = CatalogTable(location, storage_options=storage_options) if location else None
        self.source_storage_options: dict[str, Any] | None = None
        self._stream: _Stream | None = None
        self._listings: list[Any] = []  # persisted batch listings, released by save()
        self._user_metadata: str | None = None
        self._user_options: dict[str, Any] = {}

    def __repr__(self) -> str:
        where = self.table_name or (self.table.uri if self.table else "?")
        return f"SparkCatalog({where!r})"

    # ------------------------------------------------------------------ listing
    def catalog(
        self,
        path: str,
        pattern: str | None = "*",
        recurse: bool = True,
        streaming: bool = False,
        streamCheckpointBasePath: str | None = None,
        triggerProcessingTime: str | None = None,
        triggerAvailableNow: bool | None = None,
        extractZip: bool = False,
        extractZipBasePath: str | None = None,
        maxFilesPerTrigger: int | None = None,
        maxUnzippedRecordsPerFile: int | None = None,
        maxZipElementsPerPartition: int | None = None,
        detectFileType: bool = False,
        zipRepartition: int | None = None,
        useManagedFileEvents: bool = False,
        includeExistingFiles: bool = True,
        allowOverwrites: bool = False,
        maxFileAge: str | None = None,
        maxUnzipWorkers: int | None = None,
        *,
        numPartitions: int | None = None,
        storage_options: dict[str, Any] | None = None,
        limits: ArchiveLimits | None = None,
        retry_errors: bool = False,
    ) -> Any:
        """List the files under ``path`` as a DataFrame of file columns (no content read).

        The arguments before ``*`` are dbx.pixels', in its order. Batch listings keep
        only files that are new or changed since the table last saw them (identity:
        ``path``, ``length``, ``modificationTime``).

        Parameters
        ----------
        path : str
            Folder, file or URL (``s3://...``; ``s3a://`` in streaming mode) to list.
            Glob characters are allowed, as dbx.pixels' examples use them
            (``/data/*.zip``): the folder before the first glob is listed and the rest
            is the pattern (:func:`split_glob`).
        pattern : str, optional
            Glob on file names (``*.dcm``), or on relative paths if it holds ``/``;
            ``"*"`` (dbx.pixels' default) or None: every file.
        recurse : bool
            Descend into sub-folders.
        streaming : bool
            Return a streaming DataFrame over ``path`` (Spark's file source, where
            dbx.pixels uses Databricks' Auto Loader): each :meth:`save` of it processes
            only files not seen before, and re-reads files rewritten in place.
        streamCheckpointBasePath : str, optional
            Where the stream keeps its checkpoint (default: under ``volume``, else
            under the table's ``_pixels`` folder).
        triggerProcessingTime, triggerAvailableNow : optional
            Streaming: the trigger :meth:`save` runs the stream with (at most one;
            default ``availableNow``), as dbx.pixels.
        extractZip : bool
            List the members of zip archives (read in memory in the executors,
            with the same safety limits as the local engine).
        extractZipBasePath : str, optional
            Extract accepted members there (a folder all executors see) instead.
        maxFilesPerTrigger : int, optional
            Streaming: files per micro-batch.
        maxUnzippedRecordsPerFile, maxZipElementsPerPartition, maxUnzipWorkers : int, optional
            Tuning of dbx.pixels' unzip table; accepted and unused (Pixels reads zip
            members in the listing tasks, without an unzip table).
        detectFileType : bool
            Accepted: ``file_type`` is always set from the file's magic bytes when
            it is read (null in the listing).
        zipRepartition : int, optional
            Partitions of the listing (as ``numPartitions``).
        useManagedFileEvents : bool
            Auto Loader's file events exist only on Databricks: ``True`` is refused.
        includeExistingFiles : bool
            ``False`` (Auto Loader only) is refused: Spark's file source lists what is there.
        allowOverwrites : bool
            Accepted: Pixels always re-reads files rewritten in place (their row is replaced).
        maxFileAge : str, optional
            Streaming: files older than this are ignored (Spark's ``maxFileAge``).
        numPartitions : int, optional
            Partitions of the listing (default: 4 per task slot).
        storage_options : dict, optional
            fsspec options for ``path`` (credentials, ``endpoint_url``, ``anon``).
        limits : ArchiveLimits, optional
            Zip safety limits.
        retry_errors : bool
            Read again unchanged files whose row has an error.

        Returns
        -------
        pyspark.sql.DataFrame
            dbx.pixels' columns first (``path, modificationTime, length, original_path,
            relative_path, local_path, extension, file_type`` (null until read),
            ``path_tags``), then ``is_anon``, ``rowId``, ``version_tag`` and ``error``
            (entries the listing refused, such as unsafe zip members).
        """
        from pyspark.sql.types import StructType

        if useManagedFileEvents:
            raise PixelsError(
                "useManagedFileEvents=True needs Databricks' Auto Loader; Pixels streams with "
                "Spark's file source (leave it False)",
                path,
            )
        if not includeExistingFiles:
            raise PixelsError(
                "includeExistingFiles=False needs Databricks' Auto Loader; Pixels' stream "
                "processes the files already there on its first run (and never again)",
                path,
            )
        if triggerProcessingTime is not None and triggerAvailableNow is not None:
            raise PixelsError(
                "give one trigger: triggerProcessingTime or triggerAvailableNow, not both", path
            )
        self._trigger = triggerProcessingTime
        numPartitions = numPartitions or zipRepartition
        if pattern == "*":
            pattern = None
        path = os.fspath(path)
        listed = path
        base, glob = split_glob(path)
        if glob is not None:
            if pattern is not None:
                raise PixelsError(
                    f"give the file pattern once: in the path ({glob!r}) or as pattern= "
                    f"({pattern!r})",
                    path,
                )
            path, pattern = base, glob
        self.source_storage_options = storage_options
        self._anon = anonymous(path, storage_options)
        extract_dir = extractZipBasePath
        local = not (is_url(path) and not path.startswith("file://"))
        root = os.path.abspath(path.removeprefix("file://")) if local else path
        table = self._writable_table()
        snapshot = tuple(table.file_uris()) if table is not None else ()
        opts = ListOptions(
            pattern=pattern,
            expand_archives=extractZip,
            extract_dir=extract_dir,
            limits=limits or ArchiveLimits(),
            storage_options=storage_options,
            table_uri=table.uri if table is not None else None,
            table_storage_options=table.storage_options if table is not None else None,
            snapshot=snapshot,
            retry_errors=retry_errors,
        )
        ref_schema = StructType([spark_field(f) for f in REF_SCHEMA])
        if streaming:
            checkpoint = streamCheckpointBasePath or self._default_checkpoint(root)
            # each micro-batch's listing is compared with the table as it is then
            opts = replace(opts, snapshot=(), live=table is not None)
            self._stream = _Stream(root, recurse, opts, checkpoint)
            reader = (
                self.spark.readStream.format("binaryFile")
                .schema(_BINARY_FILE_DDL)
                .option("recursiveFileLookup", str(recurse).lower())
            )
            if maxFilesPerTrigger:
                reader = reader.option("maxFilesPerTrigger", str(int(maxFilesPerTrigger)))
            if maxFileAge:
                reader = reader.option("maxFileAge", str(maxFileAge))
            source = root if glob is None else listed.removeprefix("file://")
            files = reader.load(source).select("path", "modificationTime", "length")
            return files.mapInArrow(stream_refs(root, opts), ref_schema)
        listing = self._batch_listing(root, recurse, opts, numPartitions)
        if self.use_spark_delta and self._spark_table_exists():
            # Spark's Delta holds the table: drop what it has with a join instead
            listing = unseen(listing, self.load(variant=False), retry_errors=retry_errors)
        return listing

    def is_anon(self) -> bool | None:
        """Whether the last path given to :meth:`catalog` is read without credentials.

        As dbx.pixels: local files and volumes are; an object store is when its
        storage options say ``anon=True``. None before :meth:`catalog` was called.
        """
        return self._anon

    def _spark_table_exists(self) -> bool:
        if self.table_name:
            return bool(self.spark.catalog.tableExists(self.table_name))
        return self.table is not None and self.table.exists()

    def _batch_listing(
        self, root: str, recurse: bool, opts: ListOptions, partitions: int | None
    ) -> Any:
        from pyspark.sql.types import StructType

        slots = default_parallelism(self.spark)
        units = plan_units(
            root, recursive=recurse, storage_options=opts.storage_options, target=4 * slots
        )
        unit_schema = StructType([spark_field(f) for f in UNIT_SCHEMA])
        ref_schema = StructType([spark_field(f) for f in REF_SCHEMA])
        units_df = self.spark.createDataFrame(units, unit_schema).repartition(
            min(len(units), 4 * slots)
        )
        refs = units_df.mapInArrow(list_units(opts), ref_schema).persist()
        # list once, now (small rows, kept until the next save); then give each task a
        # contiguous, sorted range of paths: files of a series land in the same data
        # file (better compression), and row groups prune identity look-ups by path
        n = refs.count()
        self._listings.append(refs)
        parts = partitions or max(1, min(4 * slots, math.ceil(n / ROWS_PER_TASK_MIN)))
        return refs.repartitionByRange(parts, "path").sortWithinPartitions("path")

    def _default_checkpoint(self, root: str) -> str:
        key = hashlib.sha1(root.encode()).hexdigest()[:16]
        if self.volume is not None:
            return f"{self.volume.rstrip('/')}/_checkpoints/pixels-{key}"
        if self.table is not None:
            return f"{self.table.uri.rstrip('/')}/_pixels/checkpoints/{key}"
        return os.path.abspath(os.path.join("_pixels_checkpoints", key))

    def _writable_table(self) -> CatalogTable | None:
        """The table the driver writes with deltalake (None when Spark's Delta writes it)."""
        return None if self.use_spark_delta else self.table

    # ------------------------------------------------------------------ reading
    def load(
        self,
        table: str | None = None,
        *,
        variant: bool | None = None,
        thumbnail_image: bool = False,
    ) -> Any:
        """The catalog table as a DataFrame (its current files only), also as the view ``object_catalog``.

        Parameters
        ----------
        table : str, optional
            Another table (name or path) to read instead, as dbx.pixels' ``load(table=)``.
        variant : bool, optional
            ``meta`` as a VARIANT, as dbx.pixels' tables hold it (default: on Spark 4;
            Spark 3.5 has none). The table stores JSON text: the transformers and
            :meth:`save` take either form.
        thumbnail_image : bool
            ``thumbnail`` as Spark's image struct, which ``display()`` draws
            (:func:`pixels.engines.spark.views.with_thumbnail_image`).
        """
        from pyspark.sql.types import StructType

        if table is not None:
            other = self._other(table)
            return other.load(variant=variant, thumbnail_image=thumbnail_image)
        if self.use_spark_delta:
            if self.table_name and not self.location:
                df = self.spark.table(self.table_name)
            else:
                assert self.table is not None
                df = self.spark.read.format("delta").load(self.table.uri)
        else:
            assert self.table is not None
            schema = StructType([spark_field(f) for f in SCHEMA])
            uris = self.table.file_uris()
            if uris:
                df = self.spark.read.schema(schema).parquet(*uris)
            else:
                df = self.spark.createDataFrame([], schema)
        if self.table is not None and self.table.needs_upgrade:
            df = with_legacy_columns(df)
        if variant is None:
            variant = has_variant(self.spark)
        if variant:
            df = as_variant(df)
        if thumbnail_image:
            from pixels.engines.spark.views import with_thumbnail_image

            df = with_thumbnail_image(df)
        df.createOrReplaceTempView(VIEW_NAME)
        if self.table_name and not self.use_spark_delta:
            df.createOrReplaceTempView(self.table_name.rsplit(".", 1)[-1])
        return df

    def _other(self, table: str | None, path: str | None = None) -> SparkCatalog:
        """The catalog of another table (``save(table=, path=)``, ``load(table=)``)."""
        name = table if table is not None else path
        assert name is not None
        other = SparkCatalog(
            self.spark,
            table=name,
            volume=self.volume,
            storage_options=self.table.storage_options if self.table is not None else None,
            location=path if table is not None and path is not None else None,
        )
        other._stream, other._listings, other._trigger = self._stream, self._listings, self._trigger
        other.source_storage_options, other._anon = self.source_storage_options, self._anon
        return other

    def count(self) -> int:
        """Rows in the catalog."""
        if self.table is not None and not self.use_spark_delta:
            return self.table.count()
        return int(self.load(variant=False).count())

    # ------------------------------------------------------------------ writing
    def save(
        self,
        df: Any,
        path: str | None = None,
        table: str | None = None,
        mode: str = "append",
        mergeSchema: bool = True,
        hasBinary: bool = False,
        userMetadata: str | None = None,
        userOptions: dict[str, Any] | None = None,
        *,
        trigger: str | None = None,
        wait: bool = True,
        rescan_seconds: float | None = 600.0,
    ) -> Any:
        """Write catalog rows to the table; start the stream when ``df`` is streaming.

        The arguments before ``*`` are dbx.pixels', in its order.

        Parameters
        ----------
        df : pyspark.sql.DataFrame
            Output of the transformers (``meta`` as text or VARIANT). Columns that
            are not catalog columns are not stored (logged once per save). Rows whose
            ``path`` is null (no file behind them: the series a
            :class:`pixels.ml.spark.SegmentationTransformer` could not segment) are
            not stored either: the result counts and names them
            (``SaveResult.no_path``, ``no_path_errors``) and a warning says so
            (Spark's own Delta writer drops them uncounted).
        path : str, optional
            Write the Delta table at this path (with ``table``: the table of that name
            is kept there, as dbx.pixels' external tables).
        table : str, optional
            Write this table (name or path) instead of the catalog's.
        mode : {"append", "replace", "overwrite"}
            ``append`` adds new files and replaces the rows of changed files;
            ``replace`` also replaces the rows of unchanged files (to store rows
            re-derived from the table, e.g. ``DicomThumbnailExtractor().transform(
            catalog.load())``); ``overwrite`` replaces the whole table.
        mergeSchema : bool
            Accepted: the table always gets the columns of the current Pixels schema
            (older tables are upgraded); other columns are not stored.
        hasBinary, userOptions : optional
            Accepted (dbx.pixels' Delta writer tuning; unused by this writer, except
            ``userOptions`` given to Spark's Delta writer when the session has Delta Lake).
        userMetadata : str, optional
            Recorded as the Delta commit's ``userMetadata`` (``DESCRIBE HISTORY``).
        trigger : str, optional
            Streaming only: ``None``/``"availableNow"`` processes what is there and
            stops (unless :meth:`catalog` was given ``triggerProcessingTime``); a
            processing time such as ``"30 seconds"`` runs until stopped.
        wait : bool
            Streaming with ``availableNow``: wait until it finishes.
        rescan_seconds : float, optional
            Streaming with a processing-time trigger: look for files rewritten in
            place (which Spark's file source never re-picks) this often while the
            stream runs; ``None``: only when it starts.

        Returns
        -------
        SaveResult or pyspark.sql.streaming.StreamingQuery
            Batch: what was committed. Streaming: the query (finished when ``wait``).
        """
        if mode not in SAVE_MODES:
            raise PixelsError(f"mode must be one of {', '.join(SAVE_MODES)}, not {mode!r}")
        if table is not None or path is not None:
            target = self._other(table, path)
            try:
                return target.save(
                    df,
                    mode=mode,
                    userMetadata=userMetadata,
                    userOptions=userOptions,
                    trigger=trigger,
                    wait=wait,
                    rescan_seconds=rescan_seconds,
                )
            finally:
                self._stream = target._stream
        dropped = [c for c in df.columns if c not in SCHEMA.names and c != "_corrupt_record"]
        if dropped:
            log.warning("pixels: columns not stored in the catalog table: %s", ", ".join(dropped))
        self._user_metadata = userMetadata
        self._user_options = dict(userOptions or {})
        if df.isStreaming:
            return self._save_stream(df, trigger or self._trigger, wait, rescan_seconds)
        try:
            return self._save_batch(df, mode)
        finally:
            self._release_listings()

    def _release_listings(self) -> None:
        for refs in self._listings:
            refs.unpersist()
        self._listings.clear()

    def _save_batch(
        self, df: Any, mode: str, app_id: str | None = None, batch_id: int | None = None
    ) -> SaveResult:
        if self.use_spark_delta:
            return self._save_spark_delta(as_text(df), mode)
        assert self.table is not None
        result = save_dataframe(
            df,
            self.table,
            mode=mode,
            app_id=app_id,
            batch_id=batch_id,
            user_metadata=self._user_metadata,
        )
        if self.table_name:
            self.load()
        return result

    def _save_spark_delta(self, df: Any, mode: str) -> SaveResult:
        """Write with the session's Delta Lake (Databricks, clusters with delta-spark)."""
        import time

        t0 = time.perf_counter()
        cols = [n for n in SCHEMA.names if n in df.columns]
        # MERGE fails on a source with two rows for one target row: the identity rule first;
        # rows without a path (no file) are never stored (not counted here: that would run
        # the transformers twice)
        src = one_row_per_path(df.select(*cols).where("path IS NOT NULL"))
        target = (
            self.table_name
            if self.table_name and not self.location
            else f"delta.`{self.table.uri if self.table else ''}`"
        )
        exists = (
            self.spark.catalog.tableExists(self.table_name)
            if self.table_name
            else self.table is not None and self.table.exists()
        )
        writer = src.write.format("delta").options(**self._user_options)
        meta = self._user_metadata
        if meta is not None:  # MERGE takes it from the session
            writer = writer.option("userMetadata", meta)
            self.spark.conf.set(_USER_METADATA_CONF, meta)
        try:
            return self._write_spark_delta(src, writer, target, mode, exists, t0)
        finally:
            if meta is not None:
                self.spark.conf.unset(_USER_METADATA_CONF)

    def _write_spark_delta(
        self, src: Any, writer: Any, target: str, mode: str, exists: bool, t0: float
    ) -> SaveResult:
        import time

        if self.table_name and self.location:
            writer = writer.option("path", self.location)
        if not exists or mode == "overwrite":
            writer = writer.mode("overwrite" if exists else "errorifexists")
            if self.table_name:
                writer.saveAsTable(self.table_name)
            else:
                assert self.table is not None
                writer.save(self.table.uri)
        else:
            view = "_pixels_save_" + hashlib.sha1(str(time.time()).encode()).hexdigest()[:8]
            src.createOrReplaceTempView(view)
            try:
                self.spark.sql(merge_sql(target, view, mode))
            finally:
                self.spark.catalog.dropTempView(view)
        return SaveResult(seconds=time.perf_counter() - t0)

    def _save_stream(
        self, df: Any, trigger: str | None, wait: bool, rescan_seconds: float | None
    ) -> Any:
        stream = self._stream
        checkpoint = stream.checkpoint if stream else self._default_checkpoint("stream")
        if stream is not None and not self.use_spark_delta:
            try:
                self._save_changed(df, stream)
            finally:
                self._release_listings()
        app_id = "pixels-stream:" + hashlib.sha1(checkpoint.encode()).hexdigest()
        catalog = self

        def each(batch_df: Any, batch_id: int) -> None:
            catalog._save_batch(batch_df, "append", app_id=app_id, batch_id=int(batch_id))

        writer = df.writeStream.foreachBatch(each).option(
            "checkpointLocation", checkpoint.rstrip("/") + "/save"
        )
        if trigger is None or trigger == "availableNow":
            writer = writer.trigger(availableNow=True)
            query = writer.start()
            if wait:
                query.awaitTermination()
            return query
        query = writer.trigger(processingTime=trigger).start()
        if stream is not None and rescan_seconds and not self.use_spark_delta:
            threading.Thread(
                target=self._rescan,
                args=(query, df, stream, float(rescan_seconds)),
                name="pixels-rescan",
                daemon=True,
            ).start()
        return query

    def _rescan(self, query: Any, df: Any, stream: _Stream, every: float) -> None:
        """While ``query`` runs, re-read files rewritten in place every ``every`` seconds.

        Its commits go through the same identity check and lock as the stream's
        own, so the two never write a file twice.
        """
        while True:
            try:
                if query.awaitTermination(every):
                    return
            except Exception:  # the query failed: the user sees it on the query
                return
            try:
                self._save_changed(df, stream)
            except Exception:  # the stream goes on; the next scan tries again
                log.exception("pixels: scan for changed files of %s failed", stream.root)
            finally:
                self._release_listings()

    def _save_changed(self, df: Any, stream: _Stream) -> SaveResult | None:
        """Re-read files rewritten in place since the table saw them (a file stream never re-picks them).

        The stream's transforms are rebuilt from the options recorded on its columns.
        """
        meta = options_of(df, "meta")
        if meta is None or self.table is None or not self.table.exists():
            return None
        opts = replace(stream.options, snapshot=tuple(self.table.file_uris()), only_changed=True)
        changed = self._batch_listing(stream.root, stream.recursive, opts, None)
        out = meta_transform(changed, meta)
        thumbs = options_of(df, "thumbnail")
        if thumbs is not None:
            out = thumbnail_transform(out, thumbs)
        return save_dataframe(out, self.table)

    def optimize(self, retention_hours: int | None = None) -> dict[str, Any]:
        """Compact the table's small files (each save writes one file per task) and vacuum
        files replaced more than ``retention_hours`` ago (default: 7 days, as Delta).

        With Spark's own Delta Lake, run ``OPTIMIZE`` and ``VACUUM`` in SQL instead.
        """
        if self.table is None or self.use_spark_delta:
            raise PixelsError("this session writes with Delta Lake: use Spark SQL's OPTIMIZE")
        return self.table.optimize(retention_hours=retention_hours)

    def sql(self, query: str) -> Any:
        """Run Spark SQL with the view ``object_catalog`` over the current table."""
        self.load()
        return self.spark.sql(query)


__all__ = ["SaveResult", "SparkCatalog", "merge_sql", "one_row_per_path", "unseen"]
