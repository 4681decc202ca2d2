"""Big endian words made little endian: the bytes of each word of a binary value reversed.

One definition for everything that turns Explicit VR Big Endian (retired) bytes into little
endian ones: the word size of each binary VR (:data:`WORD_SIZES`, PS3.5 7.3) and
:func:`swap_bytes`, used by the transcoder (:mod:`pixels.dicom.transcode`), the frame reader
(:func:`pixels.dicom.frames.read_frame_swapped`), the web's bulk data, and
de-identification (:mod:`pixels.deid.endian`, :mod:`pixels.deid.pixelclean`). OB and UN
values are bytes, not words: never swapped.

Examples
--------
>>> from pixels.dicom.words import WORD_SIZES, swap_bytes
>>> swap_bytes(b"\\x01\\x02\\x03\\x04\\x05", WORD_SIZES["OW"])
b'\\x02\\x01\\x04\\x03\\x05'
"""

from __future__ import annotations

import numpy as np

__all__ = ["WORD_SIZES", "swap_bytes", "swap_value"]

#: The binary VRs made of words, and their word size in bytes (PS3.5 7.3).
WORD_SIZES = {"OW": 2, "OL": 4, "OF": 4, "OD": 8, "OV": 8}


def swap_bytes(data: bytes | bytearray | memoryview, width: int) -> bytes:
    """``data`` with the bytes of each whole ``width``-byte word reversed.

    Bytes after the last whole word (an odd-length OW's last byte) are kept as they are, at
    the end; a caller that must place them otherwise pads ``data`` first.
    """
    n = len(data) - len(data) % width
    words = np.frombuffer(data, dtype=np.uint8, count=n).reshape(-1, width)[:, ::-1]
    return words.tobytes() + bytes(data[n:])


def swap_value(data: bytes | bytearray | memoryview, width: int) -> bytes:
    """A big endian ``width``-byte-word value made little endian, whole.

    A value whose length is not whole words (an odd-length OW) is padded with zeros first:
    what its last, cut word holds are its first, most significant bytes, which stay so once
    swapped (left as they were, they would become the least).
    """
    if len(data) % width:
        data = bytes(data) + b"\x00" * (width - len(data) % width)
    return swap_bytes(data, width)
