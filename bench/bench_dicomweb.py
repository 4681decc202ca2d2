"""DICOMweb server latency on a large catalog: QIDO searches, WADO metadata and frames.

Starts the server (uvicorn, 127.0.0.1, one process: the same app as ``pixels serve``)
in a subprocess over a catalog table, warms it up, then sends a fixed, bounded set
of requests from this process with one keep-alive ``httpx`` client, one at a time,
and reports p50 / p95 / max per request type.

Baselines in the same run:

- ``direct``: the same study searches answered in this process by DuckDB over the
  table's Parquet files (``read_parquet``, one connection kept open, no HTTP, no
  de-duplication of SOP instances): server / direct is the server's overhead.
- ``old`` (when ``bench/.work/old_web/{qido,wado}.py`` exist, copies of the modules
  before the caching change): the same requests against the previous code, served
  from the same table in the same run.

Usage::

    python bench/bench_dicomweb.py                      # 100k corpus, builds what is missing
    python bench/bench_dicomweb.py --files 20000 --no-old

Prepares (once, in ``bench/.work/``): the corpus (``make_corpus.py``), one extra
series of 500 instances (copies of CT_small with one SeriesInstanceUID and fresh
SOP UIDs) and the catalog table of both. Writes Markdown to stdout and the numbers
to ``bench/results/dicomweb.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    WORK_DIR,
    corpus_dir,
    free_port,
    machine_info,
    percentiles,
    start_server,
    timed_get,
)

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
OLD_DIR = WORK_DIR / "old_web"
SERIES500 = WORK_DIR / "series500"


# ------------------------------------------------------------------------ preparation


def make_series500(out: Path, n: int = 500) -> None:
    """``n`` copies of CT_small.dcm in one series, fresh SOP UIDs (deterministic)."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    if out.is_dir() and len(list(out.glob("*.dcm"))) == n:
        return
    out.mkdir(parents=True, exist_ok=True)
    src = get_testdata_file("CT_small.dcm", download=False)
    assert src
    ds = pydicom.dcmread(src)
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["s500-study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["s500-series"])
    ds.PatientID = "S500"
    for i in range(n):
        sop = generate_uid(entropy_srcs=["s500", str(i)])
        ds.SOPInstanceUID = sop
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.InstanceNumber = i + 1
        ds.save_as(out / f"{i:04d}.dcm")


def prepare(files: int, table: Path) -> None:
    corpus = corpus_dir(files, 0)
    if not (corpus / ".corpus.json").exists():
        subprocess.run(
            [sys.executable, str(BENCH / "make_corpus.py"), str(corpus), "--files", str(files)],
            check=True,
        )
    make_series500(SERIES500)
    if not (table / "_delta_log").is_dir():
        for src in (corpus, SERIES500):
            subprocess.run(["pixels", "catalog", str(src), "--table", str(table), "-q"], check=True)


# ---------------------------------------------------------------------------- server


def serve(table: str, port: int, impl: str) -> None:
    """Server subprocess: the app of ``pixels serve`` (optionally with the old modules)."""
    import importlib.util

    import uvicorn

    import pixels.web as web_pkg

    if impl == "old":
        for name in ("qido", "wado"):
            spec = importlib.util.spec_from_file_location(
                f"pixels.web.{name}", OLD_DIR / f"{name}.py"
            )
            assert spec and spec.loader
            mod = importlib.util.module_from_spec(spec)
            sys.modules[f"pixels.web.{name}"] = mod
            spec.loader.exec_module(mod)
            setattr(web_pkg, name, mod)
    from pixels.web import create_app

    app = create_app(table, token="", viewer=False)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def start(table: str, impl: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, __file__, "--serve", table, str(port), impl]
    proc = start_server(cmd, url, "/dicomweb/studies?limit=1", name=f"server ({impl})")
    return proc, url


# --------------------------------------------------------------------------- workload


def sample(table: str) -> dict[str, Any]:
    """UIDs and values the requests use, read from the table (deterministic choice)."""
    import duckdb

    from pixels.sql import connect
    from pixels.table import CatalogTable

    con = connect(CatalogTable(table))
    q = "SELECT {} FROM object_catalog WHERE error IS NULL AND meta IS NOT NULL "

    def col(sql: str) -> list[Any]:
        return [r[0] for r in con.sql(sql).fetchall()]

    series = con.sql(
        q.format("StudyInstanceUID, SeriesInstanceUID, count(*) n")
        + "GROUP BY ALL ORDER BY n DESC, SeriesInstanceUID"
    ).fetchall()
    big = series[0]
    hundred = [s for s in series if 95 <= s[2] <= 105][:30]
    studies = col(q.format("DISTINCT StudyInstanceUID") + "ORDER BY 1")
    inst = con.sql(
        q.format("StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID")
        + "AND len(frame_offsets) > 0 AND TransferSyntaxUID IN "
        "('1.2.840.10008.1.2.1', '1.2.840.10008.1.2') ORDER BY hash(SOPInstanceUID) LIMIT 100"
    ).fetchall()
    names = col(q.format("DISTINCT PatientName") + "AND PatientName IS NOT NULL ORDER BY 1")
    dates = col(q.format("DISTINCT StudyDate") + "AND StudyDate IS NOT NULL ORDER BY 1")
    mods = col(q.format("DISTINCT Modality") + "AND Modality IS NOT NULL ORDER BY 1")
    con.close()
    assert isinstance(con, duckdb.DuckDBPyConnection)
    return {
        "big": big,
        "hundred": hundred,
        "studies": studies,
        "instances": inst,
        "names": names,
        "dates": [d.strftime("%Y%m%d") for d in dates],
        "mods": mods,
    }


def study_queries(s: dict[str, Any], n: int) -> list[dict[str, str]]:
    """``n`` study searches (limit=25): name wildcards, date ranges, modalities, none."""
    out: list[dict[str, str]] = []
    names, dates, mods = s["names"], s["dates"], s["mods"]
    for k in range(n):
        kind = k % 5
        p: dict[str, str] = {"limit": "25"}
        if kind == 0:
            name = names[k % len(names)]
            p["PatientName"] = name[: max(1, len(name) // 2)].lower() + "*"
        elif kind == 1:
            lo, hi = dates[k % len(dates)], dates[(k * 7) % len(dates)]
            p["StudyDate"] = f"{min(lo, hi)}-{max(lo, hi)}"
        elif kind == 2:
            p["ModalitiesInStudy"] = mods[k % len(mods)]
        elif kind == 3:
            p["PatientName"] = "*" + names[k % len(names)][-3:]
            p["StudyDate"] = f"{dates[0]}-"
        else:
            p["offset"] = str(k % 50)
        out.append(p)
    return out


def run_client(url: str, s: dict[str, Any], counts: dict[str, int]) -> dict[str, Any]:
    import httpx

    base = url + "/dicomweb"
    out: dict[str, Any] = {}
    with httpx.Client(timeout=120) as c:

        def timed(name: str, calls: list[Callable[[], tuple[float, httpx.Response]]]) -> None:
            done = [call() for call in calls]
            sizes = [len(r.content) for _, r in done]
            out[name] = percentiles([t for t, _ in done]) | {
                "mean_bytes": int(statistics.mean(sizes))
            }

        def get(path: str, params: dict[str, str] | None = None, **headers: str) -> Callable:
            return lambda: timed_get(c, base + path, params=params, headers=headers)

        # warm-up: one of each kind (builds whatever the server caches)
        big = s["big"]
        st, se, sop = s["instances"][0]
        for f in (
            get("/studies", {"limit": "25"}),
            get("/series", {"limit": "25"}),
            get(f"/studies/{big[0]}/series/{big[1]}/metadata"),
            get(f"/studies/{st}/series/{se}/instances/{sop}/metadata"),
        ):
            f()

        timed("qido_studies", [get("/studies", p) for p in study_queries(s, counts["studies"])])
        studies = s["studies"]
        series_calls = []
        for k in range(counts["series"]):
            if k % 2:
                series_calls.append(get(f"/studies/{studies[k % len(studies)]}/series"))
            else:
                mod = s["mods"][k % len(s["mods"])]
                series_calls.append(get("/series", {"Modality": mod, "limit": "25"}))
        timed("qido_series", series_calls)
        timed(
            f"series_metadata_{big[2]}",
            [get(f"/studies/{big[0]}/series/{big[1]}/metadata")] * counts["metadata"],
        )
        hundred = s["hundred"]
        timed(
            "series_metadata_100",
            [
                get(f"/studies/{h[0]}/series/{h[1]}/metadata")
                for h in (hundred * counts["metadata"])[: counts["metadata"]]
            ],
        )
        inst = s["instances"][: counts["instances"]]
        timed(
            "instance_metadata",
            [get(f"/studies/{a}/series/{b}/instances/{i}/metadata") for a, b, i in inst],
        )
        accept = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
        timed(
            "frame",
            [
                get(f"/studies/{a}/series/{b}/instances/{i}/frames/1", accept=accept)
                for a, b, i in inst
            ],
        )
    return out


def run_direct(table: str, s: dict[str, Any], n: int) -> dict[str, Any]:
    """The study searches as one DuckDB query each, in process, over read_parquet."""
    import duckdb

    from pixels.table import CatalogTable

    files = CatalogTable(table).file_uris()
    con = duckdb.connect()
    con.execute(
        "CREATE VIEW t AS SELECT * FROM read_parquet(["
        + ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        + "], union_by_name=true)"
    )
    ts = []
    for p in study_queries(s, n):
        conds = ["error IS NULL"]
        params: list[Any] = []
        if "PatientName" in p:
            conds.append("PatientName ILIKE ?")
            params.append(p["PatientName"].replace("*", "%"))
        if "StudyDate" in p:
            lo, _, hi = p["StudyDate"].partition("-")
            if lo:
                conds.append("StudyDate >= strptime(?, '%Y%m%d')::DATE")
                params.append(lo)
            if hi:
                conds.append("StudyDate <= strptime(?, '%Y%m%d')::DATE")
                params.append(hi)
        if "ModalitiesInStudy" in p:
            conds.append("StudyInstanceUID IN (SELECT StudyInstanceUID FROM t WHERE Modality = ?)")
            params.append(p["ModalitiesInStudy"])
        sql = (
            "SELECT StudyInstanceUID, arg_min(meta, SOPInstanceUID), count(*), "
            "count(DISTINCT SeriesInstanceUID), list(DISTINCT Modality), max(StudyDate) d "
            "FROM t WHERE " + " AND ".join(conds) + " GROUP BY StudyInstanceUID "
            "ORDER BY d DESC NULLS LAST, StudyInstanceUID LIMIT 25 OFFSET ?"
        )
        params.append(int(p.get("offset", 0)))
        t0 = time.perf_counter()
        rows = con.execute(sql, params).fetchall()
        [json.loads(r[1]) for r in rows]
        ts.append(time.perf_counter() - t0)
    con.close()
    return {"qido_studies": percentiles(ts)}


# ------------------------------------------------------------------------------ main


def markdown(res: dict[str, Any]) -> str:
    impls = [k for k in ("new", "old") if k in res["server"]]
    kinds = list(res["server"][impls[0]])
    head = "| request | n | " + " | ".join(f"{i} p50 / p95 / max ms" for i in impls)
    lines = [head + " | old / new p50 |" if "old" in impls else head + " |"]
    lines.append("|---" * (2 + len(impls) + ("old" in impls)) + "|")
    for k in kinds:
        cells = []
        for i in impls:
            r = res["server"][i][k]
            cells.append(f"{r['p50_ms']} / {r['p95_ms']} / {r['max_ms']}")
        row = f"| {k} | {res['server'][impls[0]][k]['n']} | " + " | ".join(cells) + " |"
        if "old" in impls:
            row += (
                f" {res['server']['old'][k]['p50_ms'] / res['server']['new'][k]['p50_ms']:.1f}x |"
            )
        lines.append(row)
    d = res["direct"]["qido_studies"]
    n = res["server"][impls[0]]["qido_studies"]
    lines.append("")
    lines.append(
        f"direct DuckDB study search (in process): p50 {d['p50_ms']} ms, p95 {d['p95_ms']} ms; "
        f"server / direct p50 = {n['p50_ms'] / d['p50_ms']:.2f}"
    )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--files", type=int, default=100_000, help="corpus size (default 100000)")
    ap.add_argument("--table", help="catalog table (default bench/.work/web-{files})")
    ap.add_argument("--no-old", action="store_true", help="skip the old-code comparison")
    ap.add_argument("--studies", type=int, default=200)
    ap.add_argument("--series", type=int, default=50)
    ap.add_argument("--metadata", type=int, default=30)
    ap.add_argument("--instances", type=int, default=100)
    ap.add_argument("--out", default=str(RESULTS / "dicomweb.json"))
    ap.add_argument("--serve", nargs=3, metavar=("TABLE", "PORT", "IMPL"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve:
        serve(a.serve[0], int(a.serve[1]), a.serve[2])
        return
    label = f"{a.files // 1000}k" if a.files % 1000 == 0 else str(a.files)
    table = Path(a.table or WORK_DIR / f"web-{label}")
    prepare(a.files, table)
    s = sample(str(table))
    counts = {
        "studies": a.studies,
        "series": a.series,
        "metadata": a.metadata,
        "instances": min(a.instances, len(s["instances"])),
    }
    impls = ["new"] + ([] if a.no_old or not (OLD_DIR / "qido.py").exists() else ["old"])
    res: dict[str, Any] = {"machine": machine_info(), "table": str(table), "counts": counts}
    res["catalog"] = {"studies": len(s["studies"]), "largest_series": s["big"][2]}
    res["server"] = {}
    for impl in impls:
        proc, url = start(str(table), impl)
        try:
            t0 = time.perf_counter()
            res["server"][impl] = run_client(url, s, counts)
            res.setdefault("wall_s", {})[impl] = round(time.perf_counter() - t0, 1)
        finally:
            proc.terminate()
            proc.wait(10)
    res["direct"] = run_direct(str(table), s, counts["studies"])
    RESULTS.mkdir(exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    print(markdown(res))
    print(f"\n(saved {a.out})", file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
