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

``percore N``
    Per-core header speed (issue 13, target 5): CPU time per file of the
    dbx.pixels per-file method (``dcmread(stop_before_pixels=True)`` +
    ``to_json_dict`` + ``json.dumps``), of Pixels' per-file work (what a catalog
    worker runs: ``worker.run`` on chunks of 64 files, the rows as an Arrow
    batch) and, with ``--before REV``, of the same work at git revision REV
    (exported to a temporary folder); every variant a fresh process, rounds
    alternating, best round kept. On ``--sample`` files of the N-file corpus:
    whole series, evenly spaced (a worker gets files series by series), page
    cache warm.

``pipeline N``
    CPU per file of the whole ``pixels catalog -w 2`` (parent and workers, the
    Delta table written; the parent's own share apart) on ``--sample`` files of
    the corpus (whole series, hard-linked into a scratch folder beside ``ROOT``), alternating
    with ``--before REV``; checks that every variant wrote the same rows.

``noop N``
    The no-op re-run alone, A/B: ``pixels catalog ROOT/N -w 2 -q`` over a table
    that holds the corpus already (``--tables``/``noop-N``, cataloged first when
    missing and kept), rounds alternating between this code and ``--before REV``
    (exported, as ``pipeline``); wall, CPU seconds of the process tree and peak
    RSS of each run.

``all``
    What the lead re-runs on a quiet machine (< 10 min): ``corpus 1000000`` (a
    no-op when there), ``run 1000000`` (catalog + no-op re-run + table check),
    ``resume 100000``, ``percore 100000`` and ``pipeline 100000`` (10,000 files,
    2 rounds), one JSON with every figure. ``--before REV`` for the A/B steps.

Results go to ``--out`` (JSON). Everything runs under the caller's ``nice``.
"""

from __future__ import annotations

import argparse
import contextlib
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


def _rows_digest(table: Path) -> str:
    """SHA-1 of the table's rows (every column but ``cataloged_at``), ordered by path."""
    import duckdb
    from deltalake import DeltaTable

    con = duckdb.connect()
    rel = con.execute("SELECT * EXCLUDE (cataloged_at) FROM read_parquet(?) ORDER BY path",
                      [list(DeltaTable(str(table)).file_uris())])  # fmt: skip
    h = hashlib.sha1()
    while batch := rel.fetchmany(1000):
        h.update(repr(batch).encode())
    return h.hexdigest()


def _committed(table: Path, seen: dict[str, int] | None = None) -> int:
    """Rows committed so far, from the Delta log's add actions (no data read).

    ``seen``: rows of the commit files read before (by name), kept between calls so
    that a trace reads each commit once, not the whole log every time.
    """
    log = table / "_delta_log"
    seen = {} if seen is None else seen
    try:
        names = sorted(os.listdir(log))
    except FileNotFoundError:
        return 0
    for name in names:
        if not name.endswith(".json") or name in seen:
            continue
        n = 0
        with open(log / name) as fh:
            for line in fh:
                if '"add"' in line:
                    stats = json.loads(line)["add"].get("stats")
                    if stats:
                        n += json.loads(stats).get("numRecords", 0)
        seen[name] = n
    return sum(seen.values())


def _catalog_cmd(corpus: Path, table: Path, extra: list[str]) -> list[str]:
    return python_cmd("-m", "pixels.cli", "catalog", str(corpus), "-t", str(table), "-w", "2",
                      "-q", *extra)  # fmt: skip


class _Trace:
    """Every ``every`` seconds: rows committed so far and the summed RSS of this
    process's descendants (the catalog and its workers), to show memory stays flat."""

    def __init__(self, table: Path, every: float, log: str | None) -> None:
        import threading

        self.table, self.every, self.log = table, every, log
        self.points: list[dict[str, Any]] = []
        self._seen: dict[str, int] = {}  # commit file -> rows (each read once)
        self._stop = threading.Event()
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.wait(self.every):
            rss = 0
            for p in me.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    rss += p.memory_info().rss
            load = os.getloadavg()[0]
            point = {"s": round(time.perf_counter() - self._t0, 1),
                     "committed": _committed(self.table, self._seen),
                     "rss_mb": round(rss / 2**20),
                     "load1": round(load, 2)}  # fmt: skip
            self.points.append(point)
            if self.log:
                with open(self.log, "a") as fh:
                    fh.write(json.dumps(point) + "\n")

    def __enter__(self) -> _Trace:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _corpus_sample(corpus: Path, files: int = 2000, seed: int = 1) -> list[str]:
    """About ``files`` files of the corpus: 10 of one series in each of random studies."""
    rng = random.Random(seed)
    studies = sorted(d for d in os.listdir(corpus) if not d.startswith("."))
    out: list[str] = []
    for study in rng.sample(studies, min(len(studies), max(1, files // 10))):
        series = sorted(os.listdir(corpus / study))
        folder = corpus / study / rng.choice(series)
        names = sorted(os.listdir(folder))
        out += [str(folder / n) for n in rng.sample(names, min(10, len(names)))]
    return out


def cached_share(paths: list[str]) -> float | None:
    """Share of the pages of ``paths`` in the page cache (``mincore``; nothing is read)."""
    import ctypes
    import ctypes.util
    import mmap

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                              ctypes.c_int, ctypes.c_long]  # fmt: skip
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    except (OSError, AttributeError):
        return None
    resident = total = 0
    for path in paths:
        size = os.path.getsize(path)
        if not size:
            continue
        fd = os.open(path, os.O_RDONLY)
        try:
            addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
            if addr in (None, ctypes.c_void_p(-1).value):
                return None
            try:
                pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
                vec = ctypes.create_string_buffer(pages)
                if libc.mincore(addr, size, vec) != 0:
                    return None
                resident += sum(b & 1 for b in vec.raw)
                total += pages
            finally:
                libc.munmap(addr, size)
        finally:
            os.close(fd)
    return round(resident / total, 3) if total else None


def evict(corpus: Path) -> int:
    """Drop the corpus' file contents from the page cache (``POSIX_FADV_DONTNEED``, file by
    file: other files stay cached); a catalog run then reads them from the disk, as a
    first catalog of a big archive does. Returns the files evicted."""
    n = 0
    for folder, _, names in os.walk(corpus):
        for name in names:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
            n += 1
    return n


def run(
    files: int,
    table_root: Path,
    extra: list[str],
    keep: bool = False,
    trace: str | None = None,
    cold: bool = False,
) -> dict[str, Any]:
    corpus = ROOT / str(files)
    table = table_root / f"scale-{files}"
    shutil.rmtree(table, ignore_errors=True)
    out: dict[str, Any] = {"files": files, "load_before": [round(x, 2) for x in os.getloadavg()]}
    sample = _corpus_sample(corpus)
    if cold:
        t0 = time.perf_counter()
        out["evicted"] = evict(corpus)
        out["evict_s"] = round(time.perf_counter() - t0, 1)
    for name in ("catalog", "rerun"):
        # the share of the corpus' bytes in the page cache when the run starts
        out[f"{name}_cached_before"] = cached_share(sample)
        with _Trace(table, 15.0, trace) as tr:
            m = run_measured(_catalog_cmd(corpus, table, extra), interval=0.2,
                             pss_interval=5.0)  # fmt: skip
        if name == "catalog":
            out["trace"] = tr.points
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
            "harness_cpu_s": round(m.harness_cpu, 2),
            "parent_cpu_s": round(m.root_cpu, 1),
            "sched": m.sched,
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


_PERCORE_CHILD = r"""
import json, os, sys, time
from datetime import UTC, datetime
paths = json.load(open(sys.argv[2]))
variant, root = sys.argv[1], sys.argv[3]
if variant == "dbx":
    import pydicom

    def go():
        for p in paths:
            json.dumps(pydicom.dcmread(p, stop_before_pixels=True).to_json_dict())
else:
    from pixels.dicom.record import RecordOptions
    from pixels.engines import worker
    from pixels.sources.ref import FileRef

    worker.init()  # as a pool worker (pandas blocked, warnings set up per task)
    refs = []
    for p in paths:
        st = os.stat(p)
        rel = os.path.relpath(p, root)
        mtime = datetime.fromtimestamp(st.st_mtime, UTC)
        refs.append(FileRef(p, mtime, st.st_size, rel, p, "dcm", tuple(rel.split("/"))))
    opts = RecordOptions()

    def go():
        for i in range(0, len(refs), 64):
            worker.run(refs[i : i + 64], opts)
go()  # imports, caches, page cache
t = time.process_time()
go()
print(json.dumps({"cpu_ms_per_file": (time.process_time() - t) / len(paths) * 1e3}))
"""


def percore(files: int, sample: int, rounds: int, before: str | None) -> dict[str, Any]:
    """CPU ms per file: the dbx.pixels method, Pixels' per-file work, and Pixels at ``before``."""
    import tempfile

    corpus = ROOT / str(files)
    # whole series, evenly spaced over the corpus: files reach a worker series by series
    series: dict[str, list[str]] = {}
    for p in sorted(str(p) for p in corpus.rglob("*.dcm")):
        series.setdefault(os.path.dirname(p), []).append(p)
    folders = list(series.values())
    per = max(1, sum(len(f) for f in folders) // max(1, len(folders)))
    step = max(1, len(folders) * per // sample)
    chosen = [p for f in folders[::step] for p in f][:sample]
    tmp = Path(tempfile.mkdtemp(prefix="percore-"))
    (tmp / "paths.json").write_text(json.dumps(chosen))
    src = str(Path(__file__).resolve().parent.parent / "src")
    variants = {"dbx-method": src, "pixels": src}
    if before:
        export = tmp / "before"
        export.mkdir()
        archive = subprocess.run(["git", "archive", before, "src"], capture_output=True,
                                 check=True, cwd=Path(__file__).resolve().parent.parent)  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(export)], input=archive.stdout, check=True)
        variants[f"pixels@{before}"] = str(export / "src")
    best: dict[str, float] = {}
    per_round: dict[str, list[float]] = {k: [] for k in variants}
    try:
        for _ in range(rounds):
            for name, path in variants.items():
                env = {**os.environ, "PYTHONPATH": path}
                kind = "dbx" if name == "dbx-method" else "pixels"
                out = subprocess.run(
                    [sys.executable, "-c", _PERCORE_CHILD, kind, str(tmp / "paths.json"),
                     str(corpus)],
                    capture_output=True, text=True, env=env, check=True,
                )  # fmt: skip
                ms = json.loads(out.stdout.strip().splitlines()[-1])["cpu_ms_per_file"]
                per_round[name].append(round(ms, 4))
                best[name] = min(best.get(name, ms), ms)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result: dict[str, Any] = {
        "files": len(chosen),
        "rounds": per_round,
        "best_cpu_ms_per_file": {k: round(v, 4) for k, v in best.items()},
        "dbx/pixels": round(best["dbx-method"] / best["pixels"], 2),
    }
    if before:
        result[f"pixels@{before}/pixels"] = round(best[f"pixels@{before}"] / best["pixels"], 2)
        result[f"dbx/pixels@{before}"] = round(best["dbx-method"] / best[f"pixels@{before}"], 2)
    result["load1"] = round(os.getloadavg()[0], 2)
    print(result, file=sys.stderr)
    return result


def pipeline(
    files: int, sample: int, rounds: int, before: str | None, cold: bool = False
) -> dict[str, Any]:
    """CPU per file of the whole ``pixels catalog -w 2`` (parent, workers, Delta writes).

    ``cold``: the sample is dropped from the page cache before each run (:func:`evict`);
    ``blocked_s`` is then mostly the workers waiting for the disk (or for work).

    On ``sample`` files of the N-file corpus (whole series, hard links in a scratch
    folder beside ``ROOT``, never inside it: the corpus folders stay as written), into a fresh table each time, rounds alternating
    with the code at ``before``; the process tree's CPU seconds per file.
    """
    import tempfile

    corpus = ROOT / str(files)
    work = Path(tempfile.mkdtemp(prefix="pipeline-", dir=ROOT.parent))
    try:
        n = 0
        for study in sorted(os.listdir(corpus)):
            if n >= sample or study.startswith("."):
                continue
            for series in sorted(os.listdir(corpus / study)):
                (work / "in" / study / series).mkdir(parents=True, exist_ok=True)
                for name in sorted(os.listdir(corpus / study / series)):
                    os.link(corpus / study / series / name, work / "in" / study / series / name)
                    n += 1
        variants = {"pixels": str(Path(__file__).resolve().parent.parent / "src")}
        if before:
            export = work / "before"
            export.mkdir()
            archive = subprocess.run(["git", "archive", before, "src"], capture_output=True,
                                     check=True, cwd=Path(__file__).resolve().parent.parent)  # fmt: skip
            subprocess.run(["tar", "-x", "-C", str(export)], input=archive.stdout, check=True)
            variants[f"pixels@{before}"] = str(export / "src")
        got: dict[str, list[float]] = {k: [] for k in variants}
        parent: dict[str, list[float]] = {k: [] for k in variants}
        wall: dict[str, list[float]] = {k: [] for k in variants}
        blocked: dict[str, list[float]] = {k: [] for k in variants}
        digests: dict[str, set[str]] = {k: set() for k in variants}
        for r in range(rounds):
            for name, path in variants.items():
                table = work / f"t-{r}-{len(got[name])}-{name.replace('@', '-')}"
                if cold:
                    evict(work / "in")
                m = run_measured(_catalog_cmd(work / "in", table, []), interval=0.2,
                                 env={**os.environ, "PYTHONPATH": path},
                                 pss_interval=5.0)  # fmt: skip
                if m.returncode:
                    raise SystemExit(f"{name} failed: {m.stderr[-2000:]}")
                got[name].append(round(m.cpu_seconds / n * 1e3, 4))
                parent[name].append(round(m.root_cpu / n * 1e3, 4))
                wall[name].append(round(m.seconds, 1))
                # the workers' time asleep (disk, or no task), per file
                w = (m.sched or {}).get("grandchildren", {})
                blocked[name].append(round(w.get("blocked_s", 0.0) / n * 1e3, 4))
                digests[name].add(_rows_digest(table))
                shutil.rmtree(table, ignore_errors=True)
        out: dict[str, Any] = {"files": n, "cold": cold, "cpu_ms_per_file": got,
                               "parent_cpu_ms_per_file": parent, "wall_s": wall,
                               "workers_blocked_ms_per_file": blocked}  # fmt: skip
        # the same rows, whatever the code: every column but cataloged_at, row for row
        out["same_rows"] = len(set().union(*digests.values())) == 1
        if before:
            out[f"pixels@{before}/pixels"] = round(
                min(got[f"pixels@{before}"]) / min(got["pixels"]), 2
            )
        out["load1"] = round(os.getloadavg()[0], 2)
        print(out, file=sys.stderr)
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def noop(files: int, table_root: Path, rounds: int, before: str | None) -> dict[str, Any]:
    """The no-op re-run of an N-file catalog, rounds alternating with the code at ``before``."""
    import tempfile

    corpus = ROOT / str(files)
    table = table_root / f"noop-{files}"
    here = Path(__file__).resolve().parent.parent
    variants = {"pixels": str(here / "src")}
    with tempfile.TemporaryDirectory(prefix="noop-", dir=table_root) as work:
        if before:
            archive = subprocess.run(["git", "archive", before, "src"], capture_output=True,
                                     check=True, cwd=here)  # fmt: skip
            subprocess.run(["tar", "-x", "-C", work], input=archive.stdout, check=True)
            variants[f"pixels@{before}"] = str(Path(work) / "src")
        env = {**os.environ, "PYTHONPATH": variants["pixels"]}
        if not (table / "_delta_log").exists():
            m = run_measured(_catalog_cmd(corpus, table, []), interval=0.5, env=env)
            if m.returncode:
                raise SystemExit(f"catalog failed: {m.stderr[-2000:]}")
        got: dict[str, list[dict[str, float]]] = {k: [] for k in variants}
        for _ in range(rounds):
            for name, path in variants.items():
                log = sorted((table / "_delta_log").iterdir())
                m = run_measured(_catalog_cmd(corpus, table, []), interval=0.2,
                                 env={**os.environ, "PYTHONPATH": path},
                                 pss_interval=5.0)  # fmt: skip
                if m.returncode:
                    raise SystemExit(f"{name} failed: {m.stderr[-2000:]}")
                if sorted((table / "_delta_log").iterdir()) != log:
                    raise SystemExit(f"{name}: the re-run committed: not a no-op")
                point = {"seconds": round(m.seconds, 2), "cpu_s": round(m.cpu_seconds, 2),
                         "peak_mb": round(m.peak_mb), "load1": round(os.getloadavg()[0], 2)}  # fmt: skip
                got[name].append(point)
                print(name, point, file=sys.stderr)
    out: dict[str, Any] = {"files": files, "runs": got}
    if before:
        a, b = got[f"pixels@{before}"], got["pixels"]
        out["cpu_ratio"] = round(min(x["cpu_s"] for x in a) / min(x["cpu_s"] for x in b), 2)
        out["wall_ratio"] = round(min(x["seconds"] for x in a) / min(x["seconds"] for x in b), 2)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "step", choices=("corpus", "run", "resume", "percore", "pipeline", "noop", "all")
    )
    ap.add_argument("files", type=int, nargs="?", default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tables", default="/work/bigdata/tables", help="where tables go")
    ap.add_argument("--out", default=None, help="results JSON")
    ap.add_argument("--commit-rows", type=int, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the table of `run`")
    ap.add_argument("--trace", default=None, help="append progress points (JSON lines) here")
    ap.add_argument("--sample", type=int, default=1000, help="files of `percore` [1000]")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of `percore` [3]")
    ap.add_argument("--before", default=None, help="git revision `percore` compares with")
    ap.add_argument("--cold", action="store_true",
                    help="`run`, `pipeline`: drop the corpus from the page cache before each "
                         "catalog (as a first catalog of an archive on disk)")  # fmt: skip
    args = ap.parse_args(argv)
    extra = ["--commit-rows", str(args.commit_rows)] if args.commit_rows else []
    tables = Path(args.tables)
    tables.mkdir(parents=True, exist_ok=True)
    if args.step == "corpus":
        build(args.files, args.seed)
        result: dict[str, Any] = json.loads((ROOT / str(args.files) / MARKER).read_text())
    elif args.step == "run":
        result = run(args.files, tables, extra, args.keep, args.trace, args.cold)
    elif args.step == "resume":
        result = resume(args.files, tables, extra)
    elif args.step == "percore":
        result = percore(args.files, args.sample, args.rounds, args.before)
    elif args.step == "pipeline":
        result = pipeline(args.files, args.sample, args.rounds, args.before, args.cold)
    elif args.step == "noop":
        result = noop(args.files, tables, args.rounds, args.before)
    else:
        t0 = time.perf_counter()
        build(1_000_000, args.seed)
        build(100_000, args.seed)
        result = {"load_before": [round(x, 2) for x in os.getloadavg()]}
        result["run_1m"] = run(1_000_000, tables, extra, False, args.trace)
        result["resume_100k"] = resume(100_000, tables, extra)
        result["percore"] = percore(100_000, args.sample, args.rounds, args.before)
        result["pipeline"] = pipeline(100_000, 10_000, 2, args.before)
        result["total_s"] = round(time.perf_counter() - t0, 1)
    result["machine"] = machine_info()
    result["digest"] = hashlib.sha1(Path(__file__).read_bytes()).hexdigest()[:12]
    if args.out:
        dump_json(args.out, result)


if __name__ == "__main__":
    main()
