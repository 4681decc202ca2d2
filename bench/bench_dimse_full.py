"""A C-GET into a full folder: how soon it ends, as a ratio to the same C-GET succeeding.

    sudo nice -n 10 python bench/bench_dimse_full.py --instances 6 --mb 4

Needs root (it mounts a 256 kB tmpfs). dcmtk's dcmqrscp holds a study of ``--instances``
multi-frame MRs of ``--mb`` MB each; :meth:`pixels.dimse.scu.Client.get` fetches it (in this
process) into a folder on disk (the baseline), then into the full tmpfs (``dest``), then
into a folder on disk with the temporary folder (``TMPDIR``, where pynetdicom writes what
arrives) on the full tmpfs (``tmpdir``). Reported: each failing C-GET's wall time as a
ratio to the baseline's and to the client's timeout (``--timeout``), how it ended, and how
many instances were tried.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

from bench_dimse_get import _archive
from bench_dimse_store import _make
from pixels.dimse.scu import Client


def _study(work: Path, count: int, mb: int) -> tuple[str, list[Path]]:
    first = work / "big0.dcm"
    _make(first, mb)
    ds = pydicom.dcmread(first)
    files = []
    for n in range(count):
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(work / f"big{n}.dcm")
        files.append(work / f"big{n}.dcm")
    return str(ds.StudyInstanceUID), files


def _get(port: int, study: str, out: Path, timeout: float) -> tuple[float, str]:
    start = time.perf_counter()
    try:
        res = Client(f"ARCHIVE@127.0.0.1:{port}", timeout=timeout).get(
            {"StudyInstanceUID": study}, folder=str(out)
        )
        how = f"status 0x{res.status:04X}, {res.completed} stored, {len(res.refused)} refused"
    except Exception as e:
        result = getattr(e, "result", None)
        tried = f", {len(result.refused)} refused" if result is not None else ""
        how = f"{type(e).__name__}{tried}: {str(e)[:90]}"
    return time.perf_counter() - start, how


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=6)
    ap.add_argument("--mb", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-full-"))
    full = work / "full"
    full.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(full)], check=True)
    proc = None
    try:
        study, files = _study(work, args.instances, args.mb)
        (work / "archive").mkdir()
        proc, port = _archive(work / "archive", files)
        base, how = _get(port, study, work / "ok", args.timeout)
        print(f"baseline: {base:.2f} s ({how})")
        for case in ("dest", "tmpdir"):
            out = full if case == "dest" else work / f"out-{case}"
            tempfile.tempdir = str(full) if case == "tmpdir" else None
            try:
                wall, how = _get(port, study, out, args.timeout)
            finally:
                tempfile.tempdir = None
            print(f"{case}: {wall / base:.2f}x the baseline, {wall / args.timeout:.3f}x the "
                  f"timeout ({wall:.2f} s; {how})")  # fmt: skip
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        subprocess.run(["umount", "--lazy", str(full)], check=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
