"""DICOM constants shared by the modules of :mod:`pixels.dicom` and those above it.

One definition each: the pixel data elements, and the byte range that a catalog
``BulkDataURI`` (``bulkdata/<tagpath>?offset=<o>[&length=<n>]``, written by
:mod:`pixels.dicom.jsonenc`) names. No imports beyond the standard library, so any
module can use it.

Examples
--------
>>> bulk_range("bulkdata/7FE00010?offset=1024&length=512")
(1024, 512)
>>> bulk_range("bulkdata/7FE00010?offset=1024")  # encapsulated pixel data: offset only
(1024, None)
>>> bulk_range("bulkdata/7FE00010") is None  # deflated files: no offset
True
"""

from __future__ import annotations

import re

__all__ = [
    "DOUBLE_FLOAT_PIXEL_DATA",
    "FLOAT_PIXEL_DATA",
    "PIXEL_DATA",
    "PIXEL_DATA_KEYS",
    "PIXEL_DATA_TAGS",
    "bulk_range",
]

#: (7FE0,0010) Pixel Data, (7FE0,0008) Float Pixel Data, (7FE0,0009) Double Float Pixel Data.
PIXEL_DATA = 0x7FE00010
FLOAT_PIXEL_DATA = 0x7FE00008
DOUBLE_FLOAT_PIXEL_DATA = 0x7FE00009

#: The pixel data elements as tags (an instance holds at most one of them).
PIXEL_DATA_TAGS = frozenset({PIXEL_DATA, FLOAT_PIXEL_DATA, DOUBLE_FLOAT_PIXEL_DATA})
#: The same as DICOM JSON keys, Pixel Data first.
PIXEL_DATA_KEYS: tuple[str, ...] = tuple(
    f"{t:08X}" for t in (PIXEL_DATA, FLOAT_PIXEL_DATA, DOUBLE_FLOAT_PIXEL_DATA)
)

_BULK_RANGE = re.compile(r"[?&]offset=(\d+)(?:&length=(\d+))?")


def bulk_range(uri: str | None) -> tuple[int, int | None] | None:
    """``(offset, length)`` of the bytes a catalog ``BulkDataURI`` names.

    ``length`` is None when the URI gives only an offset (encapsulated pixel data);
    the result is None when it gives neither (values of deflated files, which are
    read from the inflated stream).
    """
    m = _BULK_RANGE.search(uri) if uri else None
    if m is None:
        return None
    return int(m[1]), int(m[2]) if m[2] is not None else None
