"""Read a DICOM header once: its DICOM JSON model and the typed key columns.

This is the hot path of the catalog. :func:`read_header` reads the header with
pydicom (``read_partial`` up to the pixel data), encodes it with
:func:`pixels.dicom.jsonenc.encode_json` (pydicom's JSON, ~7x faster; see that
module for where it deliberately differs: PS3.18 rules, and it never fails a file
on one bad element), adds the pixel data element pydicom stopped before and the
elements after it (GE's private 7FE1 group, Digital Signatures (FFFA,FFFA),
trailing padding), and derives the typed key columns from the JSON. Files with a
preamble and an explicit VR little endian dataset (most files: uncompressed
explicit VR and every encapsulated syntax) are first tried by
:func:`pixels.dicom.fastread.parse`, which reads the bytes directly, without a
pydicom ``Dataset``, to the very same ``Header``; it leaves anything unusual to
the pydicom path above.

Sizes from the header are checked against the bytes that exist before anything
is read or allocated: every top-level element's length is checked before
pydicom reads its value, and pydicom's reads never go past the end of the data
(a length of 4 GB costs nothing). Deflated data sets are inflated by
:class:`pixels.dicom.deflate.InflatingReader`, streamed and capped, never whole.

Files are refused (:class:`~pixels.errors.DicomReadError`, naming the path and,
where one is to blame, the tag and its offset) when they are empty, hold no data
element, are not DICOM (no ``DICM`` prefix and a first element that cannot start
a dataset), inflate past the cap, or are truncated: a value running past the end
of the data (``truncated: element (0008,0005) at offset 344 should have 10 bytes,
the data holds 2``), an element header cut short (pydicom silently stops at
both), or a sequence cut before its end. Pixel data running past the end of the
file is reported in :attr:`Header.problem` (the header itself is good).

Key columns are typed by their DICOM VR: DA -> ``datetime.date``, TM ->
``datetime.time`` (partial ``HHMM`` and ACR-NEMA ``HH:MM:SS`` accepted, a leap
second read as 59), IS/US -> ``int`` (first value), others ``str`` with multiple
values joined by a backslash as written; ``None`` when absent or invalid.


Bulk data
---------
A binary value longer than ``(bulk_threshold // 4) * 3`` bytes is replaced by
``{"BulkDataURI": "bulkdata/<tagpath>?offset=<o>&length=<n>"}`` where
``<tagpath>`` is the 8-hex-digit tags and item indexes joined by ``/``
(``bulkdata/54000100/0/54001010``) and ``offset`` is the byte offset of the
value in the file (absent for deflated files, whose offsets are in the inflated
stream). Pixel data, where pydicom stops reading, is added by :func:`read_header`
from the element header found at the stop position:
``{"vr": "OB"|"OW"|"OF"|"OD", "BulkDataURI": "bulkdata/7FE00010?offset=<o>[&length=<n>]"}``
(no ``length`` for encapsulated, undefined-length pixel data).

Examples
--------
>>> from pydicom.data import get_testdata_file
>>> with open(get_testdata_file("CT_small.dcm"), "rb") as f:
...     h = read_header(f, path="CT_small.dcm")
>>> h.keys["Modality"], h.keys["Rows"]
('CT', 128)
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, BinaryIO, cast

from pydicom.dataset import Dataset
from pydicom.filereader import _read_file_meta_info, read_dataset, read_partial, read_preamble

from pixels.dicom.deflate import DeflateError, InflatingReader
from pixels.dicom.fastread import MAX_HEADER, join, parse, parse_trailing
from pixels.dicom.jsonenc import (
    _DEFLATED,
    _UNDEFINED,
    MAX_SEQUENCE_DEPTH,
    _Encoder,
    _tag_str,
    dumps,
    encode_json,
    nested_too_deep,
)
from pixels.dicom.keycols import key_values, parse_da, parse_tm
from pixels.dicom.pixelhead import add_pixel, after_pixel_data
from pixels.dicom.tags import PIXEL_DATA_TAGS
from pixels.errors import DicomReadError

__all__ = ["Header", "encode_json", "parse_da", "parse_tm", "read_header"]

_INFERRED_TS = {
    (True, True): "1.2.840.10008.1.2",
    (False, True): "1.2.840.10008.1.2.1",
    (False, False): "1.2.840.10008.1.2.2",
}


@dataclass(frozen=True, slots=True)
class Header:
    """What one read of a DICOM header yields.

    Attributes
    ----------
    meta : str
        DICOM JSON model (PS3.18 F.2) of the header as compact JSON, keys sorted by
        tag, bulk data (including pixel data) as ``BulkDataURI``.
    keys : dict[str, Any]
        Every :data:`pixels.schema.KEY_COLUMNS` keyword mapped to its typed value
        (``str``, ``int``, ``datetime.date``, ``datetime.time``), ``None`` when
        absent or invalid.
    forced : bool
        True when the file had no preamble/``DICM`` prefix and was read with force.
    transfer_syntax : str or None
        (0002,0010) from the file meta, or inferred from the encoding when absent.
    problem : str or None
        A defect found after the header was read whole (pixel data cut short):
        the header is good, the file is not. The catalog keeps ``meta`` and
        reports this in ``error``.
    trailing : str or None
        A defect in the elements after the pixel data (cut short, or bytes that
        are no element): ``meta`` holds everything before it, the pixel data is
        whole; the catalog keeps both and reports this in ``error``.
    """

    meta: str
    keys: dict[str, Any]
    forced: bool
    transfer_syntax: str | None
    problem: str | None = None
    #: The same model as ``meta``, as the dict it was serialised from (not compared).
    #: Read-only: the fast path shares the entries of repeated elements between files.
    model: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    #: A defect after the pixel data (a cut or unreadable trailing element): the
    #: header and the pixel data are good; the catalog keeps both and reports this.
    trailing: str | None = None


class _Guard:
    """The file object pydicom reads a header from.

    Reads never go past the end of the data (a declared length of 4 GB asks for
    no more memory than the bytes that exist), and once the data set has begun
    (``armed``) the first read that comes back short is noted: pydicom itself
    stops silently at a cut element header.
    """

    def __init__(self, fp: BinaryIO, size: int | None) -> None:
        self.fp = fp
        self.size = size  # None: an InflatingReader, which bounds its own reads
        self.name = getattr(fp, "name", None)
        self.armed = False
        self.short: tuple[int, int, bytes] | None = None  # (offset, asked, what came)
        self.little = True
        self.begin = 0  # where the data set starts
        self.arm_at: int | None = None  # arm at the first read from this offset on
        self.stopped: str | None = None  # a soft checker's reason to stop early

    def read(self, n: int | None = -1) -> bytes:
        pos = self.fp.tell()
        want = -1 if n is None else n
        if self.size is not None and (want < 0 or pos + want > self.size):
            want_now = max(self.size - pos, 0)
        else:
            want_now = want
        data = self.fp.read(want_now)
        if not self.armed and self.arm_at is not None and pos >= self.arm_at:
            self.armed = True
        if self.armed and self.short is None and 0 < len(data) < want:
            # (a read finding nothing is at the end of the data: pydicom ends the data
            # set there, or fails, which _cut_first reports as a cut)
            self.short = (pos, want, data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.fp.seek(offset, whence)

    def tell(self) -> int:
        return self.fp.tell()

    def has(self, end: int) -> bool:
        """Whether the data holds at least `end` bytes."""
        if self.size is not None:
            return end <= self.size
        return cast(InflatingReader, self.fp).available(end)

    def held(self, pos: int) -> int:
        """How many bytes the data holds from `pos` on (after :meth:`has` said too few)."""
        if self.size is not None:
            return max(self.size - pos, 0)
        return max(cast(InflatingReader, self.fp).inflated - pos, 0)

    def truncation(self) -> str | None:
        """The first short read after the data set began, as an error message."""
        if self.short is None:
            return None
        pos, want, got = self.short
        if want == 8 and len(got) >= 4:
            group, elem = struct.unpack("<HH" if self.little else ">HH", got[:4])
            return (
                f"truncated: the header of element {_tag_str(group << 16 | elem)} at offset "
                f"{pos} is cut short ({len(got)} of 8 bytes)"
            )
        if want in (4, 8):
            return (
                f"truncated: the data ends with {len(got)} byte(s) at offset {pos} that are "
                "not a complete element header"
            )
        return f"truncated: {want} bytes to read at offset {pos}, the data holds {len(got)}"


def _checker(
    src: _Guard, stop_at_pixels: bool, forced: bool = False, soft: bool = False
) -> Callable[[int, str | None, int], bool]:
    """pydicom ``stop_when``: stop at pixel data; refuse a length running past the data.

    It runs on every top-level element after its header and before its value is
    read, so a cut or lying length is an error naming the tag and the offset
    before a byte of the value is allocated.
    """

    def stop_when(tag: int, vr: str | None, length: int) -> bool:
        if forced and not src.armed and tag >> 16 not in (0x0002, 0x0004, 0x0008):
            raise DicomReadError(_not_dicom(tag))
        src.armed = True
        if stop_at_pixels and tag in PIXEL_DATA_TAGS:
            return True
        if length != _UNDEFINED:
            here = src.tell()
            if not src.has(here + length):
                cut = (
                    f"truncated: element {_tag_str(tag)} at offset {here} should have "
                    f"{length} bytes, the data holds {src.held(here)}"
                )
                if not soft:
                    raise DicomReadError(cut)
                src.stopped = cut  # keep what was read before it
                return True
        return False

    return stop_when


def _trailing(
    src: _Guard, stop: int, head12: bytes, little: bool, implicit: bool, encoding: Any
) -> Dataset | None:
    """The elements after the pixel data (GE private groups, digital signatures, padding).

    None when there are none. Their lengths are checked as the header's are.
    """
    if not src.has(stop + len(head12) + 1):
        return None
    end = after_pixel_data(src.fp, stop, head12, little, implicit)
    if end < 0:
        return None
    src.seek(end)  # before asking for the bytes: skipped pixel data is never held
    if not src.has(end + 1):
        return None
    src.armed = True
    return read_dataset(
        cast(BinaryIO, src),
        implicit,
        little,
        stop_when=_checker(src, False, soft=True),
        parent_encoding=encoding,
    )


# ---------------------------------------------------------------------------
# read_header
# ---------------------------------------------------------------------------


def read_header(
    fp: BinaryIO, *, path: str, bulk_threshold: int = 1024, fast: bool = True
) -> Header:
    """Read a DICOM file's header once: its JSON model and key column values.

    Parameters
    ----------
    fp : binary file-like
        Seekable, positioned at the start of the file.
    path : str
        Named in error messages.
    bulk_threshold : int
        Base64 size above which binary values become ``BulkDataURI``.
    fast : bool
        Try :func:`pixels.dicom.fastread.parse` first (the same result, faster);
        False reads every file with pydicom.

    Returns
    -------
    Header

    Raises
    ------
    DicomReadError
        Not DICOM, truncated or corrupt; the message names the path and, when an
        element is to blame, its tag.
    """
    try:
        start = fp.tell()
        head = fp.read(132)
        fp.seek(start)
    except Exception as e:
        raise DicomReadError(f"cannot read file: {e}", path=path) from e
    if not head:
        raise DicomReadError("empty file (0 bytes)", path=path)
    forced = head[128:132] != b"DICM"
    if fast and not forced:
        parsed = _read_fast(fp, start, path, bulk_threshold)
        if parsed is not None:
            return parsed
    try:
        ds, src, transfer_syntax, implicit, little = _read_dataset(fp, start, forced, path)
    except DicomReadError as e:
        raise DicomReadError(e.reason, path=path) from e
    except RecursionError as e:
        raise DicomReadError(_too_deep(e), path=path) from e
    except Exception as e:
        raise DicomReadError(
            f"not a readable DICOM file: {type(e).__name__}: {e}", path=path
        ) from e
    cut = src.truncation()
    if cut:
        raise DicomReadError(cut, path=path)
    if forced:
        _check_forced(ds, path)
    elif not ds._dict:
        if src.has(src.begin + 1):
            raise DicomReadError(
                f"truncated: the data set at offset {src.begin} ends before its first "
                "element is complete",
                path=path,
            )
        raise DicomReadError("no data elements after the file meta information", path=path)
    deflated = transfer_syntax in _DEFLATED

    with _encoding_errors(path):
        enc = _Encoder(bulk_threshold, deflated, little)
        js = enc.dataset(ds, "", 0)
        cut = src.truncation()
        if cut:
            raise DicomReadError(cut)
        stop = src.tell()
        head12 = src.fp.read(12)
        encoding = ds.original_character_set or ds._character_set
        found, problem = add_pixel(js, fp, stop, head12, little, implicit, deflated, ds)
        after = None
        if found:
            after = _add_trailing(js, enc, src, stop, head12, little, implicit, encoding)
        text = _json_text(js)
    return _header(text, js, transfer_syntax, forced, problem, after)


@contextmanager
def _encoding_errors(path: str) -> Iterator[None]:
    """Errors while encoding a header become :class:`DicomReadError` naming ``path``."""
    try:
        yield
    except DicomReadError as e:
        raise DicomReadError(e.reason, path=path) from e
    except Exception as e:
        raise DicomReadError(f"cannot encode header: {type(e).__name__}: {e}", path=path) from e


#: Compact, strict JSON text (one encoder for every header, not one per call).
_dumps = dumps


def _json_text(js: dict[str, Any]) -> str:
    """The compact DICOM JSON text the catalog stores in ``meta``."""
    return _dumps(js)


def _header(
    text: str,
    js: dict[str, Any],
    transfer_syntax: str | None,
    forced: bool,
    problem: str | None,
    after: str | None,
) -> Header:
    """The :class:`Header` of an encoded data set (``after``: only without a pixel problem)."""
    keys = key_values(js, transfer_syntax)
    return Header(text, keys, forced, transfer_syntax, problem, js, None if problem else after)


def _read_dataset(
    fp: BinaryIO, start: int, forced: bool, path: str
) -> tuple[Dataset, _Guard, str | None, bool, bool]:
    """Read the header with pydicom, up to the pixel data, every length checked first.

    Returns the dataset, the guarded file object (at the pixel data element, or
    at the end), the transfer syntax and the encoding (implicit VR, little endian).
    A deflated data set is inflated by :class:`~pixels.dicom.deflate.InflatingReader`
    (capped, streamed), never by pydicom (which inflates without a limit).
    """
    size = fp.seek(0, 2)
    scanned = None if forced else _scan_meta(fp, start, size)
    if scanned is not None and scanned[0] not in _DEFLATED:
        # the common case: one pass by pydicom, armed from the file meta on
        transfer_syntax, begin = scanned
        fp.seek(start)
        src = _Guard(fp, size)
        src.begin = begin
        src.arm_at = start + 132
        with _cut_first(src):
            ds = read_partial(cast(BinaryIO, src), stop_when=_checker(src, True), force=False)
        ts_elem = ds.file_meta.get(0x00020010)
        if ts_elem is not None and ts_elem.value:
            transfer_syntax = str(ts_elem.value).rstrip("\x00 ")
        return _with_encoding(ds, src, transfer_syntax)
    # forced, deflated or an odd file meta: pydicom reads the meta first
    fp.seek(start)
    src = _Guard(fp, size)
    read_preamble(cast(BinaryIO, src), forced)
    src.armed = not forced
    file_meta = _read_file_meta_info(cast(BinaryIO, src))
    cut = src.truncation()
    if cut:
        raise DicomReadError(cut)
    begin = src.tell()
    ts_elem = file_meta.get(0x00020010)
    transfer_syntax = None
    if ts_elem is not None and ts_elem.value:
        transfer_syntax = str(ts_elem.value).rstrip("\x00 ")
    if transfer_syntax in _DEFLATED:
        reader = InflatingReader(fp, path=path)
        src = _Guard(cast(BinaryIO, reader), None)
        src.begin = 0
        with _cut_first(src):
            inflated = read_dataset(cast(BinaryIO, src), False, True, stop_when=_checker(src, True))
        inflated.file_meta = file_meta
        return inflated, src, transfer_syntax, False, True
    fp.seek(start)
    src = _Guard(fp, size)
    src.begin = begin
    with _cut_first(src):
        ds = read_partial(cast(BinaryIO, src), stop_when=_checker(src, True, forced), force=forced)
    return _with_encoding(ds, src, transfer_syntax)


def _with_encoding(
    ds: Dataset, src: _Guard, transfer_syntax: str | None
) -> tuple[Dataset, _Guard, str | None, bool, bool]:
    try:
        implicit, little = ds.original_encoding
    except Exception:
        implicit, little = False, True
    implicit, little = bool(implicit), bool(little)
    src.little = little
    if transfer_syntax is None:
        transfer_syntax = _INFERRED_TS.get((implicit, little))
    return ds, src, transfer_syntax, implicit, little


@contextmanager
def _cut_first(src: _Guard) -> Iterator[None]:
    """A failure of pydicom's after a short read is that truncation (pydicom's own message
    is about a later consequence, such as "No tag to read")."""
    try:
        yield
    except DicomReadError:
        raise
    except Exception as e:
        cut = src.truncation()
        if cut:
            raise DicomReadError(cut) from e
        if src.size is not None and src.tell() >= src.size:
            raise DicomReadError(
                f"truncated: the data ends at offset {src.size} inside an element or sequence "
                f"({type(e).__name__}: {e})"
            ) from e
        raise


_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN"})
_LONG_VRS |= {b"UR", b"UT", b"UV"}


def _scan_meta(fp: BinaryIO, start: int, size: int) -> tuple[str | None, int] | None:
    """Scan an explicit VR little endian file meta group: (its transfer syntax, its end).

    Only to decide, before pydicom reads anything, whether the data set is
    deflated (pydicom would inflate it whole); None when the group is not plain
    enough to be sure (the caller then reads the meta with pydicom first).
    """
    fp.seek(start + 128)
    if fp.read(4) != b"DICM":
        return None
    pos = start + 132
    ts: str | None = None
    while True:
        head = fp.read(8)
        if len(head) < 8:
            return (ts, pos) if not head else None
        group, elem, vr, length = struct.unpack("<HH2sH", head)
        if group != 2:
            return ts, pos
        if vr in _LONG_VRS:
            extra = fp.read(4)
            if len(extra) < 4 or length:
                return None
            (length,) = struct.unpack("<L", extra)
            pos += 12
        elif b"AA" <= vr <= b"ZZ":
            pos += 8
        else:
            return None
        if length == _UNDEFINED or pos + length > size:
            return None
        if elem == 0x0010:
            ts = fp.read(min(length, 128)).decode("latin-1").rstrip("\x00 ")
        pos += length
        fp.seek(pos)


def _add_trailing(
    js: dict[str, Any],
    enc: _Encoder,
    src: _Guard,
    stop: int,
    head12: bytes,
    little: bool,
    implicit: bool,
    encoding: Any,
) -> str | None:
    """Add the elements after the pixel data to `js`, keeping `js` sorted by tag.

    Returns what is wrong with them (and adds none), or None.
    """
    try:
        with _cut_first(src):
            trailing = _trailing(src, stop, head12, little, implicit, encoding)
        if trailing is None:
            return None
        more = enc.dataset(trailing, "", 0)
    except DeflateError:
        raise  # a deflate bomb or a corrupt stream is the whole file's defect
    except RecursionError as e:
        return f"after the pixel data: {_too_deep(e)}"
    except Exception as e:
        reason = e.reason if isinstance(e, DicomReadError) else f"{type(e).__name__}: {e}"
        return f"after the pixel data: {reason}"
    for key, value in more.items():
        js.setdefault(key, value)
    items = sorted(js.items())
    js.clear()
    js.update(items)
    cut = src.stopped or src.truncation()
    return f"after the pixel data: {cut}" if cut else None


def _read_fast(fp: BinaryIO, start: int, path: str, bulk_threshold: int) -> Header | None:
    """The fast path: None when the file is left to pydicom (`fp` back at `start`)."""
    try:
        parsed = parse(fp, start, bulk_threshold)
    except DicomReadError as e:  # refused by the parser (sequences nested too deep)
        raise DicomReadError(e.reason, path=path) from e
    except Exception as e:  # the file cannot even be rewound
        raise DicomReadError(f"cannot read file: {e}", path=path) from e
    if parsed is None:
        return None
    js, fast_parts, transfer_syntax, stop, head12, encodings, implicit, begin = parsed
    parts: list[str] | None = fast_parts
    deflated = transfer_syntax in _DEFLATED
    with _encoding_errors(path):
        problem = after = None
        text = None
        if stop is not None:
            found, problem = add_pixel(js, fp, stop, head12, True, implicit, deflated, None)
            if found:
                key, entry = next(reversed(js.items()))  # the pixel data, just added
                fast_parts.append(f'"{key}":{_json_text(entry)}')
            if deflated:  # the elements after the pixel data: inflate past it again
                fp.seek(begin)
                src = _Guard(cast(BinaryIO, InflatingReader(fp, path=path)), None)
                size = len(js)
                enc = _Encoder(bulk_threshold, deflated, True)
                after = _add_trailing(js, enc, src, stop, head12, True, False, encodings)
                if len(js) != size:
                    parts = None  # added by pydicom's path: the text from the model
            else:
                after = _fast_trailing(
                    fp, js, fast_parts, stop, head12, implicit, bulk_threshold, encodings
                )
                if after == _ASK_PYDICOM:
                    src = _Guard(fp, fp.seek(0, 2))
                    enc = _Encoder(bulk_threshold, deflated, True)
                    after = _add_trailing(js, enc, src, stop, head12, True, implicit, encodings)
                    parts = None
        text = _json_text(js) if parts is None else join(parts)
    return _header(text, js, transfer_syntax, False, problem, after)


#: What :func:`_fast_trailing` returns when pydicom must read the elements after the pixel data.
_ASK_PYDICOM = "pydicom"


def _fast_trailing(
    fp: BinaryIO,
    js: dict[str, Any],
    parts: list[str],
    stop: int,
    head12: bytes,
    implicit: bool,
    bulk_threshold: int,
    encodings: list[str],
) -> str | None:
    """Add the elements after the pixel data with the fast parser, as :func:`_add_trailing` does.

    Returns None (done: added, or there are none), what is wrong with them (as
    :func:`_add_trailing` words it), or :data:`_ASK_PYDICOM`. ``parts`` (the
    elements' JSON texts, see :func:`pixels.dicom.fastread.join`) follows ``js``.
    """
    size = fp.seek(0, 2)
    if size < stop + len(head12) + 1:
        return None
    end = after_pixel_data(fp, stop, head12, True, implicit)
    if end < 0 or end >= size:
        return None
    if size - end > MAX_HEADER:
        return _ASK_PYDICOM
    fp.seek(end)
    try:
        more = parse_trailing(fp.read(size - end), end, bulk_threshold, encodings, implicit)
    except DicomReadError as e:
        return f"after the pixel data: {e.reason}"
    if more is None:
        return _ASK_PYDICOM
    model, texts = more
    if model:
        last = next(reversed(js)) if js else ""
        in_order = True
        for (key, value), text in zip(model.items(), texts, strict=True):
            if key not in js:
                in_order = in_order and key > last  # (the trailing elements are in order)
                js[key] = value
                parts.append(text)
        if not in_order:
            items = sorted(js.items())
            js.clear()
            js.update(items)
            parts.sort()  # '"gggggeeee":...': the keys have one length, and are unique
    return None


def _too_deep(e: RecursionError) -> str:
    """Name the sequences pydicom was reading when it ran out of recursion depth.

    pydicom reads nested sequences recursively; its element generator holds the tag
    of the sequence it is in (``tag``, ``vr == "SQ"``) in each frame of the traceback.
    """
    tags: list[int] = []
    tb = e.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "data_element_generator" and frame.f_locals.get("vr") == "SQ":
            tag = frame.f_locals.get("tag")
            if isinstance(tag, int):
                tags.append(tag)
        tb = tb.tb_next
    if len(tags) > MAX_SEQUENCE_DEPTH:  # the fast parser's refusal, word for word
        deep = nested_too_deep("/0/".join(f"{t:08X}" for t in tags[: MAX_SEQUENCE_DEPTH + 1]))
        if deep:
            return deep
    if not tags:
        return "sequences nested too deep to read (past Python's recursion limit): refused"
    return (
        f"sequence {_tag_str(tags[-1])} is nested more than {len(tags)} levels deep "
        f"(inside {_tag_str(tags[0])}; past Python's recursion limit): refused"
    )


def _check_forced(ds: Dataset, path: str) -> None:
    """Reject what a forced read of a non-DICOM file produces."""
    first = next(iter(ds._dict), None)
    if first is None:
        raise DicomReadError("not a DICOM file: no 'DICM' prefix and no data elements", path=path)
    if first >> 16 not in (0x0002, 0x0004, 0x0008):
        raise DicomReadError(_not_dicom(first), path=path)


def _not_dicom(first: int) -> str:
    return (
        f"not a DICOM file: no 'DICM' prefix and the first element {_tag_str(first)} "
        "is not a plausible start of a dataset"
    )
