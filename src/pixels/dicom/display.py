"""The display pipeline a viewer applies: stored values -> 8-bit grey or RGB.

Greyscale: Modality LUT (Modality LUT Sequence, else Rescale Slope/Intercept) ->
VOI LUT (VOI LUT Sequence, else Window Center/Width with VOI LUT Function LINEAR,
LINEAR_EXACT or SIGMOID per PS3.3 C.11.2.1.2; else a 0.5-99.5 percentile window)
-> MONOCHROME1 inversion. Enhanced multi-frame objects take the Pixel Value
Transformation (0028,9145) and Frame VOI LUT (0028,9132) sequences from the
per-frame (5200,9230) or shared (5200,9229) functional groups of the given frame.

Colour: PALETTE COLOR through the palette LUTs; YBR_FULL, YBR_FULL_422, YBR_ICT and
YBR_RCT (when still YBR, i.e. not decoded by a JPEG 2000 codec) to RGB; more than
8 bits scaled down to 8.

Examples
--------
>>> import pydicom
>>> from pydicom.data import get_testdata_file
>>> ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
>>> to_display(ds.pixel_array, ds.to_json_dict()).dtype
dtype('uint8')
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["modality_lut", "to_display"]

Meta = Mapping[str, Any]


def _el(meta: Meta, tag: str) -> dict[str, Any] | None:
    el = meta.get(tag)
    return el if isinstance(el, dict) else None


def _values(meta: Meta, tag: str) -> list[Any]:
    el = _el(meta, tag)
    return list(el.get("Value", [])) if el else []


def _first(meta: Meta, tag: str, default: Any = None) -> Any:
    v = _values(meta, tag)
    return v[0] if v else default


def _item(meta: Meta, tag: str, index: int = 0) -> Meta | None:
    v = _values(meta, tag)
    return v[index] if len(v) > index and isinstance(v[index], dict) else None


def _lut_data(meta: Meta, tag: str, bits: int) -> np.ndarray | None:
    el = _el(meta, tag)
    if not el:
        return None
    if "InlineBinary" in el:
        raw = base64.b64decode(el["InlineBinary"])
        dtype = "u1" if el.get("vr") == "OB" else "<u2"
        return np.frombuffer(raw, dtype=dtype).astype(np.float64)
    if "Value" in el:
        return np.asarray(el["Value"], dtype=np.float64)
    return None


def _apply_lut(x: np.ndarray, item: Meta) -> tuple[np.ndarray, int] | None:
    """Apply an LUT item (LUT Descriptor (0028,3002) + LUT Data (0028,3006))."""
    desc = _values(item, "00283002")
    if len(desc) < 3:
        return None
    n, first, bits = int(desc[0]) or 65536, int(desc[1]), int(desc[2])
    data = _lut_data(item, "00283006", bits)
    if data is None or data.size == 0:
        return None
    if first >= 32768 and x.min() < 0:  # first mapped value is signed (US -> SS)
        first -= 65536
    idx = np.clip(np.rint(x).astype(np.int64) - first, 0, min(n, data.size) - 1)
    return data[idx], bits


def _functional(meta: Meta, frame: int, seq: str) -> Meta | None:
    """The first item of ``seq`` in the per-frame, else shared, functional groups."""
    per = _item(meta, "52009230", frame)
    if per is not None and _item(per, seq) is not None:
        return _item(per, seq)
    shared = _item(meta, "52009229")
    if shared is not None:
        return _item(shared, seq)
    return None


def _modality(x: np.ndarray, meta: Meta, frame: int) -> np.ndarray:
    pvt = _functional(meta, frame, "00289145")
    src = pvt if pvt is not None else meta
    lut = _item(meta, "00283000")
    if pvt is None and lut is not None:
        out = _apply_lut(x, lut)
        if out is not None:
            return out[0]
    slope = float(_first(src, "00281053", 1.0) or 1.0)
    intercept = float(_first(src, "00281052", 0.0) or 0.0)
    if slope == 1.0 and intercept == 0.0:
        return x
    return x * slope + intercept


def modality_lut(arr: np.ndarray, meta: Meta, *, frame: int = 0) -> np.ndarray:
    """Stored values -> modality values (Hounsfield units for CT) as ``float64``.

    The first step of :func:`to_display`: the Pixel Value Transformation of the
    frame's functional groups, else the Modality LUT Sequence, else Rescale
    Slope/Intercept (identity when absent).
    """
    return np.asarray(_modality(np.asarray(arr, dtype=np.float64), meta, frame), dtype=np.float64)


def _window(x: np.ndarray, c: float, w: float, func: str) -> np.ndarray:
    """Window to 0..1 (PS3.3 C.11.2.1.2)."""
    func = func.upper()
    if func == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (x - c) / max(w, 1e-12)))
    if func == "LINEAR_EXACT":
        if w <= 0:
            return (x > c).astype(np.float64)
        return np.clip((x - c) / w + 0.5, 0.0, 1.0)
    # LINEAR: w >= 1
    w = max(w, 1.0)
    if w == 1.0:
        return (x > c - 0.5).astype(np.float64)
    y = (x - (c - 0.5)) / (w - 1.0) + 0.5
    y = np.where(x <= c - 0.5 - (w - 1.0) / 2.0, 0.0, y)
    y = np.where(x > c - 0.5 + (w - 1.0) / 2.0, 1.0, y)
    return np.clip(y, 0.0, 1.0)


def _voi(x: np.ndarray, meta: Meta, frame: int) -> np.ndarray:
    """VOI stage to 0..1."""
    fvoi = _functional(meta, frame, "00289132")
    src = fvoi if fvoi is not None else meta
    if fvoi is None:
        lut = _item(meta, "00283010")
        if lut is not None:
            out = _apply_lut(x, lut)
            if out is not None:
                y, bits = out
                top = float(2**bits - 1) if bits else float(y.max() or 1)
                if y.max() > top:
                    top = float(y.max())
                return np.clip(y / max(top, 1.0), 0.0, 1.0)
    c, w = _first(src, "00281050"), _first(src, "00281051")
    if c is not None and w is not None:
        func = str(_first(src, "00281056", "LINEAR") or "LINEAR")
        return _window(x, float(c), float(w), func)
    lo, hi = np.percentile(x, [0.5, 99.5]) if x.size else (0.0, 1.0)
    if hi <= lo:
        lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        return np.zeros_like(x, dtype=np.float64)
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0)


def _to_u8(y01: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(y01, 0.0, 1.0) * 255.0).astype(np.uint8)


def _palette(arr: np.ndarray, meta: Meta) -> np.ndarray:
    segmented = any(t in meta for t in ("00281221", "00281222", "00281223"))
    channels = []
    if not segmented:
        for dtag, ltag in (
            ("00281101", "00281201"),
            ("00281102", "00281202"),
            ("00281103", "00281203"),
        ):
            desc = _values(meta, dtag)
            if len(desc) < 3:
                break
            n, first, bits = int(desc[0]) or 65536, int(desc[1]), int(desc[2])
            data = _lut_data(meta, ltag, bits)
            if data is None:
                break
            idx = np.clip(arr.astype(np.int64) - first, 0, min(n, data.size) - 1)
            ch = data[idx]
            channels.append(ch / 257.0 if bits == 16 else ch)
    if len(channels) == 3:
        return np.rint(np.stack(channels, axis=-1)).clip(0, 255).astype(np.uint8)
    from pydicom import Dataset
    from pydicom.dataset import FileMetaDataset
    from pydicom.pixels import apply_color_lut
    from pydicom.uid import UID

    # only the Image Pixel module: bulk data left as a BulkDataURI (Pixel Data...) would
    # make pydicom warn, a warning that lands in the row as if the file had a fault
    ds = Dataset.from_json(
        {t: el for t, el in meta.items() if t.startswith("0028") and "BulkDataURI" not in el}
    )
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.1")  # JSON binary is little endian
    try:
        rgb = apply_color_lut(arr, ds)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
        raise ValueError(
            "PALETTE COLOR image without usable palette tables: the Red/Green/Blue Palette "
            "Color Lookup Table Descriptor (0028,1101-1103) and Data (0028,1201-1203) or "
            f"Segmented Data (0028,1221-1223) are missing or inconsistent ({e})"
        ) from e
    if rgb.dtype.itemsize > 1:
        rgb = rgb / 257.0
    return np.rint(rgb).clip(0, 255).astype(np.uint8)


def _ybr_to_rgb(arr: np.ndarray, pi: str, bits: int) -> np.ndarray:
    x = arr.astype(np.float64)
    half = float(1 << (bits - 1))
    y, cb, cr = x[..., 0], x[..., 1], x[..., 2]
    if pi == "YBR_RCT":
        g = y - np.floor((cb - half + cr - half) / 4.0)
        r = cr - half + g
        b = cb - half + g
    else:  # YBR_FULL, YBR_FULL_422, YBR_ICT: ITU-R BT.601 full range
        cb, cr = cb - half, cr - half
        r = y + 1.402 * cr
        g = y - 0.344136 * cb - 0.714136 * cr
        b = y + 1.772 * cb
    return np.stack([r, g, b], axis=-1)


def to_display(
    arr: np.ndarray, meta: Meta, *, frame: int = 0, photometric: str | None = None
) -> np.ndarray:
    """Turn one decoded frame into an 8-bit image for display.

    Parameters
    ----------
    arr : numpy.ndarray
        One frame as :func:`pixels.dicom.decode.decode_frame` returns it.
    meta : dict
        The DICOM JSON model of the file (``json.loads(header.meta)`` or
        ``ds.to_json_dict()``).
    frame : int
        The frame index (picks the per-frame functional groups).
    photometric : str, optional
        The photometric interpretation of ``arr`` (``PixelInfo.decoded_photometric``);
        defaults to the file's (0028,0004).

    Returns
    -------
    numpy.ndarray
        ``uint8``, ``(H, W)`` for greyscale or ``(H, W, 3)`` RGB.
    """
    pi = (photometric or str(_first(meta, "00280004", "MONOCHROME2"))).strip().upper()
    bits = int(_first(meta, "00280101", 0) or 0) or 8 * arr.dtype.itemsize
    if pi == "PALETTE COLOR":
        return _palette(arr, meta)
    if arr.ndim == 3 and arr.shape[-1] >= 3:
        rgb: np.ndarray = arr[..., :3]
        if pi in ("YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"):
            rgb = _ybr_to_rgb(rgb, pi, min(bits, 8 * arr.dtype.itemsize))
        top = float(2 ** min(bits, 8 * arr.dtype.itemsize) - 1)
        if top == 255.0:
            return np.rint(np.clip(rgb, 0, 255)).astype(np.uint8)
        return _to_u8(rgb.astype(np.float64) / top)
    x = arr.astype(np.float64)
    y = _voi(_modality(x, meta, frame), meta, frame)
    out = _to_u8(y)
    if pi == "MONOCHROME1":
        out = 255 - out
    return out
