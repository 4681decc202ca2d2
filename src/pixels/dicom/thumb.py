"""Thumbnails: one frame decoded at reduced resolution, the display pipeline, PNG/JPEG bytes.

A thumbnail is what a radiologist's viewer shows (modality LUT, window, MONOCHROME1
inversion, colour), scaled so its longest side is ``max_size``. Codecs that can
decode at a lower resolution (JPEG 2000 / HTJ2K resolution levels, JPEG DCT
scaling) are asked to, instead of a full decode and a resize; multi-frame files
show their middle frame and only that frame is read.
"""

from __future__ import annotations

import base64
import io
import json
import math
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from pixels.dicom.tags import bulk_range
from pixels.errors import PixelsError

#: Transfer syntaxes whose codec decodes at 1/2^k resolution.
_REDUCIBLE = frozenset(
    {
        "1.2.840.10008.1.2.4.90",
        "1.2.840.10008.1.2.4.91",
        "1.2.840.10008.1.2.4.201",
        "1.2.840.10008.1.2.4.202",
        "1.2.840.10008.1.2.4.203",
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.51",
    }
)
_JPEG_DCT = frozenset({"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"})


@dataclass(frozen=True, slots=True)
class Thumbnail:
    """An encoded thumbnail.

    Attributes
    ----------
    data : bytes
        PNG or JPEG bytes.
    width, height : int
        Size in pixels (longest side ``max_size`` or less).
    format : str
        ``"png"`` or ``"jpeg"``.
    frame : int
        The frame shown (0-based).
    """

    data: bytes
    width: int
    height: int
    format: str
    frame: int


#: Lookup-table data the display pipeline needs; large tables are BulkDataURIs in ``meta``.
_LUT_TAGS = frozenset(
    {"00281201", "00281202", "00281203", "00281221", "00281222", "00281223", "00283006"}
)


def resolve_lut_data(
    model: dict[str, Any], fp: BinaryIO, big_endian: bool = False
) -> dict[str, Any]:
    """Return ``model`` with LUT data given as BulkDataURIs read from ``fp`` and inlined.

    Palette colour tables (65,536 16-bit entries) and modality/VOI LUTs are too big
    to sit inline in ``meta``; the display pipeline needs their values.
    """

    def walk(node: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for tag, el in node.items():
            if tag in _LUT_TAGS and "BulkDataURI" in el:
                span = bulk_range(el["BulkDataURI"])
                if span is not None and span[1] is not None:
                    fp.seek(span[0])
                    raw = fp.read(span[1])
                    if big_endian and el.get("vr") in ("US", "SS", "OW"):
                        raw = np.frombuffer(raw, ">u2").astype("<u2").tobytes()
                    if el.get("vr") in ("US", "SS"):
                        code = "<u2" if el["vr"] == "US" else "<i2"
                        el = {"vr": el["vr"], "Value": np.frombuffer(raw, code).tolist()}
                    else:
                        el = {
                            "vr": el.get("vr", "OW"),
                            "InlineBinary": base64.b64encode(raw).decode("ascii"),
                        }
            elif el.get("vr") == "SQ" and el.get("Value"):
                el = {"vr": "SQ", "Value": [walk(item) if item else item for item in el["Value"]]}
            out[tag] = el
        return out

    return walk(model)


def reduce_level(rows: int, columns: int, max_size: int, transfer_syntax: str) -> int:
    """How many halvings the codec may apply and still leave >= ``max_size`` on the longest side."""
    if transfer_syntax not in _REDUCIBLE or max_size <= 0:
        return 0
    longest = max(rows, columns)
    if longest <= max_size:
        return 0
    k = math.floor(math.log2(longest / max_size))
    if transfer_syntax in _JPEG_DCT:
        k = min(k, 3)  # DCT scaling: 1/2, 1/4, 1/8
    return max(0, min(k, 5))


def _shrink(arr: np.ndarray, max_size: int, js: dict[str, Any]) -> np.ndarray:
    """Bring a frame the codec could not reduce down to < 2x the thumbnail before the display step.

    The window/level and the final Lanczos resize then work on ~4x fewer pixels
    or more. Stored values are block-averaged (rounded back to their type; for
    colour, per channel); palette indexes and LUT inputs are left whole.
    """
    h, w = arr.shape[:2]
    f = 1
    while max(h, w) // (f * 2) >= max_size:  # the same rule as the codecs' reduce_level
        f *= 2
    if f == 1:
        return arr
    if any(t in js for t in ("00281201", "00281221", "00283000", "00283010")):
        # palette indexes and LUT inputs cannot be averaged (nor safely subsampled):
        # the display step maps the whole frame, the resize then smooths the colours
        return arr
    hh, ww = h - h % f, w - w % f
    small_int = np.issubdtype(arr.dtype, np.integer) and arr.dtype.itemsize < 8
    acc_type = np.int64 if small_int else np.float64  # 64-bit values: int64 could overflow
    acc = np.zeros((hh // f, ww // f, *arr.shape[2:]), dtype=acc_type)
    for dy in range(f):  # f*f strided views: one pass over the frame, no big temporaries
        for dx in range(f):
            acc += arr[dy:hh:f, dx:ww:f]
    if acc_type is np.int64:
        return ((acc + (f * f) // 2) // (f * f)).astype(arr.dtype)
    return (acc / (f * f)).astype(arr.dtype)


def _fit(arr: np.ndarray, max_size: int) -> Any:
    from PIL import Image

    img = Image.fromarray(arr)
    w, h = img.size
    scale = max_size / max(w, h)
    if scale < 1:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        img = img.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)
    return img


def encode_image(
    arr: np.ndarray, max_size: int, fmt: str = "png", quality: int = 85
) -> tuple[bytes, int, int]:
    """Scale a display image (uint8, HxW or HxWx3) to ``max_size`` and encode it.

    ``quality`` (1-100) applies to JPEG only.
    """
    img = _fit(arr, max_size)
    buf = io.BytesIO()
    if fmt == "jpeg":
        img.save(buf, format="JPEG", quality=quality)
    elif fmt == "png":
        img.save(buf, format="PNG", optimize=False, compress_level=6)
    else:
        raise ValueError(f"unknown thumbnail format {fmt!r}: use 'png' or 'jpeg'")
    return buf.getvalue(), img.size[0], img.size[1]


def thumbnail_from_file(
    fp: BinaryIO,
    meta: dict[str, Any] | str,
    transfer_syntax: str,
    *,
    path: str,
    max_size: int = 256,
    fmt: str = "png",
    frame: int | None = None,
    index: Any = None,
    quality: int = 85,
) -> Thumbnail | None:
    """Make the thumbnail of an open DICOM file whose header was already read.

    Parameters
    ----------
    fp : binary file
        The file (seekable).
    meta : dict or str
        Its DICOM JSON (``Header.meta``).
    transfer_syntax : str
        Its transfer syntax UID.
    path : str
        For error messages.
    max_size : int
        Longest side of the thumbnail.
    fmt : str
        ``"png"`` or ``"jpeg"``.
    frame : int, optional
        Frame to show; default the middle frame.
    index : FrameIndex, optional
        The file's frame index when known (from the catalog row); else built here.
    quality : int
        JPEG quality (1-100).

    Returns
    -------
    Thumbnail or None
        None when the file has no pixel data (SR, RT plan, KOS...).

    Raises
    ------
    PixelsError
        When the pixel data cannot be decoded (the message names the file).
    """
    from pixels.dicom.decode import PixelInfo, decode_frame
    from pixels.dicom.display import to_display
    from pixels.dicom.frames import index_from_header, read_frame

    js = json.loads(meta) if isinstance(meta, str) else meta
    if "7FE00010" not in js:
        return None
    if index is None:
        index = index_from_header(fp, js, path=path, transfer_syntax=transfer_syntax)
    info = PixelInfo.from_json(js, transfer_syntax)
    if index is None:
        raise PixelsError("pixel data cannot be located (deflated file)", path)
    n = len(index.offsets)
    chosen = n // 2 if frame is None else frame
    if not 0 <= chosen < n:
        raise PixelsError(f"frame {chosen} out of range: the file has {n} frame(s)", path)
    data = read_frame(fp, index, chosen, path=path)
    k = reduce_level(info.rows, info.columns, max_size, transfer_syntax)
    arr = decode_frame(data, info, reduce=k, path=path)
    arr = _shrink(np.asarray(arr), max_size, js)
    luts = resolve_lut_data(js, fp, big_endian=transfer_syntax == "1.2.840.10008.1.2.2")
    shown = to_display(arr, luts, frame=chosen, photometric=info.decoded_photometric)
    blob, w, h = encode_image(shown, max_size, fmt, quality)
    return Thumbnail(blob, w, h, fmt, chosen)


def thumbnail(
    path: str, max_size: int = 256, fmt: str = "png", frame: int | None = None
) -> Thumbnail | None:
    """Make the thumbnail of a DICOM file on disk.

    Examples
    --------
    >>> t = thumbnail("CT_small.dcm", max_size=128)          # doctest: +SKIP
    >>> t.width, t.height, t.data[:4]                          # doctest: +SKIP
    (128, 128, b'\\x89PNG')
    """
    from pixels.dicom.meta import read_header

    with open(path, "rb") as fp:
        header = read_header(fp, path=path)
        return thumbnail_from_file(
            fp,
            header.meta,
            header.transfer_syntax or "",
            path=path,
            max_size=max_size,
            fmt=fmt,
            frame=frame,
        )
