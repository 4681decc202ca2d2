"""Metadata inside compressed pixel data: comment and application segments of JPEG, JPEG-LS
and JPEG 2000 frames.

A compressed frame carries its own header, which the DICOM header knows nothing of: a JPEG
comment (COM) or application segment (APP1 Exif with the camera owner's name and GPS
position, APP13 IPTC, a JFIF thumbnail of the picture) written by a camera, a scanner or
the software that made the frame, a JPEG 2000 comment (COM) in the codestream's main
header. None of it is needed to decode the image. :func:`strip_stream_metadata` removes
these segments from every frame of an encapsulated Pixel Data and encapsulates the frames
again (one fragment per frame, a Basic Offset Table when there are several); the coded
image data is not touched, so decoding gives the same pixels. What is kept: JFIF APP0
without its thumbnail, Adobe APP14 (the colour transform) and, for JPEG-LS, APP8 (HP's
colour transform).
"""

from __future__ import annotations

from typing import Any

from pixels.dicom import codecs
from pixels.errors import DeidError

__all__ = ["strip_stream_metadata"]

_COM = 0xFE
_APP0, _APP8, _APP14 = 0xE0, 0xE8, 0xEE
_J2K_SOT, _J2K_COM = 0xFF90, 0xFF64


def _jpeg(frame: bytes, keep: frozenset[int]) -> tuple[bytes, int]:
    """``frame`` without COM and APPn segments (but ``keep``) before its first scan."""
    if frame[:2] != b"\xff\xd8":
        return frame, 0
    out = bytearray(frame[:2])
    i, removed = 2, 0
    while i + 4 <= len(frame):
        if frame[i] != 0xFF:
            break  # not a marker: leave the rest as it is
        marker = frame[i + 1]
        if marker == 0xFF:  # fill byte
            out.append(0xFF)
            i += 1
            continue
        if marker == 0xDA or 0xD0 <= marker <= 0xD9 or marker == 0x01:
            break  # start of scan (or a marker without length): the image data follows
        length = int.from_bytes(frame[i + 2 : i + 4], "big")
        segment = frame[i : i + 2 + length]
        if marker == _COM or (0xE0 <= marker <= 0xEF and marker not in keep):
            removed += 1
        elif marker == _APP0 and segment[4:9] == b"JFIF\x00" and len(segment) > 18:
            # JFIF without its thumbnail: version, units, densities, 0 x 0 thumbnail
            head = bytearray(segment[:18])
            head[2:4] = (16).to_bytes(2, "big")
            head[16:18] = b"\x00\x00"
            out += head
            removed += 1
        else:
            out += segment
        i += 2 + length
    if not removed:
        return frame, 0
    return bytes(out) + frame[i:], removed


def _j2k(frame: bytes) -> tuple[bytes, int]:
    """``frame`` without the COM marker segments of its main header (before the first SOT)."""
    if frame[:2] != b"\xff\x4f":
        return frame, 0
    out = bytearray(frame[:2])
    i, removed = 2, 0
    while i + 4 <= len(frame):
        marker = int.from_bytes(frame[i : i + 2], "big")
        if marker == _J2K_SOT or marker >> 8 != 0xFF:
            break
        length = int.from_bytes(frame[i + 2 : i + 4], "big")
        if marker == _J2K_COM:
            removed += 1
        else:
            out += frame[i : i + 2 + length]
        i += 2 + length
    if not removed:
        return frame, 0
    return bytes(out) + frame[i:], removed


def strip_stream_metadata(ds: Any, transfer_syntax: str, *, path: str = "") -> int:
    """Remove comment and application segments from every compressed frame of ``ds``.

    ``ds`` is changed in place only when a segment was found. Returns the number of
    segments removed (a JFIF thumbnail counts as one).

    Raises
    ------
    DeidError
        The encapsulated Pixel Data cannot be split into frames (names the file and tag).
    """
    if "PixelData" not in ds:
        return 0
    if transfer_syntax in codecs.JPEG_SYNTAXES:
        keep = frozenset({_APP0, _APP14})
    elif transfer_syntax in codecs.JPEG_LS_SYNTAXES:
        keep = frozenset({_APP0, _APP8, _APP14})
    elif transfer_syntax in codecs.J2K_SYNTAXES:
        keep = frozenset()
    else:
        return 0
    from pydicom.encaps import encapsulate, generate_frames

    data = bytes(ds.PixelData)
    n = int(ds.get("NumberOfFrames", 1) or 1)
    try:
        frames = list(generate_frames(data, number_of_frames=n))
    except Exception as e:
        raise DeidError(
            f"(7FE0,0010) Pixel Data cannot be split into frames: {type(e).__name__}",
            path or None,
        ) from e
    removed, cleaned = 0, []
    for frame in frames:
        frame, k = _j2k(frame) if transfer_syntax in codecs.J2K_SYNTAXES else _jpeg(frame, keep)
        removed += k
        cleaned.append(frame)
    if not removed:
        return 0
    for tag in (0x7FE00001, 0x7FE00002):  # an extended offset table no longer fits
        if tag in ds:
            del ds[tag]
    ds.PixelData = encapsulate(cleaned, has_bot=len(cleaned) > 1)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return removed
