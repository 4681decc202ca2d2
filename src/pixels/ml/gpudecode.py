"""Frames decoded a batch at a time on the GPU (nvImageCodec); loader workers only read.

On a GPU machine the CPU decode of compressed frames, not the model, is what a training
or inference loop waits for: one 512x512 JPEG 2000 CT slice takes ~50 ms of a CPU core,
so 14 ``DataLoader`` workers kept an H100's 2D UNet forward pass 8 % busy. Here the
workers only read each frame's bytes (one ranged read, through the frame index) and the
main process decodes the batch with nvImageCodec straight into GPU memory: one worker
then keeps the same UNet 23-26 % busy (HTJ2K: 44-52 %, against 34 % with 14 CPU
workers). See bench/README.md, "GPU".

>>> ds = FrameDataset(catalog, "Modality = 'CT'", encoded=True)        # doctest: +SKIP
>>> loader = DataLoader(ds, batch_size=32, num_workers=2, collate_fn=list)  # doctest: +SKIP
>>> decode = FrameDecoder("cuda")                                      # doctest: +SKIP
>>> for batch in loader:                                               # doctest: +SKIP
...     x = decode(batch)["image"]        # [32, 1, H, W] float32 on the GPU

A batch decodes to exactly what :class:`~pixels.ml.datasets.FrameDataset` gives without
``encoded`` (modality values, ``float32``, ``[C, H, W]`` per frame, the same keys),
stacked. What goes to the GPU codec: single-sample frames in JPEG 2000 and HTJ2K with a
linear modality LUT. Everything else (native frames, RLE, JPEG-LS, JPEG, colour, a
Modality LUT Sequence) is decoded on the CPU as usual and moved to the device; so is
everything when the device is a CPU or nvImageCodec (``pip install
nvidia-nvimgcodec-cu13[nvjpeg2k]``, or ``-cu12``) is missing. Frames decoded on the GPU
equal the CPU decode bit for bit (337 frames of 12 files checked on an H100 by
``bench/bench_gpu.py``); a resized batch differs by float rounding only.

Bad input: every frame passes the same checks as a CPU decode first (a code stream that
claims far more pixels than its bytes can hold, or a size other than the header's, is
refused); a frame the GPU codec cannot decode is decoded on the CPU, whose error names the
file and the frame.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pixels.dicom import codecs
from pixels.dicom.decode import PixelInfo, check_frame, decode_frame
from pixels.errors import PixelsError
from pixels.ml.deps import need
from pixels.ml.resize import resize
from pixels.ml.volume import to_modality

need("torch", "pixels.ml.gpudecode")

import torch  # noqa: E402

__all__ = ["GPU_SYNTAXES", "EncodedFrame", "FrameDecoder"]

#: Transfer syntaxes whose single-sample frames the GPU codec decodes: JPEG 2000 and
#: HTJ2K. JPEG lossless is left to the CPU: on an H100 (nvImageCodec 0.9) one
#: dcmcjpeg-encoded CT slice (pydicom's CT_small, process 14 SV1) decoded to other values
#: than libjpeg's, although another CT in the same syntax matched (bench/README.md, "GPU").
GPU_SYNTAXES = frozenset(codecs.J2K_SYNTAXES)


@dataclasses.dataclass(frozen=True)
class EncodedFrame:
    """One frame as read from its file, with what decoding it needs (an item of
    ``FrameDataset(..., encoded=True)``; small and picklable, so workers send it cheaply).

    Attributes
    ----------
    data : bytes
        The frame's bytes (encapsulated: its fragments joined).
    info : PixelInfo
        How to interpret them.
    meta : dict
        The row's modality-LUT elements (DICOM JSON), for :func:`pixels.ml.volume.to_modality`.
    rescale : (slope, intercept) or None
        The linear modality LUT; None when a Modality LUT Sequence applies.
    size : int or (height, width) or None
        Resize to this after decoding (the dataset's ``size``).
    path, frame, SOPInstanceUID, SeriesInstanceUID, Modality
        As in a decoded item.
    """

    data: bytes
    info: PixelInfo
    meta: dict[str, Any]
    rescale: tuple[float, float] | None
    size: int | tuple[int, int] | None
    path: str
    frame: int
    SOPInstanceUID: str | None = None
    SeriesInstanceUID: str | None = None
    Modality: str | None = None


def _nvimgcodec() -> Any:
    """``nvidia.nvimgcodec``, or None when it is not installed or finds no GPU.

    Its wheel's ``nvidia`` folder is added to ``nvidia.__path__`` when another ``nvidia``
    package (the CUDA libraries torch depends on) comes first on the path.
    """
    try:
        import nvidia
    except ImportError:
        return None
    for entry in sys.path:
        folder = Path(entry or ".") / "nvidia"
        if (folder / "nvimgcodec").is_dir() and str(folder) not in list(nvidia.__path__):
            nvidia.__path__.append(str(folder))
    try:
        from nvidia import nvimgcodec
    except ImportError:
        return None
    return nvimgcodec


def _finish(t: torch.Tensor, info: PixelInfo) -> torch.Tensor:
    """A codec's output as :func:`pixels.dicom.decode.decode_frame` gives it (masked to
    Bits Stored, sign-extended), as ``int32`` (every stored value fits)."""
    ts = info.transfer_syntax
    nbits = 8 * (
        t.element_size() if ts in codecs.J2K_SYNTAXES else max(info.bits_allocated, 8) // 8
    )
    u = t.to(torch.int32)
    if t.dtype in (torch.int8, torch.int16):  # a signed codec output: its bit pattern
        u = u & ((1 << nbits) - 1)
    bs = min(info.bits_stored, nbits)
    if info.pixel_representation == 1:
        shift = 32 - bs
        return (u << shift) >> shift  # sign-extend from Bits Stored
    if bs < nbits:
        return u & ((1 << bs) - 1)
    return u


def _modality(v: torch.Tensor, rescale: tuple[float, float]) -> torch.Tensor:
    """:func:`pixels.ml.volume.to_modality`'s linear case, with the same float32 steps."""
    slope, intercept = rescale
    out = v.to(torch.float32)
    if slope != 1.0:
        out = out * torch.tensor(slope, dtype=torch.float32, device=out.device)
        if intercept != 0.0:
            out = out + torch.tensor(intercept, dtype=torch.float32, device=out.device)
        return out
    return out + torch.tensor(intercept, dtype=torch.float32, device=out.device)


class FrameDecoder:
    """Decode a batch of :class:`EncodedFrame` into a :class:`FrameDataset` batch on ``device``.

    Parameters
    ----------
    device : str or torch.device, optional
        Where the batch goes; default ``"cuda"`` when torch sees a GPU, else ``"cpu"``.
    gpu_codec : bool, optional
        Use nvImageCodec for :data:`GPU_SYNTAXES` (default: when the device is a GPU and
        nvImageCodec is installed). ``True`` raises if it cannot be used.

    Attributes
    ----------
    frames_on_gpu, frames_on_cpu : int
        Frames decoded so far by the GPU codec and on the CPU.
    """

    def __init__(self, device: str | torch.device | None = None, *, gpu_codec: bool | None = None):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.device.type == "cuda" and not torch.cuda.is_available():
            # else the first batch fails deep in pin_memory ("Cannot access accelerator
            # device when none is available")
            raise ValueError(
                f"FrameDecoder({str(device)!r}): torch sees no CUDA GPU here (torch "
                f"{torch.__version__}, CUDA build {torch.version.cuda or 'none'}); "
                "FrameDecoder() picks the GPU when there is one, else the CPU"
            )
        self.frames_on_gpu = 0
        self.frames_on_cpu = 0
        self._decoder: Any = None
        if gpu_codec is False or self.device.type != "cuda":
            if gpu_codec:
                raise ValueError(f"gpu_codec=True needs a CUDA device, not {self.device}")
            return
        nv = _nvimgcodec()
        if nv is None:
            if gpu_codec:
                raise ImportError(
                    "nvImageCodec is not installed: pip install 'nvidia-nvimgcodec-cu13[nvjpeg2k]'"
                )
            return
        self._nv = nv
        self._decoder = nv.Decoder(device_id=self.device.index or 0)
        self._params = nv.DecodeParams(allow_any_depth=True, color_spec=nv.ColorSpec.UNCHANGED)

    @property
    def uses_gpu_codec(self) -> bool:
        """Whether :data:`GPU_SYNTAXES` frames go to nvImageCodec."""
        return self._decoder is not None

    def _on_gpu(self, f: EncodedFrame) -> bool:
        return (
            self._decoder is not None
            and f.info.transfer_syntax in GPU_SYNTAXES
            and f.info.samples_per_pixel == 1
            and f.rescale is not None
        )

    def _cpu(self, f: EncodedFrame) -> torch.Tensor:
        """A frame decoded as :class:`FrameDataset` decodes it, then moved to the device."""
        try:
            arr = decode_frame(f.data, f.info, path=f.path)
        except PixelsError as e:
            raise PixelsError(f"frame {f.frame}: {e.reason}", f.path) from e
        if arr.ndim == 2:
            img = np.empty(arr.shape, np.float32)
            to_modality(arr, f.meta, f.frame, img)
            t = torch.from_numpy(img)[None]
        else:
            t = torch.from_numpy(arr.astype(np.float32)).permute(2, 0, 1)
        self.frames_on_cpu += 1
        pin = self.device.type == "cuda"
        t = t.contiguous()
        return (t.pin_memory() if pin else t).to(self.device, non_blocking=pin)

    def _gpu(self, frames: Sequence[EncodedFrame]) -> list[torch.Tensor | None]:
        """The frames decoded by nvImageCodec (None where it failed: decoded on the CPU)."""
        if not frames:
            return []
        for f in frames:
            try:
                check_frame(f.data, f.info, path=f.path)
            except PixelsError as e:
                raise PixelsError(f"frame {f.frame}: {e.reason}", f.path) from e
        with torch.cuda.device(self.device):
            stream = torch.cuda.current_stream()
            data = [f.data for f in frames]
            try:  # decode on torch's stream
                images = self._decoder.decode(
                    data, params=self._params, cuda_stream=stream.cuda_stream
                )
            except TypeError:  # a version without the argument
                images = self._decoder.decode(data, params=self._params)
            # The decoded images live in the codec's memory, which it may reuse once they
            # are released, and its decode may run on its own stream: wait for it before
            # reading, and for the reads (copies) before the images are released.
            torch.cuda.synchronize(self.device)
            out: list[torch.Tensor | None] = []
            for f, img in zip(frames, images, strict=True):
                if img is None:
                    out.append(None)
                    continue
                t = torch.as_tensor(img, device=self.device)
                if t.ndim == 3:
                    t = t[..., 0]
                if tuple(t.shape) != (f.info.rows, f.info.columns):
                    raise PixelsError(
                        f"frame {f.frame} decodes to {t.shape[0]}x{t.shape[1]}, "
                        f"the header says {f.info.rows}x{f.info.columns}",
                        f.path,
                    )
                assert f.rescale is not None  # _on_gpu
                out.append(_modality(_finish(t, f.info), f.rescale)[None])
                self.frames_on_gpu += 1
            stream.synchronize()
            del images
        return out

    def __call__(self, batch: Sequence[EncodedFrame]) -> dict[str, Any]:
        """The batch: ``image`` ``[B, C, H, W]`` ``float32`` on the device, ``frame`` a
        tensor, ``path`` / ``SOPInstanceUID`` / ``SeriesInstanceUID`` / ``Modality`` lists."""
        if not batch:
            raise ValueError("an empty batch")
        for f in batch:
            if not isinstance(f, EncodedFrame):
                raise TypeError(
                    f"FrameDecoder takes EncodedFrame items (FrameDataset(..., encoded=True) "
                    f"with collate_fn=list), not {type(f).__name__}"
                )
        gpu = [k for k, f in enumerate(batch) if self._on_gpu(f)]
        images: list[torch.Tensor | None] = [None] * len(batch)
        for k, t in zip(gpu, self._gpu([batch[k] for k in gpu]), strict=True):
            images[k] = t
        for k, f in enumerate(batch):
            if images[k] is None:
                images[k] = self._cpu(f)
        resized = [resize(t, f.size) for t, f in zip(images, batch, strict=True) if t is not None]
        _same_shape(resized, batch)
        return {
            "image": torch.stack(resized),
            "path": [f.path for f in batch],
            "frame": torch.tensor([f.frame for f in batch]),
            "SOPInstanceUID": [f.SOPInstanceUID for f in batch],
            "SeriesInstanceUID": [f.SeriesInstanceUID for f in batch],
            "Modality": [f.Modality for f in batch],
        }


def _same_shape(images: Sequence[torch.Tensor], batch: Sequence[EncodedFrame]) -> None:
    """Refuse a batch whose frames differ in shape, naming two of them (``torch.stack``
    would say only "stack expects each tensor to be equal size")."""
    first = tuple(images[0].shape)
    for t, f in zip(images, batch, strict=True):
        if tuple(t.shape) != first:
            a = batch[0]
            raise ValueError(
                f"frames of different shapes in one batch: {a.path} frame {a.frame} is "
                f"{'x'.join(map(str, first))} (channels x rows x columns), {f.path} frame "
                f"{f.frame} is {'x'.join(map(str, t.shape))}: give the dataset a size= "
                "(FrameDataset(..., encoded=True, size=512)) or select frames of one shape"
            )


def encoded_frame(
    data: bytes,
    info: PixelInfo,
    meta: Mapping[str, Any],
    rescale: tuple[float, float] | None,
    size: int | tuple[int, int] | None,
    row: Mapping[str, Any],
    frame: int,
) -> EncodedFrame:
    """The :class:`EncodedFrame` of ``row``'s ``frame`` (used by ``FrameDataset``)."""
    return EncodedFrame(
        data=data,
        info=info,
        meta=dict(meta),
        rescale=rescale,
        size=size,
        path=str(row["path"]),
        frame=frame,
        SOPInstanceUID=row.get("SOPInstanceUID"),
        SeriesInstanceUID=row.get("SeriesInstanceUID"),
        Modality=row.get("Modality"),
    )
