"""Hospital scale: the DICOMweb server, STOW-RS and SQL over 100k to 10M-row catalogs.

The tables are built by ``make_big_table.py`` (real headers, fresh UIDs; kept out
of git, under ``--root``). For each table size the script measures, one after the
other on the same machine:

- **index**: the server's index built in a fresh process: ``memory`` (in memory from
  scratch: the previous way), ``cold`` (saved to ``_pixels/index/index.duckdb`` from
  scratch, in chunks), ``warm`` (the saved one opened: a restart), with time, RSS added,
  peak RSS and size per instance (``--index-kinds``); one incremental update after a
  one-file commit; the previous index (``git show {OLD}:src/pixels/web/index.py``: a
  rebuild of everything at every version) built in the same run as the baseline
  (only up to ``--old-max`` rows: it reads every ``meta``);
- **server**: ``create_app`` under uvicorn in a subprocess: start-up to first
  answer, QIDO study searches (PatientName wildcard, StudyDate range,
  ModalitiesInStudy) p50/p99, series ``/metadata`` of a 500-instance series
  (first and repeated), 20 clients sending a mix of those for 15 s (requests/s, p50,
  p99), resident memory; after a STOW of one study (5 times), and after a
  commit of 10k generated rows, the time until the first QIDO answer that holds it;
- **stow load** (``--stow-rate``, ``--stow-seconds``): single-instance STOW-RS
  requests sent at a fixed rate from many connections, all checked in the table
  afterwards (none lost), commits counted, QIDO latency sampled during the load;
- **startup** (``--only startup``, not run by default): the first 40 s of a server's
  life, the code before the MONAI Label models stopped loading at start
  (:data:`STARTUP_OLD`) and this one: start-up to first answer, QIDO p50/p99 per 10 s
  from the first answer on, server CPU, then the first ``info/``;
- **qido** (``--only qido``, not run by default): study searches against the previous
  QIDO code (swapped in the same way) and this one: distinct searches (other name
  prefixes, date ranges, modalities, limits and offsets: no answer reused) and
  repeated ones, wall p50/p99 and server CPU per search;
- **stow** (``--only stow``, not run by default): the same STOW-RS load against the
  previous STOW code (``git show {STOW_OLD}:src/pixels/web/stow.py``, swapped into
  the server process: each part read twice, every body spooled to a file) and this
  one, each on its own copy of the table, one after the other; requests/s achieved,
  latency, commits, none lost, QIDO during the load, server CPU per request;
- **sql**: ``pixels sql`` (a subprocess, interpreter start included; started as
  ``python -m pixels.cli`` and as the ``pixels`` console script) and the same
  queries in process: a point look-up by StudyInstanceUID (``--sql-runs`` runs, with
  the floor of a process that only loads DuckDB beside them) and ``GROUP BY
  Modality``, before and after ``pixels optimize --cluster`` (on a copy); with
  ``--sql-before REV`` the process of that revision's code too, interleaved (wall and
  the child's CPU, min and median).

Usage::

    python bench/bench_scale.py --sizes 100000 1000000

Writes Markdown to stdout and the numbers to ``bench/results/scale.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import WORK_DIR, dump_json, free_port, machine_info, python_cmd, start_server

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
OLD = "dc29543"  # the last commit with the index rebuilt at every version
QIDO = {
    "PatientName wildcard": {"PatientName": "S*", "limit": "100"},
    "StudyDate range": {"StudyDate": "20150101-20151231", "limit": "100"},
    "ModalitiesInStudy": {"ModalitiesInStudy": "MR", "limit": "100"},
}


def _name(rows: int) -> str:
    return f"t{rows // 1_000_000}m" if rows >= 1_000_000 else f"t{rows // 1000}k"


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def pct(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    q = statistics.quantiles(xs, n=100, method="inclusive") if len(xs) > 1 else [xs[0]] * 99
    return {
        "n": len(xs),
        "p50_ms": round(statistics.median(xs) * 1e3, 1),
        "p99_ms": round(q[98] * 1e3, 1),
        "max_ms": round(xs[-1] * 1e3, 1),
    }


# ------------------------------------------------------------------------- tables


def table_of(root: Path, rows: int) -> tuple[Path, dict[str, Any]]:
    """The generated table of ``rows`` rows (built when missing) and its facts."""
    path = root / _name(rows)
    facts = root / f"{path.name}.json"
    if not facts.exists():
        shutil.rmtree(path, ignore_errors=True)
        subprocess.run(
            python_cmd(str(BENCH / "make_big_table.py"), str(path), "--rows", str(rows)),
            check=True,
        )
    return path, json.loads(facts.read_text())


def copy_table(src: Path, dst: Path) -> Path:
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    return dst


def new_instance(out: Path, template: str = "MR_small.dcm") -> tuple[Path, str, str]:
    """A real file with fresh UIDs: path, study and SOP UIDs."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(get_testdata_file(template))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    out.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(out, enforce_file_format=True)
    return out, str(ds.StudyInstanceUID), str(ds.SOPInstanceUID)


BOUNDARY = "bench-scale-boundary"
STOW_HEADERS = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'}


def stow_body(data: bytes) -> bytes:
    head = f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


# -------------------------------------------------------------------------- index


def old_index_module() -> Any:
    """The previous ``pixels.web.index`` (rebuilt at every version), from git."""
    dst = WORK_DIR / "old_index" / f"index_{OLD}.py"
    if not dst.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        text = subprocess.run(
            ["git", "show", f"{OLD}:src/pixels/web/index.py"],
            cwd=BENCH.parent,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        dst.write_text(text)
    spec = importlib.util.spec_from_file_location("old_index", dst)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


INDEX_RUN = """
import json, os, resource, shutil, sys, time
from pixels.table import CatalogTable
from pixels.web.index import TableIndex
table, kind = sys.argv[1], sys.argv[2]
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
base = rss()
if kind in ("cold", "memory"):
    shutil.rmtree(os.path.join(table, "_pixels", "index"), ignore_errors=True)
t0 = time.perf_counter()
ix = TableIndex(CatalogTable(table), persist=kind != "memory")
ix.current()
out = {"s": round(time.perf_counter() - t0, 2), "rss_mb": round(rss() - base),
       "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
       "chunks": ix.last_update.get("chunks"), "persisted": ix.path is not None}
if ix.path is None:
    out["bytes"] = ix.con.execute("SELECT sum(memory_usage_bytes) FROM duckdb_memory() "
                                  "WHERE tag = 'IN_MEMORY_TABLE'").fetchone()[0]
else:
    ix.con.execute("CHECKPOINT ix")
    out["bytes"] = os.path.getsize(ix.path)
ix.close()
print(json.dumps(out))
"""


def index_run(table: Path, kind: str) -> dict[str, Any]:
    """One index build in a fresh process: ``cold`` (saved, from nothing), ``warm`` (the
    saved one opened), ``memory`` (in memory, from nothing: the previous way)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    res = subprocess.run(
        python_cmd("-c", INDEX_RUN, str(table), kind), capture_output=True, text=True, env=env
    )
    if res.returncode:
        raise RuntimeError(res.stderr[-2000:])
    return dict(json.loads(res.stdout.strip().splitlines()[-1]), load=load_avg())


def load_avg() -> float:
    """The machine's 1-minute load average (other work disturbs every figure)."""
    return round(os.getloadavg()[0], 2)


def bench_index(
    table: Path, rows: int, old_max: int, memory_max: int, kinds: list[str]
) -> dict[str, Any]:
    """Index build (cold, warm, in memory), memory, one incremental update; the old rebuild."""
    out: dict[str, Any] = {}
    # the in-memory build (the previous way) first: it removes the saved index
    for kind in ("memory", "cold", "warm"):
        if kind not in kinds or (kind == "memory" and rows > memory_max):
            continue
        got = index_run(table, kind)
        got["bytes_per_instance"] = round(got["bytes"] / rows, 1)
        out[kind] = got
        print(rows, "index", kind, json.dumps(got), flush=True)
    if "memory" in out:
        out["ratio_warm_vs_memory_build"] = round(out["warm"]["s"] / out["memory"]["s"], 4)
    # one incremental update: a one-file commit (a real file cataloged) on a copy
    from pixels import Catalog
    from pixels.table import CatalogTable
    from pixels.web.index import TableIndex

    work = copy_table(table, WORK_DIR / f"scale_copy_{table.name}")
    ix = TableIndex(CatalogTable(str(work)))
    ix.current()
    out["copy_warm_added_files"] = ix.last_update["added_files"]
    updates = []
    with tempfile.TemporaryDirectory(dir=WORK_DIR) as tmp:
        for k in range(5):
            new_instance(Path(tmp) / f"f{k}" / "x.dcm")
            Catalog(str(work)).catalog(str(Path(tmp) / f"f{k}"), workers=0)
            t0 = time.perf_counter()
            ix.current()
            updates.append(time.perf_counter() - t0)
    ix.close()
    out["update_after_one_file_commit"] = pct(updates) | {"load": load_avg()}
    if rows <= old_max:
        old = old_index_module()
        t0 = time.perf_counter()
        snap = old.TableIndex(CatalogTable(str(work))).current()
        out["old_rebuild_s"] = round(time.perf_counter() - t0, 2)
        del snap
        out["ratio_update_vs_old_rebuild"] = round(
            out["update_after_one_file_commit"]["p50_ms"] / 1e3 / out["old_rebuild_s"], 4
        )
    shutil.rmtree(work, ignore_errors=True)
    return out


# ------------------------------------------------------------------------- server

SERVE = """
import importlib.util, sys, uvicorn
import pixels.web.app as app_module
for arg in sys.argv[4:]:  # previous code of a handler module (name=file from git)
    name, path = arg.split("=", 1)
    spec = importlib.util.spec_from_file_location(f"old_{name}", path)
    old = sys.modules[f"old_{name}"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)
    setattr(app_module, name, old)
app = app_module.create_app(sys.argv[1], token="", storage_root=sys.argv[3], viewer=False)
config = app_module.server_config(app, "127.0.0.1", int(sys.argv[2]), "warning")
config.access_log = False
if hasattr(app_module, "settle_gc"):  # as serve() does
    app_module.settle_gc()
uvicorn.Server(config).run()
"""
#: The last commit whose STOW-RS read each part twice (the check, then the catalog row
#: from the stored file) and spooled every body to a file, and whose QIDO-RS ran each
#: search on a new cursor through a relation and kept no answers.
STOW_OLD = "e4b9c11"
#: The last commit whose QIDO-RS study searches matched every live group (``grp``) and
#: chose the page by a top-N over every study (before the study search table ``qs``).
QIDO_OLD = "440e77c"


def old_web_file(name: str) -> Path:
    """``src/pixels/web/{name}.py`` as it was at :data:`QIDO_OLD` (``qido``) or
    :data:`STOW_OLD` (the others)."""
    commit = QIDO_OLD if name == "qido" else STOW_OLD
    dst = WORK_DIR / "old_web" / f"{name}_{commit}.py"
    if not dst.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        text = subprocess.run(
            ["git", "show", f"{commit}:src/pixels/web/{name}.py"],
            cwd=BENCH.parent,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        dst.write_text(text)
    return dst


class Served(NamedTuple):
    """A server started by :func:`served`: its process, base URL, start-up time and
    the copy of the table it serves."""

    proc: subprocess.Popen[bytes]
    url: str
    start_s: float
    table: Path
    t_first: float = 0.0  # time.perf_counter() of the first answer


@contextlib.contextmanager
def served(
    table: Path, name: str, old: tuple[str, ...] = (), src: Path | None = None
) -> Iterator[Served]:
    """``create_app`` under uvicorn in a subprocess, over a fresh copy of ``table``
    (``scale_{name}_*`` under :data:`WORK_DIR`, STOW files beside it), with the web
    modules named in ``old`` swapped for their previous code (:func:`old_web_file`),
    or the whole package from ``src`` (:func:`old_src`); yielded as soon as it first
    answers (what a user sees: whatever the server still does in the background runs
    under the figures taken); stopped and both copies removed on exit."""
    work = copy_table(table, WORK_DIR / f"scale_{name}_{table.name}")
    storage = WORK_DIR / f"scale_{name}_files_{table.name}"
    shutil.rmtree(storage, ignore_errors=True)
    proc = None
    try:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        path = [str(src)] if src else []
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([*path, *sys.path]))
        t0 = time.perf_counter()
        extra = [f"{mod}={old_web_file(mod)}" for mod in old]
        proc = start_server(
            python_cmd("-c", SERVE, str(work), str(port), str(storage), *extra),
            url,
            "/dicomweb/studies?limit=1",
            env=env,
            timeout=900,
        )
        t_first = time.perf_counter()
        yield Served(proc, url, t_first - t0, work, t_first)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(storage, ignore_errors=True)


#: The last commit whose ``create_app`` loaded the MONAI Label models in a thread at
#: start (torch and MONAI imported to check ``bundle:PATH``: ~10.7 s of CPU).
STARTUP_OLD = "440e77c"


def bench_startup(
    table: Path, seconds: float = 40.0, window: float = 10.0, order: str = "old new new old"
) -> dict[str, Any]:
    """The first ``seconds`` of a server's life, the code of :data:`STARTUP_OLD` against
    this one (each its own server over its own copy of the table, one after the other,
    in ``order``: ABBA by default, so that a load that drifts weighs on both):
    start-up to first answer, then QIDO study searches from one client without pause
    from the first answer on (:func:`distinct_search`, the three kinds in turn), wall
    p50/p99 and count per ``window`` seconds and over all; server CPU over the period;
    then the first MONAI Label ``info/`` (what loads the models now)."""
    import httpx

    out: dict[str, Any] = {}
    kinds = list(QIDO)
    for run, variant in enumerate(order.split()):
        src = old_src(STARTUP_OLD) if variant == "old" else None
        res: dict[str, Any] = {"load_before": load_avg()}
        with (
            served(table, "startup", src=src) as (proc, url, start_s, _work, t_first),
            httpx.Client(base_url=url, timeout=300) as http,
        ):
            res["startup_to_first_answer_s"] = round(start_s, 2)
            cpu0 = cpu_s(proc.pid)
            at: list[tuple[float, float]] = []  # (seconds since the first answer, latency)
            i = 0
            while (now := time.perf_counter()) - t_first < seconds:
                r = http.get("/dicomweb/studies", params=distinct_search(kinds[i % 3], i // 3))
                r.raise_for_status()
                at.append((now - t_first, time.perf_counter() - now))
                i += 1
            res["server_cpu_s"] = round(cpu_s(proc.pid) - cpu0, 2)
            for k in range(int(seconds / window)):
                lo, hi = k * window, (k + 1) * window
                times = [dt for t, dt in at if lo <= t < hi]
                res[f"qido {lo:.0f}-{hi:.0f} s"] = pct(times) if times else {"n": 0}
            res[f"qido 0-{seconds:.0f} s"] = pct([dt for _, dt in at])
            t0 = time.perf_counter()
            r = http.get("/monailabel/info/")
            r.raise_for_status()
            res["then first info/_ms"] = round((time.perf_counter() - t0) * 1e3, 1)
            res["models"] = sorted(r.json()["models"])
        res["load_after"] = load_avg()
        out[f"{run + 1} {variant}"] = res
        print("startup", run + 1, variant, json.dumps(res), flush=True)
    key = f"qido 0-{seconds:.0f} s"
    p50 = {v: [r[key]["p50_ms"] for k, r in out.items() if k.endswith(v)] for v in ("old", "new")}
    if p50["old"] and p50["new"]:
        out["ratio p50 old/new, first 40 s"] = round(
            statistics.mean(p50["old"]) / statistics.mean(p50["new"]), 2
        )
    return out


def bench_server(table: Path, facts: dict[str, Any], stow_rate: int, stow_s: int) -> dict[str, Any]:
    import httpx

    from make_big_table import Generator, Templates
    from pixels.table import CatalogTable

    out: dict[str, Any] = {}
    with served(table, "serve") as (proc, url, start_s, work, _):
        out["startup_to_first_answer_s"] = round(start_s, 2)
        out["load_at_start"] = load_avg()
        with httpx.Client(base_url=f"{url}/dicomweb", timeout=120) as http:
            out["rss_after_start_mb"] = round(rss_mb(proc.pid))
            for name, params in QIDO.items():
                times = []
                for _ in range(40):
                    t0 = time.perf_counter()
                    r = http.get("/studies", params=params)
                    r.raise_for_status()
                    times.append(time.perf_counter() - t0)
                out[f"qido {name}"] = pct(times) | {"results": len(r.json())}
            se = facts["series500"]
            path = f"/studies/{se['study']}/series/{se['series']}/metadata"
            times = []
            for _ in range(15):
                t0 = time.perf_counter()
                r = http.get(path)
                r.raise_for_status()
                times.append(time.perf_counter() - t0)
            out["metadata 500-instance series"] = pct(times[1:]) | {
                "first_ms": round(times[0] * 1e3, 1),
                "instances": len(r.json()),
                "mb": round(len(r.content) / 2**20, 1),
            }
            out["mixed load, 20 clients"] = mixed_load(url, facts, clients=20, seconds=15)
            # a STOW of one study, then the first QIDO that finds it (5 times)
            stow_ms, qido_ms = [], []
            with tempfile.TemporaryDirectory(dir=WORK_DIR) as tmp:
                for k in range(5):
                    f, study, _ = new_instance(Path(tmp) / f"one{k}.dcm")
                    t0 = time.perf_counter()
                    r = http.post(
                        "/studies", content=stow_body(f.read_bytes()), headers=STOW_HEADERS
                    )
                    r.raise_for_status()
                    t1 = time.perf_counter()
                    found = http.get("/studies", params={"StudyInstanceUID": study}).json()
                    t2 = time.perf_counter()
                    assert len(found) == 1
                    stow_ms.append(round((t1 - t0) * 1e3, 1))
                    qido_ms.append(round((t2 - t1) * 1e3, 1))
            out["stow one study: request_ms"] = stow_ms
            out["stow one study: first QIDO with it_ms"] = qido_ms
            # 10k generated rows committed by another writer, then the first QIDO with them
            gen = Generator(Templates(Path(facts["pool"])), Path(facts["pool"]), seed=99)
            import pyarrow as pa

            parts, n = [], 0
            while n < 10_000:
                study_rows = gen.rows(gen.study())
                parts.append(study_rows)
                n += study_rows.num_rows
            last = parts[-1]["StudyInstanceUID"][0].as_py()
            CatalogTable(str(work)).append(pa.concat_tables(parts))
            t0 = time.perf_counter()
            found = http.get("/studies", params={"StudyInstanceUID": last}).json()
            out["commit of 10k rows: first QIDO with them_ms"] = round(
                (time.perf_counter() - t0) * 1e3, 1
            )
            out["rows_added"] = n
            assert len(found) == 1
            out["rss_after_queries_mb"] = round(rss_mb(proc.pid))
            out["load_after_queries"] = load_avg()
            if stow_rate > 0:
                out["stow load"] = stow_load(url, work, stow_rate, stow_s)
                out["rss_after_stow_load_mb"] = round(rss_mb(proc.pid))
    return out


def bench_stow(table: Path, rate: int, seconds: int) -> dict[str, Any]:
    """The STOW-RS load (:func:`stow_load`) against the previous STOW code and this one,
    each on its own copy of the table and its own server, one after the other."""
    import httpx

    out: dict[str, Any] = {}
    for variant in ("old", "new"):
        swap = ("stow",) if variant == "old" else ()
        with served(table, "stow_ab", swap) as (proc, url, _, work, _models):
            # one STOW first: the first write to a generated table upgrades its rows once
            with tempfile.TemporaryDirectory(dir=WORK_DIR) as tmp:
                f, _, _ = new_instance(Path(tmp) / "one.dcm")
                r = httpx.post(
                    f"{url}/dicomweb/studies",
                    content=stow_body(f.read_bytes()),
                    headers=STOW_HEADERS,
                    timeout=900,
                )
                r.raise_for_status()
            cpu0 = cpu_s(proc.pid)
            out[variant] = stow_load(url, work, rate, seconds)
            out[variant]["server_cpu_s"] = round(cpu_s(proc.pid) - cpu0, 2)
        print("stow", variant, json.dumps(out[variant]), flush=True)
    old, new = out["old"], out["new"]
    out["ratio_achieved_per_s_new_vs_old"] = round(new["achieved_per_s"] / old["achieved_per_s"], 2)
    out["ratio_stow_p50_old_vs_new"] = round(
        old["stow_latency"]["p50_ms"] / new["stow_latency"]["p50_ms"], 2
    )
    out["ratio_server_cpu_per_request_old_vs_new"] = round(
        (old["server_cpu_s"] / old["requests"]) / (new["server_cpu_s"] / new["requests"]), 2
    )
    return out


_LETTERS = "ABCDEFGHIJKLMNOPRSTW"
_MODALITIES = ("MR", "CT", "US", "CR", "DX", "MG", "PT", "NM", "XA", "SR")


def distinct_search(kind: str, i: int) -> dict[str, str]:
    """The ``i``-th of a series of different searches of ``kind`` (a key of :data:`QIDO`
    or ``combination``: the three at once): another name prefix, date range or modality
    set, and another limit and offset each time, so that neither a whole answer nor the
    same page is reused."""
    limit, offset = str(10 + (i * 37) % 91), str((i * 13) % 4 * 25)
    if kind == "combination":
        name = distinct_search("PatientName", i)["PatientName"]
        span = distinct_search("StudyDate", i)["StudyDate"]
        mods = distinct_search("ModalitiesInStudy", i)["ModalitiesInStudy"]
        return {"PatientName": name, "StudyDate": span, "ModalitiesInStudy": mods,
                "limit": limit, "offset": offset}  # fmt: skip
    if kind.startswith("PatientName"):
        name = _LETTERS[i % len(_LETTERS)] + "aeiou*"[(i // len(_LETTERS)) % 6] + "*"
        return {"PatientName": name, "limit": limit, "offset": offset}
    if kind.startswith("StudyDate"):
        year, month = 2005 + (i * 7) % 20, 1 + (i * 5) % 12
        span = f"{year}{month:02d}01-{year + i % 3}{month:02d}28"
        return {"StudyDate": span, "limit": limit, "offset": offset}
    mods = ",".join(_MODALITIES[(i + k * 3) % len(_MODALITIES)] for k in range(1 + i % 2))
    return {"ModalitiesInStudy": mods, "limit": limit, "offset": offset}


def bench_qido(table: Path, rounds: int = 60, settle_s: float = 10.0) -> dict[str, Any]:
    """QIDO-RS study searches against the previous QIDO code and this one (each its own
    server over its own copy of the table): ``rounds`` distinct searches of each kind
    (:func:`distinct_search`: other values, limit and offset each time, so no answer
    is reused) and ``rounds`` repeats of one; wall p50/p99 from one client and server
    CPU per search. Each server first gets ``settle_s`` seconds to read its index's SOP
    hashes (a background read at start, ~5 s of CPU at 10M) and upgrade it."""
    import httpx

    out: dict[str, Any] = {}
    for variant in ("old", "new"):
        res: dict[str, Any] = {}
        swap = ("qido",) if variant == "old" else ()
        with (
            served(table, "qido_ab", swap) as (proc, url, _, _work, _first),
            httpx.Client(base_url=f"{url}/dicomweb", timeout=120) as http,
        ):
            time.sleep(settle_s)
            for name, params in [*QIDO.items(), ("combination", {})]:
                for mode in ("distinct", "repeated") if params else ("distinct",):
                    times = []
                    cpu0 = cpu_s(proc.pid)
                    for i in range(rounds):
                        ask = distinct_search(name, i) if mode == "distinct" else params
                        t0 = time.perf_counter()
                        r = http.get("/studies", params=ask)
                        r.raise_for_status()
                        times.append(time.perf_counter() - t0)
                    res[f"{name} {mode}"] = pct(times) | {
                        "server_cpu_ms": round((cpu_s(proc.pid) - cpu0) / rounds * 1e3, 1),
                        "results": len(r.json()),
                    }
        out[variant] = res
        print("qido", variant, json.dumps(res), flush=True)
    for key in out["new"]:
        o, n = out["old"][key], out["new"][key]
        out[f"ratio p50 old/new: {key}"] = round(o["p50_ms"] / n["p50_ms"], 2)
        out[f"ratio server CPU old/new: {key}"] = round(
            o["server_cpu_ms"] / max(n["server_cpu_ms"], 0.1), 2
        )
    return out


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)


def mixed_load(url: str, facts: dict[str, Any], clients: int, seconds: float) -> dict[str, Any]:
    """``clients`` threads sending a mix of requests for ``seconds``: the three QIDO study
    searches, the series of the 500-instance study, its series ``/metadata`` (1 in 10)."""
    import httpx

    se = facts["series500"]
    mix: list[tuple[str, dict[str, str]]] = [("/studies", q) for q in QIDO.values()]
    mix.append((f"/studies/{se['study']}/series", {}))
    lat: list[float] = []
    errors = [0]
    stop = time.perf_counter() + seconds

    def client(k: int) -> None:
        with httpx.Client(base_url=f"{url}/dicomweb", timeout=120) as c:
            i = k
            while time.perf_counter() < stop:
                i += 1
                if i % 10 == 0:
                    path, params = f"/studies/{se['study']}/series/{se['series']}/metadata", {}
                else:
                    path, params = mix[i % len(mix)]
                t0 = time.perf_counter()
                r = c.get(path, params=params)
                lat.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    errors[0] += 1

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return pct(lat) | {
        "requests_per_s": round(len(lat) / wall, 1),
        "errors": errors[0],
        "load": load_avg(),
    }


def stow_load(url: str, table: Path, rate: int, seconds: int) -> dict[str, Any]:
    """``rate`` single-instance STOW requests per second for ``seconds``; QIDO sampled."""
    import httpx
    import pydicom
    from deltalake import DeltaTable
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    n = rate * seconds
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    bodies, sops = [], []
    study = generate_uid()
    import io

    for i in range(n):
        if i % 50 == 0:
            study, series = generate_uid(), generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        bodies.append(stow_body(buf.getvalue()))
        sops.append(str(ds.SOPInstanceUID))
    v0 = DeltaTable(str(table)).version()
    qido_times: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        with httpx.Client(base_url=f"{url}/dicomweb", timeout=120) as c:
            while not stop.is_set():
                t0 = time.perf_counter()
                c.get("/studies", params=QIDO["StudyDate range"]).raise_for_status()
                qido_times.append(time.perf_counter() - t0)
                time.sleep(0.2)

    async def run() -> tuple[list[float], list[int]]:
        # Open loop: request i is due at start + i / rate, whatever the answers before it.
        # A fixed set of senders, each with one connection, takes the due requests in
        # turn; latency counts from the due time (a request waiting for a free sender
        # counts as slow). One shared client with a task per request (the previous way)
        # spent its CPU in httpx's pool, which scans every waiting request against every
        # connection at each change: on a loaded machine the client fell behind, left
        # answers unread until the server closed the idle connections (uvicorn's 5 s
        # keep-alive), then sent on a closed one: the ``httpx.ReadError`` of the 100k run.
        lat: list[float] = []
        codes: list[int] = []
        due: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        senders = min(len(bodies), max(8, rate * 2))

        async def sender() -> None:
            # idle connections are given up well before the server's 5 s keep-alive ends
            limits = httpx.Limits(max_connections=1, keepalive_expiry=2.0)
            async with httpx.AsyncClient(
                base_url=f"{url}/dicomweb", timeout=600, limits=limits
            ) as client:
                while (item := await due.get()) is not None:
                    when, body = item
                    r = await client.post("/studies", content=body, headers=STOW_HEADERS)
                    lat.append(time.perf_counter() - when)
                    codes.append(r.status_code)

        workers = [asyncio.create_task(sender()) for _ in range(senders)]
        start = time.perf_counter()
        for i, body in enumerate(bodies):
            when = start + i / rate
            delay = when - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            due.put_nowait((when, body))
        for _ in workers:
            due.put_nowait(None)
        await asyncio.gather(*workers)
        return lat, codes

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t0 = time.perf_counter()
    lat, codes = asyncio.run(run())
    wall = time.perf_counter() - t0
    stop.set()
    t.join()
    import duckdb

    uris = DeltaTable(str(table)).file_uris()
    held = {
        r[0]
        for r in duckdb.sql(
            "SELECT SOPInstanceUID FROM read_parquet(?, union_by_name=true) "
            "WHERE list_contains(?, SOPInstanceUID)",
            params=[uris, sops],
        ).fetchall()
    }
    return {
        "requests": n,
        "rate_asked_per_s": rate,
        "wall_s": round(wall, 1),
        "achieved_per_s": round(n / wall, 1),
        "senders": min(n, max(8, rate * 2)),
        "status_200": codes.count(200),
        "stored_in_table": len(held),
        "lost": n - len(held),
        "commits": DeltaTable(str(table)).version() - v0,
        "stow_latency": pct(lat),
        "qido_during_load": pct(qido_times) if qido_times else None,
    }


# ---------------------------------------------------------------------------- sql


def bench_sql(
    table: Path,
    facts: dict[str, Any],
    cluster: bool,
    before: str | None = None,
    runs: int = 15,
) -> dict[str, Any]:
    """``pixels sql`` as a process (the default table output; wall and the child's CPU,
    min and median) and in process (min of 5): a point look-up by StudyInstanceUID
    (``runs`` runs) and ``GROUP BY Modality`` (5 runs).

    Each process run is started both ways: ``python -m pixels.cli sql`` and the
    ``pixels`` console script (what users run: no runpy). With ``before`` (a git
    revision) that code runs too. One round starts every launcher and code once, in
    turn, and, for the look-up, the floor beside them: ``python -c pass`` and DuckDB's
    engine imported with one connection, below which no look-up process goes. Both
    source trees are byte-compiled first."""
    import resource

    from pixels import Catalog

    study = facts["series500"]["study"]
    queries = {
        "point look-up by StudyInstanceUID": (
            "SELECT path, SeriesInstanceUID, SOPInstanceUID FROM object_catalog "
            f"WHERE StudyInstanceUID = '{study}'"
        ),
        "GROUP BY Modality": "SELECT Modality, count(*) FROM object_catalog GROUP BY Modality",
    }
    codes = {"now": dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))}
    sources = [BENCH.parent / "src"]
    if before:
        sources.append(old_src(before))
        path = [str(sources[-1]), *sys.path]
        codes[f"at {before}"] = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    # bytecode for both, as an installed package has it (with PYTHONDONTWRITEBYTECODE
    # set, a source tree without it compiles every module it imports in every process)
    for src in sources:
        subprocess.run(python_cmd("-m", "compileall", "-q", str(src)), check=True)
    script = Path(sys.executable).with_name("pixels")
    launchers = {"python -m pixels.cli sql": [sys.executable, "-m", "pixels.cli", "sql"]}
    if script.exists():
        launchers["pixels sql (console script)"] = [str(script), "sql"]
    floors = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "import _duckdb; connect()": [sys.executable, "-c", "import _duckdb; _duckdb.connect()"],
    }

    def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        return wall, r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime

    def summary(samples: list[tuple[float, float]]) -> dict[str, Any]:
        wall, cpu = [w for w, _ in samples], [c for _, c in samples]
        return {
            "wall min_ms": round(min(wall) * 1e3),
            "wall median_ms": round(statistics.median(wall) * 1e3),
            "CPU min_ms": round(min(cpu) * 1e3),
            "CPU median_ms": round(statistics.median(cpu) * 1e3),
            "runs": len(samples),
        }

    def measure(t: Path) -> dict[str, Any]:
        res: dict[str, Any] = {}
        for name, q in queries.items():
            point = name.startswith("point")
            samples: dict[str, list[tuple[float, float]]] = {}
            for _ in range(runs if point else 5):
                for launcher, cmd in launchers.items():
                    for code, env in codes.items():
                        got = timed([*cmd, "--table", str(t), q], env)
                        samples.setdefault(f"{launcher}, {code}", []).append(got)
                for floor, cmd in floors.items() if point else ():
                    samples.setdefault(f"floor: {floor}", []).append(timed(cmd))
            inproc = []
            for _ in range(5):
                t0 = time.perf_counter()
                Catalog(str(t)).sql_arrow(q)
                inproc.append(time.perf_counter() - t0)
            res[name] = {"in process_ms": round(min(inproc) * 1e3), "load": load_avg()}
            res[name].update({k: summary(v) for k, v in samples.items()})
        return res

    out: dict[str, Any] = {"before": measure(table)}
    if cluster:
        work = copy_table(table, WORK_DIR / f"scale_cluster_{table.name}")
        t0 = time.perf_counter()
        metrics = Catalog(str(work)).optimize(cluster=True)
        out["optimize --cluster_s"] = round(time.perf_counter() - t0, 1)
        out["optimize files"] = {k: metrics.get(k) for k in ("numFilesAdded", "numFilesRemoved")}
        out["after --cluster"] = measure(work)
        shutil.rmtree(work, ignore_errors=True)
    return out


#: The code before the table's writer saved each data file's first rows per series
#: (``_pixels/firsts/``: an update decoded the new file's ``meta`` to find them).
COMMIT_OLD = "440e77c"

COMMIT_RUN = """
import json, os, sys, time
from pathlib import Path
import pyarrow as pa
from make_big_table import Generator, Templates
from pixels.table import CatalogTable
from pixels.web.index import TableIndex
table, pool, seed = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
ix = TableIndex(CatalogTable(table))
ix.current()
assert ix.keys.ready()
for name in ("series_keys", "study_keys"):  # (this code's: read at start, as the SOP keys)
    if hasattr(ix, name):
        assert getattr(ix, name).ready()
gen = Generator(Templates(pool), pool, seed=seed)
print("ready", flush=True)

def commit(size):
    parts, n = [], 0
    while n < size:
        rows = gen.rows(gen.study())
        parts.append(rows)
        n += rows.num_rows
    CatalogTable(table).append(pa.concat_tables(parts))
    return n, parts[-1]["StudyInstanceUID"][0].as_py()

def searches(client, rounds):
    # QIDO-RS study searches, none answered from a kept answer
    from pixels.web import qido_answers
    from bench_scale import distinct_search
    qido_answers._ANSWERS = type(qido_answers._ANSWERS)()
    times = []
    for i in range(rounds):
        for kind in ("PatientName", "StudyDate", "ModalitiesInStudy", "combination"):
            t0 = time.perf_counter()
            r = client.get("/dicomweb/studies", params=distinct_search(kind, i))
            times.append(time.perf_counter() - t0)
            assert r.status_code == 200, r.text
    times.sort()
    return {"p50_ms": round(times[len(times) // 2] * 1e3, 1),
            "p90_ms": round(times[int(len(times) * 0.9)] * 1e3, 1), "n": len(times)}

for line in sys.stdin:  # one round per line: a commit of ~10k rows, then the update
    if line.strip() == "burst":
        # back-to-back 2,000-row commits, each answered at once (merges running behind)
        times = []
        for _ in range(6):
            n, last = commit(2_000)
            t0 = time.perf_counter()
            found = ix.current().rows("SELECT n_inst FROM study_sum WHERE StudyInstanceUID = ?", [last])
            times.append(round((time.perf_counter() - t0) * 1e3, 1))
            assert found, last
        print("RESULT", json.dumps({"update_and_query_ms": times,
                                    "load": round(os.getloadavg()[0], 2)}), flush=True)
        continue
    if line.strip() == "searches":
        # study searches while the overlay holds a commit, and once it is merged
        from starlette.testclient import TestClient
        from pixels.web import create_app, index as index_module
        ix.merge()
        app = create_app(table, token="", viewer=False, allowed_hosts=["testserver"])
        index_module._INDEXES[app.state.pixels] = ix
        ix.auto_merge = False
        out = {}
        with TestClient(app) as client:
            searches(client, 5)  # (warm)
            for cycle in (1, 2):
                commit(10_000)
                assert ix.current().overlaid
                out[f"overlay {cycle}"] = searches(client, 25)
                ix.merge()
                assert not ix.current().overlaid
                out[f"merged {cycle}"] = searches(client, 25)
        out["load"] = round(os.getloadavg()[0], 2)
        print("RESULT", json.dumps(out), flush=True)
        continue
    before = ix.last_merge if hasattr(ix, "last_merge") else {}
    n, last = commit(10_000)
    t0, c0 = time.perf_counter(), time.process_time()
    snap = ix.current()
    found = snap.rows("SELECT n_inst FROM study_sum WHERE StudyInstanceUID = ?", [last])
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert found, last
    print("RESULT", json.dumps({"rows": n, "update_and_query_ms": round(dt * 1e3, 1),
                      "cpu_ms": round(cpu * 1e3, 1), "load": round(os.getloadavg()[0], 2),
                      "overlay": ix.last_update.get("overlay", False),
                      # the previous round's merge (in the background, after its answer)
                      "previous_merge_ms": round(before.get("seconds", 0) * 1e3, 1),
                      "previous_merge_commit_ms": before.get("commit_ms")}
                     | {k: ix.last_update.get(k) for k in ("sop_lookups", "files_read", "commit_ms", "firsts_saved")}),
          flush=True)
if hasattr(ix, "merge"):
    ix.merge()
ix.close()
"""


def old_src(ref: str) -> Path:
    """``src/`` of commit ``ref`` (``git archive``), under the bench's work folder."""
    dst = WORK_DIR / f"old_src_{ref}"
    if not (dst / "src" / "pixels").exists():
        dst.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", ref, "src"], cwd=BENCH.parent, check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(dst)], input=archive, check=True)
    return dst / "src"


def bench_commit(
    table: Path, pool: str, rounds: int, *, old: str = COMMIT_OLD, searches: bool = True
) -> dict[str, Any]:
    """A commit of about 10k generated rows by another writer, then the index update and
    a study look-up that finds them, in process on a saved index: the code of commit
    ``old`` and this one, each in a process of its own on its own copy of the table
    (their saved index formats may differ), rounds alternated (old, new, old, ...).

    This code answers such a commit from its index's overlay and merges it in the
    background (``previous_merge_ms``: the merge of the round before, measured in the
    round); with ``searches``, six back-to-back 2,000-row commits each answered at
    once (both codes), and QIDO-RS study searches (in process, distinct: no answer
    kept) while the overlay holds a 10k-row commit and after it is merged, twice."""
    seed = int(time.time())
    kinds = {"old": old_src(old), "new": BENCH.parent / "src"}
    procs: dict[str, subprocess.Popen[str]] = {}
    works: list[Path] = []
    runs: dict[str, list[dict[str, Any]]] = {"old": [], "new": []}
    searched: dict[str, Any] = {}
    burst: dict[str, Any] = {}
    try:
        for kind, src in kinds.items():
            work = copy_table(table, WORK_DIR / f"scale_commit_{kind}_{table.name}")
            works.append(work)
            paths = [str(src), str(BENCH), *[p for p in sys.path if "/src" not in p]]
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
            procs[kind] = subprocess.Popen(
                python_cmd("-c", COMMIT_RUN, str(work), pool, str(seed)),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            assert procs[kind].stdout is not None
            if not any(line.strip() == "ready" for line in procs[kind].stdout):
                raise RuntimeError(f"{kind}: the index did not open")

        def ask(kind: str, what: str) -> dict[str, Any]:
            proc = procs[kind]
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(what + "\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
            while line and not line.startswith("RESULT "):  # (other output of the round)
                line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{kind}: the update failed")
            line = line.removeprefix("RESULT ")
            print(kind, line.strip(), file=sys.stderr, flush=True)
            return json.loads(line)  # type: ignore[no-any-return]

        for _ in range(rounds):
            for kind in ("old", "new"):
                runs[kind].append(ask(kind, "go"))
        # back-to-back 2,000-row commits, each answered, then QIDO-RS study searches while
        # the overlay holds a commit and once merged (this code only)
        if searches:
            burst = {kind: ask(kind, "burst") for kind in ("old", "new")}
            searched = ask("new", "searches")
    finally:
        for proc in procs.values():
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(timeout=120)
        for work in works:
            shutil.rmtree(work, ignore_errors=True)
    out: dict[str, Any] = {"old": old, "runs": runs}
    if burst:
        out["back_to_back_2000_rows"] = burst
    if searched:
        out["qido_studies_overlay_vs_merged"] = searched
        over = statistics.median(
            v["p50_ms"] for k, v in searched.items() if k.startswith("overlay")
        )
        base = statistics.median(v["p50_ms"] for k, v in searched.items() if k.startswith("merged"))
        out["qido_studies_ratio_p50_overlay_vs_merged"] = round(over / base, 2)
    for kind in ("old", "new"):
        out[kind + "_p50"] = pct([r["update_and_query_ms"] / 1e3 for r in runs[kind]])
        out[kind + "_p50"]["cpu_p50_ms"] = pct([r["cpu_ms"] / 1e3 for r in runs[kind]])["p50_ms"]
    out["ratio_p50_old_vs_new"] = round(out["old_p50"]["p50_ms"] / out["new_p50"]["p50_ms"], 2)
    out["ratio_cpu_p50_old_vs_new"] = round(
        out["old_p50"]["cpu_p50_ms"] / out["new_p50"]["cpu_p50_ms"], 2
    )
    return out


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--root", type=Path, default=Path("/work/bigdata"))
    ap.add_argument("--old-max", type=int, default=100_000, help="largest table for the old index")
    ap.add_argument(
        "--memory-max", type=int, default=1_000_000, help="largest table for the in-memory index"
    )
    ap.add_argument(
        "--index-kinds",
        nargs="+",
        default=["memory", "cold", "warm"],
        help="index builds to time (cold and memory remove the saved index)",
    )
    ap.add_argument("--stow-rate", type=int, default=100)
    ap.add_argument("--stow-seconds", type=int, default=60)
    ap.add_argument("--stow-at", type=int, nargs="*", default=None, help="sizes with a STOW load")
    ap.add_argument("--cluster-max", type=int, default=1_000_000)
    ap.add_argument("--commit-rounds", type=int, default=6, help="10k-row commits (--only commit)")
    ap.add_argument(
        "--commit-old", default=COMMIT_OLD, help="git revision the commit rounds compare with"
    )
    ap.add_argument("--only", nargs="*", default=["index", "server", "sql"])
    ap.add_argument("--sql-before", default=None, help="git revision: its `pixels sql` too")
    ap.add_argument("--sql-runs", type=int, default=15, help="point look-up processes per code")
    ap.add_argument("--out", type=Path, default=RESULTS / "scale.json")
    args = ap.parse_args(argv)
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"machine": machine_info(), "sizes": {}}
    out_path = args.out
    if out_path.exists():
        results["sizes"] = json.loads(out_path.read_text()).get("sizes", {})
    for rows in args.sizes:
        table, facts = table_of(args.root, rows)
        entry: dict[str, Any] = results["sizes"].get(str(rows), {})
        entry["table"] = {
            k: facts[k]
            for k in ("rows", "studies", "series", "patients", "seconds", "bytes", "files")
        }
        if "index" in args.only:
            entry["index"] = bench_index(
                table, rows, args.old_max, args.memory_max, args.index_kinds
            )
            print(rows, "index", json.dumps(entry["index"]), flush=True)
        if "server" in args.only:
            load = args.stow_at is None or rows in args.stow_at
            entry["server"] = bench_server(
                table, facts, args.stow_rate if load else 0, args.stow_seconds
            )
            print(rows, "server", json.dumps(entry["server"]), flush=True)
        if "startup" in args.only:
            entry["startup_old_vs_new"] = bench_startup(table)
            print(rows, "startup", json.dumps(entry["startup_old_vs_new"]), flush=True)
        if "qido" in args.only:
            entry["qido_old_vs_new"] = bench_qido(table)
            print(rows, "qido", json.dumps(entry["qido_old_vs_new"]), flush=True)
        if "commit" in args.only:
            entry["commit_old_vs_new"] = bench_commit(
                table, facts["pool"], args.commit_rounds, old=args.commit_old
            )
            print(rows, "commit", json.dumps(entry["commit_old_vs_new"]), flush=True)
        if "stow" in args.only:
            entry["stow_old_vs_new"] = bench_stow(table, args.stow_rate, args.stow_seconds)
            print(rows, "stow", json.dumps(entry["stow_old_vs_new"]), flush=True)
        if "sql" in args.only:
            entry["sql"] = bench_sql(
                table, facts, rows <= args.cluster_max, args.sql_before, args.sql_runs
            )
            print(rows, "sql", json.dumps(entry["sql"]), flush=True)
        results["sizes"][str(rows)] = entry
        dump_json(out_path, results)
    print(json.dumps(results["sizes"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
