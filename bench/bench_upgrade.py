"""The first write to a table an older Pixels wrote, against the same write to a current table.

Two tables of the same rows (real catalog rows of pydicom's CT file, given fresh
paths, in ``--files`` data files): one as Pixels schema 1 wrote them (no
``rowId``/``is_anon``, folder ``path_tags``, the old description), one current.
Timed, in this run: one new row appended to each (the first write: the old table
gets its new columns), a ``pixels sql`` count of ``rowId`` over each (old rows'
ids derived on read), then ``CatalogTable.upgrade()`` of the old table. Ratios
old/current are what to read: absolute times depend on the machine's load.

Usage::

    python bench/bench_upgrade.py --rows 50000 --files 20
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import pyarrow as pa
from deltalake import write_deltalake
from pydicom.data import get_testdata_file

from pixels import Catalog
from pixels.table import CatalogTable


def _rows(n: int, scratch: Path) -> pa.Table:
    src = scratch / "src"
    src.mkdir()
    shutil.copyfile(str(get_testdata_file("CT_small.dcm")), src / "ct.dcm")
    Catalog(scratch / "one").catalog(src, workers=0)
    one = Catalog(scratch / "one").sql_arrow("SELECT * FROM object_catalog")
    many = pa.concat_tables([one] * n)
    paths = pa.array([f"/data/p{i % 997}/s{i}.dcm" for i in range(n)], pa.string())
    rel = pa.array([p.removeprefix("/data/") for p in paths.to_pylist()], pa.string())
    many = many.set_column(many.schema.get_field_index("path"), "path", paths)
    many = many.set_column(many.schema.get_field_index("relative_path"), "relative_path", rel)
    ids = pa.nulls(n, pa.int64())  # the writer derives each path's id
    return many.set_column(many.schema.get_field_index("rowId"), "rowId", ids)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--files", type=int, default=20)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-upgrade-"))
    try:
        rows = _rows(args.rows, root)
        old, new = str(root / "old"), str(root / "new")
        v1 = rows.drop_columns(["rowId", "is_anon"])
        step = -(-rows.num_rows // args.files)
        for i in range(args.files):
            part = slice(i * step, (i + 1) * step)
            write_deltalake(
                old,
                v1.slice(part.start, step),
                mode="append",
                description="Pixels catalog: one row per file (pixels schema 1)",
            )
            CatalogTable(new).append(rows.slice(part.start, step))
        extra = rows.slice(0, 1)
        extra = extra.set_column(0, "path", pa.array(["/data/new.dcm"], pa.string()))
        extra = extra.set_column(
            extra.schema.get_field_index("rowId"), "rowId", pa.nulls(1, pa.int64())
        )
        times: dict[str, dict[str, float]] = {}
        for name, uri in (("current", new), ("old", old)):
            t = CatalogTable(uri)
            t0 = time.perf_counter()
            t.append(extra)
            t1 = time.perf_counter()
            n = Catalog(uri).sql_arrow("SELECT count(DISTINCT rowId) AS n FROM object_catalog")
            t2 = time.perf_counter()
            assert n["n"][0].as_py() == args.rows + 1
            times[name] = {"first write": t1 - t0, "read rowId": t2 - t1}
        t0 = time.perf_counter()
        done = CatalogTable(old).upgrade()
        upgrade = time.perf_counter() - t0
        print(f"rows {args.rows:,} in {args.files} files")
        for what in ("first write", "read rowId"):
            c, o = times["current"][what], times["old"][what]
            print(f"{what:12s} current {c:7.2f} s  old {o:7.2f} s  old/current {o / c:5.2f}x")
        print(f"upgrade      {upgrade:7.2f} s  ({done})")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
