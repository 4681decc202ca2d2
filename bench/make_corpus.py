"""Build a corpus of N real DICOM files with fresh UIDs, for the catalog benchmarks.

The source files are the readable single-image files bundled with pydicom and
pydicom-data (≤ 600 KB each), weighted towards typical single-frame CT and MR
headers. Each series copies one source file ~100 times; a study has ~3 series of
the same modality group. Every copy gets new Study/Series/SOP Instance UIDs
(and MediaStorageSOPInstanceUID, FrameOfReferenceUID, InstanceNumber,
PatientID) and is written with pydicom as ``OUT/{study}/{series}/{sop}.dcm``.

UIDs are derived from the seed (``generate_uid(entropy_srcs=...)``), so the same
``--files``/``--seed`` gives the same corpus. A marker file ``OUT/.corpus.json``
makes a second run with the same arguments a no-op.

Usage::

    python bench/make_corpus.py bench/.work/corpus-20000-s0 --files 20000 [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

MARKER = ".corpus.json"
BUILDING = ".corpus-building"
FORMAT_VERSION = 1
MAX_SOURCE_BYTES = 600_000

# (group, file name, series weight). Series are all about the same size, so the
# weight is also the share of files. CT and MR single-frame headers dominate, as
# in a typical PACS export; a few other modalities and compressed transfer
# syntaxes keep the parser honest.
MIX: list[tuple[str, str, int]] = [
    ("CT", "CT_small.dcm", 30),
    ("CT", "693_J2KI.dcm", 4),
    ("CT", "693_J2KR.dcm", 4),
    ("CT", "693_UNCI.dcm", 2),
    ("CT", "693_UNCR.dcm", 1),
    ("CT", "J2K_pixelrep_mismatch.dcm", 2),
    ("CT", "explicit_VR-UN.dcm", 1),
    ("MR", "MR_small.dcm", 26),
    ("MR", "MR_small_implicit.dcm", 4),
    ("MR", "MR_small_expb.dcm", 1),
    ("MR", "MR_small_RLE.dcm", 2),
    ("MR", "MR_small_jp2klossless.dcm", 2),
    ("MR", "MR_small_jpeg_ls_lossless.dcm", 2),
    ("MR", "MR_small_padded.dcm", 1),
    ("MR", "MR2_J2KI.dcm", 3),
    ("MR", "MR2_J2KR.dcm", 1),
    ("MR", "MR-SIEMENS-DICOM-WithOverlays.dcm", 1),
    ("MR", "examples_overlay.dcm", 1),
    ("MR", "emri_small.dcm", 2),
    ("MR", "emri_small_RLE.dcm", 1),
    ("MR", "emri_small_jpeg_ls_lossless.dcm", 1),
    ("OTHER", "US1_J2KI.dcm", 1),
    ("OTHER", "JPEG-LL.dcm", 1),
    ("OTHER", "RG3_J2KI.dcm", 1),
    ("OTHER", "SC_rgb.dcm", 1),
    ("OTHER", "liver_1frame.dcm", 1),
    ("OTHER", "rtdose_1frame.dcm", 1),
]


def source_folders() -> list[Path]:
    """pydicom's test files, and pydicom-data's when installed."""
    from pydicom.data import get_testdata_file

    folders = []
    for probe in ("CT_small.dcm", "emri_small.dcm"):
        p = get_testdata_file(probe, download=False)
        if p:
            folders.append(Path(str(p)).parent)
    return folders


def _usable(path: Path) -> str | None:
    """Why ``path`` cannot be a corpus source, or None when it can."""
    import pydicom

    if path.stat().st_size > MAX_SOURCE_BYTES:
        return f"larger than {MAX_SOURCE_BYTES:,} bytes"
    try:
        ds = pydicom.dcmread(path)
        for kw in ("PixelData", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
            if kw not in ds:
                return f"no {kw}"
        buf = BytesIO()
        ds.save_as(buf, enforce_file_format=False)
        back = pydicom.dcmread(BytesIO(buf.getvalue()))
        if back.SOPInstanceUID != ds.SOPInstanceUID or back.PixelData != ds.PixelData:
            return "does not round-trip through pydicom"
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    return None


def resolve_sources() -> dict[str, Path]:
    """File name -> path for every MIX entry; raises when one is missing or unusable."""
    found: dict[str, Path] = {}
    for folder in source_folders():
        for entry in folder.iterdir():
            found.setdefault(entry.name, entry)
    out: dict[str, Path] = {}
    problems = []
    for _, name, _ in MIX:
        path = found.get(name)
        if path is None:
            problems.append(f"{name}: not found (is pydicom-data installed?)")
            continue
        why = _usable(path)
        if why:
            problems.append(f"{name}: {why}")
            continue
        out[name] = path
    if problems:
        raise SystemExit("unusable corpus sources:\n  " + "\n  ".join(problems))
    return out


@dataclass(frozen=True)
class SeriesTask:
    """One series to write: ``count`` copies of ``source``."""

    study: int
    series: int
    source: str
    first: int  # index of the first instance in the whole corpus
    count: int


def plan(
    files: int, seed: int, series_size: int = 100, series_per_study: int = 3
) -> list[SeriesTask]:
    """~``series_size`` files a series, ~``series_per_study`` series a study, ``files`` in all."""
    rng = random.Random(seed)
    groups: dict[str, list[tuple[str, int]]] = {}
    for group, name, weight in MIX:
        groups.setdefault(group, []).append((name, weight))
    group_names = list(groups)
    group_weights = [sum(w for _, w in groups[g]) for g in group_names]
    tasks: list[SeriesTask] = []
    done = 0
    study = 0
    series = 0
    while done < files:
        group = rng.choices(group_names, group_weights)[0]
        names = [n for n, _ in groups[group]]
        weights = [w for _, w in groups[group]]
        n_series = max(1, series_per_study + rng.choice((-1, 0, 0, 0, 1)))
        for _ in range(n_series):
            if done >= files:
                break
            size = max(1, series_size + rng.randint(-series_size // 5, series_size // 5))
            size = min(size, files - done)
            tasks.append(SeriesTask(study, series, rng.choices(names, weights)[0], done, size))
            done += size
            series += 1
        study += 1
    return tasks


_SOURCES: dict[str, Path] = {}
_CACHE: dict[str, object] = {}


def _init(sources: dict[str, Path]) -> None:
    global _SOURCES
    _SOURCES = sources
    _CACHE.clear()


def _uid(seed: int, kind: str, index: int) -> str:
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=[f"pixels-bench|{seed}|{kind}|{index}"]))


def _write_series(args: tuple[str, int, SeriesTask]) -> int:
    import pydicom

    out, seed, task = args
    ds = _CACHE.get(task.source)
    if ds is None:
        ds = pydicom.dcmread(_SOURCES[task.source])  # read once per process
        _CACHE[task.source] = ds
    assert isinstance(ds, pydicom.Dataset)
    study_uid = _uid(seed, "study", task.study)
    series_uid = _uid(seed, "series", task.series)
    folder = os.path.join(out, study_uid, series_uid)
    os.makedirs(folder, exist_ok=True)
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.PatientID = f"BENCH{task.study:07d}"
    if "FrameOfReferenceUID" in ds:
        ds.FrameOfReferenceUID = _uid(seed, "for", task.series)
    for i in range(task.count):
        sop = _uid(seed, "sop", task.first + i)
        ds.SOPInstanceUID = sop
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.InstanceNumber = i + 1
        buf = BytesIO()
        ds.save_as(buf, enforce_file_format=False)
        with open(os.path.join(folder, sop + ".dcm"), "wb") as fh:
            fh.write(buf.getbuffer())
    return task.count


def _count_files(out: Path) -> int:
    n = 0
    for _, _, names in os.walk(out):
        n += sum(1 for name in names if name.endswith(".dcm"))
    return n


def build(
    out: str | os.PathLike[str], files: int, seed: int = 0, processes: int = 2, quiet: bool = False
) -> Path:
    """Build the corpus (or do nothing when ``out`` already holds it); returns ``out``."""
    root = Path(out)
    marker = root / MARKER
    want = {"files": files, "seed": seed, "version": FORMAT_VERSION}
    if marker.exists():
        try:
            have = json.loads(marker.read_text())
        except ValueError:
            have = {}
        if {k: have.get(k) for k in want} == want and _count_files(root) == files:
            if not quiet:
                print(
                    f"corpus {root}: {files:,} files (seed {seed}) already there", file=sys.stderr
                )
            return root
    if root.exists() and any(root.iterdir()):
        if not (marker.exists() or (root / BUILDING).exists()):
            raise SystemExit(f"{root} is not empty and is not a corpus built by this script")
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / BUILDING).write_text(json.dumps(want))

    sources = resolve_sources()
    tasks = plan(files, seed)
    t0 = time.perf_counter()
    done = 0
    args = [(str(root), seed, t) for t in tasks]
    if processes <= 1:
        _init(sources)
        results = map(_write_series, args)
        for n in results:
            done += n
    else:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(processes, initializer=_init, initargs=(sources,)) as pool:
            for n in pool.imap_unordered(_write_series, args):
                done += n
                if not quiet and sys.stderr.isatty():
                    print(f"\r{done:,}/{files:,}", end="", file=sys.stderr)
    seconds = time.perf_counter() - t0
    size = sum(st.st_size for st in _walk_files(root))
    mix: dict[str, int] = {}
    for t in tasks:
        mix[t.source] = mix.get(t.source, 0) + t.count
    info = {
        **want,
        "studies": len({t.study for t in tasks}),
        "series": len(tasks),
        "bytes": size,
        "build_seconds": round(seconds, 1),
        "mix": dict(sorted(mix.items(), key=lambda kv: -kv[1])),
    }
    marker.write_text(json.dumps(info, indent=2) + "\n")
    (root / BUILDING).unlink()
    if not quiet:
        print(
            f"\rcorpus {root}: {files:,} files, {info['studies']:,} studies, "
            f"{len(tasks):,} series, {size / 2**20:,.0f} MiB in {seconds:.1f} s",
            file=sys.stderr,
        )
    return root


def _walk_files(root: Path):  # type: ignore[no-untyped-def]
    for dirpath, _, names in os.walk(root):
        for name in names:
            if name.endswith(".dcm"):
                yield os.stat(os.path.join(dirpath, name))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="corpus folder (created)")
    ap.add_argument("--files", type=int, required=True, help="number of files")
    ap.add_argument("--seed", type=int, default=0, help="seed of the plan and of the UIDs [0]")
    ap.add_argument("--processes", type=int, default=2, help="writer processes [2]")
    ap.add_argument("--list-sources", action="store_true", help="print the source mix and exit")
    a = ap.parse_args(argv)
    if a.list_sources:
        sources = resolve_sources()
        total = sum(w for _, _, w in MIX)
        avg = sum(w * sources[n].stat().st_size for _, n, w in MIX) / total
        for group, name, w in MIX:
            print(
                f"{group:6s} {name:40s} {100 * w / total:5.1f}%  "
                f"{sources[name].stat().st_size:>8,} B"
            )
        print(f"mean source size {avg / 1024:.1f} KiB")
        return
    build(a.out, a.files, a.seed, a.processes)


if __name__ == "__main__":
    main()
