"""The table's schema over time: rows conformed to it, old tables evolved and upgraded."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pixels.errors import TableError
from pixels.schema import DESCRIPTION, SCHEMA, row_id
from pixels.table.footer import leaf_index

if TYPE_CHECKING:
    from pixels.table.catalog_table import CatalogTable

#: Concurrent commits an upgrade gives way to before it gives up (a later run goes on).
_CONFLICTS = 50


#: Rows without a path named in an error or a log line (the others are counted).
NAMED_ROWS = 5


def name_row(row: dict[str, Any], index: int) -> str:
    """A row that has no ``path``, as errors and logs name it.

    Its ``error`` (what a failed step says, such as the series the
    :class:`pixels.ml.spark.SegmentationTransformer` could not segment), else its
    SOP / Series Instance UID, else its position in the batch.
    """
    for key in ("error", "SOPInstanceUID", "SeriesInstanceUID"):
        if row.get(key):
            return f"{key} {row[key]!r}" if key != "error" else str(row[key])
    return f"row {index}"


def without_path(data: pa.Table) -> tuple[pa.Table, int, list[str]]:
    """``data`` less its rows whose ``path`` is null: no file is behind them.

    Returns the rows kept, how many were dropped, and the first
    :data:`NAMED_ROWS` of those named (:func:`name_row`). The catalog holds one
    row per file, at the file's path, so such a row is never stored.
    """
    if "path" not in data.column_names or data["path"].null_count == 0:
        return data, 0, []
    missing = data["path"].is_null()
    dropped = data.filter(missing)
    cols = [c for c in ("error", "SOPInstanceUID", "SeriesInstanceUID") if c in data.column_names]
    rows = dropped.select(cols).slice(0, NAMED_ROWS).to_pylist()
    named = [name_row(r, i) for i, r in enumerate(rows)]
    return data.filter(pc.invert(missing)), dropped.num_rows, named


def conform(data: pa.Table | pa.RecordBatch) -> pa.Table:
    """Cast ``data`` to the catalog schema (column order, types, ``string_view`` -> ``string``).

    ``rowId`` is derived from ``path`` where missing (:func:`pixels.schema.row_id`).

    Raises
    ------
    TableError
        A row has no ``path`` (no file behind it; the first ones named by
        :func:`name_row`): writers that skip such rows drop them first
        (:func:`without_path`).
    """
    table = pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data
    _, missing_paths, named = without_path(table)
    if missing_paths:
        raise TableError(
            f"{missing_paths} row(s) without a path (no file behind them) cannot be stored "
            f"in the catalog: {'; '.join(named)}"
        )
    missing = [f for f in SCHEMA if f.name not in table.column_names]
    for f in missing:
        table = table.append_column(f, pa.nulls(table.num_rows, f.type))
    ids = table["rowId"]
    if ids.null_count:
        filled = [
            i if i is not None else (row_id(p) if p is not None else None)
            for i, p in zip(ids.to_pylist(), table["path"].to_pylist(), strict=True)
        ]
        table = table.set_column(
            table.schema.get_field_index("rowId"), "rowId", pa.array(filled, pa.int64())
        )
    return table.select(SCHEMA.names).cast(SCHEMA)


def upgrade_rows(data: pa.Table) -> pa.Table:
    """Rows written by an older Pixels, in the current schema (:data:`SCHEMA_VERSION` 2).

    A row is old when its ``rowId`` is null (or the column is missing): writers of
    schema 2 always set it. Old rows get ``rowId`` from ``path``, ``path_tags``
    split again as dbx.pixels splits them, and ``is_anon`` where the path says
    (:func:`legacy_is_anon`); other rows are left as they are.
    """
    from pixels.sources.local import path_tags_of

    n = data.num_rows
    ids = data["rowId"].to_pylist() if "rowId" in data.column_names else [None] * n
    old = [i is None for i in ids]
    if not any(old):
        return conform(data)
    paths = data["path"].to_pylist()
    rels = data["relative_path"].to_pylist() if "relative_path" in data.column_names else paths
    tags = data["path_tags"].to_pylist() if "path_tags" in data.column_names else [None] * n
    anon = data["is_anon"].to_pylist() if "is_anon" in data.column_names else [None] * n
    cols = {
        "rowId": pa.array(
            [row_id(p) if o else i for o, i, p in zip(old, ids, paths, strict=True)], pa.int64()
        ),
        "path_tags": pa.array(
            [
                (list(path_tags_of(r)) if r is not None else None) if o else t
                for o, r, t in zip(old, rels, tags, strict=True)
            ],
            pa.list_(pa.string()),
        ),
        "is_anon": pa.array(
            [
                legacy_is_anon(p) if o and a is None else a
                for o, a, p in zip(old, anon, paths, strict=True)
            ],
            pa.bool_(),
        ),
    }
    for name, col in cols.items():
        if name in data.column_names:
            data = data.set_column(data.schema.get_field_index(name), name, col)
        else:
            data = data.append_column(name, col)
    return conform(data)


def legacy_is_anon(path: str) -> bool | None:
    """``is_anon`` of a row written before the column existed.

    True for local files (read without credentials by definition); None for URLs:
    the storage options they were read with are not known.
    """
    return True if "://" not in path.split("::")[-1] else None


def stale(fs: Any, path: str) -> bool:
    """Whether data file ``path`` (on ``fs``) holds rows to upgrade (a null ``rowId``).

    From the Parquet footer alone: the column missing, or a row group whose
    statistics count nulls in it (or have no counts).
    """
    with fs.open(path, "rb") as fh:
        meta = pq.read_metadata(fh)
    if meta.num_row_groups == 0:  # (no column chunks to look in: its schema says)
        return "rowId" not in meta.schema.to_arrow_schema().names
    col = leaf_index(meta, "rowId")
    if col is None:
        return True
    for g in range(meta.num_row_groups):
        st = meta.row_group(g).column(col).statistics
        if st is None or st.null_count is None or st.null_count > 0:
            return True
    return False


def upgrade_table(
    table: CatalogTable, progress: Callable[[str], None] | None = None
) -> dict[str, int]:
    """Rewrite the data files holding rows an older Pixels wrote, then mark the table upgraded.

    The write path never does this (a first write to a large old table would
    rewrite all of it): old rows read with ``rowId``/``is_anon`` derived from
    ``path`` until this runs (``pixels upgrade``, or ``pixels optimize``).

    Each stale file (:func:`stale`) is replaced by its rows through
    :func:`upgrade_rows` in a commit of its own: a run killed half-way leaves a
    table whose every row is whole, and the next run does the files left. When no
    stale file is left, the table description records the schema version
    (:data:`DESCRIPTION`). Local tables and object stores alike.

    Returns
    -------
    dict
        ``filesRewritten``, ``rowsUpgraded`` and ``filesChecked``.
    """
    from deltalake.exceptions import CommitFailedError

    out = {"filesChecked": 0, "filesRewritten": 0, "rowsUpgraded": 0}
    if not table.exists():
        return out
    table.create()  # the columns added since (metadata only)
    fs, root = table._fs()
    done: set[str] = set()
    conflicts = 0
    while True:
        todo = [u for u in table.file_uris() if u not in done]
        if not todo:
            break
        for uri in todo:
            path = _fs_path(uri, table.uri, root)
            if not stale(fs, path):
                done.add(uri)
                out["filesChecked"] += 1
                continue
            with fs.open(path, "rb") as fh:
                rows = pq.read_table(fh)
            old = rows["rowId"].null_count if "rowId" in rows.column_names else rows.num_rows
            try:
                table.replace_file(uri, upgrade_rows(rows))
            except CommitFailedError as e:
                # another writer committed meanwhile: list the files again (this one
                # too, unless it left the table)
                conflicts += 1
                if conflicts >= _CONFLICTS:
                    raise TableError(
                        f"upgrade gave up after {conflicts} concurrent commits: {e}", table.uri
                    ) from e
                break
            done.add(uri)
            out["filesChecked"] += 1
            out["filesRewritten"] += 1
            out["rowsUpgraded"] += old
            if progress is not None:
                progress(f"upgraded {uri} ({old} rows)")
    with table._writer_lock():
        dt = table.delta()
        if (dt.metadata().description or "") != DESCRIPTION:
            dt.alter.set_table_description(DESCRIPTION)
    return out


def _fs_path(uri: str, table_uri: str, root: str) -> str:
    """Path of data file ``uri`` on the table's file system (``root``: the table's folder)."""
    from urllib.parse import unquote

    head = table_uri.rstrip("/") + "/"
    if uri.startswith(head):
        return f"{root}/{unquote(uri[len(head) :])}"
    from pixels.storage import local_path

    return local_path(uri)


__all__ = ["DESCRIPTION", "conform", "legacy_is_anon", "stale", "upgrade_rows", "upgrade_table"]
