"""A large C-STORE: Pixels' SCP against dcmtk's storescp receiving the same file.

    nice -n 10 python bench/bench_dimse_store.py --mb 200

A multi-frame MR of about ``--mb`` MB is made from pydicom's emri_small.dcm (its
ten 64x64 frames tiled to 512x512 and repeated, new UIDs) and sent by dcmtk's
storescu, once to each receiver, each run in a process of its own: Pixels' SCP
(``pixels dimse scp`` over a new catalog: received into a file as it arrives, stored,
journaled, committed) and dcmtk's
storescp (writes the file; the baseline). Reported: storescu's wall time and the
receiver's peak resident memory above its resident memory before the store (Linux
``VmHWM`` - ``VmRSS``), both as ratios to the baseline's and per byte received.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

DCMTK = "/usr/bin"


def _make(path: Path, mb: int) -> int:
    ds = pydicom.dcmread(get_testdata_file("emri_small.dcm"))
    frames = np.tile(ds.pixel_array, (1, 8, 8))
    count = max(10, mb * (1 << 20) // frames[0].nbytes)
    ds.Rows, ds.Columns, ds.NumberOfFrames = 512, 512, count
    ds.PixelData = np.concatenate([frames] * (count // 10 + 1))[:count].tobytes()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(path)
    return path.stat().st_size


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _memory(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            out[key] = int(value.split()[0]) * 1024
    return out


def _wait(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while True:
        res = subprocess.run([f"{DCMTK}/echoscu", "-aec", "RECV", "127.0.0.1", str(port)],
                             capture_output=True)  # fmt: skip
        if res.returncode == 0:
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the receiver did not start")
        time.sleep(0.2)


def _run(name: str, argv: list[str], port: int, path: Path) -> dict[str, float]:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(port, proc)
        time.sleep(1)
        before = _memory(proc.pid)["VmRSS"]
        start = time.perf_counter()
        res = subprocess.run([f"{DCMTK}/storescu", "-aec", "RECV", "127.0.0.1", str(port),
                              str(path)], capture_output=True, text=True)  # fmt: skip
        wall = time.perf_counter() - start
        if res.returncode != 0:
            raise SystemExit(f"{name}: storescu failed: {res.stderr}")
        peak = _memory(proc.pid)["VmHWM"]
    finally:
        proc.terminate()
        proc.wait(60)
    return {"wall_s": wall, "extra_bytes": float(max(0, peak - before))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=int, default=200, help="size of the file sent (MB)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-dimse-store-"))
    try:
        path = work / "big.dcm"
        size = _make(path, args.mb)
        (work / "recv").mkdir()
        port = _port()
        base = _run("storescp", [f"{DCMTK}/storescp", "-aet", "RECV", "-od",
                                 str(work / "recv"), str(port)], port, path)  # fmt: skip
        port = _port()
        pixels = _run("pixels", [sys.executable, "-m", "pixels.cli", "dimse", "scp", "-t",
                                 str(work / "catalog"), "--ae-title", "RECV", "-p", str(port)],
                      port, path)  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"file {size / 1e6:.0f} MB")
    for name, r in (("storescp", base), ("pixels", pixels)):
        print(f"{name:9s} extra memory {r['extra_bytes'] / size:.2f} x the file")
    print(f"pixels / storescp: wall {pixels['wall_s'] / base['wall_s']:.2f}x, extra memory "
          f"{pixels['extra_bytes'] / max(base['extra_bytes'], 1):.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
