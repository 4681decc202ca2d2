"""pixels.ml against the usual ways, on the same real CT series, in the same run.

1. series -> volume: ``SeriesDataset`` (catalog query once, frames through the frame
   index) vs MONAI ``LoadImage(reader="PydicomReader")`` on the series folder.
   Seconds per volume (best of rounds, after a warm-up, imports excluded) and the peak
   of the memory allocated while loading it (tracemalloc: numpy buffers are traced),
   as a multiple of the volume's size (float32).
2. frames: ``FrameDataset`` in a ``DataLoader`` with 2 workers vs a plain Dataset
   calling ``pydicom.dcmread(path).pixel_array`` per item, same loader settings;
   frames/s.
3. ``pixels segment --model ct-tissue``: seconds for one 512x512xN CT series.

The series is a real 512x512 CT slice (pydicom-data ``693_UNCI.dcm``, and its JPEG
2000 lossless twin ``693_J2KR.dcm``; the abdomen ``explicit_VR-UN.dcm`` for the
segmentation) copied N times along its slice normal with fresh UIDs (tests/ml/series.py).
Each variant runs in its own subprocess. Results: ``bench/results/ml.json``.

    python bench/bench_ml.py --slices 100 --rounds 3
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
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests"), str(ROOT / "tests" / "ml"), str(HERE)]

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

    tracemalloc.start()  # numpy reports its buffers to tracemalloc
    first = load()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    shape = tuple(first.shape)  # type: ignore[attr-defined]
    del first
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        out = load()
        times.append(time.perf_counter() - t0)
        del out
    nbytes = int(np.prod(shape)) * 4
    return {"seconds": min(times), "peak_mb": peak, "volume_mb": nbytes / 2**20, "shape": shape}  # type: ignore[dict-item]


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


def variant_frames(kind: str, folder: str, table: str, rounds: int) -> dict[str, float]:
    import torch

    if kind == "pixels":
        from pixels import Catalog
        from pixels.ml import FrameDataset

        ds: object = FrameDataset(Catalog(table))
    else:
        ds = _PydicomFrames(sorted(str(p) for p in Path(folder).glob("*.dcm")))
    n = len(ds)  # type: ignore[arg-type]
    loader = torch.utils.data.DataLoader(
        ds, num_workers=2, batch_size=None, persistent_workers=True
    )
    for _ in loader:  # warm-up: workers started, page cache warm
        pass
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in loader:
            pass
        best = min(best, time.perf_counter() - t0)
    return {"seconds": best, "frames": n, "frames_per_s": n / best}


def _child(args: list[str]) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False
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


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--slices", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(HERE / "results" / "ml.json"))
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--kind", help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    ap.add_argument("--table", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.variant:
        fn = variant_series if a.variant == "series" else variant_frames
        print(json.dumps(fn(a.kind, a.folder, a.table, a.rounds)))
        return
    work = WORK_DIR / "ml"
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {"machine": machine_info(), "slices": a.slices}
    for source in ("693_UNCI.dcm", "693_J2KR.dcm"):
        folder, table = _build(work, source, a.slices)
        common = ["--folder", str(folder), "--table", str(table), "--rounds", str(a.rounds)]
        for part in ("series", "frames"):
            px = _child(["--variant", part, "--kind", "pixels", *common])
            base = _child(["--variant", part, "--kind", "baseline", *common])
            ratio = base["seconds"] / px["seconds"]  # type: ignore[operator]
            results[f"{part}:{source}"] = {"pixels": px, "baseline": base, "speedup": ratio}
            extra = ""
            if part == "series":
                extra = (
                    f" · peak/volume pixels {px['peak_mb'] / px['volume_mb']:.2f}x, "  # type: ignore[operator]
                    f"MONAI {base['peak_mb'] / base['volume_mb']:.2f}x"  # type: ignore[operator]
                )
            print(f"{part:6} {source:14} pixels {px['seconds']:.3f}s  baseline "
                  f"{base['seconds']:.3f}s  speedup {ratio:.2f}x{extra}", flush=True)  # fmt: skip
    folder, table = _build(work, "explicit_VR-UN.dcm", a.slices)
    seg_dir = work / "seg-out"
    shutil.rmtree(seg_dir, ignore_errors=True)
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pixels.cli", "segment", "-t", str(table), "-w", "0", "-q",
         "--force", "--output", str(seg_dir)],
        check=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    results["segment:ct-tissue"] = {"seconds_per_series": seconds, "shape": [512, 512, a.slices]}
    print(f"segment ct-tissue 512x512x{a.slices}: {seconds:.1f}s (process start included)")
    dump_json(a.out, results)


if __name__ == "__main__":
    main()
