"""WADO-RS ``/metadata`` latency on a small real catalog: rows read from their files vs a scan.

The catalog: pydicom's test files and pydicom-data's (each run of ``pixels catalog``
one commit), one series of 50 copies of CT_small and one of a single MR_small (fresh
UIDs, each its own commit): about the 169-file catalog on which the server was
measured against Orthanc (p50 23.7 ms vs 7.1 ms for 50 instances, 20 ms vs 4 ms for
one).

Two servers (``pixels serve``'s app, uvicorn on 127.0.0.1, each in its own
process) over the same table, asked in turns by one keep-alive client:

- ``located`` (the code as it is): the index knows each instance's data file and
  row number; a request reads those rows from those files only (pyarrow, footers
  parsed once per table version); the index's queries run on one thread.
- ``scan`` (the baseline, the code before): the index's snapshot asked to read
  rows through the version's view, a ``read_parquet`` over every data file of the
  version (``union_by_name``), with the UID predicates pushed down, and its
  DuckDB connection back on all threads.

With ``--orthanc`` (Debian's ``orthanc`` and ``orthanc-dicomweb``), a third
server in the same turns: Orthanc 1.10 with its DICOMweb plugin, loopback only,
holding the same files (uploaded once through its REST API).

Reports p50 / p95 per request and the ratios scan / located (> 1: located faster)
and located / Orthanc (< 1: Pixels faster). Usage:
``python bench/bench_metadata.py [--rounds 200] [--orthanc]``. Writes
``bench/results/metadata.json``.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from _common import WORK_DIR, machine_info

BENCH = Path(__file__).resolve().parent
ROOT = WORK_DIR / "metadata"


def prepare() -> str:
    """Build the catalog once (``bench/.work/metadata``); return the table's path."""
    import warnings

    from corpus import copy_with_new_uids, pydicom_data_folder, pydicom_folder, sample_file
    from pixels import Catalog

    table = ROOT / "catalog"
    if (table / "_delta_log").is_dir():
        return str(table)
    warnings.simplefilter("ignore")
    copy_with_new_uids(sample_file("CT_small.dcm"), ROOT / "s50", 50, per_series=50)
    copy_with_new_uids(sample_file("MR_small.dcm"), ROOT / "s1", 1, per_series=1)
    cat = Catalog(str(table))
    for folder in (pydicom_folder(), pydicom_data_folder(), ROOT / "s50", ROOT / "s1"):
        cat.catalog(str(folder), workers=0)
    return str(table)


def serve(table: str, port: int, mode: str) -> None:
    """Server subprocess; ``scan`` makes the snapshot read rows through the view."""
    import uvicorn

    from pixels.web import create_app
    from pixels.web.index import index_of

    app = create_app(table, token="", viewer=False)
    snap = index_of(app.state.pixels).current()
    if mode == "scan":  # as before: rows through the view, DuckDB's thread pool
        snap._located = False
        snap._con.execute("RESET threads")
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(table: str, mode: str) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    port = _free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", table, str(port), mode])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"server ({mode}) exited"
        try:
            httpx.get(url + "/dicomweb/studies?limit=1", timeout=30)
            return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start")


ORTHANC = "/usr/sbin/Orthanc"
ORTHANC_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


def start_orthanc() -> tuple[subprocess.Popen[bytes], str]:
    """Orthanc with DICOMweb on a free loopback port, holding the catalog's files."""
    import httpx

    from corpus import pydicom_data_folder, pydicom_folder

    port = _free_port()
    home = ROOT / "orthanc"
    home.mkdir(exist_ok=True)
    config = {
        "Name": "bench",
        "StorageDirectory": str(home / "db"),
        "IndexDirectory": str(home / "db"),
        "HttpPort": port,
        "DicomServerEnabled": False,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [ORTHANC_PLUGIN],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    (home / "config.json").write_text(json.dumps(config))
    proc = subprocess.Popen(
        [ORTHANC, str(home / "config.json")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None and time.monotonic() < deadline, "Orthanc did not start"
        try:
            httpx.get(url + "/system", timeout=5).raise_for_status()
            break
        except httpx.TransportError:
            time.sleep(0.2)
    marker = home / "uploaded"
    if not marker.exists():
        for folder in (pydicom_folder(), pydicom_data_folder(), ROOT / "s50", ROOT / "s1"):
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                httpx.post(url + "/instances", content=path.read_bytes(), timeout=60)
        marker.write_text("")
    return proc, url + "/dicom-web"


def requests(table: str) -> dict[str, str]:
    """The request paths measured, from the table's own UIDs."""
    import pydicom

    out = {}
    for name, folder in (("series_50", "s50"), ("series_1", "s1")):
        path = next((ROOT / folder).rglob("*.dcm"))
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        study, series, sop = ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
        out[name] = f"/dicomweb/studies/{study}/series/{series}/metadata"
        if name == "series_50":
            out["instance"] = f"/dicomweb/studies/{study}/series/{series}/instances/{sop}/metadata"
    return out


def _path(mode: str, path: str) -> str:
    return path.removeprefix("/dicomweb") if mode == "orthanc" else path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--orthanc", action="store_true", help="also time Orthanc (DICOMweb plugin)")
    ap.add_argument("--serve", nargs=3, metavar=("TABLE", "PORT", "MODE"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve:
        serve(a.serve[0], int(a.serve[1]), a.serve[2])
        return
    import httpx

    table = prepare()
    paths = requests(table)
    servers = {mode: start(table, mode) for mode in ("located", "scan")}
    if a.orthanc:
        servers["orthanc"] = start_orthanc()
    times: dict[str, dict[str, list[float]]] = {m: {k: [] for k in paths} for m in servers}
    try:
        clients = {m: httpx.Client(base_url=url, timeout=60) for m, (_, url) in servers.items()}
        bodies = {}
        for mode, client in clients.items():  # warm up; Pixels' two answer the same
            for name, path in paths.items():
                r = client.get(_path(mode, path))
                r.raise_for_status()
                assert len(r.json()) == (50 if name == "series_50" else 1), (mode, name)
                if mode != "orthanc":
                    body = r.text.replace(servers[mode][1], "")  # URLs name the server
                    bodies.setdefault(name, body)
                    assert body == bodies[name], (mode, name)
        for _ in range(a.rounds):
            for name, path in paths.items():
                for mode, client in clients.items():  # in turns: the same load for both
                    t = time.perf_counter()
                    client.get(_path(mode, path)).raise_for_status()
                    times[mode][name].append(time.perf_counter() - t)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(10)

    def ms(xs: list[float], q: float) -> float:
        return round(1000 * statistics.quantiles(xs, n=100)[int(q) - 1], 2)

    res: dict[str, Any] = {"machine": machine_info(), "rounds": a.rounds, "requests": {}}
    orth = "orthanc" in times
    head = "| request | located p50 ms | scan p50 ms | scan / located |"
    print(head + (" orthanc p50 ms | located / orthanc |" if orth else ""))
    print("|---" * (6 if orth else 4) + "|")
    for name in paths:
        loc = statistics.median(times["located"][name])
        scan = statistics.median(times["scan"][name])
        row = {
            "located_p50_ms": round(1000 * loc, 2),
            "scan_p50_ms": round(1000 * scan, 2),
            "located_p95_ms": ms(times["located"][name], 95),
            "scan_p95_ms": ms(times["scan"][name], 95),
            "ratio_p50": round(scan / loc, 2),
        }
        line = f"| {name} | {row['located_p50_ms']} | {row['scan_p50_ms']} | {row['ratio_p50']} |"
        if orth:
            o = statistics.median(times["orthanc"][name])
            row["orthanc_p50_ms"] = round(1000 * o, 2)
            row["orthanc_p95_ms"] = ms(times["orthanc"][name], 95)
            row["located_over_orthanc_p50"] = round(loc / o, 2)
            line += f" {row['orthanc_p50_ms']} | {row['located_over_orthanc_p50']} |"
        res["requests"][name] = row
        print(line)
    (BENCH / "results").mkdir(exist_ok=True)
    (BENCH / "results" / "metadata.json").write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
