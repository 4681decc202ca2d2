"""The check of each received C-STORE / C-GET instance before it is stored, and its share of
the instance's work: :func:`pixels.dimse.receive.check_received` (the project's header reader,
:func:`pixels.dicom.meta.read_header`) against pydicom's ``dcmread(stop_before_pixels=True)``
(the check before, as the baseline), then the sink's ``store_path`` (read, rename, fsync,
journal), all on the same files in one run.

    nice -n 10 python bench/bench_dimse_check.py [--n 60] [--dir /tmp]

Reported per file kind: each check's time per instance, their ratio, and the ratio of check +
store (the instance's work after it arrived) now / before.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import pydicom
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from pixels import Catalog
from pixels.dicom.notices import kept_warnings
from pixels.dimse.receive import StoreSink, check_received
from pixels.web.state import WebState

FILES = ("CT_small.dcm", "MR_small.dcm", "emri_small_jpeg_2k_lossless.dcm", "rtplan.dcm")


def _pydicom_check(path: str, sop_class: str, sop: str) -> tuple[int, str] | None:
    """The baseline: the check as it read the header before (pydicom, pixels not read)."""
    with kept_warnings():
        ds = dcmread(path, stop_before_pixels=True)
        held = str(ds.get("SOPClassUID", "") or ""), str(ds.get("SOPInstanceUID", "") or "")
    return None if held == (sop_class, sop) else (0xA900, "differs")


def _one(name: str, n: int, folder: str | None) -> str:
    root = tempfile.mkdtemp(dir=folder)
    try:
        catalog = os.path.join(root, "catalog")
        src = get_testdata_file(name)
        Catalog(catalog).catalog(src, workers=0)
        sink = StoreSink(WebState(catalog), every=10**9, seconds=3600)
        ds = pydicom.dcmread(src)
        os.makedirs(sink.incoming, exist_ok=True)
        made = []
        for i in range(n):
            ds.SOPInstanceUID = generate_uid()
            path = os.path.join(sink.incoming, f".bench-{i}.part")
            ds.save_as(path, enforce_file_format=True)
            made.append((path, str(ds.SOPClassUID), str(ds.SOPInstanceUID)))
        before = now = store = 0.0
        for path, sop_class, sop in made:
            t0 = time.perf_counter()
            assert _pydicom_check(path, sop_class, sop) is None
            t1 = time.perf_counter()
            assert check_received(path, sop_class, sop) is None
            t2 = time.perf_counter()
            assert sink.store_path(path).status == 0
            t3 = time.perf_counter()
            before, now, store = before + t1 - t0, now + t2 - t1, store + t3 - t2
        sink.close()
    finally:
        shutil.rmtree(root)
    return (
        f"| {name} | {before / n * 1e3:.2f} | {now / n * 1e3:.2f} | {now / before:.2f}x | "
        f"{store / n * 1e3:.2f} | {(now + store) / (before + store):.2f}x |"
    )


def main() -> None:
    """Print one Markdown table row per file kind."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=60, help="instances per file kind")
    ap.add_argument("--dir", default=None, help="where the catalogs go (the disk measured)")
    args = ap.parse_args()
    print(
        "| file | check before, ms | check now, ms | now / before | store, ms | check + store now / before |"
    )
    print("|---|---|---|---|---|---|")
    for name in FILES:
        print(_one(name, args.n, args.dir))


if __name__ == "__main__":
    main()
