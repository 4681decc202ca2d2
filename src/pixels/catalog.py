"""The public entry point: :class:`Catalog`."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from pixels.dicom.record import RecordOptions
from pixels.engines.local import CatalogStats, ProgressCallback, run_catalog
from pixels.engines.options import CatalogOptions
from pixels.sources import ArchiveLimits
from pixels.sql import query
from pixels.table import CatalogTable

if TYPE_CHECKING:
    import pandas as pd


class Catalog:
    """A catalog of medical image files stored as a Delta Lake table.

    ``Catalog(spark, table=...)`` with a ``SparkSession`` first returns the Spark
    engine instead, :class:`pixels.engines.spark.catalog.SparkCatalog` (the
    dbx.pixels API: ``catalog``, ``save``, ``load``).

    Parameters
    ----------
    table : str or path-like
        Folder (or object-store URL) of the Delta table. Created on first use.
    storage_options : dict, optional
        Options for the table's object store (delta-rs).

    Examples
    --------
    >>> from pixels import Catalog
    >>> cat = Catalog("./catalog")                              # doctest: +SKIP
    >>> stats = cat.catalog("/data/dicom")                      # doctest: +SKIP
    >>> cat.sql("SELECT Modality, count(*) n FROM object_catalog GROUP BY 1")  # doctest: +SKIP
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        # Catalog(spark, table=...) is the Spark engine (dbx.pixels API)
        from pixels.engines.spark.session import is_spark_session

        if (args and is_spark_session(args[0])) or "spark" in kwargs:
            from pixels.engines.spark.catalog import SparkCatalog

            return SparkCatalog(*args, **kwargs)
        return super().__new__(cls)

    def __init__(
        self,
        table: str | os.PathLike[str] = "./catalog",
        *,
        storage_options: dict[str, str] | None = None,
    ):
        self.table = CatalogTable(table, storage_options=storage_options)

    def __repr__(self) -> str:
        return f"Catalog({self.table.uri!r})"

    def catalog(
        self,
        source: str | os.PathLike[str],
        *,
        workers: int | None = None,
        pattern: str | None = None,
        recursive: bool = True,
        expand_archives: bool = True,
        extract_dir: str | None = None,
        storage_options: dict[str, Any] | None = None,
        limits: ArchiveLimits | None = None,
        bulk_threshold: int = 1024,
        retry_errors: bool = False,
        commit_rows: int = 2000,
        thumbnails: bool = False,
        thumbnail_size: int = 256,
        thumbnail_format: str = "jpeg",
        progress: ProgressCallback | None = None,
        worker_memory: int | None = -1,
    ) -> CatalogStats:
        """List ``source`` and add new or changed files to the catalog.

        Parameters
        ----------
        source : str or path-like
            A folder, a file, a zip archive, or an fsspec URL (``s3://bucket/prefix``).
        workers : int, optional
            Worker processes (default: number of CPUs; 0 = in this process).
        pattern : str, optional
            Glob on file names (``*.dcm``), or on relative paths if it holds ``/``.
        recursive : bool
            Descend into sub-folders.
        expand_archives : bool
            Catalog the members of zip archives found in ``source``.
        extract_dir : str, optional
            Extract zip members there (safely) instead of reading them in memory.
        storage_options : dict, optional
            fsspec options for ``source`` (credentials, ``endpoint_url``).
        limits : ArchiveLimits, optional
            Zip safety limits (member size, ratio, total size).
        bulk_threshold : int
            Binary elements longer than this go to ``meta`` as BulkDataURI.
        retry_errors : bool
            Read again unchanged files whose row has an error.
        commit_rows : int
            Rows per Delta commit (also committed every 30 s).
        thumbnails : bool
            Also make thumbnails in the same pass (see :meth:`thumbnails` to add them later).
        thumbnail_size, thumbnail_format : int, str
            Longest side; ``"jpeg"`` or ``"png"``.
        progress : callable, optional
            Called with running :class:`CatalogStats`.
        worker_memory : int or None
            Bytes of memory each worker may use (a file needing more gets a
            ``MemoryError`` row); ``-1``: ``PIXELS_WORKER_MEMORY`` or 90% of RAM
            shared by the workers; ``None``: no limit.

        Returns
        -------
        CatalogStats
            Counts of what was listed, skipped, read, written and failed.
        """
        opts = RecordOptions(
            bulk_threshold=bulk_threshold,
            storage_options=storage_options,
            limits=limits or ArchiveLimits(),
            thumbnails=thumbnails,
            thumbnail_size=thumbnail_size,
            thumbnail_format=thumbnail_format,
        )
        config = CatalogOptions(
            workers=workers,
            pattern=pattern,
            recursive=recursive,
            expand_archives=expand_archives,
            extract_dir=extract_dir,
            record=opts,
            retry_errors=retry_errors,
            commit_rows=commit_rows,
            worker_memory=worker_memory,
        )
        return run_catalog(os.fspath(source), self.table, config, progress=progress)

    def watch(self, source: str | os.PathLike[str], **kwargs: Any) -> Any:
        """Catalog the files of a local folder as they arrive, until Ctrl-C (``pixels catalog --watch``).

        Keyword arguments are those of :class:`pixels.engines.watch.Watcher`
        (``settle``, ``poll``, ``deletions``, ``workers``, ...); to stop it from another
        thread, run a ``Watcher`` yourself and call its ``stop()``. Returns its
        :class:`~pixels.engines.watch.WatchStats` (everything read is committed).
        """
        from pixels.engines.watch import watch_catalog

        return watch_catalog(os.fspath(source), self.table, **kwargs)

    def sql(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        """Run a DuckDB query over the view ``object_catalog``; return a DataFrame.

        Use ``?`` placeholders with ``params`` for values.
        """
        return self.sql_arrow(sql, params).to_pandas()

    def sql_arrow(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        """Like :meth:`sql` but return an Arrow table."""
        return query(self.table, sql, params)

    def thumbnails(
        self,
        *,
        where: str | None = None,
        force: bool = False,
        size: int = 256,
        fmt: str = "jpeg",
        workers: int | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> Any:
        """Make thumbnails for rows that lack one; returns :class:`~pixels.thumbnails.ThumbnailStats`."""
        from pixels.thumbnails import run_thumbnails

        opts = RecordOptions(
            thumbnails=True,
            thumbnail_size=size,
            thumbnail_format=fmt,
            storage_options=storage_options,
        )
        return run_thumbnails(self.table, where=where, force=force, workers=workers, options=opts)

    def count(self) -> int:
        """Number of rows (files) in the catalog."""
        return self.table.count()

    def optimize(self, retention_hours: int | None = None, cluster: bool = False) -> dict[str, Any]:
        """Compact the table's small files and vacuum files replaced long enough ago.

        ``retention_hours``: see :meth:`pixels.table.CatalogTable.optimize` (default 7 days).
        ``cluster``: also order the rows by study and series, so that
        look-ups by study or series read a few row groups (rewrites every file).
        Rows an older Pixels wrote are upgraded first (:meth:`pixels.table.CatalogTable.upgrade`;
        ``rowsUpgraded`` in the metrics).
        """
        upgraded = self.table.upgrade() if self.table.needs_upgrade else {}
        if not cluster:
            metrics = self.table.optimize(retention_hours=retention_hours)
        else:
            from pixels.cluster import cluster_table

            metrics = cluster_table(self.table)
            metrics.update(self.table.optimize(retention_hours=retention_hours, compact=False))
        metrics["rowsUpgraded"] = upgraded.get("rowsUpgraded", 0)
        return metrics
