"""Cut decoded frames into fixed-size patches (tiles) for deep learning.

Pure, per file: :func:`iter_patches` tiles one decoded frame, :func:`patch_file`
decodes the frames of an open file one at a time (from its frame index, never
parsing the file again) and yields their patches, :func:`encode_patch` turns a
patch into bytes. The table-level driver is :mod:`pixels.patching`.

Geometry
--------
Tiles go left to right, then top to bottom. ``x``/``y`` are the column/row of a
tile's top-left pixel in the frame. Without ``pad`` only tiles that fit entirely
inside the frame are made (an edge narrower than the tile is dropped); with
``pad`` a tile is added wherever the previous one did not reach the frame's edge,
and its missing part is filled with ``pad_value`` (``width``/``height`` are the
padded size, ``valid_width``/``valid_height`` the part inside the frame).

Values
------
Patches hold the *stored* values that :func:`pixels.dicom.decode.decode_frame`
returns (no rescale, no windowing, colour in the decoded photometric space), so
they are lossless: apply the Modality LUT / window from the row's ``meta`` when
training needs Hounsfield units or display values.

Memory
------
One decoded frame and the tile being yielded (each :class:`Patch` owns a copy of
its pixels, so a consumer that keeps patches does not keep frames alive).

Examples
--------
>>> from pydicom.data import get_testdata_file
>>> from pixels.dicom.decode import read_frames
>>> frame = read_frames(get_testdata_file("CT_small.dcm"))[0]
>>> [(p.x, p.y) for p in iter_patches(frame, size=64)]
[(0, 0), (64, 0), (0, 64), (64, 64)]
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, Literal

import numpy as np

from pixels.dicom.decode import PixelInfo, decode_frame
from pixels.dicom.frames import FrameIndex, read_frame
from pixels.errors import PixelsError

__all__ = ["FORMATS", "Patch", "encode_patch", "iter_patches", "patch_file", "png_supported"]

#: Encodings :func:`encode_patch` accepts.
FORMATS = ("raw", "png")


@dataclass(frozen=True, slots=True)
class Patch:
    """One tile of one frame.

    Attributes
    ----------
    frame : int
        Frame number (from 0).
    x, y : int
        Column and row of the tile's top-left pixel in the frame.
    width, height : int
        Size of :attr:`pixels` (padded size when padded).
    pixels : numpy.ndarray
        ``(height, width)`` or ``(height, width, samples)``: the stored values, in the
        frame's dtype, C-contiguous, owned by the patch.
    valid_width, valid_height : int
        The part of the tile inside the frame (equal to width/height unless padded).
    """

    frame: int
    x: int
    y: int
    width: int
    height: int
    pixels: np.ndarray
    valid_width: int
    valid_height: int

    @property
    def padded(self) -> bool:
        """Whether part of the tile lies outside the frame."""
        return self.valid_width != self.width or self.valid_height != self.height


def _pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    """``(height, width)`` from an int or a ``(height, width)`` pair, checked positive."""
    if isinstance(value, int | np.integer):
        h = w = int(value)
    else:
        try:
            h, w = (int(v) for v in value)
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"{name} must be an int or a (height, width) pair, got {value!r}"
            ) from e
    if h <= 0 or w <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return h, w


def _starts(extent: int, tile: int, step: int, pad: bool) -> range:
    """Tile origins along one axis."""
    if not pad:
        return range(0, max(extent - tile + 1, 0), step)
    # a tile starts wherever the previous one did not reach the edge
    return range(0, max(extent - tile, 0) + step, step) if extent > 0 else range(0)


def iter_patches(
    arr: np.ndarray,
    *,
    size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    pad: bool = False,
    pad_value: int | float = 0,
    min_foreground: float | None = None,
    background: float | None = None,
    frame: int = 0,
) -> Iterator[Patch]:
    """Tile one decoded frame.

    Parameters
    ----------
    arr : numpy.ndarray
        ``(rows, cols)`` or ``(rows, cols, samples)`` (:func:`decode_frame` output).
    size : int or (height, width)
        Tile size.
    stride : int or (height, width), optional
        Step between tile origins; default ``size`` (no overlap). A stride larger
        than the size leaves gaps.
    pad : bool
        Also make the tiles that cross the right/bottom edge, padded with ``pad_value``.
    pad_value : int or float
        Fill value of padding (cast to the frame's dtype).
    min_foreground : float, optional
        Skip tiles where fewer than this fraction of the pixels are foreground,
        i.e. have a stored value above ``background`` (``0.05`` skips tiles that
        are more than 95 % background). The fraction is over the whole tile:
        padding counts as background. A colour pixel is foreground when any of its
        samples is above ``background``.
    background : float, optional
        Stored values up to this one are background; default the frame's minimum
        (black, or CT padding), so foreground is "differs from the minimum". Give a
        threshold to skip noisy air: for CT, ``(HU - RescaleIntercept) /
        RescaleSlope``, e.g. 124 for -900 HU with intercept -1024.
    frame : int
        Frame number recorded in the patches.

    Yields
    ------
    Patch
        Lazily, one at a time.

    Raises
    ------
    ValueError
        Bad size, stride or ``min_foreground``, or an array that is not 2-D or 3-D.
    """
    th, tw = _pair(size, "size")
    sh, sw = _pair(stride, "stride") if stride is not None else (th, tw)
    if arr.ndim not in (2, 3):
        raise ValueError(f"expected a (rows, cols[, samples]) array, got shape {arr.shape}")
    if min_foreground is not None and not 0 <= min_foreground <= 1:
        raise ValueError(f"min_foreground must be between 0 and 1, got {min_foreground}")
    rows, cols = arr.shape[:2]
    bg: Any = None
    need = 0
    if min_foreground is not None and min_foreground > 0 and arr.size:
        bg = arr.min() if background is None else background
        need = int(np.ceil(min_foreground * th * tw - 1e-9))
    fill = np.asarray(pad_value).astype(arr.dtype) if pad else None
    for y in _starts(rows, th, sh, pad):
        vh = min(th, rows - y)
        for x in _starts(cols, tw, sw, pad):
            vw = min(tw, cols - x)
            view = arr[y : y + vh, x : x + vw]
            if need:
                diff = view > bg
                if diff.ndim == 3:
                    diff = diff.any(axis=2)
                if np.count_nonzero(diff) < need:
                    continue
            if vh == th and vw == tw:
                pixels = np.array(view, order="C", copy=True)
            else:
                pixels = np.full((th, tw, *arr.shape[2:]), fill, dtype=arr.dtype)
                pixels[:vh, :vw] = view
            yield Patch(frame, x, y, tw, th, pixels, vw, vh)


def patch_file(
    fp: BinaryIO,
    meta: Mapping[str, Any] | str,
    transfer_syntax: str,
    index: FrameIndex,
    *,
    frames: Sequence[int] | None = None,
    path: str,
    **tiling: Any,
) -> Iterator[Patch]:
    """Patches of the frames of an open DICOM file, decoding one frame at a time.

    Parameters
    ----------
    fp : binary file
        The file, seekable.
    meta : dict or str
        Its DICOM JSON (the catalog's ``meta``).
    transfer_syntax : str
        Its transfer syntax UID.
    index : FrameIndex
        Its frame index (:func:`pixels.dicom.record.frame_index_of` of its row).
    frames : sequence of int, optional
        Frames to patch (from 0); default all.
    path : str
        Named in errors.
    **tiling
        Passed to :func:`iter_patches` (``size``, ``stride``, ``pad``, ``pad_value``,
        ``min_foreground``, ``background``).

    Yields
    ------
    Patch
        Frame by frame; a frame is released before the next is read.

    Raises
    ------
    PixelsError
        A frame out of range, unreadable or undecodable (the message names the
        file and the frame); patches of earlier frames were already yielded.
    """
    js = json.loads(meta) if isinstance(meta, str) else meta
    info = PixelInfo.from_json(js, transfer_syntax)
    n = len(index)
    todo = range(n) if frames is None else frames
    for f in todo:
        if not 0 <= f < n:
            raise PixelsError(f"frame {f} out of range: the file has {n} frame(s)", path)
        try:
            data = read_frame(fp, index, f, path=path)  # bit-packed frames come back re-aligned
            arr = decode_frame(data, info, path=path)
        except PixelsError as e:
            reason = e.reason if f"frame {f}" in e.reason else f"frame {f}: {e.reason}"
            raise type(e)(reason, path) from e
        del data
        yield from iter_patches(arr, frame=f, **tiling)
        del arr


def png_supported(dtype: np.dtype[Any] | str, samples: int) -> bool:
    """Whether :func:`encode_patch` can write a lossless PNG of such pixels.

    8- and 16-bit greyscale (signed values are stored as their unsigned bit
    pattern) and 8-bit RGB; anything else needs ``raw``.
    """
    dt = np.dtype(dtype)
    if samples == 1:
        return dt.itemsize in (1, 2) and dt.kind in "ui"
    return samples == 3 and dt.itemsize == 1 and dt.kind in "ui"


def encode_patch(p: Patch, fmt: Literal["raw", "png"], *, compress_level: int = 1) -> bytes:
    """Encode a patch's pixels losslessly.

    Parameters
    ----------
    p : Patch
        The patch.
    fmt : {"raw", "png"}
        ``raw``: ``p.pixels.tobytes()`` (C order, native byte order, the stored
        dtype): rebuild with ``numpy.frombuffer(data, dtype).reshape(height,
        width[, samples])``. ``png``: 8-bit (mode ``L``) or 16-bit (``I;16``)
        greyscale, or 8-bit RGB. Signed values are written as their unsigned bit
        pattern: ``numpy.asarray(Image.open(...)).astype(uint16).view(int16)``
        gives them back.
    compress_level : int
        zlib level of the PNG (0-9; 1 is fast and usually within a few % of 9
        on medical images).

    Raises
    ------
    ValueError
        Unknown format, or pixels PNG cannot hold exactly (see :func:`png_supported`).

    Examples
    --------
    >>> import numpy as np
    >>> p = Patch(0, 0, 0, 2, 1, np.array([[1, 2]], np.uint16), 2, 1)
    >>> encode_patch(p, "raw")
    b'\\x01\\x00\\x02\\x00'
    """
    px = p.pixels
    if fmt == "raw":
        return px.tobytes()
    if fmt != "png":
        raise ValueError(f"unknown patch format {fmt!r}: expected one of {', '.join(FORMATS)}")
    from PIL import Image

    samples = px.shape[2] if px.ndim == 3 else 1
    if not png_supported(px.dtype, samples):
        raise ValueError(
            f"PNG cannot hold {px.dtype} pixels with {samples} sample(s) exactly: use 'raw'"
        )
    if samples == 1 and px.dtype.itemsize == 2:
        u = np.ascontiguousarray(px.view(np.uint16), dtype="<u2")
        img = Image.frombuffer("I;16", (px.shape[1], px.shape[0]), u.tobytes(), "raw", "I;16", 0, 1)
    else:
        u8 = px.view(np.uint8) if px.dtype != np.uint8 else px
        img = Image.fromarray(u8.reshape(px.shape[0], px.shape[1]) if samples == 1 else u8)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()
