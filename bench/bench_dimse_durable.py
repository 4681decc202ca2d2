"""The cost of making each C-STORE durable: the sink's store, before and after a change.

    git archive main src | tar -x -C /tmp/before
    nice -n 10 python bench/bench_dimse_durable.py --before /tmp/before/src --count 300

``--count`` small instances (pydicom's MR_small.dcm with new UIDs, ``--series`` series of
one new study each round) are stored through :class:`pixels.dimse.receive.StoreSink`
(checked, placed, ``fsync``-ed, journaled; committed in batches of ``--every`` (200, as the
SCP does) or every 2 s) by a process importing ``pixels`` from ``--before`` (the baseline) and one
importing it from this checkout, alternately, ``--rounds`` times each, in a temporary folder
under ``--dir`` (a disk: a tmpfs makes ``fsync`` free). Reported: each side's median time
per C-STORE and mean (the store call only: what the peer waits for; the mean carries the
rare costs: a new batch's journal, a new folder), each side's median time per commit (the
table's append in the sink's commit thread, made durable there since pixels.table.durability:
what a journal's removal waits for), the ratios after/before, and the share of the
after side's commit time spent syncing the commits.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import child_json

HERE = Path(__file__).resolve().parent


def _child(count: int, series: int, every: int, folder: str) -> None:
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.filebase import DicomBytesIO
    from pydicom.uid import generate_uid

    from pixels import Catalog
    from pixels.dimse.receive import StoreSink
    from pixels.web.state import WebState
    from pixels.web.stow import committer_of

    catalog = os.path.join(folder, "catalog")
    first = str(get_testdata_file("CT_small.dcm"))
    Catalog(catalog).catalog(first, workers=0)
    ds = pydicom.dcmread(str(get_testdata_file("MR_small.dcm")))
    ds.StudyInstanceUID = generate_uid()
    series_uids = [generate_uid() for _ in range(series)]
    datas = []
    for i in range(count):
        ds.SeriesInstanceUID = series_uids[i % series]
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        buf = DicomBytesIO()
        ds.save_as(buf, enforce_file_format=True)
        datas.append(buf.getvalue())
    state = WebState(catalog)
    sink = StoreSink(state, every=every, seconds=2.0)
    table = committer_of(state).table
    append, commits = table.append, []

    def timed(*args: Any, **kwargs: Any) -> Any:  # the real append, timed
        start = time.perf_counter()
        try:
            return append(*args, **kwargs)
        finally:
            commits.append(time.perf_counter() - start)

    table.append = timed  # type: ignore[method-assign]
    syncs = _time_syncs()
    times = []
    try:
        for data in datas:
            start = time.perf_counter()
            assert sink.store(data).status == 0
            times.append(time.perf_counter() - start)
    finally:
        sink.close()
    print(
        json.dumps(
            {
                "median": statistics.median(times),
                "mean": statistics.fmean(times),
                "commit": statistics.median(commits),
                "sync": sum(syncs) / sum(commits),  # 0 before pixels.table.durability
            }
        )
    )


def _time_syncs() -> list[float]:
    """Time each :func:`pixels.table.durability.sync_commits` the table's writes make
    (the real one runs); a checkout without it makes none."""
    import pixels.table.catalog_table as module

    times: list[float] = []
    real = getattr(module, "sync_commits", None)
    if real is None:
        return times

    def timed(*args: Any, **kwargs: Any) -> None:
        start = time.perf_counter()
        try:
            real(*args, **kwargs)
        finally:
            times.append(time.perf_counter() - start)

    module.sync_commits = timed
    return times


def _run(src: str, args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        child = ["--child", folder, "--count", str(args.count), "--series", str(args.series)]
        return child_json(__file__, src, [*child, "--every", str(args.every)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", help="the baseline's src folder")
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--series", type=int, default=3)
    parser.add_argument("--every", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", default=str(HERE / ".work"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.count, args.series, args.every, args.child)
        return
    os.makedirs(args.dir, exist_ok=True)
    sides = {"before": args.before, "after": str(HERE.parent / "src")}
    got: dict[str, list[dict[str, float]]] = {k: [] for k in sides}
    for _ in range(args.rounds):
        for side, src in sides.items():
            got[side].append(_run(src, args))
    for stat in ("median", "mean", "commit"):
        per = "commit (median)" if stat == "commit" else "C-STORE"
        for side, runs in got.items():
            ms = ", ".join(f"{r[stat] * 1e3:.2f}" for r in runs)
            print(f"{side}: {stat} ms per {per}, each round: {ms}")
        before = statistics.median(r[stat] for r in got["before"])
        after = statistics.median(r[stat] for r in got["after"])
        print(f"{stat}: after / before {after / before:.3f}")
    shares = ", ".join(f"{r['sync']:.3f}" for r in got["after"])
    print(f"after: share of the commit time spent in sync_commits, each round: {shares}")


if __name__ == "__main__":
    main()
