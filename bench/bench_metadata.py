"""WADO-RS ``/metadata`` latency on a small real catalog, side by side with baselines.

The catalog: pydicom's test files and pydicom-data's (each run of ``pixels catalog``
one commit), one series of 50 copies of CT_small, one of a single MR_small and one
of 1,000 copies of CT_small (fresh UIDs, each its own commit): about the 169-file
catalog on which the server was measured against Orthanc (p50 23.7 ms vs 7.1 ms for
50 instances, 20 ms vs 4 ms for one), plus a large series.

Servers (``pixels serve``'s app, uvicorn on 127.0.0.1, each in its own process)
over the same table, asked in turns by one keep-alive client per server:

- ``located`` (the code as it is): the index knows each instance's data file and
  row number; a request reads those rows from those files only.
- ``before`` (with ``--before REF``): the code of git revision ``REF`` (its
  ``src/`` exported to ``bench/.work/``), the same app over the same table; with
  ``--before-h11`` on uvicorn's pure-Python HTTP parser and asyncio's loop, as
  before ``httptools`` and ``uvloop`` were dependencies.
- ``scan`` (the baseline before the index located rows): the index's snapshot
  reads rows through the version's view, a ``read_parquet`` over every data file
  of the version, and its DuckDB connection runs on all threads.
- ``orthanc`` (with ``--orthanc``; Debian's ``orthanc`` and ``orthanc-dicomweb``):
  Orthanc 1.10 with its DICOMweb plugin, loopback only, holding the same files
  (uploaded once through its REST API). Orthanc reads every instance's file for
  series metadata (seconds for 1,000 instances), so it is not asked for the
  1,000-instance series.

Kinds of request: the series (1, 50, 1,000 instances) and one instance, each
asked again and again, and ``instance_cold``: each instance of the
1,000-instance series asked once. Besides the latency (in turns), each server's
CPU time per request (its process's CPU seconds over back-to-back requests of one
kind; steadier than latency on a loaded machine).

Reports p50 / p95 per request and the ratios of each baseline's p50 to
``located``'s (> 1: located faster). Usage:
``python bench/bench_metadata.py [--rounds 200] [--orthanc] [--before REF]``.
Writes ``bench/results/metadata.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from _common import WORK_DIR, free_port, machine_info, percentiles, start_server, timed_get

BENCH = Path(__file__).resolve().parent
ROOT = WORK_DIR / "metadata"
#: The extra series: folder, source file, instances.
SERIES = (("s50", "CT_small.dcm", 50), ("s1", "MR_small.dcm", 1), ("s1000", "CT_small.dcm", 1000))
#: Requests Orthanc is not asked (it reads every file of the series: seconds each).
NOT_ORTHANC = ("series_1000",)


def prepare() -> str:
    """Build the catalog once (``bench/.work/metadata``); return the table's path."""
    import warnings

    from corpus import copy_with_new_uids, pydicom_data_folder, pydicom_folder, sample_file
    from pixels import Catalog

    warnings.simplefilter("ignore")
    table = ROOT / "catalog"
    cat = Catalog(str(table))
    if not (table / "_delta_log").is_dir():
        for folder in (pydicom_folder(), pydicom_data_folder()):
            cat.catalog(str(folder), workers=0)
    for folder, name, n in SERIES:
        if not (ROOT / folder).is_dir():
            copy_with_new_uids(sample_file(name), ROOT / folder, n, per_series=n)
            cat.catalog(str(ROOT / folder), workers=0)
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
    # "h11": the HTTP parser and event loop uvicorn used before httptools and uvloop
    # were dependencies (for a --before revision that predates them)
    stack = {"http": "h11", "loop": "asyncio"} if mode.endswith("h11") else {}
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, **stack)


def export_source(ref: str) -> Path:
    """``src/`` of git revision ``ref``, exported once to ``bench/.work/src-{sha}``."""
    sha = subprocess.run(
        ["git", "-C", str(BENCH), "rev-parse", "--short", ref],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    out = WORK_DIR / f"src-{sha}"
    if not (out / "src" / "pixels").is_dir():
        out.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(BENCH.parent), "archive", sha, "src"], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    return out / "src"


def start(table: str, mode: str, src: Path | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """A Pixels server (``mode``), from ``src`` when given (the ``before`` code)."""
    port = free_port()
    env = None
    if src is not None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(src), env.get("PYTHONPATH", "")])
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, __file__, "--serve", table, str(port), mode]
    proc = start_server(cmd, url, "/dicomweb/studies?limit=1", name=f"server ({mode})", env=env)
    return proc, url


ORTHANC = "/usr/sbin/Orthanc"
ORTHANC_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


def start_orthanc() -> tuple[subprocess.Popen[bytes], str]:
    """Orthanc with DICOMweb on a free loopback port, holding the catalog's files."""
    import httpx

    from corpus import pydicom_data_folder, pydicom_folder

    port = free_port()
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
    url = f"http://127.0.0.1:{port}"
    proc = start_server([ORTHANC, str(home / "config.json")], url, "/system", name="Orthanc")
    folders = [pydicom_folder(), pydicom_data_folder(), *(ROOT / f for f, _, _ in SERIES)]
    for k, folder in enumerate(folders):
        marker = home / f"uploaded-{k}"
        if not marker.exists():
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                httpx.post(url + "/instances", content=path.read_bytes(), timeout=60)
            marker.write_text(str(folder))
    return proc, url + "/dicom-web"


def requests(table: str) -> dict[str, tuple[list[str], int]]:
    """The requests measured (paths from the table's own UIDs) and their instance counts.

    Each kind is one path asked again and again, except ``instance_cold``: the
    instances of the 1,000-instance series in turn, each asked once (while the
    requests of a server stay under 1,000), so no answer can come from a cache.
    """
    import pydicom

    out: dict[str, tuple[list[str], int]] = {}
    for folder, _, n in SERIES:
        files = sorted((ROOT / folder).rglob("*.dcm"))
        uids = []
        for path in files if n == 1000 else files[:1]:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            uids.append((ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID))
        series = f"/dicomweb/studies/{uids[0][0]}/series/{uids[0][1]}"
        out[f"series_{n}"] = ([series + "/metadata"], n)
        if n == 50:
            out["instance"] = ([f"{series}/instances/{uids[0][2]}/metadata"], 1)
        if n == 1000:
            out["instance_cold"] = ([f"{series}/instances/{u[2]}/metadata" for u in uids], 1)
    return out


def _path(mode: str, path: str) -> str:
    return path.removeprefix("/dicomweb") if mode == "orthanc" else path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--orthanc", action="store_true", help="also time Orthanc (DICOMweb plugin)")
    ap.add_argument("--before", metavar="REF", help="also time the code of this git revision")
    ap.add_argument(
        "--cpu-requests", type=int, default=200, help="requests per kind for the CPU phase"
    )
    ap.add_argument(
        "--before-h11",
        action="store_true",
        help="serve the --before revision with h11 and asyncio (uvicorn's defaults then)",
    )
    ap.add_argument("--no-scan", action="store_true", help="skip the scan baseline")
    ap.add_argument("--serve", nargs=3, metavar=("TABLE", "PORT", "MODE"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve:
        serve(a.serve[0], int(a.serve[1]), a.serve[2])
        return
    import httpx
    import psutil

    table = prepare()
    paths = requests(table)
    servers = {"located": start(table, "located")}
    if a.before:
        mode = "located-h11" if a.before_h11 else "located"
        servers["before"] = start(table, mode, export_source(a.before))
    if not a.no_scan:
        servers["scan"] = start(table, "scan")
    if a.orthanc:
        servers["orthanc"] = start_orthanc()
    asked = {m: [k for k in paths if m != "orthanc" or k not in NOT_ORTHANC] for m in servers}
    times: dict[str, dict[str, list[float]]] = {m: {k: [] for k in asked[m]} for m in servers}
    turn = {(m, k): 0 for m in servers for k in paths}

    def ask(mode: str, name: str) -> tuple[float, Any]:
        """One request of kind ``name`` to server ``mode``: (seconds, answer)."""
        options, _ = paths[name]
        path = options[turn[mode, name] % len(options)]
        turn[mode, name] += 1
        return timed_get(clients[mode], _path(mode, path))

    try:
        clients = {m: httpx.Client(base_url=url, timeout=120) for m, (_, url) in servers.items()}
        bodies = {}
        for mode in clients:  # warm up; Pixels' servers answer the same
            for name in asked[mode]:
                r = ask(mode, name)[1]
                assert len(r.json()) == paths[name][1], (mode, name)
                if mode != "orthanc":
                    body = r.text.replace(servers[mode][1], "")  # URLs name the server
                    bodies.setdefault(name, body)
                    assert body == bodies[name], (mode, name)
        for _ in range(a.rounds):
            for name in paths:
                for mode in clients:  # in turns: the same load for all
                    if name in times[mode]:
                        times[mode][name].append(ask(mode, name)[0])
        # CPU time of each server per request: back-to-back requests of one kind, the
        # server process's CPU seconds (all threads) over them; robust to other load
        cpu: dict[str, dict[str, float]] = {m: {} for m in servers}
        for name, (_, n) in paths.items():
            k = max(10, a.cpu_requests // n) if n > 50 else a.cpu_requests
            for mode in clients:
                if name not in times[mode]:
                    continue
                proc = psutil.Process(servers[mode][0].pid)
                c0 = sum(proc.cpu_times()[:2])
                for _ in range(k):
                    ask(mode, name)
                cpu[mode][name] = (sum(proc.cpu_times()[:2]) - c0) / k
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(10)

    res: dict[str, Any] = {"machine": machine_info(), "rounds": a.rounds, "before": a.before}
    res["requests"] = {}
    others = [m for m in servers if m != "located"]
    print(
        "| request | located p50 ms (CPU ms) | "
        + " | ".join(f"{m} p50 ms (CPU ms) | {m} / located p50 (CPU)" for m in others)
        + " |"
    )
    print("|---" * (2 + 2 * len(others)) + "|")
    for name in paths:
        row: dict[str, Any] = {}
        loc = statistics.median(times["located"][name])
        loc_cpu = cpu["located"][name]
        cells = [name, f"{1000 * loc:.2f} ({1000 * loc_cpu:.2f})"]
        for m in servers:
            if name not in times[m]:
                if m != "located":
                    cells += ["-", "-"]
                continue
            row[m] = percentiles(times[m][name]) | {"cpu_ms": round(1000 * cpu[m][name], 2)}
            if m != "located":
                ratio = round(statistics.median(times[m][name]) / loc, 2)
                cpu_ratio = round(cpu[m][name] / loc_cpu, 2) if loc_cpu else None
                row[f"{m}_over_located_p50"] = ratio
                row[f"{m}_over_located_cpu"] = cpu_ratio
                cells += [
                    f"{row[m]['p50_ms']:.2f} ({row[m]['cpu_ms']:.2f})",
                    f"{ratio} ({cpu_ratio})",
                ]
        res["requests"][name] = row
        print("| " + " | ".join(cells) + " |")
    (BENCH / "results").mkdir(exist_ok=True)
    (BENCH / "results" / "metadata.json").write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
