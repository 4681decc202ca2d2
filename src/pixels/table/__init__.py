"""The catalog's Delta Lake table: create, append, incremental state, compact.

The table is written with ``deltalake`` (delta-rs) and read through
:mod:`pixels.scan` (DuckDB over the version's Parquet files, or delta-rs where
the Delta protocol says the files alone do not hold the rows).

Writers coordinate in two ways:

* every commit is atomic (Delta's log), so a crash loses only uncommitted work;
* before a batch is committed it goes through the one identity rule
  (:func:`split_by_identity`): one row per path within the batch, rows whose
  identity (``path``, ``length``, ``modificationTime``) is already in the table
  are dropped, and rows whose path is there with another identity *replace* the
  old row. The look-up covers every data file the rows were not already compared
  with (a listing's snapshot), pruned by each file's ``path`` range. A commit is
  made only on top of the version that look-up read (never rebased over a
  concurrent commit: the writer looks up again), which makes check-and-commit
  atomic on object stores too; on local tables an advisory lock
  (``_pixels/writer.lock``) also keeps concurrent ``pixels catalog`` processes
  from racing.

The package, one module per concept:

* :mod:`pixels.table.catalog_table` — :class:`CatalogTable`: create, append, replace files;
* :mod:`pixels.table.identity` — the identity rule (one row per path, at its latest version);
* :mod:`pixels.table.evolve` — the schema: conforming rows, evolving and upgrading old tables;
* :mod:`pixels.table.cleanup` — compaction, vacuum, orphaned files and writers' leases.
* :mod:`pixels.table.firsts` — each data file's first row per series, saved beside it by its writer.
"""

from __future__ import annotations

from pixels.schema import IDENTITY, VIEW_NAME
from pixels.table.catalog_table import _ROW_GROUP, CatalogTable
from pixels.table.cleanup import (
    DEFAULT_RETENTION_HOURS,
    LEASE_STALE_HOURS,
    LOCK_DIR,
    ORPHAN_MIN_AGE_HOURS,
    _logged_files,
    lease_path,
    live_leases,
)
from pixels.table.evolve import DESCRIPTION, conform, upgrade_rows, without_path
from pixels.table.identity import iter_new, one_per_path, split_by_identity, sql_string

__all__ = [
    "DEFAULT_RETENTION_HOURS",
    "DESCRIPTION",
    "IDENTITY",
    "LEASE_STALE_HOURS",
    "LOCK_DIR",
    "ORPHAN_MIN_AGE_HOURS",
    "VIEW_NAME",
    "_ROW_GROUP",
    "CatalogTable",
    "_logged_files",
    "conform",
    "iter_new",
    "lease_path",
    "live_leases",
    "one_per_path",
    "split_by_identity",
    "sql_string",
    "upgrade_rows",
    "without_path",
]
