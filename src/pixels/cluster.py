"""Clustering the catalog table: every row rewritten in the order of study and series.

``pixels optimize --cluster`` (:meth:`pixels.catalog.Catalog.optimize`) orders the
rows by StudyInstanceUID, SeriesInstanceUID, so that each Parquet row group holds
a narrow range of studies and a look-up by study or series (``pixels sql``, the
DICOMweb server's row reads) skips every other row group by its statistics.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from typing import Any

import duckdb
import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError
from deltalake.transaction import AddAction, RemoveAction

from pixels.errors import TableError
from pixels.schema import SCHEMA
from pixels.storage import is_local, local_path
from pixels.table import _ROW_GROUP, LOCK_DIR, CatalogTable, conform

__all__ = ["CLUSTER_COLUMNS", "cluster_table"]

#: What ``pixels optimize --cluster`` orders rows by.
CLUSTER_COLUMNS = ("StudyInstanceUID", "SeriesInstanceUID")
#: Rows per data file written.
_CLUSTER_ROWS = 200_000


def cluster_table(table: CatalogTable, columns: Sequence[str] = CLUSTER_COLUMNS) -> dict[str, Any]:
    """Rewrite every row in the order of ``columns`` (then ``path``): one commit.

    A total order, not delta-rs' Z-order: Z-order keys take the first bytes of
    each string, and UIDs share long prefixes (an organisation's root), so
    Z-order leaves them unordered. DuckDB sorts (spilling to
    ``_pixels/tmp`` past its memory limit of 4 GB, one thread); files of :data:`_CLUSTER_ROWS` rows
    are written and committed with the removal of every old file, on top of
    the version read, under the table's writer lock. Local tables.

    Returns
    -------
    dict
        ``numFilesAdded`` and ``numFilesRemoved``.
    """
    if not is_local(table.uri):
        raise TableError("clustering is only supported for local tables", table.uri)
    with table._writer_lock():
        return _cluster_locked(table, table.delta(), list(columns))


def _cluster_locked(table: CatalogTable, dt: DeltaTable, columns: list[str]) -> dict[str, Any]:
    scan = table.scan()
    if not scan.direct or not scan.files:
        return {"numFilesAdded": 0, "numFilesRemoved": 0}
    root = local_path(table.uri)
    tmp = os.path.join(root, LOCK_DIR, "tmp")
    os.makedirs(tmp, exist_ok=True)
    con = duckdb.connect(config={"memory_limit": "4GB", "threads": 1, "temp_directory": tmp})
    adds: list[AddAction] = []
    try:
        con.execute("SET TimeZone='UTC'")
        con.execute("SET preserve_insertion_order = false")
        scan.register(con, "t")
        order = ", ".join(f'"{c}"' for c in [*columns, "path"])
        reader = con.sql(f"SELECT * FROM t ORDER BY {order}").to_arrow_reader(_ROW_GROUP)
        pending: list[pa.RecordBatch] = []
        n = 0
        for batch in reader:
            pending.append(batch)
            n += batch.num_rows
            if n >= _CLUSTER_ROWS:
                adds.append(table._write_file(conform(pa.Table.from_batches(pending))))
                pending, n = [], 0
        if pending:
            adds.append(table._write_file(conform(pa.Table.from_batches(pending))))
    except BaseException:
        for a in adds:
            with contextlib.suppress(OSError):
                os.remove(os.path.join(root, a.path))
        raise
    finally:
        con.close()
    now = int(time.time() * 1000)
    removes = [
        RemoveAction(
            path=os.path.relpath(local_path(u), root),
            data_change=True,
            deletion_timestamp=now,
            size=os.stat(local_path(u)).st_size,
        )
        for u in scan.files
    ]
    dt.update_incremental()
    if set(dt.file_uris()) != set(scan.files):
        for a in adds:
            os.remove(os.path.join(root, a.path))
        raise CommitFailedError("the table changed while it was clustered")
    dt.create_write_transaction([*removes, *adds], mode="append", schema=SCHEMA)
    dt.update_incremental()
    return {"numFilesAdded": len(adds), "numFilesRemoved": len(removes)}
