"""MONAI Label API latency: Run to labels (ct-tissue) and per click (region-grow).

A real 512x512 CT slice (pydicom-data ``explicit_VR-UN.dcm``, the abdomen bench_ml.py
segments) copied N times along its normal (tests/ml/series.py), cataloged, served by
``create_app`` under uvicorn on loopback. Requests are the MONAI Label OHIF panel's:
``POST /monailabel/infer/<model>?image=<series>&output=image`` with a multipart
``params`` field; the answer is the NRRD label volume the panel paints.

``--gzip`` measures only the answers' compression (Content-Encoding: gzip to clients
that accept it): size and CPU at zlib levels 1 and 6, and a repeated click plain and gzip.

1. Run to overlay (server part): ``infer/ct-tissue`` on a series not read before
   (volume read + model + NRRD), then again (volume cached). The panel's own parse and
   copy into its labelmap come on top (about a second in the browser tests).
2. Per click (``infer/region-grow``), as the panel sends them (every click so far, each
   time), in this order:

   - *first*: one foreground click on soft tissue (the series is read);
   - *same value*: foreground clicks on voxels of the first click's value elsewhere in
     the volume (the Hounsfield window does not change; some fall in the region, some
     in parts of the window not connected to it);
   - *new value*: foreground clicks on values outside the range clicked so far (each
     widens the window: the region grows);
   - *background*: background clicks inside the region, each cutting it.

   The sequence runs against a server of ``--baseline`` (a git revision: its ``src/``
   exported) and one of the current ``src/``, each a fresh child process (the first
   click reads the volume), one after the other, ``--rounds`` times. The client is this
   process, apart from the server as the browser is (not sharing its interpreter
   lock while the 26 MB answers cross). Every answer of
   both is hashed: the answers must be the same bytes. Medians and p90 per kind of
   click, and the load average before and after each run.

    nice -n 10 python bench/bench_monailabel.py --slices 100 --clicks 5 --rounds 2
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: the ``src`` a child run serves (``--baseline``'s export), else this tree's
SRC = os.environ.get("PIXELS_BENCH_SRC") or str(ROOT / "src")
sys.path[:0] = [SRC, str(ROOT / "tests"), str(ROOT / "tests" / "ml"), str(HERE)]

from _common import WORK_DIR, dump_json, machine_info  # noqa: E402

PARAMS = {"result_extension": ".nrrd", "result_dtype": "uint8", "result_compress": False}
#: the commit before the incremental clicks (the code measured as 1.03 s per next click)
BASELINE = "3c86f4c"
KINDS = ("same_value", "new_value", "background")


def _data(slices: int) -> tuple[Path, Path]:
    import pydicom  # noqa: F401  (the series helper needs it)
    from series import ct_series

    from pixels import Catalog

    work = WORK_DIR / "monailabel"
    folder, table = work / f"ct-{slices}", work / f"ct-{slices}-catalog"
    if not folder.exists():
        ct_series(folder, slices, source="explicit_VR-UN.dcm", step=1.25, ramp=0)
    if not table.exists():
        Catalog(str(table)).catalog(str(folder), workers=0)
    return folder, table


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _p90(values: list[float]) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(0.9 * (len(s) - 1)))]


def run_clicks(url: str, slices: int, clicks: int) -> dict[str, Any]:
    """The click sequence of the module docstring against the server at ``url``: seconds
    and answer hashes."""
    import httpx
    import numpy as np
    import pydicom

    folder, _ = _data(slices)
    ds = pydicom.dcmread(next(folder.glob("*.dcm")))
    series = ds.SeriesInstanceUID
    # every slice is this one (ramp=0): the volume is hu[x, y] on each z
    hu = (ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)).T
    cols, rows = hu.shape
    http = httpx.Client(timeout=600)
    out: dict[str, Any] = {"load_before": _load(), "hashes": []}

    def infer(fg: list[list[int]], bg: list[list[int]]) -> tuple[float, np.ndarray]:
        t0 = time.perf_counter()
        r = http.post(
            f"{url}/monailabel/infer/region-grow",
            params={"image": series, "output": "image"},
            files={"params": (None, json.dumps({**PARAMS, "foreground": fg, "background": bg}))},
        )
        seconds = time.perf_counter() - t0
        assert r.status_code == 200 and r.content.startswith(b"NRRD0004"), r.text[:300]
        out["hashes"].append(hashlib.sha256(r.content).hexdigest())
        body = r.content[r.content.index(b"\n\n") + 2 :]
        return seconds, np.frombuffer(body, np.uint8).reshape((cols, rows, slices), order="F")

    def nearest(value: float, k: int) -> list[int]:
        """The k-th voxel of ``value`` nearest to the centre (z spread over the volume)."""
        xy = np.argwhere(hu == value)
        d = ((xy - [cols // 2, rows // 2]) ** 2).sum(axis=1)
        x, y = xy[np.argsort(d, kind="stable")[min(k, len(xy) - 1)]]
        return [int(x), int(y), (slices // 2 + 17 * k) % slices]

    z = slices // 2
    fg = [[cols // 2, rows // 2, z]]
    v0 = float(hu[cols // 2, rows // 2])
    out["first"], region = infer(fg, [])
    times: dict[str, list[float]] = {k: [] for k in KINDS}
    same = np.argwhere(hu == v0)
    d = ((same - [cols // 2, rows // 2]) ** 2).sum(axis=1)
    same = same[np.argsort(d, kind="stable")]
    for k in range(clicks):  # spread from the centre outwards
        x, y = same[(k + 1) * (len(same) - 1) // (clicks + 1)]
        fg.append([int(x), int(y), (z + 13 * (k + 1)) % slices])
        times["same_value"].append(infer(fg, [])[0])
    lo = hi = v0
    for k in range(clicks):  # below then above the range clicked so far
        target = lo - 25 if k % 2 else hi + 25
        values = np.unique(hu)
        target = float(values[np.argmin(np.abs(values - target))])
        fg.append(nearest(target, k))
        lo, hi = min(lo, target), max(hi, target)
        seconds, region = infer(fg, [])
        times["new_value"].append(seconds)
    bg: list[list[int]] = []
    for k in range(clicks):  # inside the region, at growing distances from the centre
        inside = np.argwhere(region[:, :, z])
        d = ((inside - [cols // 2, rows // 2]) ** 2).sum(axis=1)
        x, y = inside[np.argsort(d, kind="stable")[(k + 1) * (len(inside) - 1) // (clicks + 2)]]
        bg.append([int(x), int(y), z])
        seconds, region = infer(fg, bg)
        times["background"].append(seconds)
    out["voxels"] = int(region.sum())
    out.update(times)
    out["load_after"] = _load()
    return out


def _export(rev: str) -> str:
    """``rev``'s ``src`` folder, exported under the work folder (once)."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", rev], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    dest = WORK_DIR / "monailabel" / f"src-{commit}"
    if not (dest / "src").exists():
        archive = subprocess.run(
            ["git", "archive", commit, "src"], cwd=ROOT, check=True, capture_output=True
        ).stdout
        with tempfile.TemporaryFile() as fh:
            fh.write(archive)
            fh.seek(0)
            with tarfile.open(fileobj=fh) as tar:
                tar.extractall(dest, filter="data")
    return str(dest / "src")


def _load_models(url: str) -> None:
    """The server's models loaded: its first ``info/`` loads them (in older code it waited
    for the thread ``create_app`` started to load them)."""
    import httpx

    httpx.get(f"{url}/monailabel/info/", timeout=600).raise_for_status()


def serve(slices: int, url_file: str) -> None:
    """A server over the bench table (the ``src`` of ``PIXELS_BENCH_SRC``), its models
    loaded; its URL written to ``url_file``; it stops when stdin closes."""
    from pixels.web import create_app
    from web.conftest import running

    _, table = _data(slices)
    with running(create_app(str(table), viewer=False)) as url:
        _load_models(url)  # models loaded, as a server after its first MONAI Label request
        Path(url_file).write_text(url)
        sys.stdin.read()


def _child(src: str, slices: int, clicks: int) -> dict[str, Any]:
    """The clicks from this process against a server of ``src`` in a child process (the
    client apart, as the browser is: in one process they shared the interpreter lock)."""
    with tempfile.TemporaryDirectory() as tmp:
        url_file = Path(tmp) / "url"
        env = {**os.environ, "PIXELS_BENCH_SRC": src}
        env.pop("PYTHONPATH", None)
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(url_file), "--slices", str(slices)],
            env=env, stdin=subprocess.PIPE,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 300
            while not url_file.exists() or not url_file.read_text():
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the server of {src} did not start")
                time.sleep(0.1)
            return run_clicks(url_file.read_text(), slices, clicks)
        finally:
            assert server.stdin is not None
            server.stdin.close()
            server.wait(60)


def tissue(slices: int) -> dict[str, float]:
    """``infer/ct-tissue`` on a series not read before, then again (volume cached)."""
    import httpx
    import pydicom

    from pixels.web import create_app
    from web.conftest import running

    folder, table = _data(slices)
    series = pydicom.dcmread(next(folder.glob("*.dcm"))).SeriesInstanceUID
    http = httpx.Client(timeout=600)

    def infer(url: str) -> float:
        t0 = time.perf_counter()
        r = http.post(
            f"{url}/monailabel/infer/ct-tissue",
            params={"image": series, "output": "image"},
            files={"params": (None, json.dumps(PARAMS))},
        )
        assert r.status_code == 200 and r.content.startswith(b"NRRD0004"), r.text[:300]
        return time.perf_counter() - t0

    with running(create_app(str(table), viewer=False)) as url:
        _load_models(url)  # models loaded, as a server after its first MONAI Label request
        first, again = infer(url), infer(url)
    print(f"ct-tissue 512x512x{slices}: {first:.2f}s first, {again:.2f}s volume cached")
    return {"first_s": first, "cached_volume_s": again}


def compression(slices: int, levels: tuple[int, ...] = (1, 6), repeat: int = 3) -> dict[str, Any]:
    """gzip of the real answers (``--gzip``): the ct-tissue labels and a region-grow click on
    the 512x512xN CT, fetched plain (``Accept-Encoding: identity``), then compressed as the
    server does (:class:`pixels.web.gzipped.Deflated`) at each level: size, compress and
    inflate CPU (this thread's, median of ``repeat``); and one repeated click (an unchanged
    answer: compressed once, then reused) and clicks with new answers (another tolerance
    each) timed plain and gzip over loopback (the client's inflate included)."""
    import zlib

    import httpx
    import pydicom

    from pixels.web import create_app
    from pixels.web.gzipped import Deflated, gzip_join
    from web.conftest import running

    folder, table = _data(slices)
    series = pydicom.dcmread(next(folder.glob("*.dcm"))).SeriesInstanceUID
    click = {**PARAMS, "foreground": [[256, 256, slices // 2]], "background": []}
    http = httpx.Client(timeout=600)
    out: dict[str, Any] = {}
    with running(create_app(str(table), viewer=False)) as url:
        _load_models(url)

        def post(model: str, params: dict[str, Any], accept: str) -> tuple[float, bytes]:
            t0 = time.perf_counter()
            r = http.post(
                f"{url}/monailabel/infer/{model}",
                params={"image": series, "output": "image"},
                files={"params": (None, json.dumps(params))},
                headers={"Accept-Encoding": accept},
            )
            assert r.status_code == 200 and r.content.startswith(b"NRRD0004"), r.text[:300]
            return time.perf_counter() - t0, r.content

        answers = {
            "ct-tissue": post("ct-tissue", PARAMS, "identity")[1],
            "region-grow": post("region-grow", click, "identity")[1],
        }
        walls: dict[str, list[float]] = {"identity": [], "gzip": []}
        fresh: dict[str, list[float]] = {"identity": [], "gzip": []}
        for k in range(5):
            for accept in walls:
                walls[accept].append(post("region-grow", click, accept)[0])
            for j, accept in enumerate(fresh):  # a new tolerance each time: a new answer
                tolerance = 40.0 + 10 * (2 * k + j)
                fresh[accept].append(
                    post("region-grow", {**click, "tolerance": tolerance}, accept)[0]
                )
    for name, body in answers.items():
        row: dict[str, Any] = {"nrrd_mb": round(len(body) / 2**20, 2)}
        for level in levels:
            cpu, inflate = [], []
            for _ in range(repeat):
                t0 = time.thread_time()
                packed = gzip_join([Deflated.of(body, level)])
                cpu.append(time.thread_time() - t0)
                t0 = time.thread_time()
                assert zlib.decompress(packed, 16 + zlib.MAX_WBITS) == body
                inflate.append(time.thread_time() - t0)
            row[f"level {level}"] = {
                "kb": round(len(packed) / 1024),
                "ratio": round(len(body) / len(packed), 1),
                "compress_cpu_ms": round(statistics.median(cpu) * 1e3),
                "inflate_cpu_ms": round(statistics.median(inflate) * 1e3),
            }
            print(f"{name} 512x512x{slices} level {level}: {row[f'level {level}']}")
        out[name] = row
    out["repeated click wall_ms"] = {k: round(statistics.median(v) * 1e3) for k, v in walls.items()}
    out["new answer click wall_ms"] = {
        k: round(statistics.median(v) * 1e3) for k, v in fresh.items()
    }
    print(f"repeated click (unchanged answer), loopback median: {out['repeated click wall_ms']}")
    print(f"click with a new answer, loopback median: {out['new answer click wall_ms']}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--slices", type=int, default=100)
    ap.add_argument("--clicks", type=int, default=5, help="clicks of each kind")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--baseline", default=BASELINE, help="git revision to compare with")
    ap.add_argument("--no-tissue", action="store_true", help="skip the ct-tissue part")
    ap.add_argument("--gzip", action="store_true", help="only the gzip sizes and CPU")
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(HERE / "results" / "monailabel.json"))
    a = ap.parse_args()
    if a.serve:
        serve(a.slices, a.serve)
        return

    results: dict[str, Any] = {"machine": machine_info(), "shape": [512, 512, a.slices]}
    _data(a.slices)
    if a.gzip:
        results["gzip"] = compression(a.slices)
        dump_json(str(Path(a.out).with_name("monailabel_gzip.json")), results)
        return
    if not a.no_tissue:
        results["ct-tissue"] = tissue(a.slices)
    variants = {f"baseline {a.baseline}": _export(a.baseline), "current": str(ROOT / "src")}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for r in range(a.rounds):
        for name, src in variants.items():
            run = _child(src, a.slices, a.clicks)
            runs[name].append(run)
            print(f"round {r + 1} {name}: load {run['load_before']} -> {run['load_after']}, "
                  f"first {run['first']:.2f}s, " + ", ".join(
                      f"{k} {statistics.median(run[k]):.2f}s" for k in KINDS))  # fmt: skip
    hashes = {name: [run["hashes"] for run in rs] for name, rs in runs.items()}
    same = all(h == hashes[next(iter(hashes))][0] for hs in hashes.values() for h in hs)
    summary: dict[str, Any] = {"answers_identical": same}
    for name, rs in runs.items():
        summary[name] = {
            "first_s": statistics.median(run["first"] for run in rs),
            **{
                k: {
                    "median_s": statistics.median(v for run in rs for v in run[k]),
                    "p90_s": _p90([v for run in rs for v in run[k]]),
                }
                for k in KINDS
            },
        }
    base, cur = (summary[name] for name in variants)
    print(f"answers identical: {same}")
    for k in KINDS:
        ratio = base[k]["median_s"] / cur[k]["median_s"]
        print(f"{k:>10}: median {base[k]['median_s']:.2f}s -> {cur[k]['median_s']:.2f}s "
              f"({ratio:.1f}x), p90 {base[k]['p90_s']:.2f}s -> {cur[k]['p90_s']:.2f}s")  # fmt: skip
    print(f"     first: {base['first_s']:.2f}s -> {cur['first_s']:.2f}s")
    results["region-grow"] = {"summary": summary, "runs": runs}
    dump_json(a.out, results)


if __name__ == "__main__":
    main()
