"""The cost of making each STOW-RS instance durable: requests before and after a change.

    git archive main src | tar -x -C /tmp/before
    nice -n 10 python bench/bench_stow_durable.py --before /tmp/before/src --count 200

``--count`` single-instance STOW-RS requests (pydicom's MR_small.dcm with new UIDs, a new
study per request) are sent to the DICOMweb app (starlette's in-process test client: the
whole request path, the group commit included, without a socket) by a process importing
``pixels`` from ``--before`` (the baseline) and one importing it from this checkout,
alternately, ``--rounds`` times each, in a temporary folder under ``--dir`` (a disk: a
tmpfs makes ``fsync`` free): one after another (each request's latency: what a client
waits for), then the same count from ``--clients`` threads at once (requests per second:
concurrent requests share a commit). Reported: each side's median and mean latency and
requests/s, and the ratios after/before.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import child_json

HERE = Path(__file__).resolve().parent
BOUNDARY = "bench-boundary"


def _child(count: int, clients: int, folder: str) -> None:
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.filebase import DicomBytesIO
    from pydicom.uid import generate_uid
    from starlette.testclient import TestClient

    from pixels import Catalog
    from pixels.web import create_app

    catalog = os.path.join(folder, "catalog")
    Catalog(catalog).catalog(str(get_testdata_file("CT_small.dcm")), workers=0)
    ds = pydicom.dcmread(str(get_testdata_file("MR_small.dcm")))

    def body() -> bytes:
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        buf = DicomBytesIO()
        ds.save_as(buf, enforce_file_format=True)
        head = f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        return head + buf.getvalue() + f"\r\n--{BOUNDARY}--\r\n".encode()

    headers = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'}
    app = create_app(catalog, token="", storage_root=os.path.join(folder, "stow"), viewer=False)
    with TestClient(app, base_url="http://127.0.0.1") as client:

        def post(data: bytes) -> float:
            start = time.perf_counter()
            r = client.post("/dicomweb/studies", content=data, headers=headers)
            assert r.status_code == 200, r.text
            return time.perf_counter() - start

        post(body())  # the first write claims the storage root
        times = [post(body()) for _ in range(count)]
        datas = [body() for _ in range(count)]
        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(post, datas))
        rate = count / (time.perf_counter() - start)
    out = {"median": statistics.median(times), "mean": statistics.fmean(times), "rate": rate}
    print(json.dumps(out))


def _run(src: str, args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        child = ["--child", folder, "--count", str(args.count), "--clients", str(args.clients)]
        return child_json(__file__, src, child)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--before", help="src folder of the baseline")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", default=str(HERE.parent / ".cache"))
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        _child(args.count, args.clients, args.child)
        return
    assert args.before, "--before SRC is needed"
    os.makedirs(args.dir, exist_ok=True)
    sides: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    for _ in range(args.rounds):
        sides["before"].append(_run(args.before, args))
        sides["after"].append(_run(str(HERE.parent / "src"), args))
    summary: dict[str, dict[str, float]] = {}
    for side, runs in sides.items():
        summary[side] = {
            k: round(statistics.median(r[k] for r in runs), 5) for k in ("median", "mean", "rate")
        }
    ratios = {k: round(summary["after"][k] / summary["before"][k], 2) for k in summary["after"]}
    print(json.dumps({"sides": summary, "after/before": ratios, "rounds": sides}, indent=1))


if __name__ == "__main__":
    main()
