"""A large C-GET: ``pixels dimse get`` against dcmtk's getscu fetching the same file.

    nice -n 10 python bench/bench_dimse_get.py --mb 200

dcmtk's dcmqrscp (the archive) is given a multi-frame MR of about ``--mb`` MB (made as in
``bench_dimse_store.py``) and pydicom's CT_small; each client, in a process of its own,
C-GETs the small study, then the big one, into a folder: ``pixels dimse get`` (each data set
written to a file as it arrives, renamed into place when whole) and dcmtk's getscu (the
baseline; ``--bit-preserving`` too with ``--plus-b``). Reported per client: its extra
peak memory for the big file (the kernel's peak resident size of the process, GNU
time's ``%M``, getting the big study minus getting the small one: start-up cancels out) as
a ratio to the file's size, and wall times as ratios to getscu's. Each file received is
checked to hold the source's data set (pydicom, trailing padding aside) and Pixels' to be
byte-identical to getscu's after the file meta group.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file

from bench_dimse_store import DCMTK, _make, _port


def _archive(work: Path, files: list[Path]) -> tuple[subprocess.Popen[bytes], int]:
    """dcmqrscp over a new database holding ``files``; its process and port."""
    port = _port()
    (work / "db").mkdir()
    cfg = work / "qr.cfg"
    cfg.write_text(
        f"NetworkTCPPort = {port}\nMaxPDUSize = 16384\nMaxAssociations = 16\n"
        "HostTable BEGIN\nHostTable END\nVendorTable BEGIN\nVendorTable END\n"
        f"AETable BEGIN\nARCHIVE {work / 'db'} RW (10, 4096mb) ANY\nAETable END\n"
    )
    proc = subprocess.Popen([f"{DCMTK}/dcmqrscp", "-c", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 30
    while subprocess.run([f"{DCMTK}/echoscu", "-aec", "ARCHIVE", "127.0.0.1", str(port)],
                         capture_output=True).returncode:  # fmt: skip
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("dcmqrscp did not start")
        time.sleep(0.2)
    res = subprocess.run([f"{DCMTK}/storescu", "-aec", "ARCHIVE", "127.0.0.1", str(port),
                          *map(str, files)], capture_output=True, text=True)  # fmt: skip
    if res.returncode:
        raise SystemExit(f"storescu to dcmqrscp failed: {res.stderr}")
    return proc, port


def _measured(argv: list[str]) -> tuple[float, int]:
    """Run ``argv`` under GNU time; its wall seconds and peak resident bytes. (Not
    ``wait4`` here: a child's ``ru_maxrss`` starts at this process's size when forked,
    which holds the big file; under ``time`` it starts at that small program's.)"""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        start = time.perf_counter()
        res = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss.name, *argv],
                             capture_output=True, text=True)  # fmt: skip
        wall = time.perf_counter() - start
        if res.returncode:
            raise SystemExit(f"{argv[0]} failed ({res.returncode}): {res.stdout[-2000:]}"
                             f"{res.stderr[-2000:]}")  # fmt: skip
        return wall, int(rss.read().split()[-1]) * 1024


def _client(name: str, port: int, study: str, out: Path) -> list[str]:
    out.mkdir(parents=True)
    if name == "pixels":
        return [sys.executable, "-m", "pixels.cli", "dimse", "get", f"ARCHIVE@127.0.0.1:{port}",
                "-k", f"StudyInstanceUID={study}", "-o", str(out)]  # fmt: skip
    return [f"{DCMTK}/getscu", *(["+B"] if name == "getscu+B" else []), "-S", "-aec", "ARCHIVE",
            "-od", str(out), "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
            "127.0.0.1", str(port)]  # fmt: skip


def _dataset_bytes(path: Path) -> bytes:
    with open(path, "rb") as fh:
        pydicom.filereader.read_preamble(fh, False)
        pydicom.filereader._read_file_meta_info(fh)
        return fh.read()


def _same_data_set(a: Path, b: Path) -> bool:
    """Whether two files hold the same data set (pydicom; trailing padding aside)."""
    x, y = pydicom.dcmread(a), pydicom.dcmread(b)
    for ds in (x, y):
        ds.pop(0xFFFCFFFC, None)
    return bool(x == y)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=int, default=200, help="size of the file fetched (MB)")
    ap.add_argument("--plus-b", action="store_true", help="getscu +B (to disk) as well")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-dimse-get-"))
    names = ["getscu", *(["getscu+B"] if args.plus_b else []), "pixels"]
    results: dict[str, dict[str, float]] = {}
    try:
        big = work / "big.dcm"
        size = _make(big, args.mb)
        small = Path(str(get_testdata_file("CT_small.dcm")))
        studies = {k: str(pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID)
                    for k, p in (("big", big), ("small", small))}  # fmt: skip
        archive, port = _archive(work, [big, small])
        try:
            for name in names:
                _, floor = _measured(_client(name, port, studies["small"], work / name / "s"))
                wall, peak = _measured(_client(name, port, studies["big"], work / name / "b"))
                (got,) = (work / name / "b").iterdir()
                results[name] = {"wall_s": wall, "extra": float(max(0, peak - floor)),
                                 "peak": float(peak), "floor": float(floor)}  # fmt: skip
                if not _same_data_set(got, big):
                    raise SystemExit(f"{name}: {got} does not hold the data set of {big}")
            (mine,) = (work / "pixels" / "b").iterdir()
            (theirs,) = (work / "getscu" / "b").iterdir()
            same = _dataset_bytes(mine) == _dataset_bytes(theirs)
        finally:
            archive.terminate()
            archive.wait(60)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"file {size / 1e6:.0f} MB; pixels' data set byte-identical to getscu's: {same}")
    for name in names:
        r = results[name]
        ratio, wall = r["extra"] / size, r["wall_s"] / results["getscu"]["wall_s"]
        print(f"{name:9s} extra peak memory {ratio:.3f} x the file ({r['extra'] / 1e6:.1f} MB: "
              f"peak {r['peak'] / 1e6:.0f} MB, {r['floor'] / 1e6:.0f} MB getting CT_small), "
              f"wall {r['wall_s']:.2f} s ({wall:.2f}x getscu)")  # fmt: skip
    if not same:
        raise SystemExit("pixels' data set differs from getscu's")


if __name__ == "__main__":
    main()
