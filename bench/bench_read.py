"""The read path (:mod:`pixels.scan`) on a 20k-row catalog: before/after and direct vs delta-rs.

Rows are those of real DICOM files (pydicom's test files, cataloged once), copied
to 20,000 distinct paths and SOP Instance UIDs and committed in 10 commits of
2,000 (the way a catalog run writes them). Measured, best of ``--rounds``:

* ``sql point lookup``: ``pixels.sql.query`` of one row by ``path`` (connect,
  view, query), against the code before ``pixels.scan`` (a DuckDB view over
  ``read_parquet`` of the table's ``file_uris()``), inlined here as the baseline;
* ``identity look-up``: :meth:`CatalogTable.lookup` of 2,000 paths (a commit's
  check), against the same DuckDB query over ``file_uris()``;
* ``web index build``: :class:`pixels.web.index.Snapshot` of the version, against
  the old build (a ``read_parquet`` view);
* each of these through delta-rs (DataFusion), the way a version with deletion
  vectors or column mapping is read, against the direct read of the same table.

Usage: ``python bench/bench_read.py [--rows 20000] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from _common import WORK_DIR, dump_json, machine_info
from pixels import Catalog
from pixels.scan import TableScan
from pixels.schema import VIEW_NAME
from pixels.sql import query
from pixels.table import CatalogTable
from pixels.web.index import Snapshot


def build(root: Path, rows: int) -> CatalogTable:
    from pydicom.data import get_testdata_file

    seed = root / "seed"
    table = CatalogTable(root / f"table-{rows}")
    if table.exists() and table.count() == rows:
        return table
    folder = Path(str(get_testdata_file("CT_small.dcm", download=False))).parent
    Catalog(seed).catalog(folder, workers=0, pattern="*.dcm", recursive=False)
    real = Catalog(seed).sql_arrow(
        "SELECT * FROM object_catalog WHERE error IS NULL AND SOPInstanceUID IS NOT NULL"
    )
    n = real.num_rows
    for start in range(0, rows, 2000):
        idx = pa.array([i % n for i in range(start, start + 2000)])
        batch = real.take(idx)
        ids = [f"{i:08d}" for i in range(start, start + 2000)]
        batch = batch.set_column(
            batch.schema.get_field_index("path"),
            "path",
            pa.array([f"/bench/data/{i}.dcm" for i in ids]),
        )
        batch = batch.set_column(
            batch.schema.get_field_index("SOPInstanceUID"),
            "SOPInstanceUID",
            pa.array([f"1.2.826.0.1.3680043.10.1.{int(i)}" for i in ids]),
        )
        table.append(batch)
    return table


def best_of(fns: tuple[Callable[[], Any], ...], rounds: int) -> list[float]:
    """Best time of each of ``fns``, run in turn round after round (same machine state)."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - t0)
    return [min(t) for t in times]


def old_view(con: duckdb.DuckDBPyConnection, table: CatalogTable) -> None:
    files = "[" + ", ".join("'" + u + "'" for u in table.file_uris()) + "]"
    con.execute(
        f"CREATE OR REPLACE VIEW {VIEW_NAME} AS SELECT * FROM read_parquet({files}, union_by_name=true)"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    root = WORK_DIR / "read"
    table = build(root, args.rows)
    direct = table.scan()
    via_delta = TableScan(
        direct.uri, direct.version, direct.files, features=["(forced for the benchmark)"]
    )
    one = f"/bench/data/{args.rows // 2:08d}.dcm"
    point = f"SELECT meta FROM {VIEW_NAME} WHERE path = ?"
    wanted = [f"/bench/data/{i:08d}.dcm" for i in range(4000, 6000)]

    def old_sql() -> None:
        con = duckdb.connect()
        con.execute("SET TimeZone='UTC'")
        old_view(con, table)
        assert con.execute(point, [one]).fetchall()
        con.close()

    def new_sql() -> None:
        assert query(table, point, [one]).num_rows == 1

    def delta_sql() -> None:
        con = duckdb.connect()
        via_delta.register(con)
        assert con.execute(point, [one]).fetchall()
        con.close()

    lookup_con = duckdb.connect(config={"memory_limit": "64MB", "threads": 1})

    def old_lookup() -> None:
        lookup_con.register("wanted", pa.table({"path": wanted}))
        got = lookup_con.sql(
            "SELECT t.path, t.length, t.modificationTime, t.error IS NOT NULL AS has_error "
            "FROM read_parquet(?, union_by_name=true) t "
            "WHERE t.path BETWEEN ? AND ? AND t.path IN (SELECT path FROM wanted)",
            params=[table.file_uris(), min(wanted), max(wanted)],
        ).to_arrow_table()
        assert got.num_rows == len(wanted)

    def new_lookup() -> None:
        assert table.lookup(wanted).num_rows == len(wanted)

    def delta_lookup() -> None:
        got = via_delta.lookup(lookup_con, pa.array(wanted))
        assert pc.count_distinct(got["path"]).as_py() == len(wanted)

    def old_index() -> None:
        # before pixels.scan: exists(), version(), file_uris(), then the same build
        # over a read_parquet view (which a direct TableScan registers unchanged)
        version = table.version() if table.exists() else None
        Snapshot(TableScan(table.uri, version, table.file_uris()))

    results: dict[str, dict[str, float]] = {}
    pairs = {
        "sql point lookup": (old_sql, new_sql, delta_sql),
        "identity look-up (2,000 paths)": (old_lookup, new_lookup, delta_lookup),
        "web index build": (old_index, lambda: Snapshot(table.scan()), lambda: Snapshot(via_delta)),
    }
    for name, (old, new, delta) in pairs.items():
        old()
        new()
        delta()
        t_old, t_new, t_delta = best_of((old, new, delta), args.rounds)
        results[name] = {
            "before_s": t_old,
            "after_s": t_new,
            "delta_rs_s": t_delta,
            "after/before": t_new / t_old,
            "delta-rs/direct": t_delta / t_new,
        }
        print(
            f"{name:32s} before {t_old * 1000:8.1f} ms  after {t_new * 1000:8.1f} ms "
            f"(x{t_new / t_old:.2f})  through delta-rs {t_delta * 1000:8.1f} ms "
            f"(x{t_delta / t_new:.1f} of direct)"
        )
    dump_json(
        Path(__file__).resolve().parent / "results" / "read.json",
        {"machine": machine_info(), "rows": args.rows, "rounds": args.rounds, "results": results},
    )


if __name__ == "__main__":
    main()
