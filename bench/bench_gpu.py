"""GPU: decode + transfer into GPU memory, nvImageCodec vs CPU decode, and whether the
loader keeps an H100 fed for a UNet forward pass.

Runs in two steps, because the GPU machine has no deltalake/duckdb and cannot reach
the network (see /work/.library/device/README.md):

1. ``prepare`` (here, CPU): real frames in five transfer syntaxes, each copied N times
   under ``.gpu/data/<syntax>/``, cataloged by ``pixels catalog``; a ``FrameDataset``
   per syntax is built from the catalog and pickled (its rows and plans only; the
   catalog is not needed to read frames). The copies are then removed: only one file per
   syntax travels, and ``run`` makes the copies again there.

   - ``ct-j2k``: pydicom-data ``explicit_VR-UN.dcm``, a real 512x512 abdomen CT slice in
     JPEG 2000 lossless;
   - ``ct-raw``: the same pixels, explicit VR little endian;
   - ``ct-htj2k``: the same pixels in HTJ2K lossless (``imagecodecs.htj2k_encode``,
     transfer syntax 1.2.840.10008.1.2.4.201);
   - ``ct-jpegll``: the same pixels in JPEG lossless SV1 (dcmtk ``dcmcjpeg``);
   - ``us-jpeg``: ``color3d_jpeg_baseline.dcm``, 120 frames of 480x640 YBR_FULL_422 JPEG
     baseline ultrasound.

2. ``run`` (GPU machine, ``python3`` with torch): for each syntax

   - ``cpu_1thread``: frames/s of Pixels' CPU decode (``RowPixels.decode``) on one thread;
   - ``gpu_batch``: frames/s of ``nvidia.nvimgcodec`` decoding batches of 64 frames
     straight into GPU memory (a torch tensor, synchronized), and whether its values
     equal the CPU decode (bit-exact for lossless; max abs difference for JPEG baseline);
   - ``loader_cpu_wN``: frames/s of ``FrameDataset`` in a ``DataLoader`` (N worker
     processes, batches of 32, pinned memory) moved to the GPU: CPU decode + transfer;
   - ``loader_gpu_wN``: workers only read the encoded frames (one ranged read each); the
     main process decodes each batch with nvImageCodec and applies the modality LUT on
     the GPU.

   and for a 2D MONAI UNet (1 -> 3 channels, 32..512 features, 2 residual units, bf16
   autocast, batches of 32 at 512x512), images/s of the forward pass alone (inputs
   already on the GPU), then fed by each loader: the ratio fed / alone is how busy the
   loader keeps the GPU.

Results: ``--out`` (JSON) and stdout. Recorded in bench/README.md.

    python bench/bench_gpu.py prepare --dir .gpu --copies 256
    python3 bench/bench_gpu.py run --dir .gpu --out $OUT/gpu.json      # on the GPU machine
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import pickle
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT / "src")]

SYNTAXES = ("ct-raw", "ct-j2k", "ct-htj2k", "ct-jpegll", "us-jpeg")
CT = ("ct-raw", "ct-j2k", "ct-htj2k", "ct-jpegll")
#: Where the frames live: the same absolute path here and on the GPU machine (a link there).
HOME = Path("/work/main")


# --------------------------------------------------------------------------- prepare


def _sources(src: Path) -> None:
    """One real file per syntax in ``src``."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import UID

    src.mkdir(parents=True, exist_ok=True)
    j2k = get_testdata_file("explicit_VR-UN.dcm", download=False)  # a real abdomen CT
    shutil.copy(j2k, src / "ct-j2k.dcm")
    shutil.copy(get_testdata_file("color3d_jpeg_baseline.dcm", download=False), src / "us-jpeg.dcm")
    ds = pydicom.dcmread(j2k)
    arr = ds.pixel_array
    ds.PixelData = arr.tobytes()
    ds["PixelData"].VR = "OW"
    ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.1")
    raw = str(src / "ct-raw.dcm")
    ds.save_as(raw, enforce_file_format=True)
    _htj2k(raw, src / "ct-htj2k.dcm")
    subprocess.run(["dcmcjpeg", "+e1", raw, str(src / "ct-jpegll.dcm")], check=True)


#: Files checked once each for FrameDecoder("cuda") == FrameDataset (the syntaxes of
#: tests/ml/test_gpudecode.py): name -> pydicom test file, or (file, how to re-encode).
CHECK = {
    "ct-rescale-raw": ("CT_small.dcm", None),
    "ct-rescale-htj2k": ("CT_small.dcm", "htj2k"),
    "ct-rescale-jpegll": ("CT_small.dcm", "jpegll"),
    "mr-rle": ("MR_small_RLE.dcm", None),
    "mr-j2k-10-frames": ("emri_small_jpeg_2k_lossless.dcm", None),
    "nm-j2k-lossy": ("JPEG2000.dcm", None),
    "sc-rgb-jpeg": ("SC_rgb_jpeg_dcmtk.dcm", None),
    "mr-j2k": ("MR_small_jp2klossless.dcm", None),
}


def _htj2k(src: str, dest: Path) -> None:
    import imagecodecs
    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.uid import UID

    ds = pydicom.dcmread(src)
    arr = ds.pixel_array
    enc = imagecodecs.htj2k_encode(arr, level=0)  # level 0: reversible (lossless)
    if not (imagecodecs.htj2k_decode(enc) == arr).all():
        raise SystemExit("HTJ2K encode is not lossless")
    ds.PixelData = encapsulate([enc])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.4.201")
    ds.save_as(dest, enforce_file_format=True)


def _check_files(check: Path) -> None:
    from pydicom.data import get_testdata_file

    check.mkdir(parents=True, exist_ok=True)
    for name, (file, how) in CHECK.items():
        src = get_testdata_file(file, download=False)
        dest = check / f"{name}.dcm"
        if how == "htj2k":
            _htj2k(src, dest)
        elif how == "jpegll":
            subprocess.run(["dcmcjpeg", "+e1", src, str(dest)], check=True)
        else:
            shutil.copy(src, dest)


def prepare(folder: Path, copies: int) -> None:
    import torch  # noqa: F401  (pixels.ml needs it)

    from pixels import Catalog
    from pixels.ml import FrameDataset

    src, data = folder / "src", folder / "data"
    shutil.rmtree(folder, ignore_errors=True)
    _sources(src)
    _check_files(src / "check")
    _copies(folder, copies)
    table = Path("/tmp/bench_gpu_catalog")
    shutil.rmtree(table, ignore_errors=True)
    subprocess.run(
        [sys.executable, "-m", "pixels.cli", "catalog", str(data), "--table", str(table)],
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    cat = Catalog(str(table))
    sets = {}
    for name in SYNTAXES:
        ds = FrameDataset(cat, where=f"path LIKE '%/data/{name}/%'")
        expect = copies * (120 if name == "us-jpeg" else 1)
        if len(ds) != expect:
            raise SystemExit(f"{name}: {len(ds)} frames, expected {expect}")
        sets[name] = ds
    check = FrameDataset(cat, where="path LIKE '%/data/check/%'")
    with gzip.open(src / "datasets.pkl.gz", "wb") as f:
        pickle.dump({"copies": copies, "sets": sets, "check": check}, f)
    shutil.rmtree(data)
    print({k: len(v) for k, v in sets.items()}, len(check), "check frames")


def _copies(folder: Path, copies: int) -> None:
    shutil.copytree(folder / "src" / "check", folder / "data" / "check", dirs_exist_ok=True)
    for name in SYNTAXES:
        d = folder / "data" / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(copies):
            shutil.copyfile(folder / "src" / f"{name}.dcm", d / f"{i:05d}.dcm")


# --------------------------------------------------------------------------- run


def _timed(fn: Any, seconds: float, *, min_calls: int = 2) -> tuple[int, float]:
    """Call ``fn`` (returns frames done) until ``seconds`` pass; (frames, elapsed)."""
    n, calls, t0 = 0, 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - t0 < seconds:
        n += fn()
        calls += 1
    return n, time.perf_counter() - t0


def _encoded(ds: Any, count: int) -> list[tuple[bytes, Any]]:
    """The first ``count`` items' encoded frames and their ``RowPixels``."""
    out = []
    for k in range(min(count, len(ds))):
        i, frame = ds.items[k]
        px = ds._parsed[i]
        with px.open(None) as fp:
            out.append((px.read(fp, frame), px))
    return out


def _nvimgcodec() -> Any:
    """``nvidia.nvimgcodec``, also where another ``nvidia`` package (torch's CUDA
    libraries) comes first on the path: its wheel's folder is added to ``nvidia``."""
    import nvidia

    for entry in sys.path:
        d = Path(entry or ".") / "nvidia"
        if (d / "nvimgcodec").is_dir() and str(d) not in list(nvidia.__path__):
            nvidia.__path__.append(str(d))
    from nvidia import nvimgcodec

    return nvimgcodec


class _GpuDecode:
    """nvImageCodec batch decode into torch tensors on the GPU."""

    def __init__(self) -> None:
        nvimgcodec = _nvimgcodec()

        self.nv = nvimgcodec
        self.decoder = nvimgcodec.Decoder()
        self.params = nvimgcodec.DecodeParams(
            allow_any_depth=True, color_spec=nvimgcodec.ColorSpec.UNCHANGED
        )
        spec = nvimgcodec.ColorSpec
        rgb = getattr(spec, "SRGB", None) or getattr(spec, "RGB")  # noqa: B009 - names vary by version
        self.rgb = nvimgcodec.DecodeParams(allow_any_depth=True, color_spec=rgb)

    def __call__(self, frames: list[bytes], color: bool = False) -> list[Any]:
        import torch

        images = self.decoder.decode(frames, params=self.rgb if color else self.params)
        torch.cuda.synchronize()  # the decode may run on the codec's own stream
        out = []
        for k, img in enumerate(images):
            if img is None:
                raise RuntimeError(f"nvImageCodec could not decode frame {k}")
            out.append(torch.as_tensor(img, device="cuda"))
        return out


def _signed(t: Any, px: Any) -> Any:
    """Reinterpret an unsigned 16-bit decode of signed data (PixelRepresentation 1)."""
    import torch

    if px.info.pixel_representation == 1 and t.dtype == torch.uint16:
        return t.view(torch.int16)
    return t


def bench_decode(
    name: str, ds: Any, gpu: _GpuDecode | None, seconds: float, gpu_only: bool = False
) -> dict[str, Any]:
    import numpy as np
    import torch

    res: dict[str, Any] = {}
    enc = _encoded(ds, 64)
    frames = [e for e, _ in enc]
    px = enc[0][1]
    res["frame_bytes"] = int(np.mean([len(f) for f in frames]))
    ref = [p.decode(f) for f, p in enc[:8]]
    res["shape"] = list(ref[0].shape)
    res["dtype"] = str(ref[0].dtype)

    def cpu() -> int:
        for f, p in enc:
            p.decode(f)
        return len(enc)

    if not gpu_only:
        n, dt = _timed(cpu, seconds)
        res["cpu_1thread_fps"] = round(n / dt, 1)

    def cpu_to_gpu() -> int:
        ts = [torch.from_numpy(np.ascontiguousarray(p.decode(f))).pin_memory() for f, p in enc]
        for t in ts:
            t.to("cuda", non_blocking=True)
        torch.cuda.synchronize()
        return len(enc)

    if not gpu_only:
        n, dt = _timed(cpu_to_gpu, seconds)
        res["cpu_1thread_to_gpu_fps"] = round(n / dt, 1)
    if gpu is None or name == "ct-raw":
        return res
    color = name == "us-jpeg"
    try:
        out = gpu(frames[:8], color)
        got = [_signed(t, px).cpu().numpy() for t in out]
        res["gpu_shape"] = list(got[0].shape)
        res["gpu_dtype"] = str(got[0].dtype)
        diffs = []
        for g, r in zip(got, ref, strict=True):
            g2 = g[..., 0] if g.ndim == 3 and r.ndim == 2 else g
            diffs.append(float(np.abs(g2.astype(np.int64) - r.astype(np.int64)).max()))
        res["gpu_vs_cpu_max_abs_diff"] = max(diffs)

        def gpu_batch() -> int:
            gpu(frames, color)
            torch.cuda.synchronize()
            return len(frames)

        gpu_batch()
        n, dt = _timed(gpu_batch, seconds)
        res["gpu_batch64_fps"] = round(n / dt, 1)
    except Exception as e:
        res["gpu_error"] = f"{type(e).__name__}: {e}"
    return res


class Encoded:
    """Items of a FrameDataset as encoded bytes plus the modality rescale (workers: I/O only)."""

    def __init__(self, ds: Any) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, k: int) -> tuple[bytes, float, float, bool]:
        from pixels.ml.volume import linear_rescale

        i, frame = self.ds.items[k]
        px = self.ds._parsed[i]
        with px.open(None) as fp:
            data = px.read(fp, frame)
        lin = linear_rescale(px.meta, frame) or (1.0, 0.0)
        signed = px.info.pixel_representation == 1
        return data, float(lin[0]), float(lin[1]), signed


def collate_list(batch: list[Any]) -> list[Any]:
    return batch


def _gpu_batch(gpu: _GpuDecode, batch: list[Any], color: bool) -> Any:
    import torch

    ts = gpu([b[0] for b in batch], color)
    out = []
    for t, (_, slope, intercept, signed) in zip(ts, batch, strict=True):
        if signed and t.dtype == torch.uint16:
            t = t.view(torch.int16)
        t = t.float()
        out.append(t * slope + intercept if not color else t)
    x = torch.stack(out)
    torch.cuda.synchronize()  # before the codec's images are released (ts)
    return x.permute(0, 3, 1, 2) if x.ndim == 4 else x[:, None]


def _loader(ds: Any, workers: int, batch: int, gpu_decode: bool) -> Any:
    from torch.utils.data import DataLoader

    if gpu_decode:
        return DataLoader(
            Encoded(ds),
            batch_size=batch,
            num_workers=workers,
            collate_fn=collate_list,
            shuffle=True,
            persistent_workers=workers > 0,
            prefetch_factor=4 if workers else None,
        )
    return DataLoader(
        ds,
        batch_size=batch,
        num_workers=workers,
        pin_memory=True,
        shuffle=True,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers else None,
    )


def bench_loader(
    name: str,
    ds: Any,
    workers: int,
    gpu: _GpuDecode | None,
    seconds: float,
    model: Any = None,
) -> float:
    """Frames/s delivered to the GPU (and through ``model`` when given)."""
    import torch

    loader = _loader(ds, workers, 32, gpu is not None)
    color = name == "us-jpeg"

    def batches() -> Any:
        while True:
            yield from loader

    it = batches()

    def step() -> int:
        b = next(it)
        if gpu is not None:
            x = _gpu_batch(gpu, b, color)
        else:
            x = b["image"].to("cuda", non_blocking=True)
        if model is not None:
            with torch.autocast("cuda", dtype=torch.bfloat16), torch.inference_mode():
                model(x)
        torch.cuda.synchronize()
        return int(x.shape[0])

    for _ in range(max(2, workers)):  # workers started, first batches in flight
        step()
    n, dt = _timed(step, seconds)
    it.close()
    return round(n / dt, 1)


def make_unet() -> Any:
    import torch
    from monai.networks.nets import UNet

    net = UNet(
        spatial_dims=2,
        in_channels=1,
        out_channels=3,
        channels=(32, 64, 128, 256, 512),
        strides=(2, 2, 2, 2),
        num_res_units=2,
    )
    return net.to("cuda").eval().to(memory_format=torch.channels_last)


def bench_unet(model: Any, seconds: float) -> float:
    import torch

    x = torch.randn(32, 1, 512, 512, device="cuda")

    def step() -> int:
        with torch.autocast("cuda", dtype=torch.bfloat16), torch.inference_mode():
            model(x)
        torch.cuda.synchronize()
        return 32

    for _ in range(3):
        step()
    n, dt = _timed(step, seconds)
    return round(n / dt, 1)


def _encoded_copy(ds: Any) -> Any:
    import copy

    enc = copy.copy(ds)
    enc.encoded = True
    return enc


def check_product(check: Any, sets: dict[str, Any], device: str = "cuda") -> dict[str, Any]:
    """``FrameDecoder("cuda")`` batches against ``FrameDataset``'s CPU items, frame by frame:
    every frame of the check files, and 64 frames of each syntax."""
    import numpy as np

    from pixels.ml import FrameDecoder

    decoder = FrameDecoder(device)
    res: dict[str, Any] = {"uses_gpu_codec": decoder.uses_gpu_codec, "frames": 0, "mismatch": []}
    for label, ds, count in [("check", check, len(check))] + [
        (name, sets[name], 64) for name in SYNTAXES
    ]:
        enc = _encoded_copy(ds)
        shapes: dict[tuple[int, ...], list[int]] = {}
        items = {}
        for k in range(min(count, len(ds))):
            items[k] = ds[k]
            shapes.setdefault(tuple(items[k]["image"].shape), []).append(k)
        for ks in shapes.values():
            try:
                got = decoder([enc[k] for k in ks])["image"].cpu().numpy()
            except Exception as e:
                res["mismatch"].append(f"{label}: {type(e).__name__}: {e}")
                continue
            for j, k in enumerate(ks):
                res["frames"] += 1
                want = items[k]["image"].numpy()
                if not np.array_equal(got[j], want):
                    diff = float(np.abs(got[j].astype(np.float64) - want).max())
                    res["mismatch"].append(f"{label} {items[k]['path']} frame {k}: max {diff}")
    res["frames_on_gpu"] = decoder.frames_on_gpu
    res["frames_on_cpu"] = decoder.frames_on_cpu
    return res


def bench_product(name: str, ds: Any, workers: int, seconds: float, model: Any) -> float:
    """Frames/s of ``FrameDataset(encoded=True)`` + ``FrameDecoder("cuda")`` (+ ``model``)."""
    import torch
    from torch.utils.data import DataLoader

    from pixels.ml import FrameDecoder

    loader = DataLoader(
        _encoded_copy(ds),
        batch_size=32,
        num_workers=workers,
        collate_fn=list,
        shuffle=True,
        persistent_workers=True,
        prefetch_factor=4,
    )
    decoder = FrameDecoder("cuda")

    def batches() -> Any:
        while True:
            yield from loader

    it = batches()

    def step() -> int:
        x = decoder(next(it))["image"]
        if model is not None:
            with torch.autocast("cuda", dtype=torch.bfloat16), torch.inference_mode():
                model(x)
        torch.cuda.synchronize()
        return int(x.shape[0])

    for _ in range(max(2, workers)):
        step()
    n, dt = _timed(step, seconds)
    it.close()
    return round(n / dt, 1)


def run(
    folder: Path,
    out: Path,
    seconds: float,
    workers: list[int],
    gpu_only: bool,
    product_only: bool = False,
) -> None:
    import torch

    if not HOME.exists():  # the GPU machine: the rows name /work/main/.gpu/data/...
        HOME.parent.mkdir(parents=True, exist_ok=True)
        HOME.symlink_to(ROOT)
    with gzip.open(folder / "src" / "datasets.pkl.gz", "rb") as f:
        saved = pickle.load(f)
    _copies(folder, saved["copies"])
    sets = saved["sets"]
    res: dict[str, Any] = {
        "machine": {
            "gpu": torch.cuda.get_device_name(0),
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "seconds_per_figure": seconds,
    }
    gpu: _GpuDecode | None
    try:
        gpu = _GpuDecode()
        res["machine"]["nvimgcodec"] = getattr(gpu.nv, "__version__", "?")
    except Exception as e:
        gpu = None
        res["nvimgcodec_error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(res), flush=True)
    if gpu is not None:
        try:
            res["product_check"] = check_product(saved["check"], sets)
        except Exception as e:
            res["product_check"] = {"error": f"{type(e).__name__}: {e}"}
        print("product check", json.dumps(res["product_check"]), flush=True)
    if product_only:
        model = make_unet()
        res["unet_alone_ips"] = bench_unet(model, seconds)
        for name in ("ct-j2k", "ct-htj2k", "ct-jpegll"):
            res[name] = {
                "product_w1_fps": bench_product(name, sets[name], 1, seconds, None),
                "product_w1_unet_ips": bench_product(name, sets[name], 1, seconds, model),
            }
            print(name, json.dumps(res[name]), flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=1))
        return
    for name in SYNTAXES:
        r = bench_decode(name, sets[name], gpu, seconds, gpu_only)
        print(name, json.dumps(r), flush=True)
        res[name] = r
    model = make_unet()
    res["unet_alone_ips"] = bench_unet(model, seconds)
    print("unet alone", res["unet_alone_ips"], flush=True)
    for name in ("ct-raw", "ct-j2k", "ct-htj2k", "us-jpeg"):
        r = res[name]
        for w in [] if gpu_only else workers:
            r[f"loader_cpu_w{w}_fps"] = bench_loader(name, sets[name], w, None, seconds)
            print(name, "loader cpu", w, r[f"loader_cpu_w{w}_fps"], flush=True)
        if gpu is not None and name != "ct-raw" and "gpu_error" not in r:
            for w in (1, 4):
                try:
                    r[f"loader_gpu_w{w}_fps"] = bench_loader(name, sets[name], w, gpu, seconds)
                except Exception as e:
                    r[f"loader_gpu_w{w}_error"] = f"{type(e).__name__}: {e}"
                print(name, "loader gpu", w, r.get(f"loader_gpu_w{w}_fps"), flush=True)
    fed: dict[str, Any] = {}
    for name in ("ct-raw", "ct-j2k", "ct-htj2k"):
        for w in () if gpu_only else (1, max(workers)):
            fed[f"{name}_cpu_w{w}"] = bench_loader(name, sets[name], w, None, seconds, model)
        if gpu is not None and "gpu_error" not in res[name] and name != "ct-raw":
            try:
                fed[f"{name}_gpu_w1"] = bench_loader(name, sets[name], 1, gpu, seconds, model)
            except Exception as e:
                fed[f"{name}_gpu_w1_error"] = f"{type(e).__name__}: {e}"
        print("fed", json.dumps(fed), flush=True)
    if gpu is not None:
        for name in ("ct-j2k", "ct-htj2k", "ct-jpegll"):
            for w in (1, 4):
                try:
                    fed[f"{name}_product_w{w}"] = bench_product(name, sets[name], w, seconds, model)
                    res[name][f"product_w{w}_fps"] = bench_product(
                        name, sets[name], w, seconds, None
                    )
                except Exception as e:
                    fed[f"{name}_product_w{w}_error"] = f"{type(e).__name__}: {e}"
            print("fed", json.dumps(fed), flush=True)
    res["unet_fed_ips"] = fed
    res["unet_busy"] = {
        k: round(v / res["unet_alone_ips"], 3) for k, v in fed.items() if isinstance(v, float)
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--dir", type=Path, default=ROOT / ".gpu")
    p.add_argument("--copies", type=int, default=256)
    r = sub.add_parser("run")
    r.add_argument("--dir", type=Path, default=ROOT / ".gpu")
    r.add_argument("--out", type=Path, default=HERE / "results" / "gpu.json")
    r.add_argument("--seconds", type=float, default=4.0)
    r.add_argument("--workers", default="1,4,14")
    r.add_argument("--gpu-only", action="store_true", help="only the nvImageCodec figures")
    r.add_argument("--product-only", action="store_true", help="only FrameDecoder's figures")
    a = ap.parse_args()
    if a.cmd == "prepare":
        prepare(a.dir.resolve(), a.copies)
    else:
        run(
            a.dir.resolve(),
            a.out,
            a.seconds,
            [int(w) for w in a.workers.split(",")],
            a.gpu_only,
            a.product_only,
        )


if __name__ == "__main__":
    main()
