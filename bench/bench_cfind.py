"""C-FIND at scale: the summary-table path against grouping every instance row.

    nice -n 10 python bench/bench_cfind.py /tmp/copy-of-t10m

The table's saved index is opened (and written: run on a copy of a shared table).
Each STUDY-level query is answered in process by :func:`pixels.dimse.query.find`
twice: with the index (the study search table, as QIDO-RS) and without it (the
former path: ``inst`` grouped by study), both capped at 1,000 answers.
"""

from __future__ import annotations

import argparse
import time

from pydicom.dataset import Dataset

from pixels.dimse.query import find, parse_identifier
from pixels.table import CatalogTable
from pixels.web.index import TableIndex

QUERIES = {
    "name wildcard + date range": {"PatientName": "Smith*", "StudyDate": "20180101-20191231"},
    "date range": {"StudyDate": "20190601-20190630"},
    "universal": {},
}
RETURNED = ("PatientName", "PatientID", "StudyInstanceUID", "StudyDate", "ModalitiesInStudy",
            "NumberOfStudyRelatedInstances")  # fmt: skip


def _run(index: TableIndex, keys: dict[str, str], summary: bool) -> tuple[float, int]:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    for kw in RETURNED:
        setattr(ds, kw, "")
    for kw, value in keys.items():
        setattr(ds, kw, value)
    query = parse_identifier(ds)
    t0 = time.perf_counter()
    n = sum(1 for _ in find(index.current(), query, "PIXELS", 1000, index if summary else None))
    return time.perf_counter() - t0, n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("table")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    t0 = time.perf_counter()
    index = TableIndex(CatalogTable(args.table))
    index.current()
    print(f"index opened in {time.perf_counter() - t0:.1f} s")
    for name, keys in QUERIES.items():
        old = [_run(index, keys, False) for _ in range(1)]
        new = [_run(index, keys, True) for _ in range(args.repeat)]
        o, nw = min(t for t, _ in old), min(t for t, _ in new)
        print(f"{name}: instance rows {o * 1000:.0f} ms ({old[0][1]} answers), "
              f"summaries {nw * 1000:.0f} ms ({new[0][1]} answers), ratio {o / nw:.0f}x")  # fmt: skip


if __name__ == "__main__":
    main()
