"""MONAI Label API latency: Run to labels (ct-tissue) and per click (region-grow).

A real 512x512 CT slice (pydicom-data ``explicit_VR-UN.dcm``, the abdomen bench_ml.py
segments) copied N times along its normal (tests/ml/series.py), cataloged, served by
``create_app`` under uvicorn on loopback. Requests are the MONAI Label OHIF panel's:
``POST /monailabel/infer/<model>?image=<series>&output=image`` with a multipart
``params`` field; the answer is the NRRD label volume the panel paints.

1. Run to overlay (server part): ``infer/ct-tissue`` on a series not read before
   (volume read + model + NRRD), then again (volume cached). The panel's own parse and
   copy into its labelmap come on top (about a second in the browser tests).
2. Per click: ``infer/region-grow`` with one foreground click, the first on the series
   (reads the volume) then clicks at other points (volume cached, LRU of 2 series):
   median seconds, and the ratio first / next.
3. Background clicks (the correction step): after a foreground click, clicks that cut
   the region, each answered with the region flooded for the earlier clicks reused
   (``clicks.KEPT``, the default) and, in the same run, from scratch (``KEPT = 0``, as
   before the reuse): median seconds of each and the ratio.

    python bench/bench_monailabel.py --slices 100 --clicks 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests"), str(ROOT / "tests" / "ml"), str(HERE)]

from _common import WORK_DIR, dump_json, machine_info  # noqa: E402

PARAMS = {"result_extension": ".nrrd", "result_dtype": "uint8", "result_compress": False}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--slices", type=int, default=100)
    ap.add_argument("--clicks", type=int, default=5)
    ap.add_argument("--out", default=str(HERE / "results" / "monailabel.json"))
    a = ap.parse_args()

    import httpx
    import pydicom
    from series import ct_series

    from pixels import Catalog
    from pixels.web import create_app, monailabel
    from web.conftest import running

    work = WORK_DIR / "monailabel"
    folder, table = work / f"ct-{a.slices}", work / f"ct-{a.slices}-catalog"
    if not folder.exists():
        ct_series(folder, a.slices, source="explicit_VR-UN.dcm", step=1.25, ramp=0)
    if not table.exists():
        Catalog(str(table)).catalog(str(folder), workers=0)
    ds = pydicom.dcmread(next(folder.glob("*.dcm")))
    series, rows, cols = ds.SeriesInstanceUID, int(ds.Rows), int(ds.Columns)
    results: dict[str, object] = {"machine": machine_info(), "shape": [cols, rows, a.slices]}
    http = httpx.Client(timeout=600)

    def infer(url: str, model: str, params: dict[str, object]) -> float:
        t0 = time.perf_counter()
        r = http.post(
            f"{url}/monailabel/infer/{model}",
            params={"image": series, "output": "image"},
            files={"params": (None, json.dumps({**PARAMS, **params}))},
        )
        seconds = time.perf_counter() - t0
        assert r.status_code == 200 and r.content.startswith(b"NRRD0004"), r.text[:300]
        return seconds

    with running(create_app(str(table), viewer=False)) as url:
        monailabel.warm().join()  # models loaded, as a server a few seconds after start
        first = infer(url, "ct-tissue", {})
        again = infer(url, "ct-tissue", {})
        results["ct-tissue"] = {"first_s": first, "cached_volume_s": again}
        print(f"ct-tissue 512x512x{a.slices}: {first:.2f}s first, {again:.2f}s volume cached")
    with monailabel._CACHE_LOCK:
        monailabel._CACHE.clear()  # the volume cache is per process: the first click reads
    with running(create_app(str(table), viewer=False)) as url:
        z = a.slices // 2
        points = [[cols // 2 + 8 * k, rows // 2 + 6 * k, z] for k in range(a.clicks + 1)]
        first_click = infer(url, "region-grow", {"foreground": points[:1]})
        next_clicks = [
            infer(url, "region-grow", {"foreground": points[: k + 1], "background": []})
            for k in range(1, a.clicks + 1)
        ]
        median = statistics.median(next_clicks)
        results["region-grow"] = {
            "first_click_s": first_click,
            "next_clicks_s": next_clicks,
            "median_next_s": median,
            "first_over_next": first_click / median,
        }
        print(f"region-grow: first click {first_click:.2f}s, next clicks median {median:.2f}s "
              f"({first_click / median:.1f}x faster after the first)")  # fmt: skip
        from pixels.ml.models import clicks

        seed = points[:1]
        cuts = [[cols // 2 + 40 * k, rows // 2 + 30 * k, z] for k in range(1, a.clicks + 1)]

        def cutting(kept: int) -> list[float]:
            clicks.KEPT = kept
            clicks.forget()
            infer(url, "region-grow", {"foreground": seed})  # the region to cut
            return [
                infer(url, "region-grow", {"foreground": seed, "background": cuts[: k + 1]})
                for k in range(len(cuts))
            ]

        kept_default = clicks.KEPT
        scratch, reused = cutting(0), cutting(kept_default)
        clicks.KEPT = kept_default
        ratio = statistics.median(scratch) / statistics.median(reused)
        results["region-grow-background"] = {
            "from_scratch_s": scratch,
            "reused_s": reused,
            "scratch_over_reused": ratio,
        }
        print(f"region-grow background clicks: median {statistics.median(scratch):.2f}s from "
              f"scratch, {statistics.median(reused):.2f}s reusing the region ({ratio:.2f}x)")  # fmt: skip
    dump_json(a.out, results)


if __name__ == "__main__":
    main()
