"""Cataloging at scale: 100k to 1M real-header files with `pixels catalog --workers 2`.

Three steps, each its own sub-command (the corpus outlives the runs):

``corpus N``
    Writes N files under ``ROOT/N`` (default ROOT: ``/work/bigdata/files``, out of
    git): copies of real DICOM files (pydicom's test files and pydicom-data) with
    fresh UIDs and small pixel data. Per source file, once: the uncompressed
    images are cropped to at most 32x32 pixels and one frame (``Rows``,
    ``Columns``, ``NumberOfFrames`` and the pixel data changed, every other
    element kept), the compressed ones are kept whole when under 20 KB. Per
    series, once: new Study/Series/FrameOfReference UIDs (``generate_uid``) and
    PatientID, written by pydicom with a placeholder SOP Instance UID. Per file:
    the placeholder (in the file meta and the data set) is replaced by the
    file's own UID of the same length, so a file costs two ``bytes.replace`` and
    one write. ``OUT/{study}/{series}/{sop}.dcm``, ~100 files a series, ~3 series
    a study, as ``make_corpus.py``.

``run N``
    ``pixels catalog ROOT/N --workers 2 -q`` into a fresh table, then the same
    command again (the no-op re-run), each timed from spawn to exit with the peak
    RSS (sum over the process tree) and PSS; then the table is checked: rows ==
    distinct paths == N, no error.

``resume N``
    The same catalog, killed (SIGKILL to the whole process group) once half the
    files are committed (polling the Delta log's ``numRecords``), then run again
    to the end; checks that every file has exactly one row.

Results go to ``--out`` (JSON). Everything runs under the caller's ``nice``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from io import BytesIO
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import dump_json, machine_info, python_cmd, run_measured

ROOT = Path("/work/bigdata/files")
MARKER = ".corpus.json"
FORMAT = 1

#: (group, file, weight): single-frame CT/MR dominate; a few other syntaxes and modalities.
SCALE_MIX: list[tuple[str, str, int]] = [
    ("CT", "CT_small.dcm", 30),
    ("CT", "693_UNCI.dcm", 3),
    ("CT", "693_UNCR.dcm", 2),
    ("MR", "MR_small.dcm", 26),
    ("MR", "MR_small_implicit.dcm", 4),
    ("MR", "MR_small_RLE.dcm", 2),
    ("MR", "MR_small_jp2klossless.dcm", 2),
    ("MR", "MR_small_jpeg_ls_lossless.dcm", 2),
    ("MR", "MR_small_padded.dcm", 1),
    ("MR", "emri_small.dcm", 2),
    ("MR", "examples_overlay.dcm", 1),
    ("OTHER", "liver_1frame.dcm", 1),
    ("OTHER", "rtdose_1frame.dcm", 1),
    ("OTHER", "SC_rgb.dcm", 1),
]
MAX_SIDE = 32
MAX_COMPRESSED = 20_000
UID_ROOT = "1.2.826.0.1.3680043.8.498."
PLACEHOLDER_INDEX = 8 * 10**12  # its UID has as many digits as every file's


def _sop_uid(seed: int, index: int) -> str:
    """A fixed-length SOP Instance UID (same length for every index of a seed)."""
    return f"{UID_ROOT}{seed + 1}.{10**12 + index}"


def _small(name: str) -> Any:
    """The source file as a pydicom Dataset with small pixel data."""
    import numpy as np
    import pydicom
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file(name))
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        if len(ds.PixelData) > MAX_COMPRESSED:
            raise SystemExit(f"{name}: compressed pixel data over {MAX_COMPRESSED} bytes")
        return ds
    arr = ds.pixel_array
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1:
        arr = arr[0]
    rows, cols = min(ds.Rows, MAX_SIDE), min(ds.Columns, MAX_SIDE)
    if int(getattr(ds, "SamplesPerPixel", 1)) > 1 and ds.get("PlanarConfiguration", 0) == 1:
        arr = np.moveaxis(arr, -1, 0)[:, :rows, :cols]
    else:
        arr = arr[:rows, :cols]
    data = np.ascontiguousarray(arr)
    if not ds.file_meta.TransferSyntaxUID.is_little_endian:
        data = data.byteswap()
    ds.Rows, ds.Columns = rows, cols
    if "NumberOfFrames" in ds:
        ds.NumberOfFrames = 1
    raw = data.tobytes()
    ds.PixelData = raw + (b"\0" if len(raw) % 2 else b"")
    return ds


_CACHE: dict[str, Any] = {}


def _write_series(args: tuple[str, int, int, int, str, int, int]) -> int:
    from make_corpus import _uid

    out, seed, study, series, source, first, count = args
    ds = _CACHE.get(source)
    if ds is None:
        ds = _CACHE[source] = _small(source)
    study_uid, series_uid = _uid(seed, "study", study), _uid(seed, "series", series)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.PatientID = f"SCALE{study:08d}"
    if "FrameOfReferenceUID" in ds:
        ds.FrameOfReferenceUID = _uid(seed, "for", series)
    placeholder = _sop_uid(seed, PLACEHOLDER_INDEX)
    ds.SOPInstanceUID = placeholder
    ds.file_meta.MediaStorageSOPInstanceUID = placeholder
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=False)
    template = buf.getvalue()
    ph = placeholder.encode()
    if template.count(ph) != 2 or len(_sop_uid(seed, first)) != len(placeholder):
        raise SystemExit(f"{source}: the placeholder UID is not exactly twice in the file")
    folder = os.path.join(out, study_uid, series_uid)
    os.makedirs(folder, exist_ok=True)
    for i in range(count):
        sop = _sop_uid(seed, first + i)
        with open(os.path.join(folder, sop + ".dcm"), "wb") as fh:
            fh.write(template.replace(ph, sop.encode()))
    return count


def _plan(files: int, seed: int) -> list[tuple[int, int, str, int, int]]:
    rng = random.Random(seed)
    groups: dict[str, list[tuple[str, int]]] = {}
    for group, name, weight in SCALE_MIX:
        groups.setdefault(group, []).append((name, weight))
    names = list(groups)
    weights = [sum(w for _, w in groups[g]) for g in names]
    tasks = []
    done = study = series = 0
    while done < files:
        g = rng.choices(names, weights)[0]
        for _ in range(max(1, 3 + rng.choice((-1, 0, 0, 0, 1)))):
            if done >= files:
                break
            size = min(100 + rng.randint(-20, 20), files - done)
            src = rng.choices([n for n, _ in groups[g]], [w for _, w in groups[g]])[0]
            tasks.append((study, series, src, done, size))
            done += size
            series += 1
        study += 1
    return tasks


def build(files: int, seed: int = 0, root: Path = ROOT, processes: int = 2) -> Path:
    """Write the corpus (a no-op when ``root/files`` holds it already)."""
    import multiprocessing

    out = root / str(files)
    marker = out / MARKER
    want = {"files": files, "seed": seed, "format": FORMAT}
    if marker.exists():
        have = json.loads(marker.read_text())
        if {k: have.get(k) for k in want} == want:
            return out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    tasks = [(str(out), seed, *t) for t in _plan(files, seed)]
    t0 = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        done = sum(pool.imap_unordered(_write_series, tasks, chunksize=4))
    seconds = time.perf_counter() - t0
    du = subprocess.run(["du", "-sb", str(out)], capture_output=True, text=True).stdout.split()
    mix: dict[str, int] = {}
    for t in tasks:
        mix[t[4]] = mix.get(t[4], 0) + t[6]
    info = {**want, "written": done, "series": len(tasks), "seconds": round(seconds, 1)}
    info["bytes"] = int(du[0]) if du else None
    info["mix"] = dict(sorted(mix.items(), key=lambda kv: -kv[1]))
    marker.write_text(json.dumps(info, indent=2) + "\n")
    print(f"corpus {out}: {done:,} files in {seconds:.1f} s", file=sys.stderr)
    return out


def _table_check(table: Path) -> dict[str, Any]:
    import duckdb
    from deltalake import DeltaTable

    uris = DeltaTable(str(table)).file_uris()
    con = duckdb.connect()
    q = (
        "SELECT count(*), count(DISTINCT path), count(error) FROM read_parquet(?)"
        if uris
        else "SELECT 0, 0, 0"
    )
    rows, paths, errors = con.execute(q, [list(uris)] if uris else []).fetchone()  # type: ignore[misc]
    return {"rows": rows, "distinct_paths": paths, "errors": errors, "data_files": len(uris)}


def _committed(table: Path) -> int:
    """Rows committed so far, from the Delta log's add actions (no data read)."""
    log = table / "_delta_log"
    n = 0
    try:
        names = sorted(os.listdir(log))
    except FileNotFoundError:
        return 0
    for name in names:
        if not name.endswith(".json"):
            continue
        with open(log / name) as fh:
            for line in fh:
                if '"add"' in line:
                    stats = json.loads(line)["add"].get("stats")
                    if stats:
                        n += json.loads(stats).get("numRecords", 0)
    return n


def _catalog_cmd(corpus: Path, table: Path, extra: list[str]) -> list[str]:
    return python_cmd("-m", "pixels.cli", "catalog", str(corpus), "-t", str(table), "-w", "2",
                      "-q", *extra)  # fmt: skip


def run(files: int, table_root: Path, extra: list[str], keep: bool = False) -> dict[str, Any]:
    corpus = ROOT / str(files)
    table = table_root / f"scale-{files}"
    shutil.rmtree(table, ignore_errors=True)
    out: dict[str, Any] = {"files": files}
    for name in ("catalog", "rerun"):
        m = run_measured(_catalog_cmd(corpus, table, extra), interval=0.2)
        if m.returncode:
            raise SystemExit(f"{name} failed: {m.stderr[-2000:]}")
        out[name] = {
            "seconds": round(m.seconds, 2),
            "files_per_s": round(files / m.seconds),
            "peak_mb": round(m.peak_mb),
            "peak_pss_mb": round(m.peak_pss_mb),
            "cpu_s": round(m.cpu_seconds, 1),
            "cpu_ms_per_file": round(m.cpu_seconds / files * 1e3, 3),
            "other_load": round(m.other_cores, 2),
        }
        print(name, out[name], file=sys.stderr)
    out["table"] = _table_check(table)
    print("table", out["table"], file=sys.stderr)
    if not keep:
        shutil.rmtree(table, ignore_errors=True)
    return out


def resume(files: int, table_root: Path, extra: list[str], at: float = 0.5) -> dict[str, Any]:
    corpus = ROOT / str(files)
    table = table_root / f"resume-{files}"
    shutil.rmtree(table, ignore_errors=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(_catalog_cmd(corpus, table, extra), start_new_session=True)
    killed_at = 0
    while proc.poll() is None:
        killed_at = _committed(table)
        if killed_at >= at * files:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.2)
    proc.wait()
    first = time.perf_counter() - t0
    m = run_measured(_catalog_cmd(corpus, table, extra), interval=0.2)
    out = {
        "files": files,
        "committed_when_killed": killed_at,
        "first_run_s": round(first, 1),
        "resume_s": round(m.seconds, 1),
        "resume_peak_mb": round(m.peak_mb),
        "table": _table_check(table),
    }
    print(out, file=sys.stderr)
    shutil.rmtree(table, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("step", choices=("corpus", "run", "resume"))
    ap.add_argument("files", type=int)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tables", default="/work/bigdata/tables", help="where tables go")
    ap.add_argument("--out", default=None, help="results JSON")
    ap.add_argument("--commit-rows", type=int, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the table of `run`")
    args = ap.parse_args(argv)
    extra = ["--commit-rows", str(args.commit_rows)] if args.commit_rows else []
    tables = Path(args.tables)
    tables.mkdir(parents=True, exist_ok=True)
    if args.step == "corpus":
        build(args.files, args.seed)
        result: dict[str, Any] = json.loads((ROOT / str(args.files) / MARKER).read_text())
    elif args.step == "run":
        result = run(args.files, tables, extra, args.keep)
    else:
        result = resume(args.files, tables, extra)
    result["machine"] = machine_info()
    result["digest"] = hashlib.sha1(Path(__file__).read_bytes()).hexdigest()[:12]
    if args.out:
        dump_json(args.out, result)


if __name__ == "__main__":
    main()
