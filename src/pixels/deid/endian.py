"""Big endian input written little endian: the words of binary values swapped.

A big endian file (Explicit VR Big Endian, retired) is written little endian. pydicom reads
numbers (US, SS, FL...) as numbers and writes them in the output's byte order, but keeps
the values of the binary VRs (OW, OL, OF, OD, OV) as the bytes it read: written as they
are, every word of a palette color LUT, a VOI or modality LUT's data, or a waveform is
byte-reversed (a 16-bit LUT entry 0x0100 becomes 0x0001). :func:`swap_words` reverses
each word in place; top-level pixel data is left to :mod:`pixels.deid.pixelclean`, which
re-encodes it. OB and UN values are bytes, not words: left as they are. The word sizes and
the swap are :mod:`pixels.dicom.words`'s.

Examples
--------
>>> from pydicom.dataset import Dataset
>>> from pixels.deid.endian import swap_words
>>> ds = Dataset()
>>> ds.add_new(0x00281201, "OW", b"\\x01\\x00\\x00\\xff")
>>> swap_words(ds), ds.RedPaletteColorLookupTableData
(1, b'\\x00\\x01\\xff\\x00')
"""

from __future__ import annotations

from typing import Any

from pixels.dicom.words import WORD_SIZES, swap_value

__all__ = ["WORD_SIZES", "swap_words"]


def swap_words(ds: Any, skip: tuple[str, ...] = ()) -> int:
    """Reverse the bytes of every word of every OW, OL, OF, OD and OV value in ``ds``.

    Nested items included; ``skip`` names top-level keywords left alone (pixel data the
    caller re-encodes); a value whose length is not whole words (an odd-length OW) is
    padded with zeros first. Returns how many elements were swapped.
    """
    done = 0
    for elem in list(ds):
        if elem.VR == "SQ":
            for item in elem.value or ():
                done += swap_words(item)
            continue
        width = WORD_SIZES.get(elem.VR)
        if not width or elem.keyword in skip or not isinstance(elem.value, bytes | bytearray):
            continue
        elem.value = swap_value(elem.value, width)  # (an odd-length OW padded first)
        done += 1
    return done
