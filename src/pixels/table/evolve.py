"""The table's schema over time: rows conformed to it, old tables evolved and upgraded."""

from __future__ import annotations

import pyarrow as pa

from pixels.schema import SCHEMA, SCHEMA_VERSION, row_id


def conform(data: pa.Table | pa.RecordBatch) -> pa.Table:
    """Cast ``data`` to the catalog schema (column order, types, ``string_view`` -> ``string``).

    ``rowId`` is derived from ``path`` where missing (:func:`pixels.schema.row_id`).
    """
    table = pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data
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


#: The table description, naming the schema version its rows are in (delta-rs
#: accepts no custom table property): an older one means rows to upgrade.
DESCRIPTION = f"Pixels catalog: one row per file (pixels schema {SCHEMA_VERSION})"


def upgrade_rows(data: pa.Table) -> pa.Table:
    """Rows written by an older Pixels, in the current schema (:data:`SCHEMA_VERSION` 2).

    ``rowId`` from ``path``; ``path_tags`` split again as dbx.pixels splits them;
    ``is_anon`` where the path says (local files; null for URLs: the storage options
    they were read with are not known).
    """
    from pixels.sources.local import path_tags_of

    paths = data["path"].to_pylist()
    rels = data["relative_path"].to_pylist() if "relative_path" in data.column_names else paths
    cols = {
        "rowId": pa.array([row_id(p) for p in paths], pa.int64()),
        "path_tags": pa.array(
            [list(path_tags_of(r)) if r is not None else None for r in rels],
            pa.list_(pa.string()),
        ),
        "is_anon": pa.array(
            [True if "://" not in p.split("::")[-1] else None for p in paths], pa.bool_()
        ),
    }
    for name, col in cols.items():
        if name in data.column_names:
            data = data.set_column(data.schema.get_field_index(name), name, col)
        else:
            data = data.append_column(name, col)
    return conform(data)


__all__ = ["DESCRIPTION", "conform", "upgrade_rows"]
