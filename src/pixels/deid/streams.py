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

Bytes after the end of a frame's codestream (after a JPEG or JPEG-LS EOI marker, after a
JPEG 2000 codestream's EOC, in the padding of the last fragment) are never decoded: a
vendor's or a user's text can hide there. :func:`end_of_codestream` finds where each
frame's codestream ends, by walking its marker segments (and, for JPEG, the entropy-coded
data between them, where a marker cannot appear unescaped; for JPEG 2000, the tile-parts by
their lengths), and what follows is dropped. A frame whose end cannot be found (a codestream
the walk does not know, cut short) is left whole. The Basic Offset Table, or the Extended
Offset Table when the source had one, is written anew for the frames as they are.
"""

from __future__ import annotations

import re
from typing import Any

from pixels.dicom import codecs
from pixels.errors import DeidError

__all__ = ["end_of_codestream", "strip_stream_metadata"]

_COM = 0xFE
_APP0, _APP8, _APP14 = 0xE0, 0xE8, 0xEE
_J2K_SOT, _J2K_COM, _J2K_EOC = 0xFF90, 0xFF64, 0xFFD9
#: The next marker in JPEG entropy-coded data: 0xFF not followed by a stuffed 0x00, a
#: restart marker (RSTn, part of the data) or a fill byte.
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
#: In JPEG-LS, a 0xFF in the data is followed by a byte whose high bit is 0 (bit stuffing).
_JPEG_LS_MARKER = re.compile(rb"\xff[\x80-\xcf\xd8-\xfe]")


def _jpeg_end(frame: bytes, ls: bool) -> int | None:
    """The offset just after a JPEG (or JPEG-LS) frame's EOI, or None when not found."""
    if frame[:2] != b"\xff\xd8":
        return None
    pattern = _JPEG_LS_MARKER if ls else _JPEG_MARKER
    i, n = 2, len(frame)
    while i + 2 <= n:
        if frame[i] != 0xFF:
            return None  # not a marker where one must be: not a codestream this walk knows
        marker = frame[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xD9:
            return i + 2
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            i += 2
            continue
        if i + 4 > n:
            return None
        i += 2 + int.from_bytes(frame[i + 2 : i + 4], "big")
        if marker == 0xDA:  # start of scan: entropy-coded data up to the next marker
            found = pattern.search(frame, i)
            if found is None:
                return None
            i = found.start()
    return None


def _j2k_end(frame: bytes) -> int | None:
    """The offset just after a JPEG 2000 codestream's EOC, or None when not found."""
    if frame[:2] != b"\xff\x4f":
        return None
    i, n = 2, len(frame)
    while i + 2 <= n:
        marker = int.from_bytes(frame[i : i + 2], "big")
        if marker == _J2K_EOC:
            return i + 2
        if marker >> 8 != 0xFF or i + 4 > n:
            return None
        if marker == _J2K_SOT:
            if i + 10 > n:
                return None
            psot = int.from_bytes(frame[i + 6 : i + 10], "big")
            if psot == 0:  # the last tile-part: it runs to the EOC, the codestream's last bytes
                eoc = frame.rfind(b"\xff\xd9", i + 12)
                return eoc + 2 if eoc >= 0 else None
            i += psot
        else:
            i += 2 + int.from_bytes(frame[i + 2 : i + 4], "big")
    return None


def end_of_codestream(frame: bytes, transfer_syntax: str) -> int | None:
    """Where the codestream of ``frame`` ends (just after its EOI / EOC marker).

    None when ``transfer_syntax`` is not JPEG, JPEG-LS or JPEG 2000, or when the walk cannot
    find the end (an unknown wrapper, a frame cut short): then nothing should be dropped.
    """
    if transfer_syntax in codecs.JPEG_SYNTAXES:
        return _jpeg_end(frame, ls=False)
    if transfer_syntax in codecs.JPEG_LS_SYNTAXES:
        return _jpeg_end(frame, ls=True)
    if transfer_syntax in codecs.J2K_SYNTAXES:
        return _j2k_end(frame)
    return None


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


def strip_stream_metadata(ds: Any, transfer_syntax: str, *, path: str = "") -> tuple[int, int]:
    """Remove comment and application segments, and whatever follows the end of the
    codestream, from every compressed frame of ``ds``.

    ``ds`` is changed in place only when something was found. Returns the number of
    segments removed (a JFIF thumbnail counts as one) and the number of bytes dropped after
    the frames' ends (the one padding byte of an odd-length frame, a NULL or, from some
    encoders, 0xFF, is padding: not counted, and alone it changes nothing).

    Raises
    ------
    DeidError
        The encapsulated Pixel Data cannot be split into frames (names the file and tag).
    """
    if "PixelData" not in ds:
        return 0, 0
    if transfer_syntax in codecs.JPEG_SYNTAXES:
        keep = frozenset({_APP0, _APP14})
    elif transfer_syntax in codecs.JPEG_LS_SYNTAXES:
        keep = frozenset({_APP0, _APP8, _APP14})
    elif transfer_syntax in codecs.J2K_SYNTAXES:
        keep = frozenset()
    else:
        return 0, 0
    from pydicom.encaps import encapsulate, encapsulate_extended, generate_frames

    # encapsulated Pixel Data is OB (PS3.5 A.4); an OW one (MR_small_jpeg_ls_lossless) was
    # written OW when nothing else changed, OB when its frames were: the same frames, two files
    ds["PixelData"].VR = "OB"
    data = bytes(ds.PixelData)
    n = int(ds.get("NumberOfFrames", 1) or 1)
    extended = "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds
    try:
        offsets = (
            (bytes(ds.ExtendedOffsetTable), bytes(ds.ExtendedOffsetTableLengths))
            if extended
            else None
        )
        frames = list(generate_frames(data, number_of_frames=n, extended_offsets=offsets))
    except Exception as e:
        raise DeidError(
            f"(7FE0,0010) Pixel Data cannot be split into frames: {type(e).__name__}",
            path or None,
        ) from e
    removed, dropped, changed, cleaned = 0, 0, False, []
    for frame in frames:
        end = end_of_codestream(frame, transfer_syntax)
        if end is not None and end < len(frame):
            tail = frame[end:]
            if not (end % 2 == 1 and tail in (b"\x00", b"\xff")):  # not an odd frame's pad
                dropped += len(tail) - end % 2  # an odd codestream is padded again
                changed = True
                frame = frame[:end]
        frame, k = _j2k(frame) if transfer_syntax in codecs.J2K_SYNTAXES else _jpeg(frame, keep)
        removed += k
        cleaned.append(frame)
    if not removed and not changed:
        return 0, 0
    if extended:
        pixel_data, table, lengths = encapsulate_extended(cleaned)
        ds.ExtendedOffsetTable = table
        ds.ExtendedOffsetTableLengths = lengths
    else:
        for tag in (0x7FE00001, 0x7FE00002):  # a lone table (one without the other): stale
            if tag in ds:
                del ds[tag]
        pixel_data = encapsulate(cleaned, has_bot=len(cleaned) > 1)
    ds.PixelData = pixel_data
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return removed, dropped
