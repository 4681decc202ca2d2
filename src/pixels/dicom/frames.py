"""Frame index: where each frame's bytes are in a DICOM file.

The header pass records, next to the DICOM JSON, the byte ranges of every frame
of pixel data, so a reader (the DICOMweb server's WADO-RS ``/frames/N``, an ML
dataset) fetches frame N with one ranged read per fragment and never parses the
file again.

:func:`index_frames` builds a :class:`FrameIndex` from the position of the pixel
data value and a few image attributes; :func:`index_from_header` takes them from
the header JSON that :func:`pixels.dicom.meta.read_header` produced;
:func:`read_frame` reads one frame back.

Native (uncompressed) pixel data
    Frame ``i`` is at ``pixel_offset + i * frame_size`` where ``frame_size`` is
    ``Rows * Columns * SamplesPerPixel * BitsAllocated / 8`` (two thirds of that
    for native ``YBR_FULL_422``, as pydicom reads it). The bytes are as stored:
    big endian data stays big endian.

    Bit-packed data (``BitsAllocated`` 1) has frames that need not start on a
    byte: as in pydicom, frame ``i`` starts at bit ``i * Rows * Columns *
    SamplesPerPixel`` of the value. Its offset is that of the byte holding its
    first bit, its length the bytes up to and including the byte holding its
    last bit, and :attr:`FrameIndex.bit_offsets` gives the position of the first
    bit in the first byte (bits are little endian: bit 0 is the first pixel);
    ``bit_offsets`` is None when every frame starts on a byte. :func:`read_frame`
    re-aligns such frames: what it returns always starts with the frame's first pixel.

Encapsulated (compressed) pixel data
    Only item headers are read (plus, where frames must be found by their JPEG
    end marker, the last 10 bytes of each fragment); the compressed data is
    seeked over. Frames are found the way pydicom's
    :func:`pydicom.encaps.generate_frames` finds them, in this order:

    1. the Extended Offset Table (7FE0,0001)/(7FE0,0002) when given: one
       fragment per frame;
    2. the Basic Offset Table when not empty: a frame is the fragments from the
       one its entry points at up to the next frame's;
    3. otherwise one fragment per frame when there are as many fragments as
       frames, all fragments when there is a single frame, and, with more
       fragments than frames, a frame ends with the first fragment whose last
       10 bytes hold a JPEG EOI / JPEG 2000 EOC marker (``FF D9``). Fragments
       left after the last marker form a last frame, as pydicom does. Frames
       beyond ``NumberOfFrames`` are not indexed.

    Video transfer syntaxes (MPEG-2, H.264, HEVC) hold one stream for all frames: the
    index has a single entry, the whole stream (every fragment).

    :attr:`FrameIndex.offsets` is the first fragment's value (after its 8-byte
    item header), :attr:`FrameIndex.lengths` the frame's length once its
    fragments are joined, and :attr:`FrameIndex.fragments` every fragment's
    ``(offset, length)``: a frame of several fragments is not one contiguous
    range (item headers sit between them).

Malformed pixel data raises :class:`~pixels.errors.DicomReadError` naming the
path, the tag and, where it is known, the frame: data too short for its frames,
a file cut inside the pixel data, an item tag other than (FFFE,E000)/(FFFE,E0DD),
a Basic or Extended Offset Table entry that does not point at a fragment, fewer
fragments (or table entries) than frames.

Examples
--------
>>> import json
>>> from pydicom.data import get_testdata_file
>>> from pixels.dicom.meta import read_header
>>> path = get_testdata_file("emri_small.dcm")
>>> with open(path, "rb") as f:
...     index = index_from_header(f, json.loads(read_header(f, path=path).meta), path=path)
...     first = read_frame(f, index, 0)
>>> len(index.offsets), index.lengths[0], len(first)
(10, 8192, 8192)
"""

from __future__ import annotations

import base64
import struct
from bisect import bisect_right
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from pixels.dicom.codecs import VIDEO_SYNTAXES
from pixels.dicom.tags import PIXEL_DATA_KEYS, bulk_range
from pixels.dicom.words import swap_bytes
from pixels.errors import DicomReadError

__all__ = ["FrameIndex", "index_frames", "index_from_header", "read_frame", "read_frame_swapped"]

_ITEM = 0xFFFEE000
_SEQ_DELIMITER = 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
_EOI = b"\xff\xd9"


@dataclass(frozen=True, slots=True)
class FrameIndex:
    """Where each frame of a file's pixel data is.

    Attributes
    ----------
    offsets : tuple[int, ...]
        Absolute byte offset in the file of each frame's data (encapsulated: the
        value of its first fragment, after the 8-byte item header).
    lengths : tuple[int, ...]
        Byte length of each frame (encapsulated: its fragments joined).
    fragments : tuple[tuple[tuple[int, int], ...], ...] or None
        Encapsulated only: per frame, the ``(offset, length)`` of each of its
        fragments' values; None for native pixel data.
    encapsulated : bool
        Whether the pixel data is encapsulated (compressed).
    bit_offsets : tuple[int, ...] or None
        Bit-packed native data (``BitsAllocated`` 1) whose frames do not all
        start on a byte: the bit (0-7, little endian bit order) of the first
        byte at which each frame starts. None otherwise.
    word_swapped : bool
        Bit-packed data written as OW in Explicit VR Big Endian: the bytes of each
        16-bit word are swapped (PS3.5 8.1.1, 8.2); :func:`read_frame` swaps them
        back (:func:`read_frame_swapped`), so its frames are in little endian bit
        order like every other bit-packed frame.
    """

    offsets: tuple[int, ...]
    lengths: tuple[int, ...]
    fragments: tuple[tuple[tuple[int, int], ...], ...] | None
    encapsulated: bool
    bit_offsets: tuple[int, ...] | None = None
    word_swapped: bool = False

    def __len__(self) -> int:
        return len(self.offsets)

    @property
    def frame_bits(self) -> int | None:
        """Bits in one frame of bit-packed data whose frames do not start on a byte, else None.

        Derived from the first two frames' positions (frames are packed without padding).
        """
        if self.bit_offsets is None or len(self.offsets) < 2:
            return None
        return 8 * (self.offsets[1] - self.offsets[0]) + self.bit_offsets[1] - self.bit_offsets[0]


def _tag(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _file_end(fp: BinaryIO, path: str) -> int:
    try:
        return fp.seek(0, 2)
    except Exception as e:
        raise DicomReadError(f"cannot read file: {type(e).__name__}: {e}", path=path) from e


def index_frames(
    fp: BinaryIO,
    *,
    pixel_offset: int,
    pixel_length: int | None,
    number_of_frames: int,
    rows: int,
    columns: int,
    samples_per_pixel: int,
    bits_allocated: int,
    encapsulated: bool,
    path: str,
    extended_offsets: bytes | None = None,
    extended_lengths: bytes | None = None,
    photometric_interpretation: str | None = None,
    tag: int = 0x7FE00010,
    swapped_pairs: bool = False,
    video: bool = False,
) -> FrameIndex:
    """Index the frames of the pixel data whose value starts at `pixel_offset`.

    Parameters
    ----------
    fp : binary file-like
        The file, seekable, positioned anywhere (left anywhere).
    pixel_offset : int
        Offset of the pixel data value in the file (the ``offset`` of its
        ``BulkDataURI``).
    pixel_length : int or None
        Its value length; None when undefined (encapsulated) or unknown (native:
        then up to the end of the file).
    number_of_frames, rows, columns, samples_per_pixel, bits_allocated : int
        (0028,0008), (0028,0010), (0028,0011), (0028,0002), (0028,0100). Only
        `number_of_frames` is used for encapsulated data.
    encapsulated : bool
        Whether the pixel data is encapsulated.
    path : str
        Named in error messages.
    extended_offsets, extended_lengths : bytes, optional
        Raw values of (7FE0,0001) Extended Offset Table and (7FE0,0002) Extended
        Offset Table Lengths (little endian 64-bit unsigned).
    photometric_interpretation : str, optional
        (0028,0004); native ``YBR_FULL_422`` frames are two thirds the size.
    tag : int
        The pixel data tag, named in errors: (7FE0,0010), or (7FE0,0008) /
        (7FE0,0009) for float pixel data.
    swapped_pairs : bool
        8-bit native data written as OW in Explicit VR Big Endian: bytes are swapped
        in pairs, so a frame of odd length needs the byte after it (the value's
        padding byte for a single frame); multi-frame data with odd-length frames
        (frames starting inside a word) is refused.
    video : bool
        Encapsulated video (MPEG-2, H.264, HEVC): the fragments hold one stream for
        every frame, so the index has one entry, the whole stream (all its fragments),
        whatever ``number_of_frames`` says.

    Returns
    -------
    FrameIndex
        ``number_of_frames`` frames.

    Raises
    ------
    DicomReadError
        Malformed or truncated pixel data; the message names the path, the tag
        and, where known, the frame.
    """
    n = max(int(number_of_frames), 1)
    end = _file_end(fp, path)
    if not encapsulated:
        key = (
            end,
            pixel_offset,
            pixel_length,
            n,
            rows * columns * samples_per_pixel,
            bits_allocated,
            photometric_interpretation,
            tag,
            swapped_pairs,
        )
        known = _NATIVE.get(key)
        if known is None:
            known = _index_native(*key[:-2], tag, path, swapped_pairs)
            if len(_NATIVE) >= 1_000:
                _NATIVE.clear()
            _NATIVE[key] = known  # (a FrameIndex is immutable: shared)
        return known
    reader = _Encapsulated(fp, end, pixel_offset, pixel_length, n, _tag(tag), path)
    if video:
        return reader.stream()
    return reader.index(extended_offsets, extended_lengths)


#: :func:`_index_native`'s indexes by its arguments (but the path, only named in errors):
#: the files of a series have the same pixel data at the same offset, file after file.
_NATIVE: dict[tuple[Any, ...], FrameIndex] = {}


def _index_native(
    end: int,
    pixel_offset: int,
    pixel_length: int | None,
    n: int,
    samples: int,
    bits_allocated: int,
    photometric: str | None,
    tag: int,
    path: str,
    swapped_pairs: bool = False,
) -> FrameIndex:
    if samples <= 0 or bits_allocated <= 0:
        raise DicomReadError(
            f"cannot locate the frames of pixel data {_tag(tag)}: Rows * Columns * SamplesPerPixel "
            f"is {samples} and BitsAllocated {bits_allocated}",
            path=path,
        )
    available = end - pixel_offset if pixel_length is None else pixel_length
    available = max(min(available, end - pixel_offset), 0)
    # every size comes from the header: check it against the bytes that exist before
    # building anything (a 400-byte file may declare 2**31 frames of 65535 x 65535)
    if bits_allocated == 1:
        bits = samples  # bits per frame, frames packed without padding
        needed = (n * bits + 7) // 8
        size_text = f"{bits} bits"
    else:
        size = samples * (bits_allocated // 8)
        if photometric is not None and photometric.strip() == "YBR_FULL_422":
            size = size // 3 * 2
        needed = n * size
        size_text = f"{size} bytes"
        if swapped_pairs and bits_allocated == 8 and size % 2:
            if n > 1:
                raise DicomReadError(
                    f"8-bit pixel data {_tag(tag)} written as OW in big endian with frames of an "
                    f"odd length ({size} bytes, {n} frames): frames start inside a byte pair, "
                    "which Pixels does not index",
                    path=path,
                )
            needed += 1  # the last pixel is in the pair that holds the padding byte
    if available < needed:
        held = pixel_length if pixel_length is not None else end - pixel_offset
        if held >= needed:  # the value's length is right but the file is cut inside it
            if bits_allocated == 1:
                cut = available * 8 // bits
                cut_end = pixel_offset + ((cut + 1) * bits + 7) // 8
            else:
                cut = available // size
                cut_end = pixel_offset + (cut + 1) * size
            raise DicomReadError(
                f"truncated: pixel data {_tag(tag)} ends at byte {end} of the file, inside frame "
                f"{cut} (of {n}) which ends at {cut_end}",
                path=path,
            )
        raise DicomReadError(
            f"pixel data {_tag(tag)} holds {held} bytes, too few for {n} frame(s) of "
            f"{size_text} ({needed} bytes): NumberOfFrames (0028,0008) {n}, Rows (0028,0010) x "
            f"Columns (0028,0011) x SamplesPerPixel (0028,0002) {samples}, BitsAllocated "
            f"(0028,0100) {bits_allocated}",
            path=path,
        )
    if bits_allocated == 1:
        starts = [i * bits for i in range(n)]
        offsets = tuple(pixel_offset + s // 8 for s in starts)
        lengths = tuple((s % 8 + bits + 7) // 8 for s in starts)
        bit_offsets = None if bits % 8 == 0 or n == 1 else tuple(s % 8 for s in starts)
    else:
        offsets = tuple(pixel_offset + i * size for i in range(n))
        lengths = (needed,) if n == 1 else (size,) * n
        bit_offsets = None
    swapped = swapped_pairs and bits_allocated == 1
    return FrameIndex(offsets, lengths, None, False, bit_offsets, swapped)


class _Encapsulated:
    """Reads the items of one encapsulated pixel data value."""

    def __init__(
        self,
        fp: BinaryIO,
        end: int,
        pixel_offset: int,
        pixel_length: int | None,
        n: int,
        tag: str,
        path: str,
    ) -> None:
        self.fp = fp
        self.end = (
            end if pixel_length in (None, _UNDEFINED) else min(end, pixel_offset + pixel_length)
        )
        self.file_end = end
        self.start = pixel_offset
        self.n = n
        self.tag = tag
        self.path = path

    def error(self, message: str) -> DicomReadError:
        return DicomReadError(f"pixel data {self.tag}: {message}", path=self.path)

    def item_header(self, pos: int, what: str) -> tuple[int, int]:
        """(tag, length) of the item header at `pos`."""
        self.fp.seek(pos)
        head = self.fp.read(8)
        if len(head) < 8:
            cut = "truncated: " if pos + len(head) >= self.file_end else ""
            raise DicomReadError(
                f"{cut}pixel data {self.tag} ends at byte {pos + len(head)} inside the item "
                f"header of {what}",
                path=self.path,
            )
        group, elem, length = struct.unpack("<HHL", head)
        return group << 16 | elem, length

    def index(self, ext_offsets: bytes | None, ext_lengths: bytes | None) -> FrameIndex:
        tag, length = self.item_header(self.start, "the Basic Offset Table")
        if tag != _ITEM:
            raise self.error(
                f"the Basic Offset Table item has tag {_tag(tag)} at byte {self.start}, "
                "not (FFFE,E000)"
            )
        if length == _UNDEFINED or length % 4:
            raise self.error(f"the Basic Offset Table length {length} is not a multiple of 4")
        first = self.start + 8 + length  # item tag of the first fragment
        if first > self.end:
            raise self.error(
                f"truncated: the Basic Offset Table ({length} bytes) runs past byte {self.end}"
            )
        if ext_offsets:
            return self.from_extended(first, ext_offsets, ext_lengths or b"")
        bot = list(struct.unpack(f"<{length // 4}L", self.fp.read(length))) if length else []
        frags = self.scan(first, bot)
        groups = self.by_bot(bot, frags) if bot else self.without_table(frags)
        return FrameIndex(
            tuple(g[0][0] for g in groups),
            tuple(sum(ln for _, ln in g) for g in groups),
            tuple(tuple(g) for g in groups),
            True,
        )

    def stream(self) -> FrameIndex:
        """One entry holding every fragment (video: one stream for all frames)."""
        tag, length = self.item_header(self.start, "the Basic Offset Table")
        if tag != _ITEM or length == _UNDEFINED:
            raise self.error(
                f"the Basic Offset Table item has tag {_tag(tag)} (length {length}) at byte "
                f"{self.start}, not (FFFE,E000)"
            )
        first = self.start + 8 + length
        if first > self.end:
            raise self.error(
                f"truncated: the Basic Offset Table ({length} bytes) runs past byte {self.end}"
            )
        frags = self.scan(first, [])
        if not frags:
            raise self.error("the video stream has no fragments")
        return FrameIndex((frags[0][0],), (sum(ln for _, ln in frags),), (tuple(frags),), True)

    def scan(self, first: int, bot: list[int]) -> list[tuple[int, int]]:
        """Every fragment's (value offset, length), reading item headers only."""
        frags: list[tuple[int, int]] = []
        pos = first
        while True:
            k = len(frags)
            if pos >= self.end and pos >= self.file_end:
                raise DicomReadError(
                    f"truncated: pixel data {self.tag} ends at byte {pos} after fragment "
                    f"{k - 1} without a sequence delimiter (FFFE,E0DD)"
                    f"{self.frame_hint(k, pos - first, bot)}",
                    path=self.path,
                )
            tag, length = self.item_header(
                pos, f"fragment {k}{self.frame_hint(k, pos - first, bot)}"
            )
            if tag == _SEQ_DELIMITER:
                return frags
            if tag != _ITEM:
                raise self.error(
                    f"item tag {_tag(tag)} at byte {pos} where fragment {k} or the sequence "
                    f"delimiter (FFFE,E0DD) should be{self.frame_hint(k, pos - first, bot)}"
                )
            if length == _UNDEFINED:
                raise self.error(f"fragment {k} at byte {pos} has an undefined length")
            if pos + 8 + length > self.file_end:
                raise DicomReadError(
                    f"truncated: pixel data {self.tag} fragment {k}"
                    f"{self.frame_hint(k, pos - first, bot)} should have {length} bytes, "
                    f"the file holds {self.file_end - pos - 8}",
                    path=self.path,
                )
            frags.append((pos + 8, length))
            pos += 8 + length

    def frame_hint(self, k: int, rel: int, bot: list[int]) -> str:
        """`` (frame f)`` for fragment `k` at `rel` when that is known before the scan ends."""
        if bot:
            return f" (frame {max(bisect_right(bot, rel) - 1, 0)})"
        if k < self.n and self.n > 1:
            return f" (frame {k} if one fragment per frame)"
        return " (frame 0)" if self.n == 1 else ""

    def from_extended(self, first: int, offsets_raw: bytes, lengths_raw: bytes) -> FrameIndex:
        offsets = struct.unpack(
            f"<{len(offsets_raw) // 8}Q", offsets_raw[: len(offsets_raw) // 8 * 8]
        )
        lengths = struct.unpack(
            f"<{len(lengths_raw) // 8}Q", lengths_raw[: len(lengths_raw) // 8 * 8]
        )
        if len(offsets) != len(lengths):
            raise DicomReadError(
                f"Extended Offset Table (7FE0,0001) has {len(offsets)} entries but "
                f"(7FE0,0002) has {len(lengths)}",
                path=self.path,
            )
        if len(offsets) < self.n:
            raise DicomReadError(
                f"Extended Offset Table (7FE0,0001) has {len(offsets)} entries for {self.n} frames",
                path=self.path,
            )
        out: list[tuple[int, int]] = []
        for i, (off, ln) in enumerate(zip(offsets[: self.n], lengths[: self.n], strict=True)):
            pos = first + off
            if pos + 8 > self.end:
                raise DicomReadError(
                    f"Extended Offset Table (7FE0,0001) entry for frame {i} ({off}) points "
                    f"outside pixel data {self.tag}",
                    path=self.path,
                )
            tag, length = self.item_header(pos, f"frame {i}")
            if tag != _ITEM or length == _UNDEFINED or ln > length:
                raise DicomReadError(
                    f"Extended Offset Table (7FE0,0001) entry for frame {i} ({off}, length "
                    f"{ln}) does not point at a fragment of pixel data {self.tag} (found "
                    f"{_tag(tag)} of length {length})",
                    path=self.path,
                )
            if pos + 8 + ln > self.file_end:
                raise DicomReadError(
                    f"truncated: pixel data {self.tag} frame {i} should have {ln} bytes, "
                    f"the file holds {max(self.file_end - pos - 8, 0)}",
                    path=self.path,
                )
            out.append((pos + 8, ln))
        return FrameIndex(
            tuple(o for o, _ in out), tuple(ln for _, ln in out), tuple((f,) for f in out), True
        )

    def by_bot(self, bot: list[int], frags: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
        if len(bot) < self.n:
            raise self.error(f"the Basic Offset Table has {len(bot)} entries for {self.n} frames")
        first = frags[0][0] - 8 if frags else 0
        at = {off - 8 - first: k for k, (off, _) in enumerate(frags)}
        starts: list[int] = []
        for i, rel in enumerate(bot[: self.n + 1]):
            k = at.get(rel)
            if k is None or (starts and k <= starts[-1]):
                if i == self.n:  # an extra entry past the frames we index: pydicom ignores it too
                    break
                order = f" after frame {i - 1}'s" if starts else ""
                raise self.error(
                    f"the Basic Offset Table entry for frame {i} ({rel}) does not point at "
                    f"the start of a fragment{order} (of {len(frags)} fragments)"
                )
            starts.append(k)
        bounds = [*starts[: self.n], starts[self.n] if len(starts) > self.n else len(frags)]
        return [frags[bounds[i] : bounds[i + 1]] for i in range(self.n)]

    def without_table(self, frags: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
        nf = len(frags)
        if nf < self.n:
            raise self.error(
                f"{nf} fragment(s) for {self.n} frames and no offset table: frame {nf} has no data"
            )
        if nf == self.n:
            return [[f] for f in frags]
        if self.n == 1:
            return [frags]
        groups: list[list[tuple[int, int]]] = []
        current: list[tuple[int, int]] = []
        for off, ln in frags:
            current.append((off, ln))
            tail = min(ln, 10)
            self.fp.seek(off + ln - tail)
            if _EOI in self.fp.read(tail):
                groups.append(current)
                current = []
                if len(groups) == self.n:
                    return groups
        if current:
            groups.append(current)
        if len(groups) < self.n:
            raise self.error(
                f"no offset table and {nf} fragments in which JPEG end markers delimit only "
                f"{len(groups)} of {self.n} frames: frame {len(groups)} not found"
            )
        return groups


def read_frame(fp: BinaryIO, index: FrameIndex, frame: int, *, path: str | None = None) -> bytes:
    """Return frame `frame` (from 0): encapsulated, its fragments joined; bit-packed, re-aligned.

    Seeks to and reads only that frame's bytes (one read per fragment). Bit-packed
    frames (``BitsAllocated`` 1) that start inside a byte (:attr:`FrameIndex.bit_offsets`)
    come back shifted so that the frame's first pixel is bit 0 of the first byte, cut to
    ``ceil(frame_bits / 8)`` bytes with the bits past the frame's end zero: every reader
    (thumbnails, WADO-RS frames, patches, datasets) gets the frame as if it were stored
    alone.

    `path` names the file in errors (default: ``fp.name`` when it is a string).

    Raises
    ------
    IndexError
        `frame` is not in the index.
    DicomReadError
        The file holds fewer bytes than the index says (the message names the path).
    """
    path = _checked_frame(fp, index, frame, path)
    if index.word_swapped:
        return read_frame_swapped(fp, index, frame, 2, path=path)
    parts = index.fragments[frame] if index.fragments is not None else None
    if parts is None:
        parts = ((index.offsets[frame], index.lengths[frame]),)
    out = []
    for off, ln in parts:
        fp.seek(off)
        data = fp.read(ln)
        if len(data) != ln:
            raise DicomReadError(
                f"truncated: frame {frame} of the pixel data should have {ln} bytes at "
                f"byte {off}, the file holds {len(data)}",
                path=path,
            )
        out.append(data)
    joined = out[0] if len(out) == 1 else b"".join(out)
    nbits = index.frame_bits
    if nbits is not None and index.bit_offsets is not None:
        return _realign(joined, index.bit_offsets[frame], nbits)
    return joined


def read_frame_swapped(
    fp: BinaryIO, index: FrameIndex, frame: int, width: int, *, path: str | None = None
) -> bytes:
    """Native frame `frame` of big endian data as little endian bytes.

    The value's words of `width` bytes (2 for OW, 4, 8) are byte-swapped, counted
    from the start of the value (``index.offsets[0]``), so a frame that starts or
    ends inside a word is cut right. Bit-packed frames (``BitsAllocated`` 1, OW):
    PS3.5 8.1.1 and 8.2 pack the bits least significant first into 16-bit words
    whose bytes the transfer syntax orders, so big endian data is little endian
    data with the bytes of each word swapped; the frame is then re-aligned as by
    :func:`read_frame` (first pixel in bit 0, bits past the frame zero). pydicom
    3.0 does not swap 1-bit data; dcmtk (``dcmconv +tb``) writes it swapped.

    Raises
    ------
    IndexError
        `frame` is not in the index.
    DicomReadError
        The file holds fewer bytes than the index says (the message names the path).
    """
    path = _checked_frame(fp, index, frame, path)
    off, ln = index.offsets[frame], index.lengths[frame]
    lead = (off - index.offsets[0]) % width
    span = lead + ln
    span += (-span) % width
    fp.seek(off - lead)
    data = fp.read(span)
    if len(data) < lead + ln:
        raise DicomReadError(
            f"truncated: frame {frame} of the pixel data should have {ln} bytes at byte {off}, "
            f"the file holds {max(len(data) - lead, 0)}",
            path=path,
        )
    out = swap_bytes(data, width)[lead : lead + ln]
    nbits = index.frame_bits
    if nbits is not None and index.bit_offsets is not None:
        return _realign(out, index.bit_offsets[frame], nbits)
    return out


def _checked_frame(fp: BinaryIO, index: FrameIndex, frame: int, path: str | None) -> str | None:
    """The path naming the file in errors (default ``fp.name``); IndexError for a bad `frame`."""
    if path is None:
        name = getattr(fp, "name", None)
        path = name if isinstance(name, str) else None
    if not 0 <= frame < len(index.offsets):
        raise IndexError(f"frame {frame} out of range: the index has {len(index.offsets)} frames")
    return path


def _realign(data: bytes, bit_offset: int, nbits: int) -> bytes:
    """Bits ``bit_offset .. bit_offset + nbits`` of `data` (little endian bit order) from bit 0."""
    bits = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")
    return np.packbits(bits[bit_offset : bit_offset + nbits], bitorder="little").tobytes()


# ---------------------------------------------------------------------------
# from the header JSON
# ---------------------------------------------------------------------------


def _int(js: dict[str, Any], key: str, default: int | None) -> int | None:
    values = (js.get(key) or {}).get("Value")
    if not values or values[0] is None:
        return default
    try:
        return int(float(values[0]))
    except (TypeError, ValueError):
        return default


def _binary(fp: BinaryIO, entry: dict[str, Any] | None, path: str) -> bytes | None:
    """The bytes of an OV/OB value given inline (base64) or as a BulkDataURI in `fp`."""
    if not entry:
        return None
    if "InlineBinary" in entry:
        return base64.b64decode(entry["InlineBinary"])
    uri = entry.get("BulkDataURI")
    if not uri:
        return None
    span = bulk_range(uri)
    if span is None or span[1] is None:
        return None
    offset, length = span[0], span[1]
    fp.seek(offset)
    data = fp.read(length)
    if len(data) != length:
        raise DicomReadError(f"truncated: {uri} holds {len(data)} of {length} bytes", path=path)
    return data


#: The image dimensions :func:`index_from_header` reads: (argument, JSON key, default).
_DIMS: tuple[tuple[str, str, int | None], ...] = (
    ("rows", "00280010", None),
    ("columns", "00280011", None),
    ("bits_allocated", "00280100", None),
    ("samples_per_pixel", "00280002", 1),
)


def index_from_header(
    fp: BinaryIO,
    header_json: dict[str, Any],
    *,
    path: str,
    transfer_syntax: str | None = None,
) -> FrameIndex | None:
    """Index the frames of a file from its header JSON (``json.loads(Header.meta)``).

    Parameters
    ----------
    fp : binary file-like
        The file the header was read from, seekable.
    header_json : dict
        The DICOM JSON model from :func:`pixels.dicom.meta.read_header`, whose
        pixel data is ``{"BulkDataURI": "bulkdata/7FE00010?offset=O[&length=L]"}``
        (no ``length``: encapsulated).
    path : str
        Named in error messages.
    transfer_syntax : str, optional
        The file's transfer syntax UID (the header JSON holds no file meta): with
        Explicit VR Big Endian, 8-bit pixel data written as OW is indexed by byte
        pairs (see `swapped_pairs` of :func:`index_frames`).

    Returns
    -------
    FrameIndex or None
        None when there is no pixel data (or it is empty) or its offset is not
        known (a deflated file).

    Raises
    ------
    DicomReadError
        See :func:`index_frames`; also a native image without Rows, Columns or
        BitsAllocated.
    """
    for key in PIXEL_DATA_KEYS:
        entry = header_json.get(key)
        if entry:
            break
    else:
        return None
    uri = entry.get("BulkDataURI")
    span = bulk_range(uri)
    if span is None:
        return None
    offset, length = span
    encapsulated = length is None
    tag = int(key, 16)
    dims: dict[str, int] = {}
    for name, k, default in _DIMS:
        v = _int(header_json, k, default)
        if v is None:
            if not encapsulated:
                raise DicomReadError(
                    f"cannot locate the frames of pixel data {_tag(tag)}: "
                    f"({k[:4]},{k[4:]}) is missing",
                    path=path,
                )
            v = 0
        dims[name] = v
    if tag == 0x7FE00008:
        dims["bits_allocated"] = 32
    elif tag == 0x7FE00009:
        dims["bits_allocated"] = 64
    pi = ((header_json.get("00280004") or {}).get("Value") or [None])[0]
    return index_frames(
        fp,
        pixel_offset=offset,
        pixel_length=length,
        number_of_frames=_int(header_json, "00280008", 1) or 1,
        encapsulated=encapsulated,
        path=path,
        extended_offsets=_binary(fp, header_json.get("7FE00001"), path),
        extended_lengths=_binary(fp, header_json.get("7FE00002"), path),
        photometric_interpretation=pi if isinstance(pi, str) else None,
        tag=tag,
        swapped_pairs=transfer_syntax == "1.2.840.10008.1.2.2" and entry.get("vr") == "OW",
        video=transfer_syntax in VIDEO_SYNTAXES,
        **dims,
    )
