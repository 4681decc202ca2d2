"""Metadata inside compressed pixel data: comment and application segments of JPEG, JPEG-LS
and JPEG 2000 frames, and bytes around a frame's codestream (JPEG, JPEG-LS, JPEG 2000, RLE).

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
their lengths; a JPEG 2000 codestream wrapped in a JP2 file, which PS3.5 A.4.4 does not
allow but GDCM wrote, ends with its ``jp2c`` box), and what follows is dropped. Bytes
before the codestream's SOI / SOC are dropped too (:func:`start_of_codestream`: the first
SOI from which a whole codestream, frame header and scan included, is walked; a little
SOI ... EOI hidden before the image is not one). A JP2 wrapper loses its XML and UUID
boxes (XMP, Exif, a vendor's data). An RLE frame (PS3.5 Annex G) is written anew from its
header's segment count and each segment's PackBits runs up to Rows x Columns bytes: bytes
after the last segment, between segments and in the header's unused offsets are dropped.
A frame whose end cannot be found (a codestream the walk does not know, cut short, an RLE
segment that does not decode to its length) is left whole. The Basic Offset Table, or the
Extended Offset Table when the source had one, is written anew for the frames as they are.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from pixels.dicom import codecs
from pixels.errors import DeidError

__all__ = ["end_of_codestream", "start_of_codestream", "strip_stream_metadata"]

_COM = 0xFE
_APP0, _APP8, _APP14 = 0xE0, 0xE8, 0xEE
_J2K_SOT, _J2K_COM, _J2K_EOC = 0xFF90, 0xFF64, 0xFFD9
#: SOC followed by SIZ: how every JPEG 2000 codestream starts.
_J2K_START = b"\xff\x4f\xff\x51"
#: SOI followed by a marker: how every JPEG and JPEG-LS codestream starts.
_JPEG_START = b"\xff\xd8\xff"
#: Start of frame markers (SOF0-3, 5-7, 9-11, 13-15; JPEG-LS SOF55).
_JPEG_SOF = frozenset({*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC), 0xF7}) | (
    frozenset(range(0xCD, 0xD0))
)
#: The JPEG 2000 (JP2) file format's signature box (ISO/IEC 15444-1 I.5.1).
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
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
    frame_header = scan = False
    while i + 2 <= n:
        if frame[i] != 0xFF:
            return None  # not a marker where one must be: not a codestream this walk knows
        marker = frame[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xD9:
            # an image has a frame header and a scan: an SOI ... EOI without them (a
            # comment between two markers hidden before the real frame) is not the image
            return i + 2 if frame_header and scan else None
        if marker in _JPEG_SOF:
            frame_header = True
        scan = scan or marker == 0xDA
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
    if frame[:4] != _J2K_START:  # SOC, then SIZ (the main header's first segment)
        return None
    i, n = 2, len(frame)
    tile = False
    while i + 2 <= n:
        marker = int.from_bytes(frame[i : i + 2], "big")
        if marker == _J2K_EOC:
            return i + 2 if tile else None
        if marker >> 8 != 0xFF or i + 4 > n:
            return None
        if marker == _J2K_SOT:
            tile = True
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


def _jp2_boxes(frame: bytes) -> list[tuple[int, int, bytes, int]] | None:
    """The top-level boxes of a JP2 file up to its codestream box (``jp2c``), as (start,
    header length, type, end); None when the box structure is broken or has no ``jp2c``.

    A ``jp2c`` box whose length is 0 runs to the end of the file (ISO/IEC 15444-1 I.4): its
    end is the end of the codestream it holds.
    """
    if not frame.startswith(_JP2_SIGNATURE):
        return None
    boxes = []
    i, n = 0, len(frame)
    while i + 8 <= n:
        length, kind, head = int.from_bytes(frame[i : i + 4], "big"), frame[i + 4 : i + 8], 8
        if length == 1:  # XLBox: a 64-bit length follows the type
            if i + 16 > n:
                return None
            length, head = int.from_bytes(frame[i + 8 : i + 16], "big"), 16
        elif length == 0 and kind == b"jp2c":
            inner = _j2k_end(frame[i + head :])
            if inner is None:
                return None
            length = head + inner
        if length < head or i + length > n:
            return None
        boxes.append((i, head, kind, i + length))
        if kind == b"jp2c":
            return boxes
        i += length
    return None


def _jp2_end(frame: bytes) -> int | None:
    """The offset just after a JP2 file's codestream box, or None when not found (the box
    must hold one whole codestream, ending where the box does)."""
    boxes = _jp2_boxes(frame)
    if boxes is None:
        return None
    start, head, _, end = boxes[-1]
    if _j2k_end(frame[start + head : end]) != end - start - head:
        return None
    return end


def end_of_codestream(frame: bytes, transfer_syntax: str) -> int | None:
    """Where the codestream of ``frame`` ends (just after its EOI / EOC marker, or the end of
    the codestream box of a JPEG 2000 codestream wrapped in a JP2 file).

    None when ``transfer_syntax`` is not JPEG, JPEG-LS or JPEG 2000, or when the walk cannot
    find the end (an unknown wrapper, a frame cut short): then nothing should be dropped.
    """
    if transfer_syntax in codecs.JPEG_SYNTAXES:
        return _jpeg_end(frame, ls=False)
    if transfer_syntax in codecs.JPEG_LS_SYNTAXES:
        return _jpeg_end(frame, ls=True)
    if transfer_syntax in codecs.J2K_SYNTAXES:
        return _jp2_end(frame) if frame.startswith(_JP2_SIGNATURE) else _j2k_end(frame)
    return None


def start_of_codestream(frame: bytes, transfer_syntax: str) -> int | None:
    """Where the codestream of ``frame`` starts: 0 when the frame starts with it, else the
    first JPEG SOI (JPEG 2000 SOC, JP2 signature) from which a whole codestream (a frame
    header, a scan or tile-part, the end marker) is found; None when there is none.

    Bytes before it are never decoded (a decoder wants the SOI / SOC first): a vendor's text,
    or a second little image, can hide there.
    """
    if transfer_syntax in codecs.JPEG_SYNTAXES or transfer_syntax in codecs.JPEG_LS_SYNTAXES:
        magics: tuple[bytes, ...] = (_JPEG_START,)
    elif transfer_syntax in codecs.J2K_SYNTAXES:
        magics = (_J2K_START, _JP2_SIGNATURE)
    else:
        return None
    if any(frame.startswith(m) for m in magics):
        return 0
    starts = sorted(k for m in magics for k in _find_all(frame, m) if k > 0)
    for k in starts:
        if end_of_codestream(frame[k:], transfer_syntax) is not None:
            return k
    return None


def _find_all(data: bytes, magic: bytes) -> list[int]:
    found, k = [], data.find(magic)
    while k >= 0:
        found.append(k)
        k = data.find(magic, k + 1)
    return found


def _packbits_end(data: bytes, i: int, limit: int, length: int) -> int | None:
    """Where the PackBits runs from ``data[i]`` that decode to ``length`` bytes end, or None
    when they run past ``limit`` first (PS3.5 G.3.1)."""
    out = 0
    while out < length:
        if i >= limit:
            return None
        h = data[i]
        if h < 128:  # a literal run of h + 1 bytes
            i, out = i + h + 2, out + h + 1
        elif h > 128:  # one byte repeated 257 - h times
            i, out = i + 2, out + 257 - h
        else:  # 128: no operation
            i += 1
    return i if i <= limit else None


def _rle(frame: bytes, segments: int, length: int) -> tuple[bytes, int] | None:
    """An RLE frame (PS3.5 Annex G) with only its header and the runs of its segments.

    Each of the ``segments`` segments must decode to ``length`` bytes (Rows x Columns):
    bytes after a segment's last run (after the last segment, or between two segments; a
    NULL padding an odd segment to an even length is kept) and non-zero offsets of unused
    segments in the header are dropped. Returns the frame and the number of bytes
    dropped, or None when the header or a segment is not as it must be (then the frame is
    left whole).
    """
    if len(frame) < 64 or int.from_bytes(frame[:4], "little") != segments:
        return None
    if not 1 <= segments <= 15:
        return None
    offsets = [int.from_bytes(frame[4 + 4 * k : 8 + 4 * k], "little") for k in range(15)]
    used = offsets[:segments]
    if used[0] != 64 or any(b <= a for a, b in itertools.pairwise(used)):
        return None
    if used[-1] > len(frame):
        return None
    parts, dropped = [], 4 * sum(1 for v in offsets[segments:] if v)
    for start, limit in zip(used, [*used[1:], len(frame)], strict=True):
        end = _packbits_end(frame, start, limit, length)
        if end is None:
            return None
        if (end - start) % 2 and end < limit and frame[end] == 0:
            end += 1  # a NULL after an odd segment: its pad (G.5)
        dropped += limit - end
        parts.append(frame[start:end])
    header = bytearray(64)
    header[:4] = segments.to_bytes(4, "little")
    at = 64
    for k, part in enumerate(parts):
        header[4 + 4 * k : 8 + 4 * k] = at.to_bytes(4, "little")
        at += len(part)
    out = bytes(header) + b"".join(parts)
    if len(out) % 2:  # an odd frame is padded again when encapsulated
        if frame == out + b"\x00":
            return frame, 0
        dropped -= 1
    return out, dropped


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


#: JP2 boxes that only inform (ISO/IEC 15444-1 I.7): XML (XMP, a vendor's report), UUID
#: (Exif, a vendor's data) and UUID info boxes; a reader ignores them.
_JP2_INFO_BOXES = frozenset({b"xml ", b"uuid", b"uinf"})


def _jp2(frame: bytes) -> tuple[bytes, int]:
    """A JP2-wrapped frame (``frame`` ends with its codestream box) without its XML and UUID
    boxes and without the COM segments of its codestream (the box's length written anew)."""
    boxes = _jp2_boxes(frame)
    if boxes is None:
        return frame, 0
    out, removed = bytearray(), 0
    for start, head, kind, end in boxes:
        if kind in _JP2_INFO_BOXES:
            removed += 1
        elif kind == b"jp2c":
            stream, k = _j2k(frame[start + head : end])
            if not k:
                out += frame[start:end]
            else:
                removed += k
                out += _box(b"jp2c", stream)
        else:
            out += frame[start:end]
    if not removed:
        return frame, 0
    return bytes(out) + frame[boxes[-1][3] :], removed


def _box(kind: bytes, payload: bytes) -> bytes:
    if len(payload) + 8 < 2**32:
        return (len(payload) + 8).to_bytes(4, "big") + kind + payload
    return (1).to_bytes(4, "big") + kind + (len(payload) + 16).to_bytes(8, "big") + payload


def _clean_frame(
    frame: bytes, transfer_syntax: str, keep: frozenset[int], rle: tuple[int, int]
) -> tuple[bytes, int, int]:
    """One frame without its metadata segments and the bytes around its codestream: the
    frame, the segments removed and the bytes dropped."""
    if transfer_syntax == codecs.RLE_LOSSLESS:
        done = _rle(frame, *rle)
        if done is None or done[0] == frame:
            return frame, 0, 0
        return done[0], 0, done[1]
    dropped = 0
    start = start_of_codestream(frame, transfer_syntax)
    if start:
        frame, dropped = frame[start:], start
    end = end_of_codestream(frame, transfer_syntax)
    if end is not None and end < len(frame):
        tail = frame[end:]
        if not (end % 2 == 1 and tail in (b"\x00", b"\xff")):  # not an odd frame's pad
            dropped += len(tail) - end % 2  # an odd codestream is padded again
            frame = frame[:end]
    if transfer_syntax in codecs.J2K_SYNTAXES:
        frame, removed = _jp2(frame) if frame.startswith(_JP2_SIGNATURE) else _j2k(frame)
    else:
        frame, removed = _jpeg(frame, keep)
    return frame, removed, dropped


def strip_stream_metadata(ds: Any, transfer_syntax: str, *, path: str = "") -> tuple[int, int]:
    """Remove comment and application segments, and whatever follows the end of the
    codestream, from every compressed frame of ``ds``.

    ``ds`` is changed in place only when something was found. Returns the number of
    segments removed (a JFIF thumbnail, a JP2 box count as one) and the number of bytes
    dropped before the frames' starts and after their ends (the one padding byte of an odd-length frame, a NULL or, from some
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
    elif transfer_syntax in codecs.J2K_SYNTAXES or transfer_syntax == codecs.RLE_LOSSLESS:
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
    rle = (
        int(ds.get("SamplesPerPixel", 1) or 1) * max(int(ds.get("BitsAllocated", 8) or 8) // 8, 1),
        int(ds.get("Rows", 0) or 0) * int(ds.get("Columns", 0) or 0),
    )
    removed, dropped, cleaned = 0, 0, []
    for frame in frames:
        new, k, d = _clean_frame(frame, transfer_syntax, keep, rle)
        removed, dropped = removed + k, dropped + d
        cleaned.append(new)
    if not removed and all(a == b for a, b in zip(cleaned, frames, strict=True)):
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
