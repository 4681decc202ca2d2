"""The pixel data element where a header read stops: its header, VR, JSON entry and end.

Both header readers (:mod:`pixels.dicom.fastread` and pydicom's, in
:mod:`pixels.dicom.meta`) stop at the pixel data element; its value is never
read. :func:`add_pixel` writes its ``BulkDataURI`` entry from the element header
(and says when the file is too short to hold the value), :func:`after_pixel_data`
finds where the elements after it begin (encapsulated items walked header by
header).
"""

from __future__ import annotations

import struct
from typing import Any, BinaryIO

from pydicom.dataset import Dataset

from pixels.dicom.jsonenc import _UNDEFINED, _tag_str
from pixels.dicom.tags import PIXEL_DATA_TAGS

__all__ = ["EXPLICIT_32", "add_pixel", "after_pixel_data", "pixel_header"]

#: Explicit VRs with a 4-byte length.
EXPLICIT_32 = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR"}
EXPLICIT_32 |= {b"UT", b"UV"}


def pixel_header(
    data: bytes, little: bool, implicit: bool
) -> tuple[int, str | None, int, int] | None:
    """Parse the pixel data element header at the start of `data`.

    Returns ``(tag, explicit VR or None, value length, header size)`` or None.
    """
    if type(data) is not bytes:
        return _pixel_header(data, little, implicit)
    key = (data, little, implicit)
    known = _HEADS.get(key, _UNKNOWN)
    if known is _UNKNOWN:
        known = _pixel_header(data, little, implicit)
        if len(data) <= 12:  # (a file's 12 bytes: the same for every file of a series)
            if len(_HEADS) >= 1_000:
                _HEADS.clear()
            _HEADS[key] = known
    return known  # type: ignore[return-value]


_UNKNOWN = object()
#: :func:`pixel_header` by its arguments.
_HEADS: dict[tuple[bytes, bool, bool], object] = {}


def _pixel_header(
    data: bytes, little: bool, implicit: bool
) -> tuple[int, str | None, int, int] | None:
    if len(data) < 8:
        return None
    e = "<" if little else ">"
    group, elem = struct.unpack(e + "HH", data[:4])
    tag = group << 16 | elem
    if tag not in PIXEL_DATA_TAGS:
        return None
    raw_vr = data[4:6]
    if not implicit or (b"AA" <= raw_vr <= b"ZZ" and raw_vr in EXPLICIT_32):
        if raw_vr in EXPLICIT_32:
            if len(data) < 12:
                return None
            return tag, raw_vr.decode(), struct.unpack(e + "L", data[8:12])[0], 12
        if b"AA" <= raw_vr <= b"ZZ":
            return tag, raw_vr.decode(), struct.unpack(e + "H", data[6:8])[0], 8
    return tag, None, struct.unpack(e + "L", data[4:8])[0], 8


def _pixel_vr(tag: int, vr: str | None, length: int, implicit: bool, ds: Dataset | None) -> str:
    if tag == 0x7FE00008:
        return "OF"
    if tag == 0x7FE00009:
        return "OD"
    if vr in ("OB", "OW"):
        return vr
    if length == _UNDEFINED:
        return "OB"
    if implicit:
        return "OW"
    if ds is None:
        raise ValueError("the pixel data VR depends on (0028,0100)")  # not on the fast path
    bits = ds.get(0x00280100)
    try:
        return "OW" if int(bits.value) > 8 else "OB"
    except Exception:
        return "OW"


def add_pixel(
    js: dict[str, Any],
    fp: BinaryIO,
    stop: int,
    head12: bytes,
    little: bool,
    implicit: bool,
    deflated: bool,
    ds: Dataset | None,
) -> tuple[bool, str | None]:
    """Add the pixel data element whose header is `head12`, found at `stop`, to `js`.

    Returns (whether there was one, the truncation problem or None). `ds` is
    only consulted for a pixel data VR read_header must infer from (0028,0100).
    """
    pixel = pixel_header(head12, little, implicit)
    if pixel is None:
        return False, None
    problem: str | None = None
    tag, vr, length, size = pixel
    if not deflated and length != _UNDEFINED:
        end = fp.seek(0, 2)
        if stop + size + length > end:
            problem = (
                f"truncated: pixel data {_tag_str(tag)} should have {length} bytes, "
                f"the file holds {max(end - stop - size, 0)}"
            )
    entry: dict[str, Any] = {"vr": _pixel_vr(tag, vr, length, implicit, ds)}
    if length:
        key = f"{tag:08X}"
        if deflated:
            entry["BulkDataURI"] = f"bulkdata/{key}"
        elif length == _UNDEFINED:
            entry["BulkDataURI"] = f"bulkdata/{key}?offset={stop + size}"
        else:
            entry["BulkDataURI"] = f"bulkdata/{key}?offset={stop + size}&length={length}"
    js[f"{tag:08X}"] = entry
    return True, problem


def after_pixel_data(fp: BinaryIO, stop: int, head12: bytes, little: bool, implicit: bool) -> int:
    """Offset after the pixel data element whose header is `head12` at `stop`; -1 if unknown.

    Encapsulated pixel data is walked item header by item header (nothing of
    the fragments is read); -1 when the value runs past the data or its items
    are malformed (the frame index reports that).
    """
    pixel = pixel_header(head12, little, implicit)
    if pixel is None:
        return -1
    _tag, _vr, length, size = pixel
    pos = stop + size
    if length != _UNDEFINED:
        return pos + length
    fmt = "<HHL" if little else ">HHL"
    while True:
        fp.seek(pos)
        head = fp.read(8)
        if len(head) < 8:
            return -1
        group, elem, n = struct.unpack(fmt, head)
        if group != 0xFFFE or n == _UNDEFINED:
            return -1
        pos += 8
        if elem == 0xE0DD:
            return pos
        if elem != 0xE000:
            return -1
        pos += n
