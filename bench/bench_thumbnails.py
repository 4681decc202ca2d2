"""Thumbnails and frame requests: Pixels against full-decode baselines, same run, same files.

Part 1, thumbnails (256 px on the longest side, JPEG), per transfer syntax, on real
files (pydicom's test files, ``pydicom-data``, and a few built from them: HTJ2K,
100-frame JPEG 2000 and native CT), in this one process, best of N (N adaptive
to about ``--target`` seconds per cell):

* ``pixels``       :func:`pixels.dicom.thumb.thumbnail` (``fmt="jpeg"``): header,
  frame index, one frame read, decoded at reduced resolution where the codec can.
* ``full``         ``pydicom.dcmread`` + ``ds.pixel_array`` (pydicom's decoders,
  every frame of a multi-frame file) + the *same* display step
  (:func:`pixels.dicom.display.to_display`, so only decoding and the size of
  what is resized differ) + the same Pillow LANCZOS resize and JPEG encode.
* ``matplotlib``   the method of rendering a thumbnail through matplotlib:
  ``dcmread`` + ``pixel_array``, a pyplot figure (640 px on its longest side,
  the image's aspect) with ``imshow(frame, cmap="gray")``, ``fig.canvas.draw()``,
  the RGBA buffer resized (LANCZOS) and encoded to JPEG; written for this
  benchmark from that description.

Peak memory: each variant thumbnails a large file in a fresh subprocess; the
growth of the peak RSS over the RSS before the call (imports and one warm-up
thumbnail of a small file done first) is reported.

Part 2, frames: a 2-frame request (``read_header`` + ``index_from_header`` +
``read_frame`` + ``decode_frame`` of two middle frames) against
``dcmread`` + ``ds.pixel_array`` of the whole file, on multi-frame files.

Usage::

    python bench/bench_thumbnails.py [--target 1.0] [--out bench/results/thumbnails.json]
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import math
import os
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np

from _common import WORK_DIR, cpu_busy_seconds, dump_json, machine_info, wait_for_quiet

MAX_SIZE = 256
GEN_DIR = WORK_DIR / "thumbs"
HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
EXPLICIT_LE = "1.2.840.10008.1.2.1"

# (label, file name, where): "t" pydicom's test files, "d" pydicom-data, "g" built here
THUMB_FILES: list[tuple[str, str, str]] = [
    ("Explicit VR LE", "CT_small.dcm", "t"),
    ("Explicit VR LE", "693_UNCR.dcm", "d"),
    ("Explicit VR LE", "MR2_UNCR.dcm", "d"),
    ("Explicit VR LE", "RG1_UNCR.dcm", "d"),
    ("Explicit VR BE", "MR_small_bigendian.dcm", "t"),
    ("Explicit VR BE", "OBXXXX1A_expb.dcm", "d"),
    ("JPEG baseline", "SC_rgb_dcmtk_+eb+cr.dcm", "t"),
    ("JPEG baseline", "SC_rgb_jpeg.dcm", "t"),
    ("JPEG baseline", "color3d_jpeg_baseline.dcm", "d"),
    ("JPEG lossless", "JPEG-LL.dcm", "d"),
    ("JPEG lossless", "JPGLosslessP14SV1_1s_1f_8b.dcm", "d"),
    ("JPEG-LS lossless", "MR_small_jpeg_ls_lossless.dcm", "t"),
    ("JPEG-LS lossless", "emri_small_jpeg_ls_lossless.dcm", "d"),
    ("JPEG 2000 lossless", "693_J2KR.dcm", "d"),
    ("JPEG 2000 lossless", "MR2_J2KR.dcm", "d"),
    ("JPEG 2000 lossless", "US1_J2KR.dcm", "d"),
    ("JPEG 2000 lossless", "RG1_J2KR.dcm", "d"),
    ("JPEG 2000", "693_J2KI.dcm", "t"),
    ("JPEG 2000", "MR2_J2KI.dcm", "d"),
    ("JPEG 2000", "RG1_J2KI.dcm", "d"),
    ("HTJ2K lossless", "CT_small_htj2k.dcm", "g"),
    ("HTJ2K lossless", "MR2_htj2k.dcm", "g"),
    ("HTJ2K lossless", "RG1_htj2k.dcm", "g"),
    ("RLE lossless", "MR_small_RLE.dcm", "t"),
    ("RLE lossless", "emri_small_RLE.dcm", "d"),
    ("RLE lossless", "OBXXXX1A_rle.dcm", "d"),
    ("JPEG 2000 lossless", "CT_100f_j2k.dcm", "g"),
    ("Explicit VR LE", "CT_100f_native.dcm", "g"),
]
MEMORY_FILES = [
    "color3d_jpeg_baseline.dcm",
    "CT_100f_j2k.dcm",
    "CT_100f_native.dcm",
    "emri_small.dcm",
    "RG1_J2KR.dcm",
]
FRAME_FILES = ["color3d_jpeg_baseline.dcm", "CT_100f_j2k.dcm", "CT_100f_native.dcm"]


# --------------------------------------------------------------------------- files


def _dirs() -> dict[str, str]:
    from pydicom.data import get_testdata_file

    t = get_testdata_file("CT_small.dcm", download=False)
    d = get_testdata_file("emri_small.dcm", download=False)
    if not t or not d:
        raise SystemExit("needs pydicom's test files and pydicom-data (pip install pydicom-data)")
    return {"t": os.path.dirname(t), "d": os.path.dirname(d), "g": str(GEN_DIR)}


def _write_encapsulated(src: str, dst: Path, frames: list[bytes], ts: str, n: int) -> None:
    import pydicom
    from pydicom.encaps import encapsulate

    ds = pydicom.dcmread(src)
    ds.PixelData = encapsulate(frames, has_bot=True)
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = pydicom.uid.UID(ts)
    if n > 1:
        ds.NumberOfFrames = n
    ds.save_as(dst, enforce_file_format=True)


def build_generated(dirs: dict[str, str]) -> None:
    """HTJ2K copies of real CT/MR/CR files; 100-frame JPEG 2000 and native CT (real frame x 100)."""
    import imagecodecs
    import pydicom

    GEN_DIR.mkdir(parents=True, exist_ok=True)
    for name, src in (
        ("CT_small_htj2k.dcm", os.path.join(dirs["t"], "CT_small.dcm")),
        ("MR2_htj2k.dcm", os.path.join(dirs["d"], "MR2_UNCR.dcm")),
        ("RG1_htj2k.dcm", os.path.join(dirs["d"], "RG1_UNCR.dcm")),
    ):
        dst = GEN_DIR / name
        if not dst.exists():
            arr = pydicom.dcmread(src).pixel_array
            blob = imagecodecs.htj2k_encode(arr, reversible=True)
            _write_encapsulated(src, dst, [bytes(blob)], HTJ2K_LOSSLESS, 1)
    src = os.path.join(dirs["d"], "693_UNCR.dcm")
    j2k, native = GEN_DIR / "CT_100f_j2k.dcm", GEN_DIR / "CT_100f_native.dcm"
    if not j2k.exists():
        arr = pydicom.dcmread(src).pixel_array
        blob = bytes(imagecodecs.jpeg2k_encode(arr, codecformat="J2K", reversible=True))
        _write_encapsulated(src, j2k, [blob] * 100, J2K_LOSSLESS, 100)
    if not native.exists():
        ds = pydicom.dcmread(src)
        ds.PixelData = ds.PixelData * 100
        ds.NumberOfFrames = 100
        ds.save_as(native, enforce_file_format=True)


# --------------------------------------------------------------------------- variants


def _encode(arr: np.ndarray) -> bytes:
    """The resize + encode step shared by the baselines (the same Pillow call as Pixels)."""
    from PIL import Image

    img = Image.fromarray(arr)
    w, h = img.size
    scale = MAX_SIZE / max(w, h)
    if scale < 1:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        img = img.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


_DISPLAY_SEQS = ("52009229", "52009230")


def _display_meta(ds: Any) -> dict[str, Any]:
    """The DICOM JSON of the elements the display step reads (group 0028 + functional groups)."""
    from pydicom.dataset import Dataset

    sub = Dataset()
    for el in ds:
        if el.tag.group == 0x0028 or f"{el.tag:08X}" in _DISPLAY_SEQS:
            sub.add(el)
    return sub.to_json_dict(bulk_data_threshold=1 << 30)


def _middle(ds: Any, arr: np.ndarray) -> tuple[np.ndarray, int]:
    n = int(ds.get("NumberOfFrames", 1) or 1)
    if n > 1:
        return arr[n // 2], n // 2
    return arr, 0


def thumb_full(path: str) -> bytes:
    import pydicom

    from pixels.dicom.display import to_display

    ds = pydicom.dcmread(path)
    frame, k = _middle(ds, ds.pixel_array)
    # pixel_array converts YBR (JPEG, J2K RCT/ICT) to RGB by default
    pi = "RGB" if int(ds.get("SamplesPerPixel", 1)) == 3 else None
    shown = to_display(frame, _display_meta(ds), frame=k, photometric=pi)
    return _encode(shown)


def thumb_matplotlib(path: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pydicom

    ds = pydicom.dcmread(path)
    frame, _ = _middle(ds, ds.pixel_array)
    if frame.ndim == 3 and frame.dtype != np.uint8:  # imshow wants 0..1 floats for deep RGB
        frame = frame / float(frame.max() or 1)
    h, w = frame.shape[:2]
    fig = plt.figure(figsize=(6.4 * w / max(w, h), 6.4 * h / max(w, h)), dpi=100)
    try:
        ax = fig.add_axes((0, 0, 1, 1))
        ax.imshow(frame, cmap="gray")
        ax.axis("off")
        fig.canvas.draw()
        rgba = np.asarray(fig.canvas.buffer_rgba())
    finally:
        plt.close(fig)
    return _encode(np.ascontiguousarray(rgba[..., :3]))


def thumb_pixels(path: str) -> bytes:
    from pixels.dicom.thumb import thumbnail

    t = thumbnail(path, max_size=MAX_SIZE, fmt="jpeg")
    assert t is not None
    return t.data


def thumb_pixels_meta(path: str) -> Any:
    from pixels.dicom.thumb import thumbnail

    return thumbnail(path, max_size=MAX_SIZE, fmt="jpeg")


VARIANTS: dict[str, Callable[[str], bytes]] = {
    "pixels": thumb_pixels,
    "full": thumb_full,
    "matplotlib": thumb_matplotlib,
}


def frames_pixels(path: str) -> int:
    from pixels.dicom.decode import PixelInfo, decode_frame
    from pixels.dicom.frames import index_from_header, read_frame
    from pixels.dicom.meta import read_header

    with open(path, "rb") as fp:
        h = read_header(fp, path=path)
        js = json.loads(h.meta) if isinstance(h.meta, str) else h.meta
        index = index_from_header(fp, js, path=path)
        assert index is not None
        info = PixelInfo.from_json(js, h.transfer_syntax or "")
        n = len(index.offsets)
        total = 0
        for f in (n // 2, n // 2 + 1):
            total += decode_frame(read_frame(fp, index, f), info, path=path).size
    return total


def frames_pixels_all(path: str) -> int:
    import pydicom

    from pixels.dicom.decode import read_frames

    n = int(pydicom.dcmread(path, stop_before_pixels=True).get("NumberOfFrames", 1))
    return sum(a.size for a in read_frames(path, range(n)))


def frames_pydicom(path: str) -> int:
    import pydicom

    return int(pydicom.dcmread(path).pixel_array.size)


# --------------------------------------------------------------------------- timing


def timed(fn: Callable[[str], object], path: str, target: float, max_n: int) -> dict[str, Any]:
    """Best and median of N calls (N so that the cell takes about ``target`` s), other load."""
    gc.collect()
    t0 = time.perf_counter()
    fn(path)  # warm-up (imports, codec set-up, page cache) and the first estimate
    first = time.perf_counter() - t0
    n = max(3, min(max_n, math.ceil(target / max(first, 1e-6))))
    times = []
    b0, p0, w0 = cpu_busy_seconds(), time.process_time(), time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        fn(path)
        times.append(time.perf_counter() - t0)
    wall = time.perf_counter() - w0
    other = max(0.0, (cpu_busy_seconds() - b0) - (time.process_time() - p0)) / wall
    return {
        "best_ms": min(times) * 1000,
        "median_ms": statistics.median(times) * 1000,
        "n": n,
        "other_load": round(other, 2),
    }


# --------------------------------------------------------------------------- memory


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def child_memory(variant: str, path: str, warm: str) -> None:
    """In a fresh process: warm up on a small file, then the peak RSS growth of one call."""
    warnings.simplefilter("ignore")
    fn = VARIANTS[variant]
    fn(warm)
    gc.collect()
    before = _rss_kb("VmRSS")
    try:  # reset the peak (VmHWM) to the current RSS
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    fn(path)
    peak = _rss_kb("VmHWM")
    print(json.dumps({"before_mb": before / 1024, "peak_mb": peak / 1024, "reset": reset}))


def memory(paths: dict[str, str], warm: str) -> list[dict[str, Any]]:
    rows = []
    for name in MEMORY_FILES:
        row: dict[str, Any] = {"file": name, "size_kb": os.path.getsize(paths[name]) // 1024}
        for variant in VARIANTS:
            out = subprocess.run(
                [sys.executable, __file__, "--child-memory", variant, paths[name], warm],
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            row[variant] = round(r["peak_mb"] - r["before_mb"], 1)
            row[f"{variant}_before_mb"] = round(r["before_mb"], 1)
            row["peak_reset"] = r["reset"]
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- main


def _describe(path: str) -> dict[str, Any]:
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return {
        "rows": int(ds.Rows),
        "columns": int(ds.Columns),
        "frames": int(ds.get("NumberOfFrames", 1) or 1),
        "samples": int(ds.get("SamplesPerPixel", 1)),
        "bits": int(ds.BitsAllocated),
        "transfer_syntax": str(ds.file_meta.TransferSyntaxUID),
    }


def _fmt_ms(x: float) -> str:
    return f"{x:,.2f}" if x < 10 else f"{x:,.1f}" if x < 100 else f"{x:,.0f}"


def run(a: argparse.Namespace) -> dict[str, Any]:
    warnings.simplefilter("ignore")
    dirs = _dirs()
    build_generated(dirs)
    paths = {name: os.path.join(dirs[where], name) for _, name, where in THUMB_FILES}
    paths["emri_small.dcm"] = os.path.join(dirs["d"], "emri_small.dcm")
    files = [(lbl, n) for lbl, n, _ in THUMB_FILES if not a.only or n in a.only]

    busy = wait_for_quiet(a.quiet_wait)
    print(f"machine busy cores before start: {busy:.2f}", file=sys.stderr)
    thumbs = []
    for label, name in files:
        p = paths[name]
        row: dict[str, Any] = {"syntax": label, "file": name, "size_kb": os.path.getsize(p) // 1024}
        row.update(_describe(p))
        for variant, fn in VARIANTS.items():
            try:
                row[variant] = timed(fn, p, a.target, a.max_n)
            except Exception as exc:  # a failure is a result too: recorded, not fatal
                row[variant] = {"error": f"{type(exc).__name__}: {exc}"}
        if "error" in row["pixels"]:
            row["pixels_vs_full"] = row["pixels_vs_matplotlib"] = None
        else:
            t = thumb_pixels_meta(p)
            row["thumb_size"] = [t.width, t.height]
            for v in ("full", "matplotlib"):
                ms = row[v].get("best_ms")
                row[f"pixels_vs_{v}"] = ms / row["pixels"]["best_ms"] if ms else None
        thumbs.append(row)
        print(
            name, {v: row[v].get("best_ms", row[v].get("error")) for v in VARIANTS}, file=sys.stderr
        )

    frames = []
    for name in FRAME_FILES:
        if a.only and name not in a.only:
            continue
        p = paths[name]
        row = {"file": name, "size_kb": os.path.getsize(p) // 1024, **_describe(p)}
        row["pixels_2"] = timed(frames_pixels, p, a.target, a.max_n)
        row["pydicom_all"] = timed(frames_pydicom, p, a.target, a.max_n)
        row["pixels_all"] = timed(frames_pixels_all, p, a.target, a.max_n)
        row["ratio"] = row["pixels_2"]["best_ms"] / row["pydicom_all"]["best_ms"]
        frames.append(row)
        print(f"{name}: 2 frames / whole file = {row['ratio']:.2%}", file=sys.stderr)

    mem = [] if a.skip_memory else memory(paths, os.path.join(dirs["t"], "CT_small.dcm"))
    result = {
        "kind": "thumbnails",
        "machine": machine_info(),
        "max_size": MAX_SIZE,
        "target_seconds_per_cell": a.target,
        "thumbnails": thumbs,
        "frames": frames,
        "memory": mem,
    }
    result["markdown"] = markdown(result)
    return result


def markdown(r: dict[str, Any]) -> str:
    out = [
        "| syntax | file | size KB | rows x cols x frames | pixels ms | full-decode ms"
        " | matplotlib ms | full / pixels | matplotlib / pixels | other load |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for t in r["thumbnails"]:
        spp = f"x{t['samples']}" if t["samples"] > 1 else ""
        load = max(t[v].get("other_load", 0.0) for v in VARIANTS)
        ms = {v: _fmt_ms(t[v]["best_ms"]) if "best_ms" in t[v] else "error" for v in VARIANTS}
        ratio = {
            v: f"**{t[f'pixels_vs_{v}']:.1f}x**" if t[f"pixels_vs_{v}"] else "-"
            for v in ("full", "matplotlib")
        }
        out.append(
            f"| {t['syntax']} | {t['file']} | {t['size_kb']:,} "
            f"| {t['rows']}x{t['columns']}{spp} x {t['frames']} "
            f"| {ms['pixels']} | {ms['full']} | {ms['matplotlib']} "
            f"| {ratio['full']} | {ratio['matplotlib']} | {load:.2f} |"
        )
    if r["frames"]:
        out += [
            "",
            "| file | size KB | rows x cols x frames | pixels 2 frames ms | pydicom all frames ms"
            " | 2 frames / whole | pixels all frames ms |",
            "|---|---:|---|---:|---:|---:|---:|",
        ]
        for f in r["frames"]:
            out.append(
                f"| {f['file']} | {f['size_kb']:,} | {f['rows']}x{f['columns']} x {f['frames']} "
                f"| {_fmt_ms(f['pixels_2']['best_ms'])} | {_fmt_ms(f['pydicom_all']['best_ms'])} "
                f"| **{f['ratio']:.2%}** | {_fmt_ms(f['pixels_all']['best_ms'])} |"
            )
    if r["memory"]:
        out += [
            "",
            "| file | size KB | pixels peak RSS growth MB | full-decode MB | matplotlib MB |",
            "|---|---:|---:|---:|---:|",
        ]
        for m in r["memory"]:
            out.append(
                f"| {m['file']} | {m['size_kb']:,} | {m['pixels']:.1f} | {m['full']:.1f} "
                f"| {m['matplotlib']:.1f} |"
            )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child-memory"]:
        child_memory(*argv[1:4])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", type=float, default=1.0, help="seconds per timed cell [1.0]")
    ap.add_argument("--max-n", type=int, default=200, help="most calls per cell [200]")
    ap.add_argument("--only", nargs="*", help="file names to run (default: all)")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument(
        "--quiet-wait", type=float, default=30.0, help="wait for an idle machine [30 s]"
    )
    ap.add_argument("--out", default=None, help="results JSON [bench/.work/thumbnails-*.json]")
    a = ap.parse_args(argv)
    result = run(a)
    print(result["markdown"])
    out = a.out or str(WORK_DIR / f"thumbnails-{time.strftime('%Y%m%d-%H%M%S')}.json")
    dump_json(out, result)
    print(f"\nresults: {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
