"""pixels.ml against the usual ways, on the same real CT series, in the same run.

1. series -> volume: ``SeriesDataset`` (catalog query once, frames through the frame
   index, files decoded in a thread pool) vs MONAI ``LoadImage(reader="PydicomReader")``
   on the series folder. Seconds per volume (best of rounds, after a warm-up, imports
   excluded) and the peak of the memory allocated while loading one (tracemalloc: numpy
   buffers are traced), as a multiple of the volume's size (float32): on a warm load (what
   every further volume costs) and on the first one (which also counts the modules the
   first load imports).
2. frames: ``FrameDataset`` in a ``DataLoader`` with 2 workers vs a plain Dataset calling
   ``pydicom.dcmread(path).pixel_array`` per item, same loader settings, one item at a
   time (``batch_size=None``) and in batches of 32; frames/s. A third Dataset that only
   allocates the item's tensor (no file, no decode) gives the loader's own cost per item.
3. ``pixels segment --model ct-tissue``: seconds for one 512x512xN CT series.

With ``--before REV`` the Pixels variants also run on the source of git revision REV
(extracted with ``git archive`` under ``bench/.work``), so each change is a ratio
against the previous code, measured in the same run.

The series is a real 512x512 CT slice (pydicom-data ``693_UNCI.dcm``, and its JPEG
2000 lossless twin ``693_J2KR.dcm``; the abdomen ``explicit_VR-UN.dcm``, itself JPEG
2000, for the segmentation) copied N times along its slice normal with fresh UIDs
(tests/ml/series.py). Each variant runs in its own subprocess. Results:
``bench/results/ml.json``.

    nice -n 10 python bench/bench_ml.py --slices 100 --rounds 3 --before dc29543
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SRC = Path(os.environ.get("PIXELS_BENCH_SRC") or ROOT / "src")  # --before: the old source
sys.path[:0] = [str(SRC), str(ROOT / "tests"), str(ROOT / "tests" / "ml"), str(HERE)]

from _common import WORK_DIR, dump_json, machine_info  # noqa: E402


def variant_series(kind: str, folder: str, table: str, rounds: int) -> dict[str, float]:
    """Time ``rounds`` loads of the series (after one warm-up); peak memory of the first load."""
    import numpy as np

    if kind == "pixels":
        from pixels import Catalog
        from pixels.ml import SeriesDataset

        ds = SeriesDataset(Catalog(table))

        def load() -> object:
            return ds[0]["image"]
    else:
        import warnings

        from monai.transforms import LoadImage

        warnings.simplefilter("ignore")
        reader = LoadImage(reader="PydicomReader", image_only=True)

        def load() -> object:
            return reader(folder)

    import tracemalloc

    def traced() -> tuple[float, tuple[int, ...]]:
        tracemalloc.start()  # numpy reports its buffers to tracemalloc
        out = load()
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        return peak, tuple(out.shape)  # type: ignore[attr-defined]

    first_peak, shape = traced()  # the first load also imports what it needs
    peak, _ = traced()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        out = load()
        times.append(time.perf_counter() - t0)
        del out
    nbytes = int(np.prod(shape)) * 4
    return {
        "seconds": min(times),
        "peak_mb": peak,
        "first_peak_mb": first_peak,
        "volume_mb": nbytes / 2**20,
        "shape": shape,  # type: ignore[dict-item]
    }


class _Floor:
    """The loader's own cost: an item of the same shape, nothing read or decoded."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> object:
        import torch

        return {"image": torch.empty((1, 512, 512), dtype=torch.float32)}


class _PydicomFrames:
    """The baseline dataset: one ``pydicom.dcmread(path).pixel_array`` per item."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> object:
        import pydicom
        import torch

        ds = pydicom.dcmread(self.paths[i])
        return {"image": torch.from_numpy(ds.pixel_array.astype("float32"))[None]}


def variant_frames(
    kinds: list[str], folder: str, table: str, rounds: int, batch: int = 0, epoch: int = 0
) -> dict[str, dict[str, float]]:
    """Frames/s of each kind's dataset in a 2-worker DataLoader, the kinds timed in turn
    round after round in one process (the load of the machine drifts alike for all).

    ``epoch``: items per pass (the series' frames in order, repeated), so the loader's
    fixed cost per pass (waking the workers, the last batch's wait) does not dominate."""
    import torch

    paths = sorted(str(p) for p in Path(folder).glob("*.dcm"))
    order = list(range(len(paths))) * max(1, epoch // len(paths))
    loaders = {}
    for kind in kinds:
        if kind == "pixels":
            from pixels import Catalog
            from pixels.ml import FrameDataset

            ds: object = FrameDataset(Catalog(table))
        elif kind == "floor":
            ds = _Floor(len(paths))
        else:
            ds = _PydicomFrames(paths)
        loaders[kind] = torch.utils.data.DataLoader(
            ds, num_workers=2, batch_size=batch or None, persistent_workers=True, sampler=order
        )
        for _ in loaders[kind]:  # warm-up: workers started, page cache warm
            pass
    best = dict.fromkeys(kinds, float("inf"))
    for _ in range(rounds):
        for kind, loader in loaders.items():
            t0 = time.perf_counter()
            for _ in loader:
                pass
            best[kind] = min(best[kind], time.perf_counter() - t0)
    n = len(order)
    return {k: {"seconds": t, "frames": n, "frames_per_s": n / t} for k, t in best.items()}


def variant_model(table: str, rounds: int) -> dict[str, float]:
    """Seconds of the ct-tissue model alone on the series' volume (read once, best of rounds)."""
    from pixels import Catalog
    from pixels.ml.models import get_model
    from pixels.ml.volume import read_volume, select_series

    (series,) = select_series(Catalog(table)).series
    vol = read_volume(series)
    model = get_model("ct-tissue")
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        model(vol.array, vol.plan.spacing)
        best = min(best, time.perf_counter() - t0)
    return {"seconds": best}


def _child(args: list[str], src: Path | None = None) -> dict[str, object]:
    """Run a variant in a fresh interpreter; ``src``: the Pixels source it imports."""
    env = dict(os.environ)
    if src is not None:
        env["PIXELS_BENCH_SRC"] = str(src)
    out = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False, env=env
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def _build(work: Path, source: str, slices: int) -> tuple[Path, Path]:
    from series import ct_series

    from pixels import Catalog

    folder = work / f"{Path(source).stem}-{slices}"
    table = work / f"{Path(source).stem}-{slices}-catalog"
    if not folder.exists():
        # ramp 0: the real slice's own pixel data (JPEG 2000 stays JPEG 2000)
        ct_series(folder, slices, source=source, step=1.25, ramp=0)
    if not table.exists():
        Catalog(str(table)).catalog(str(folder), workers=0)
    return folder, table


def _before_src(rev: str) -> Path:
    """The ``src`` folder of git revision ``rev``, extracted once under bench/.work."""
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", rev],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    dest = WORK_DIR / f"src-{commit}"
    if not (dest / "src" / "pixels").exists():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", commit, "src"], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest / "src"


def _segment_seconds(table: Path, seg_dir: Path, src: Path) -> tuple[float, float]:
    """``(wall, cpu)`` seconds of one ``pixels segment`` process (CPU: user + system of
    the process and its children, which a loaded machine inflates far less than wall)."""
    import resource

    shutil.rmtree(seg_dir, ignore_errors=True)
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pixels.cli", "segment", "-t", str(table), "-w", "0", "-q",
         "--force", "--output", str(seg_dir)],
        check=True, env={**os.environ, "PYTHONPATH": str(src)},
    )  # fmt: skip
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--slices", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--before", help="also run the Pixels variants on this git revision")
    ap.add_argument(
        "--parts",
        default="series,frames,segment",
        help="comma-separated: series, frames (both per source), model, segment",
    )
    ap.add_argument("--out", default=str(HERE / "results" / "ml.json"))
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--kind", help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    ap.add_argument("--table", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument(
        "--epoch", type=int, default=400, help="frames per DataLoader pass (the series repeated)"
    )
    a = ap.parse_args()
    if a.variant == "series":
        print(json.dumps(variant_series(a.kind, a.folder, a.table, a.rounds)))
        return
    if a.variant == "model":
        print(json.dumps(variant_model(a.table, a.rounds)))
        return
    if a.variant == "frames":
        kinds = a.kind.split(",")
        print(json.dumps(variant_frames(kinds, a.folder, a.table, a.rounds, a.batch, a.epoch)))
        return
    work = WORK_DIR / "ml"
    work.mkdir(parents=True, exist_ok=True)
    before = _before_src(a.before) if a.before else None
    results: dict[str, object] = {
        "machine": machine_info(),
        "slices": a.slices,
        "before": a.before,
    }

    def line(name: str, px: dict, other: dict, label: str) -> float:
        ratio = other["seconds"] / px["seconds"]
        print(f"{name:34} pixels {px['seconds']:7.3f}s  {label} {other['seconds']:7.3f}s  "
              f"{label}/pixels {ratio:5.2f}x", flush=True)  # fmt: skip
        return float(ratio)

    for source in ("693_UNCI.dcm", "693_J2KR.dcm"):
        folder, table = _build(work, source, a.slices)
        common = ["--folder", str(folder), "--table", str(table), "--rounds", str(a.rounds)]
        common += ["--epoch", str(a.epoch)]
        parts = a.parts.split(",")
        runs: list[tuple[str, list[str]]] = [("series", [])] if "series" in parts else []
        if "frames" in parts:
            runs += [("frames", ["--batch", "0"]), ("frames", ["--batch", "32"])]
        for part, extra in runs:
            args = ["--variant", part, *extra, *common]
            name = f"{part}{'/b' + extra[1] if extra and extra[1] != '0' else ''}:{source}"
            entry: dict[str, object] = {}
            if part == "frames":
                got = _child([*args, "--kind", "pixels,baseline,floor"])
                px, base, floor = got["pixels"], got["baseline"], got["floor"]
                entry.update(pixels=px, baseline=base, floor=floor)
                entry["speedup"] = line(name, px, base, "baseline")  # type: ignore[arg-type]
                print(f"{'':34} loader floor {floor['seconds']:.3f}s "  # type: ignore[index]
                      f"(best possible speedup {base['seconds'] / floor['seconds']:.2f}x)")  # type: ignore[index]  # fmt: skip
            else:
                px = _child([*args, "--kind", "pixels"])
                base = _child([*args, "--kind", "baseline"])
                entry.update(pixels=px, baseline=base)
                entry["speedup"] = line(name, px, base, "baseline")
                print(f"{'':34} peak/volume warm: pixels "
                      f"{px['peak_mb'] / px['volume_mb']:.2f}x, MONAI "  # type: ignore[operator]
                      f"{base['peak_mb'] / base['volume_mb']:.2f}x; first load: pixels "  # type: ignore[operator]
                      f"{px['first_peak_mb'] / px['volume_mb']:.2f}x, MONAI "  # type: ignore[operator]
                      f"{base['first_peak_mb'] / base['volume_mb']:.2f}x")  # type: ignore[operator]  # fmt: skip
            if before is not None:
                old = _child([*args, "--kind", "pixels"], src=before)
                old = old.get("pixels", old)  # type: ignore[assignment]
                entry["before"] = old
                entry["before_over_after"] = line(name, px, old, "before")  # type: ignore[arg-type]
            results[name] = entry
    folder, table = _build(work, "explicit_VR-UN.dcm", a.slices)
    if "model" in a.parts.split(","):
        args = ["--variant", "model", "--table", str(table), "--rounds", str(a.rounds)]
        px = _child(args)
        entry_m: dict[str, object] = {"pixels": px, "shape": [512, 512, a.slices]}
        print(f"ct-tissue model alone 512x512x{a.slices}: {px['seconds']:.2f}s")
        if before is not None:
            old = _child(args, src=before)
            entry_m["before"] = old
            entry_m["before_over_after"] = line("model:ct-tissue", px, old, "before")
        results["model:ct-tissue"] = entry_m
    if "segment" not in a.parts.split(","):
        dump_json(a.out, results)
        return
    # after and before alternately, best of rounds (wall and CPU each)
    best: dict[str, list[float]] = {}
    for _ in range(a.rounds if before is not None else 1):
        for name, src in (("after", SRC), ("before", before)):
            if src is None:
                continue
            wall, cpu = _segment_seconds(table, work / f"seg-out-{name}", src)
            prev = best.get(name, [float("inf"), float("inf")])
            best[name] = [min(prev[0], wall), min(prev[1], cpu)]
    seconds, cpu = best["after"]
    entry = {"seconds_per_series": seconds, "cpu_seconds": cpu, "shape": [512, 512, a.slices]}
    print(f"segment ct-tissue 512x512x{a.slices}: {seconds:.1f}s wall, {cpu:.1f}s CPU "
          "(process start included)")  # fmt: skip
    if before is not None:
        old_s, old_cpu = best["before"]
        entry.update(before_seconds=old_s, before_cpu_seconds=old_cpu)
        entry["before_over_after"] = old_s / seconds
        entry["before_over_after_cpu"] = old_cpu / cpu
        print(f"{'':34} before {old_s:.1f}s wall, {old_cpu:.1f}s CPU: before/after "
              f"{old_s / seconds:.2f}x wall, {old_cpu / cpu:.2f}x CPU")  # fmt: skip
    results["segment:ct-tissue"] = entry
    dump_json(a.out, results)


if __name__ == "__main__":
    main()
