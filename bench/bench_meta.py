"""Micro-benchmark: DICOM header to JSON, pydicom's encoder against pixels'.

Times, over the same real files (pydicom's test files and pydicom-data) in one
process, best of ``--repeat`` passes:

* ``read``      ``dcmread(stop_before_pixels=True)`` alone;
* ``pydicom``   ``dcmread`` + ``Dataset.to_json_dict`` + ``json.dumps``;
* ``pixels``    :func:`pixels.dicom.meta.read_header` with ``fast=False`` (pydicom
  read + encode + keys), and as the catalog calls it: the fast path
  (:mod:`pixels.dicom.fastread`, no pydicom Dataset) where it applies;
* ``encode``    ``encode_json`` + ``json.dumps`` alone on a fresh ``dcmread`` dataset
  (read time subtracted: measured as ``read + encode`` minus ``read``).

Files are read from memory (``BytesIO``) so disk does not blur the numbers.

Usage::

    python bench/bench_meta.py [--repeat 5] [--file CT_small.dcm]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import time
import warnings
from collections.abc import Callable

import pydicom
from pydicom.data import get_testdata_file

from pixels.dicom import fastread
from pixels.dicom.meta import encode_json, read_header
from pixels.errors import DicomReadError


def _files() -> list[tuple[str, bytes]]:
    dirs = [os.path.dirname(get_testdata_file("CT_small.dcm", download=False) or "")]
    emri = get_testdata_file("emri_small.dcm", download=False)
    if emri:
        dirs.append(os.path.dirname(emri))
    out = []
    for d in dirs:
        for root, _, names in os.walk(d):
            for name in sorted(names):
                p = os.path.join(root, name)
                with open(p, "rb") as f:
                    data = f.read()
                try:
                    read_header(io.BytesIO(data), path=p)
                    pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).to_json_dict(
                        1024, lambda e: "x"
                    )
                except (DicomReadError, pydicom.errors.InvalidDicomError, ValueError):
                    continue
                out.append((p, data))
    return out


def _time(fn: Callable[[bytes], object], files: list[tuple[str, bytes]], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _, data in files:
            fn(data)
        best = min(best, time.perf_counter() - t0)
    return best / len(files) * 1000


def _read(data: bytes) -> object:
    return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)


def _pydicom(data: bytes) -> object:
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    return json.dumps(ds.to_json_dict(1024, lambda e: "bulk"), separators=(",", ":"))


def _read_encode(data: bytes) -> object:
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    js = encode_json(ds)
    return json.dumps(js, separators=(",", ":"), ensure_ascii=False)


def _pixels(data: bytes) -> object:
    return read_header(io.BytesIO(data), path="bench", fast=False)


def _fast(data: bytes) -> object:
    return read_header(io.BytesIO(data), path="bench")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--file", help="one pydicom test file name instead of all")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    files = _files()
    if args.file:
        files = [f for f in files if os.path.basename(f[0]) == args.file]
    sets = {"all files": files}
    if not args.file:
        sets["CT_small.dcm"] = [f for f in files if os.path.basename(f[0]) == "CT_small.dcm"]
    for label, group in sets.items():
        n = len(group)
        repeat = args.repeat if n > 10 else args.repeat * 100
        t_read = _time(_read, group, repeat)
        t_pyd = _time(_pydicom, group, repeat)
        t_re = _time(_read_encode, group, repeat)
        t_pix = _time(_pixels, group, repeat)
        t_fast = _time(_fast, group, repeat)
        accepted = [f for f in group if fastread.parse(io.BytesIO(f[1]), 0, 1024) is not None]
        print(f"{label} ({n} files, best of {repeat}), ms/file:")
        print(f"  dcmread(stop_before_pixels)            {t_read:8.3f}")
        print(f"  dcmread + to_json_dict + json.dumps    {t_pyd:8.3f}   (+ {t_pyd - t_read:.3f})")
        print(f"  dcmread + encode_json + json.dumps     {t_re:8.3f}   (+ {t_re - t_read:.3f})")
        print(f"  read_header(fast=False)                {t_pix:8.3f}")
        print(
            f"  read_header (fast path where it applies) {t_fast:6.3f}   "
            f"({len(accepted)}/{n} files on the fast path)"
        )
        if accepted and len(accepted) < n:
            t_fast_only = _time(_fast, accepted, repeat)
            t_slow_only = _time(_pixels, accepted, repeat)
            print(
                f"    on those files: fast {t_fast_only:.3f}, fast=False {t_slow_only:.3f} "
                f"({t_slow_only / t_fast_only:.1f}x)"
            )
        print(
            f"  ratios: pydicom/read_header {t_pyd / t_pix:.1f}x, "
            f"encode pydicom/pixels {(t_pyd - t_read) / max(t_re - t_read, 1e-9):.1f}x, "
            f"read_header/read {t_pix / t_read:.2f}x, fast read_header/read {t_fast / t_read:.2f}x"
        )


if __name__ == "__main__":
    main()
