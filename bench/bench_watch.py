"""Memory of ``pixels catalog --watch`` while files trickle in: flat, or growing with files?

One ``pixels catalog DIR --table T --watch`` process runs while this script writes
real DICOM files (copies of pydicom's ``MR_small.dcm`` under new names) into DIR in
small batches, waiting for each batch to be committed before writing the next
(one commit per batch: a day's trickle compressed). After every ``--every`` files
it samples the resident memory of the watch process (the parent, and with its
worker processes). The number tracked is the ratio of RSS after all the files
to RSS after the first ``--every`` (the baseline, same process, same run), and of
RSS at the end to RSS half-way (after the warm-up: allocator pools, caches, the
first compaction): near 1.0 means memory does not grow with the files seen.

Usage::

    nice -n 10 python bench/bench_watch.py --files 10000 --every 1000 --batch 20
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
from deltalake import DeltaTable

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import WORK_DIR, dump_json, machine_info, python_cmd, source_digest

_READ = re.compile(r"total read ([\d,]+)")


def _read_so_far(log: Path) -> int:
    found = _READ.findall(log.read_text(errors="replace"))
    return int(found[-1].replace(",", "")) if found else 0


def _rss(pid: int) -> tuple[int, int]:
    proc = psutil.Process(pid)
    own = proc.memory_info().rss
    kids = sum(c.memory_info().rss for c in proc.children(recursive=True))
    return own, own + kids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--every", type=int, default=1_000)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--out", default=str(WORK_DIR / "watch.json"))
    args = ap.parse_args()

    from pydicom.data import get_testdata_file

    data = Path(str(get_testdata_file("MR_small.dcm"))).read_bytes()
    work = WORK_DIR / "watch"
    shutil.rmtree(work, ignore_errors=True)
    src, cat, log = work / "in", work / "cat", work / "watch.log"
    src.mkdir(parents=True)
    fh = open(log, "w")  # noqa: SIM115
    proc = subprocess.Popen(
        python_cmd(
            "-m",
            "pixels.cli",
            "catalog",
            str(src),
            "--table",
            str(cat),
            "--watch",
            "--settle",
            "0.2",
            "--workers",
            "1",
        ),
        stdout=fh,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    samples = []
    t0 = time.perf_counter()
    try:
        written = 0
        while written < args.files:
            for _ in range(min(args.batch, args.files - written)):
                d = src / f"d{written // 500:03d}"
                d.mkdir(exist_ok=True)
                tmp = d / f".{written:06d}.part"
                tmp.write_bytes(data)
                os.rename(tmp, d / f"{written:06d}.dcm")  # as a careful producer writes
                written += 1
            deadline = time.monotonic() + 120
            while _read_so_far(log) < written:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the watch stopped or stalled:\n{log.read_text()[-3000:]}")
                time.sleep(0.05)
            if written % args.every == 0:
                own, total = _rss(proc.pid)
                samples.append(
                    {
                        "files": written,
                        "rss_watch_mb": round(own / 2**20, 1),
                        "rss_with_workers_mb": round(total / 2**20, 1),
                        "seconds": round(time.perf_counter() - t0, 1),
                    }
                )
                print(samples[-1], flush=True)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        fh.close()
    dt = DeltaTable(str(cat))
    first, last = samples[0], samples[-1]
    middle = samples[(len(samples) - 1) // 2]
    result = {
        "machine": machine_info(),
        "source": source_digest(),
        "files": args.files,
        "batch": args.batch,
        "samples": samples,
        "rss_ratio_watch": round(last["rss_watch_mb"] / first["rss_watch_mb"], 3),
        "rss_ratio_with_workers": round(
            last["rss_with_workers_mb"] / first["rss_with_workers_mb"], 3
        ),
        # after the warm-up (allocators, caches, the first compaction): growth per file seen
        "rss_ratio_watch_second_half": round(last["rss_watch_mb"] / middle["rss_watch_mb"], 3),
        "rows": dt.to_pyarrow_table(columns=["path"]).num_rows,
        "table_version": dt.version(),
        "data_files_at_end": len(dt.file_uris()),
        "seconds_per_1000_files_first": round(first["seconds"] * 1000 / first["files"], 1),
        "seconds_per_1000_files_last": round(
            (last["seconds"] - samples[-2]["seconds"]) * 1000 / args.every, 1
        )
        if len(samples) > 1
        else None,
    }
    print({k: v for k, v in result.items() if k not in ("machine", "samples")})
    dump_json(args.out, result)


if __name__ == "__main__":
    main()
