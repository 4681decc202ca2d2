"""Fast path of :func:`pixels.dicom.meta.read_header`: parse the header bytes directly.

:func:`parse` reads the common case of a DICOM header without building a pydicom
``Dataset``: a file with the 128-byte preamble and ``DICM`` prefix, a file meta
group (0002) and a little endian dataset: explicit VR (transfer syntax
1.2.840.10008.1.2.1 and every encapsulated syntax), implicit VR (1.2.840.10008.1.2,
element VRs from the data dictionary as pydicom looks them up) or deflated
(1.2.840.10008.1.2.1.99, inflated here with a cap). It walks the element headers
of the bytes read in chunks, decodes values with the same decoders as
:mod:`pixels.dicom.jsonenc` and yields the same DICOM JSON model as pydicom's
``dcmread(stop_before_pixels=True)`` followed by
:func:`~pixels.dicom.jsonenc.encode_json`.

Anything it is not sure pydicom reads the same way makes it give up (``None``),
and :func:`~pixels.dicom.meta.read_header` reads the whole file with pydicom:
big endian or no transfer syntax, a missing preamble, an unknown VR, an explicit
``UN``; in implicit VR a tag whose VR pydicom infers from the dataset (ambiguous VRs
other than ``US or SS`` after a top-level (0028,0103)) or a dataset that starts in
explicit VR; a non-sequence element of undefined
length, tags out of order or repeated, a (0008,0005) inside a sequence item or
after text it applies to, group 0000/0002 elements in the dataset, sequence
items that do not end where their length says, an element pydicom's own
converters would have to decode (``_UnhandledError``), a header longer than
:data:`MAX_HEADER` or cut short by the end of the file, a pixel data element
whose VR read_header would infer from (0028,0100), a deflate stream that inflates
past :data:`MAX_HEADER` before the pixel data or is corrupt.

Sequences nested more than :data:`MAX_SEQUENCE_DEPTH` deep are refused
(:class:`~pixels.errors.DicomReadError` naming the tag), by both paths alike
(:func:`pixels.dicom.jsonenc.nested_too_deep`).
"""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Callable
from typing import Any, BinaryIO

from pydicom import config as _config
from pydicom import uid as _uid
from pydicom.charset import convert_encodings, python_encoding
from pydicom.datadict import dictionary_VR, private_dictionary_VR
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR
from pydicom.values import convert_string

from pixels.dicom.jsonenc import (
    _BINARY_VRS,
    _DECODERS,
    _DEFLATED,
    _KEYS,
    _NUMBER_FORMATS,
    _UNDEFINED,
    BULK_VRS,
    MAX_INLINE_VALUE,
    MAX_SEQUENCE_DEPTH,
    _active_decoders,
    _Encoder,
    _implicit_vr,
    _InvalidError,
    _key,
    _public_vr,
    _UnhandledError,
    dumps,
    nested_too_deep,
)
from pixels.dicom.tags import PIXEL_DATA_TAGS
from pixels.errors import DicomReadError

__all__ = ["FIRST_READ", "MAX_HEADER", "MAX_SEQUENCE_DEPTH", "Parsed", "join", "parse"]

#: Bytes read first (preamble, file meta and, in practice, the whole header).
FIRST_READ = 64 * 1024
#: Headers longer than this (inflated, for a deflated file) are left to pydicom.
MAX_HEADER = 8 * 1024 * 1024

_IMPLICIT = "1.2.840.10008.1.2"
_BIG_ENDIAN = "1.2.840.10008.1.2.2"
#: Explicit VR bytes -> (VR, has a 4-byte length); pydicom's ENCODED_VR.
_VRS: dict[bytes, tuple[str, bool]] = {
    str(v).encode(): (str(v), v in EXPLICIT_VR_LENGTH_32) for v in VR if len(str(v)) == 2
}
#: VRs whose text is decoded with the character set.
_CHARSET_VRS = frozenset({"SH", "LO", "UC", "ST", "LT", "UT", "PN"})
#: Single-valued numbers: VR -> (size, little endian unpack_from).
_NUMBERS: dict[str, tuple[int, Callable[[bytes, int], tuple[Any, ...]]]] = {
    vr: (struct.calcsize("<" + code), struct.Struct("<" + code).unpack_from)
    for vr, code in _NUMBER_FORMATS.items()
}
#: ``US or SS`` tags whose VR pydicom takes from a top-level (0028,0103) Pixel
#: Representation (0: US, else SS) when read in implicit VR; other ambiguous tags
#: are left to pydicom.
_US_OR_SS = frozenset(
    {0x00280104, 0x00280105, 0x00280106, 0x00280107, 0x00280108, 0x00280109, 0x00280110}
    | {0x00280111, 0x00280120, 0x00280121}
)

#: VRs of private elements (implicit VR, from pydicom's private dictionary) decoded
#: here: those whose JSON pydicom's own converter gives alike (it converts the others).
_PRIVATE_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DT", "DS", "IS", "LO", "LT", "SH", "ST", "TM", "UC", "UI", "UT"}
    | {"US", "SS", "UL", "SL", "FL", "FD", "OB", "OW", "OF", "OD", "OL", "UN"}
)

_DEC, _BIN, _SQ, _NO = range(4)
#: How a VR is read: (VR, 4-byte length, kind, single number size or 0,
#: its unpack_from, decoder).
_Row = tuple[str, bool, int, int, Callable[[bytes, int], tuple[Any, ...]], Any]


def _table(decoders: dict[str, Any]) -> dict[bytes, _Row]:
    table: dict[bytes, _Row] = {}
    for raw, (vr, long) in _VRS.items():
        size, unpack = _NUMBERS.get(vr, (0, _U32))
        decoder = decoders.get(vr)
        if decoder is not None:
            kind = _DEC
        elif vr in _BINARY_VRS:
            kind = _BIN
        elif vr == "SQ":
            kind = _SQ
        else:
            kind = _NO
        table[raw] = (vr, long, kind, size, unpack, decoder)
    return table


#: Explicit VRs with a 2-byte length, as the little endian number of their two bytes.
_SHORT_VRS = frozenset(int.from_bytes(raw, "little") for raw, (_, long) in _VRS.items() if not long)
_HEAD = struct.Struct("<HH2sH").unpack_from  # tag, VR, 2-byte length
_HEAD4 = struct.Struct("<HHHH").unpack_from  # tag, VR (as a number), 2-byte length
_ITEM = struct.Struct("<HHL").unpack_from  # item tag, 4-byte length (and implicit VR heads)
_U32 = struct.Struct("<L").unpack_from
_U16 = struct.Struct("<H").unpack_from
_DEFAULT_TABLE = _table(_DECODERS)
#: (JSON key, *row) by ``tag << 16 | VR bytes``: one look-up per element.
_KeyedRow = tuple[str, str, bool, int, int, Callable[[bytes, int], tuple[Any, ...]], Any]
_DEFAULT_ROWS: dict[int, _KeyedRow] = {}

#: (JSON model, its JSON text element by element (see :func:`join`), transfer
#: syntax, offset of the pixel data element or None (in the inflated stream for a
#: deflated file), its first 12 bytes, the character set's Python encodings,
#: implicit VR, file offset where the data set begins).
Parsed = tuple[dict[str, Any], list[str], str, int | None, bytes, list[str], bool, int]

#: Elements (header and value) of at most this many bytes are cached (see
#: :meth:`_Parser.dataset`); at most :data:`CACHE_ENTRIES` per cache (then emptied).
CACHED_BYTES = 256
CACHE_ENTRIES = 20_000
#: (bulk threshold's inline limit, character set encodings, implicit VR) -> element bytes ->
#: (JSON model entry, its ``"key":{...}`` text, its key). Entries are shared between the
#: models of different files: read-only.
_Cache = dict[bytes, tuple[dict[str, Any], str, str]]
_CACHES: dict[tuple[int, tuple[str, ...], bool], _Cache] = {}


#: A run of elements that followed a cached element last time, all of them cached
#: too: (its length in bytes, its bytes, its (key, model entry) pairs, their JSON
#: texts, the last tag, private creators among them as (tag, start, end) from the
#: run's start).
_Run = tuple[int, bytes, dict[str, Any], list[str], int, list[tuple[int, int, int]]]
#: The runs that follow an element (by its bytes), per cache (same key as :data:`_CACHES`);
#: at most :data:`RUN_ENTRIES` runs of at most :data:`RUN_BYTES` bytes each per cache.
_RUNS: dict[tuple[int, tuple[str, ...], bool], dict[bytes, _Run]] = {}
RUN_ENTRIES = 2_000
RUN_BYTES = 4096


#: A top-level sequence seen before, by its 12-byte element header (explicit VR):
#: (its length in bytes, header and items included, its bytes, its model entry, its
#: ``"key":{...}`` text). A file of a series repeats its sequences byte for byte, most
#: of them of undefined length (not known before they are walked): when the bytes from
#: the header on are the same as last time, so is the sequence. Kept only when every
#: element inside was cacheable (no bulk data URI: those hold offsets), at most
#: :data:`SEQ_BYTES` bytes each and :data:`SEQ_ENTRIES` per cache (same key as :data:`_CACHES`).
_Seq = tuple[int, bytes, dict[str, Any], str]
_SEQS: dict[tuple[int, tuple[str, ...], bool], dict[bytes, _Seq]] = {}
SEQ_ENTRIES = 500
SEQ_BYTES = 4096


def _cache_for(limit: int, encodings: list[str], implicit: bool = False) -> _Cache:
    key = (limit, tuple(encodings), implicit)
    cache = _CACHES.get(key)
    if cache is None:
        if len(_CACHES) >= 16:
            _CACHES.clear()
            _RUNS.clear()
            _SEQS.clear()
        cache = _CACHES[key] = {}
        _RUNS[key] = {}
        _SEQS[key] = {}
    return cache


def _runs_for(limit: int, encodings: list[str]) -> dict[bytes, _Run]:
    """The runs of explicit VR elements kept beside :func:`_cache_for`'s cache."""
    _cache_for(limit, encodings)
    return _RUNS.setdefault((limit, tuple(encodings), False), {})


def _seqs_for(limit: int, encodings: list[str]) -> dict[bytes, _Seq]:
    """The top-level sequences of explicit VR kept beside :func:`_cache_for`'s cache."""
    _cache_for(limit, encodings)
    return _SEQS.setdefault((limit, tuple(encodings), False), {})


def join(parts: list[str]) -> str:
    """The compact JSON text of a data set from its elements' ``"key":{...}`` texts.

    The same text as ``json.dumps(model, separators=(",", ":"), ensure_ascii=False)``
    of the model whose elements they are, in the same order.
    """
    return "{" + ",".join(parts) + "}"


class _FallbackError(Exception):
    """Not a case the fast path handles: read the file with pydicom."""


class _NeedMoreError(Exception):
    """The header runs past the bytes read so far."""


def parse(fp: BinaryIO, start: int, bulk_threshold: int) -> Parsed | None:
    """Parse the header of the file at `start` in `fp`; None to let pydicom read it.

    `fp` is left at `start` when None is returned.

    Raises
    ------
    DicomReadError
        Sequences nested more than :data:`MAX_SEQUENCE_DEPTH` levels deep.
    """
    if _config.use_none_as_empty_text_VR_value or _uid.PrivateTransferSyntaxes:
        return None
    want = FIRST_READ
    try:
        buf = fp.read(want)
        eof = len(buf) < want
        while True:
            try:
                return _Parser(buf, start, eof, bulk_threshold).run(fp)
            except _NeedMoreError:
                if eof or len(buf) >= MAX_HEADER:
                    break
                more = fp.read(len(buf))
                eof = len(more) < len(buf)
                buf += more
    except DicomReadError:  # refused (nesting too deep): pydicom would only recurse further
        fp.seek(start)
        raise
    except Exception:  # _FallbackError, or anything unforeseen: pydicom decides
        pass
    fp.seek(start)
    return None


def parse_trailing(
    data: bytes,
    base: int,
    bulk_threshold: int,
    encodings: list[str],
    implicit: bool,
) -> tuple[dict[str, Any], list[str]] | None:
    """The elements after the pixel data (`data`, at file offset `base`) and their JSON
    texts (as :meth:`_Parser.dataset`); None: ask pydicom.

    Raises
    ------
    DicomReadError
        Sequences nested more than :data:`MAX_SEQUENCE_DEPTH` levels deep.
    """
    key = None
    if len(data) <= TRAILING_CACHED and _active_decoders() is _DECODERS:
        key = (data, bulk_threshold, tuple(encodings), implicit)
        known = _TRAILING.get(key)
        if known is not None:
            return known
    got = _parse_trailing(data, base, bulk_threshold, encodings, implicit)
    if key is not None and got is not None and not any("BulkDataURI" in t for t in got[1]):
        # the same bytes, the same elements (no offset in them): shared, read-only
        if len(_TRAILING) >= CACHE_ENTRIES:
            _TRAILING.clear()
        _TRAILING[key] = got
    return got


#: Elements after the pixel data of at most this many bytes are cached (see
#: :func:`parse_trailing`): the data set trailing padding of a series, file after file.
TRAILING_CACHED = 1024
_TRAILING: dict[tuple[bytes, int, tuple[str, ...], bool], tuple[dict[str, Any], list[str]]] = {}


def _parse_trailing(
    data: bytes,
    base: int,
    bulk_threshold: int,
    encodings: list[str],
    implicit: bool,
) -> tuple[dict[str, Any], list[str]] | None:
    try:
        p = _Parser(data, base, True, bulk_threshold)
        p.encodings = encodings
        if p.cache is not None:
            p.cache = _cache_for(p.limit, encodings)
            p.runs = _runs_for(p.limit, encodings)
            p.seqs = _seqs_for(p.limit, encodings)
        p.implicit = implicit
        if len(data) < 6 or implicit == _looks_explicit(data, 0):
            return None  # pydicom would switch encodings (or read nothing)
        read = p.dataset_implicit if implicit else p.dataset
        js, parts, _ = read(0, len(data), "", False)
        return js, parts
    except DicomReadError:
        raise
    except Exception:
        return None


_ODD_PUBLIC: dict[int, bool] = {}
#: (0008,0005) value bytes -> the Python encodings pydicom maps them to.
_CHARSETS: dict[bytes, tuple[str, ...]] = {}


def _in_dictionary(tag: int) -> bool:
    """Whether pydicom's public dictionary (repeaters included) has ``tag``."""
    known = _ODD_PUBLIC.get(tag)
    if known is None:
        try:
            dictionary_VR(tag)
            known = True
        except KeyError:
            known = False
        if len(_ODD_PUBLIC) < 100_000:
            _ODD_PUBLIC[tag] = known
    return known


def _looks_explicit(buf: bytes, pos: int) -> bool:
    """pydicom's test of a data set's first element: VR bytes in ``A``-``Z``."""
    return 0x40 < buf[pos + 4] < 0x5B and 0x40 < buf[pos + 5] < 0x5B


class _Parser:
    __slots__ = (
        "base",
        "buf",
        "cache",
        "early_text",
        "enc",
        "encodings",
        "eof",
        "implicit",
        "limit",
        "n",
        "pixel_rep",
        "rows",
        "runs",
        "seqs",
        "table",
        "uncached",
    )

    def __init__(self, buf: bytes, base: int, eof: bool, bulk_threshold: int) -> None:
        self.buf = buf
        self.n = len(buf)
        self.base = base
        self.eof = eof
        self.enc = _Encoder(bulk_threshold, False)
        self.limit = self.enc.limit
        decoders = self.enc.decoders
        self.table = _DEFAULT_TABLE if decoders is _DECODERS else _table(decoders)
        self.rows: dict[int, _KeyedRow] = _DEFAULT_ROWS if decoders is _DECODERS else {}
        self.encodings: list[str] = ["iso8859"]  # pydicom's default_encoding
        self.early_text = False
        self.implicit = False
        self.pixel_rep: int | None = None  # a top-level (0028,0103), for US or SS tags
        self.cache = _cache_for(self.limit, self.encodings) if decoders is _DECODERS else None
        self.runs = _runs_for(self.limit, self.encodings) if self.cache is not None else None
        self.seqs = _seqs_for(self.limit, self.encodings) if self.cache is not None else None
        self.uncached = 0  # elements read but not cached (see :data:`_SEQS`)

    def short(self) -> None:
        """The bytes end inside the header: read more, or give up at the end of the file."""
        raise _FallbackError if self.eof else _NeedMoreError

    def run(self, fp: BinaryIO) -> Parsed:
        buf = self.buf
        if self.n < 132:
            self.short()
        if buf[128:132] != b"DICM":
            raise _FallbackError
        ts, pos = self.file_meta(132)
        if not ts or "\\" in ts or ts == _BIG_ENDIAN:
            raise _FallbackError
        begin = self.base + pos
        if ts in _DEFLATED:
            return self.run_deflated(ts, pos, begin)
        self.implicit = implicit = ts == _IMPLICIT
        if pos + 6 > self.n:
            self.short()
        if implicit == _looks_explicit(buf, pos):
            raise _FallbackError  # pydicom would switch to the other encoding
        read = self.dataset_implicit if implicit else self.dataset
        js, parts, pos = read(pos, -1, "", True)
        if not js:
            raise _FallbackError  # pydicom's empty dataset: let read_header report it
        if pos == self.n:  # the end of the file, no pixel data
            if fp.read(1):
                raise _FallbackError  # a short read, not the end of the file
            return js, parts, ts, None, b"", self.encodings, implicit, begin
        head = buf[pos : pos + 12]
        if len(head) < 12:
            self.short()
        if not implicit and head[:4] == b"\xe0\x7f\x10\x00" and head[4:6] not in (b"OB", b"OW"):
            raise _FallbackError  # read_header would infer the VR from the dataset
        return js, parts, ts, self.base + pos, head, self.encodings, implicit, begin

    def run_deflated(self, ts: str, pos: int, begin: int) -> Parsed:
        """Inflate the data set (at most :data:`MAX_HEADER` bytes) and parse it."""
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            data = inflater.decompress(self.buf[pos:], MAX_HEADER)
        except zlib.error:
            raise _FallbackError from None  # corrupt: pydicom's path names the problem
        # more can come only when the stream goes on in bytes of the file not read yet
        more = not inflater.eof and not inflater.unconsumed_tail and not self.eof
        self.buf, self.n, self.base, self.eof = data, len(data), 0, not more
        self.enc = _Encoder(self.enc.threshold, True)
        if len(data) < 6:
            self.short()
        if not _looks_explicit(data, 0):
            raise _FallbackError  # pydicom would switch to implicit VR
        js, parts, at = self.dataset(0, -1, "", True)
        if not js:
            raise _FallbackError
        if at == len(data):  # (only once nothing more can be inflated)
            if not inflater.eof:
                raise _FallbackError  # capped or cut: pydicom's path decides
            return js, parts, ts, None, b"", self.encodings, False, begin
        head = data[at : at + 12]
        if len(head) < 12:
            self.short()
        if head[:4] == b"\xe0\x7f\x10\x00" and head[4:6] not in (b"OB", b"OW"):
            raise _FallbackError
        return js, parts, ts, at, head, self.encodings, False, begin

    def file_meta(self, pos: int) -> tuple[str | None, int]:
        """Walk the file meta group; return (0002,0010) and the dataset's start."""
        buf = self.buf
        ts: str | None = None
        prev = -1
        while True:
            if pos + 8 > self.n:
                self.short()
            group, elem, raw_vr, length = _HEAD(buf, pos)
            if group != 2:
                return ts, pos
            tag = group << 16 | elem
            info = _VRS.get(raw_vr)
            if tag <= prev or info is None:
                raise _FallbackError
            prev = tag
            if info[1]:
                if pos + 12 > self.n:
                    self.short()
                length = _U32(buf, pos + 8)[0]
                pos += 12
            else:
                pos += 8
            if length == _UNDEFINED or info[0] == "SQ":
                raise _FallbackError
            end = pos + length
            if end > self.n:
                self.short()
            if tag == 0x00020010:
                ts = buf[pos:end].decode("latin-1").rstrip("\x00 ")
            pos = end

    def dataset(
        self, pos: int, end: int, prefix: str, top: bool
    ) -> tuple[dict[str, Any], list[str], int]:
        """Encode the explicit VR elements from `pos`.

        A top-level dataset ends at pixel data or the end of the file, an item at
        `end` (defined length) or its delimiter (``end < 0``). Returns the JSON
        model, its compact JSON text element by element (``"gggggeeee":{...}``,
        see :func:`join`) and the position after the dataset (at the pixel data
        element).

        An element of at most :data:`CACHED_BYTES` bytes whose JSON depends on
        its bytes alone is looked up in :data:`_CACHES` by those bytes (header
        included): a series repeats most of its header, file after file.
        """
        buf = self.buf
        n = self.n
        base = self.base
        rows = self.rows
        encodings = self.encodings
        cache = self.cache
        runs = self.runs
        out: dict[str, Any] = {}
        parts: list[str] = []
        creators: dict[int, tuple[int, int]] = {}
        prev = -1
        # the run of cached elements being recorded: after the element `head`, from `rstart`
        head: bytes | None = None
        rstart = 0
        ritems: list[tuple[str, Any]] = []
        rparts: list[str] = []
        rcreators: list[tuple[int, int, int]] = []
        while True:
            if end >= 0 and pos >= end:
                if head is not None:
                    self.keep_run(runs, head, rstart, pos, ritems, rparts, prev, rcreators)
                if pos != end:
                    raise _FallbackError
                return out, parts, pos
            if pos + 8 > n:
                if head is not None:
                    self.keep_run(runs, head, rstart, pos, ritems, rparts, prev, rcreators)
                    head = None
                if top and pos == n and self.eof:
                    return out, parts, pos
                self.short()
            start = pos
            group, elem, vr16, length = _HEAD4(buf, pos)
            tag = group << 16 | elem
            if 0x00080005 < tag < 0x7FE00008 and vr16 in _SHORT_VRS and cache is not None:
                # the common case: an element seen before, whole in its first 8 + length bytes
                nxt = pos + 8 + length
                seen = buf[pos:nxt]
                hit = cache.get(seen)
                if hit is not None:
                    if tag <= prev:
                        raise _FallbackError
                    prev = tag
                    if group & 1 and 0x10 <= elem < 0x100:
                        creators[tag] = (pos + 8, nxt)
                        if head is not None:
                            rcreators.append((tag, pos + 8 - rstart, nxt - rstart))
                    out[hit[2]] = hit[0]
                    parts.append(hit[1])
                    pos = nxt
                    if head is not None:  # recording: one more element of the run
                        ritems.append((hit[2], hit[0]))
                        rparts.append(hit[1])
                        continue
                    run = runs.get(seen)  # type: ignore[union-attr]
                    if run is not None:
                        stop = nxt + run[0]
                        if (end < 0 or stop <= end) and buf[nxt:stop] == run[1]:
                            # the same bytes as last time: the same elements, all cached
                            out.update(run[2])
                            parts.extend(run[3])
                            for ctag, cs, ce in run[5]:
                                creators[ctag] = (nxt + cs, nxt + ce)
                            prev = run[4]
                            pos = stop
                            continue
                    head, rstart, ritems, rparts, rcreators = seen, nxt, [], [], []
                    continue
            if head is not None:
                self.keep_run(runs, head, rstart, pos, ritems, rparts, prev, rcreators)
                head = None
            if top and (tag >= 0x7FE00008 or tag < 0x00030000):
                if tag in PIXEL_DATA_TAGS:
                    return out, parts, pos
                if tag < 0x00030000:
                    raise _FallbackError  # command or file meta elements in the dataset
            if group == 0xFFFE:
                if tag == 0xFFFEE00D and end < 0 and not top and not vr16 and not length:
                    return out, parts, pos + 8
                raise _FallbackError
            row = rows.get(tag << 16 | vr16)
            if row is None:
                row = self.row(tag, vr16)
            if tag <= prev:
                raise _FallbackError
            prev = tag
            key, vr, long, kind, size, unpack, decoder = row
            if long:
                if pos + 12 > n:
                    self.short()
                length = _U32(buf, pos + 8)[0]
                pos += 12
            else:
                pos += 8
            if tag <= 0x00080005:
                if tag == 0x00080005:
                    if not top or self.early_text or vr != "CS" or not length:
                        raise _FallbackError
                    encodings = self.encodings = self.charset(pos, length)
                    cache = self.cache = _cache_for(self.limit, encodings)
                    runs = self.runs = _runs_for(self.limit, encodings)
                    self.seqs = _seqs_for(self.limit, encodings)
                elif kind == _SQ or vr in _CHARSET_VRS:
                    self.early_text = True
            if kind == _SQ:
                if not elem:
                    raise _FallbackError  # a group length written as a sequence
                seqs = self.seqs if top and tag > 0x00080005 else None
                if seqs is not None:
                    known = seqs.get(buf[start:pos])
                    if known is not None:
                        stop = start + known[0]
                        if buf[start:stop] == known[1]:  # the same bytes: the same sequence
                            out[key] = known[2]
                            parts.append(known[3])
                            pos = stop
                            continue
                uncached = self.uncached
                items, texts, pos = self.sequence(pos, length, prefix + key)
                entry: dict[str, Any] = {"vr": "SQ", "Value": items}
                out[key] = entry
                part = f'"{key}":{{"vr":"SQ","Value":[{",".join(texts)}]}}'
                parts.append(part)
                if seqs is not None and self.uncached == uncached and pos - start <= SEQ_BYTES:
                    if len(seqs) >= SEQ_ENTRIES:
                        seqs.clear()
                    seqs[buf[start : start + 12]] = (pos - start, buf[start:pos], entry, part)
                continue
            if length == _UNDEFINED or kind == _NO:
                if vr != "UN" or not group & 1 or length == _UNDEFINED or tag <= 0x00080005:
                    raise _FallbackError  # a VR pydicom must convert
                # a private element written as UN: pydicom reads it as in implicit VR
                if pos + length > n:
                    self.short()
                entry = self.private_un(tag, pos, length, creators, prefix + key)
                self.uncached += 1
                out[key] = entry
                parts.append(f'"{key}":{dumps(entry)}')
                pos += length
                continue
            vpos = pos
            pos += length
            if pos > n:
                self.short()
            if not elem:
                continue  # group length: not in the JSON model (PS3.18 F.2)
            if group & 1 and 0x10 <= elem < 0x100:
                creators[tag] = (vpos, pos)
            raw = None
            if cache is not None and length <= CACHED_BYTES:
                raw = buf[start:pos]
                hit = cache.get(raw)
                if hit is not None:
                    out[key] = hit[0]
                    parts.append(hit[1])
                    continue
            if not length:
                entry = {"vr": vr}
            elif kind == _BIN:
                if length > self.limit:
                    raw = None  # the URI holds the offset: not cached
                    uri = self.enc.uri(prefix + key, base + vpos, length)
                    entry = {"vr": vr, "BulkDataURI": uri}
                else:
                    text = base64.b64encode(buf[vpos:pos]).decode("ascii")
                    entry = {"vr": vr, "InlineBinary": text}
            else:
                entry = {}
                if length == size:  # a single number (size is 0 for text VRs)
                    v = unpack(buf, vpos)[0]
                    if v == v and v - v == 0:  # finite (NaN and inf fail)
                        entry = {"vr": vr, "Value": [v]}
                if entry:
                    pass
                elif length > MAX_INLINE_VALUE and vr in BULK_VRS:
                    raw = None
                    entry = {
                        "vr": vr,
                        "BulkDataURI": self.enc.uri(prefix + key, base + vpos, length),
                    }
                else:
                    try:
                        v = decoder(buf[vpos:pos], True, encodings)
                        entry = {"vr": vr} if v is None else {"vr": vr, "Value": v}
                    except (_UnhandledError, _InvalidError):
                        raw = None  # may hold a URI (offset, tag path): not cached
                        entry = self.decoded(tag, vr, decoder, vpos, pos, prefix + key, encodings)
            part = f'"{key}":{dumps(entry)}'
            out[key] = entry
            parts.append(part)
            if raw is None:
                self.uncached += 1
            else:
                if len(cache) >= CACHE_ENTRIES:  # type: ignore[arg-type]
                    cache.clear()  # type: ignore[union-attr]
                cache[raw] = (entry, part, key)  # type: ignore[index]
        raise AssertionError("unreachable")  # pragma: no cover

    def keep_run(
        self,
        runs: dict[bytes, _Run] | None,
        head: bytes,
        start: int,
        stop: int,
        items: list[tuple[str, Any]],
        parts: list[str],
        last: int,
        creators: list[tuple[int, int, int]],
    ) -> None:
        """Keep the cached elements at ``start:stop`` as the run that follows ``head``."""
        if runs is None or not items or stop - start > RUN_BYTES:
            return
        if len(runs) >= RUN_ENTRIES:
            runs.clear()
        runs[head] = (stop - start, self.buf[start:stop], dict(items), parts, last, creators)

    def row(self, tag: int, vr16: int) -> _KeyedRow:
        """How to read `tag` written with the VR whose two bytes are `vr16` (then cached)."""
        info = self.table.get(vr16.to_bytes(2, "little"))
        if info is None:
            raise _FallbackError  # not a VR
        key = _KEYS.get(tag)
        if key is None:
            key = _key(tag)
        row = (key, *info)
        if len(self.rows) < 100_000:
            self.rows[tag << 16 | vr16] = row
        return row

    def decoded(
        self, tag: int, vr: str, decoder: Any, vpos: int, end: int, tagpath: str, encodings: Any
    ) -> dict[str, Any]:
        """The JSON of a value that a decoder converts (as the encoder does pydicom's)."""
        value = self.buf[vpos:end]
        try:
            v = decoder(value, True, encodings)
        except _UnhandledError:
            raise _FallbackError from None
        except _InvalidError:
            public = _public_vr(tag, vr)
            if public is None:
                return self.enc.binary("UN", value, tagpath, self.base + vpos)
            if public[1]:
                return self.enc.binary(public[0], value, tagpath, self.base + vpos)
            return {"vr": public[0]}
        return {"vr": vr} if v is None else {"vr": vr, "Value": v}

    def dataset_implicit(
        self, pos: int, end: int, prefix: str, top: bool
    ) -> tuple[dict[str, Any], list[str], int]:
        """Encode the implicit VR elements from `pos` (as :meth:`dataset`).

        VRs come from the data dictionary as pydicom's reader takes them: private
        creators are LO, private elements have the VR pydicom's private dictionary
        gives their creator's block (UN when it has none), ``US or SS`` tags follow
        a top-level Pixel Representation; other ambiguous VRs are left to pydicom.
        """
        buf = self.buf
        n = self.n
        keys = _KEYS
        out: dict[str, Any] = {}
        parts: list[str] = []
        creators: dict[int, tuple[int, int]] = {}
        cache = None if self.cache is None else _cache_for(self.limit, self.encodings, True)
        prev = -1
        while True:
            if end >= 0 and pos >= end:
                if pos != end:
                    raise _FallbackError
                return out, parts, pos
            if pos + 8 > n:
                if top and pos == n and self.eof:
                    return out, parts, pos
                self.short()
            start = pos
            group, elem, length = _ITEM(buf, pos)
            tag = group << 16 | elem
            if top:
                if tag in PIXEL_DATA_TAGS:
                    return out, parts, pos
                if tag < 0x00030000:
                    raise _FallbackError
            if group == 0xFFFE:
                if tag == 0xFFFEE00D and end < 0 and not top and not length:
                    return out, parts, pos + 8
                raise _FallbackError
            if tag <= prev:
                raise _FallbackError
            prev = tag
            pos += 8
            if not elem:  # group length: not in the JSON model
                if length == _UNDEFINED:
                    raise _FallbackError
                pos += length
                if pos > n:
                    self.short()
                continue
            if (
                0x00080005 < tag < 0x7FE00008
                and not group & 1
                and length <= CACHED_BYTES
                and cache is not None
                and tag not in _US_OR_SS
            ):
                # an element seen before (its VR is the dictionary's: its tag's alone)
                hit = cache.get(buf[start : pos + length])
                if hit is not None:
                    if tag == 0x00280103 and top:
                        self.pixel_rep = _U16(buf, pos)[0] if length == 2 else None
                    out[hit[2]] = hit[0]
                    parts.append(hit[1])
                    pos += length
                    continue
            if group & 1:
                if _in_dictionary(tag):
                    raise _FallbackError  # an odd group the public dictionary matches
                vr = "LO" if 0x10 <= elem < 0x100 else self.private_vr(tag, creators)
            else:
                known = _implicit_vr(tag)
                if known is None:
                    if tag not in _US_OR_SS or not top or self.pixel_rep is None or length & 1:
                        raise _FallbackError  # pydicom decides the VR from the dataset
                    known = "US" if self.pixel_rep == 0 else "SS"
                vr = known
            key = keys.get(tag)
            if key is None:
                key = _key(tag)
            if tag <= 0x00080005:
                if tag == 0x00080005:
                    if not top or self.early_text or vr != "CS" or not length:
                        raise _FallbackError
                    self.encodings = self.charset(pos, length)
                    if cache is not None:
                        cache = _cache_for(self.limit, self.encodings, True)
                elif vr == "SQ" or vr in _CHARSET_VRS:
                    self.early_text = True
            if vr == "SQ":
                items, texts, pos = self.sequence(pos, length, prefix + key)
                out[key] = {"vr": "SQ", "Value": items}
                parts.append(f'"{key}":{{"vr":"SQ","Value":[{",".join(texts)}]}}')
                continue
            if length == _UNDEFINED:
                raise _FallbackError  # pydicom guesses a sequence or reads to a delimiter
            vpos = pos
            pos += length
            if pos > n:
                self.short()
            if vr == "LO" and group & 1:
                creators[tag] = (vpos, pos)
            if tag == 0x00280103 and top:
                self.pixel_rep = _U16(buf, vpos)[0] if length == 2 else None
            entry = self.implicit_entry(tag, vr, vpos, pos, prefix + key)
            part = f'"{key}":{dumps(entry)}'
            out[key] = entry
            parts.append(part)
            if (
                cache is not None
                and not group & 1
                and length <= CACHED_BYTES
                and tag not in _US_OR_SS
                and "BulkDataURI" not in entry
            ):
                if len(cache) >= CACHE_ENTRIES:
                    cache.clear()
                cache[buf[start:pos]] = (entry, part, key)
        raise AssertionError("unreachable")  # pragma: no cover

    def implicit_entry(
        self, tag: int, vr: str, vpos: int, pos: int, tagpath: str
    ) -> dict[str, Any]:
        """The JSON of a (non-sequence) element read in implicit VR, its VR known."""
        length = pos - vpos
        if not length:
            return {"vr": vr}
        row = self.table[vr.encode()]
        kind = row[2]
        if kind == _BIN or vr == "UN":
            return self.enc.binary(vr, self.buf[vpos:pos], tagpath, self.base + vpos)
        if kind != _DEC:
            raise _FallbackError
        if length == row[3]:
            v = row[4](self.buf, vpos)[0]
            if v == v and v - v == 0:
                return {"vr": vr, "Value": [v]}
        private = (tag >> 16) & 1
        if length > MAX_INLINE_VALUE and vr in BULK_VRS and not private:
            # (pydicom converts private elements read in implicit VR: inline)
            uri = self.enc.uri(tagpath, self.base + vpos, length)
            return {"vr": vr, "BulkDataURI": uri}
        entry = self.decoded(tag, vr, row[5], vpos, pos, tagpath, self.encodings)
        if private and None in entry.get("Value", ()):
            raise _FallbackError  # an empty IS/DS value among others: pydicom refuses it
        return entry

    def private_un(
        self, tag: int, pos: int, length: int, creators: dict[int, tuple[int, int]], tagpath: str
    ) -> dict[str, Any]:
        """A private element written as explicit UN: pydicom gives it its implicit VR reading."""
        elem = tag & 0xFFFF
        if not elem:
            raise _FallbackError
        if _in_dictionary(tag):
            raise _FallbackError
        vr = "LO" if 0x10 <= elem < 0x100 else self.private_vr(tag, creators)
        if vr == "LO":
            creators[tag] = (pos, pos + length)
        if not length:
            return {"vr": vr}
        row = self.table[vr.encode()]
        if row[2] == _BIN or vr == "UN":
            return self.enc.binary(vr, self.buf[pos : pos + length], tagpath, self.base + pos)
        if length == row[3]:
            v = row[4](self.buf, pos)[0]
            if v == v and v - v == 0:
                return {"vr": vr, "Value": [v]}
        entry = self.decoded(tag, vr, row[5], pos, pos + length, tagpath, self.encodings)
        if None in entry.get("Value", ()):
            raise _FallbackError  # an empty IS/DS value among others: pydicom refuses it
        return entry

    def private_vr(self, tag: int, creators: dict[int, tuple[int, int]]) -> str:
        """pydicom's VR of a private data element read in implicit VR: its private dictionary's
        (the creator's block), else UN."""
        elem = tag & 0xFFFF
        if not elem & 0xFF00:
            return "UN"
        at = creators.get((tag & 0xFFFF0000) | elem >> 8)
        if at is None:
            return "UN"
        try:
            name = _DECODERS["LO"](self.buf[at[0] : at[1]], True, self.encodings)
        except Exception:
            raise _FallbackError from None
        if not name:
            return "UN"
        if len(name) != 1:
            raise _FallbackError  # a multi-valued creator: pydicom's look-up fails its own way
        try:
            vr = private_dictionary_VR(tag, name[0])
        except KeyError:
            return "UN"
        if vr not in _PRIVATE_VRS:
            raise _FallbackError  # pydicom converts it its own way (IS, DS, PN, SQ, US or SS...)
        return vr

    def charset(self, pos: int, length: int) -> list[str]:
        """(0008,0005) as pydicom's reader maps it to Python codecs (memoized by its bytes)."""
        if pos + length > self.n:
            self.short()
        raw = self.buf[pos : pos + length]
        known = _CHARSETS.get(raw)
        if known is not None:
            return list(known)
        try:
            values = convert_string(raw, True)
            encodings = convert_encodings(values)
        except Exception:
            raise _FallbackError from None
        if isinstance(values, str) and values in python_encoding:
            # one term pydicom knows as written: converted without a warning, keep it
            if len(_CHARSETS) >= 1_000:
                _CHARSETS.clear()
            _CHARSETS[raw] = tuple(encodings)
        return encodings

    def sequence(self, pos: int, length: int, tagpath: str) -> tuple[list[Any], list[str], int]:
        """Encode the items of a sequence whose value starts at `pos`: the items, their
        JSON texts, the position after the sequence.

        Raises
        ------
        DicomReadError
            The sequence is nested more than :data:`MAX_SEQUENCE_DEPTH` levels deep.
        """
        deep = nested_too_deep(tagpath)
        if deep:
            raise DicomReadError(deep)
        items: list[Any] = []
        texts: list[str] = []
        if not length:
            return items, texts, pos
        buf = self.buf
        read = self.dataset_implicit if self.implicit else self.dataset
        end = -1 if length == _UNDEFINED else pos + length
        while True:
            if end >= 0 and pos >= end:
                if pos != end:
                    raise _FallbackError
                return items, texts, pos
            if pos + 8 > self.n:
                self.short()
            group, elem, size = _ITEM(buf, pos)
            tag = group << 16 | elem
            pos += 8
            if tag == 0xFFFEE0DD and end < 0:
                return items, texts, pos
            if tag != 0xFFFEE000:
                raise _FallbackError
            prefix = f"{tagpath}/{len(items)}/"
            if size == _UNDEFINED:
                item, parts, pos = read(pos, -1, prefix, False)
            else:
                item, parts, pos = read(pos, pos + size, prefix, False)
            items.append(item)
            texts.append(join(parts))
