"""Fast path of :func:`pixels.dicom.meta.read_header`: parse the header bytes directly.

:func:`parse` reads the common case of a DICOM header without building a pydicom
``Dataset``: a file with the 128-byte preamble and ``DICM`` prefix, a file meta
group (0002) and an explicit VR little endian dataset (transfer syntax
1.2.840.10008.1.2.1 and every encapsulated syntax). It walks the element headers
of the bytes read in chunks, decodes values with the same decoders as
:mod:`pixels.dicom.jsonenc` and yields the same DICOM JSON model as pydicom's
``dcmread(stop_before_pixels=True)`` followed by
:func:`~pixels.dicom.jsonenc.encode_json`.

Anything it is not sure pydicom reads the same way makes it give up (``None``),
and :func:`~pixels.dicom.meta.read_header` reads the whole file with pydicom:
another transfer syntax (implicit VR, big endian, deflated) or none, a missing
preamble, an unknown VR, an explicit ``UN``, a non-sequence element of undefined
length, tags out of order or repeated, a (0008,0005) inside a sequence item or
after text it applies to, group 0000/0002 elements in the dataset, sequence
items that do not end where their length says, an element pydicom's own
converters would have to decode (``_UnhandledError``), a header longer than
:data:`MAX_HEADER` or cut short by the end of the file, a pixel data element
whose VR read_header would infer from (0028,0100).
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable
from typing import Any, BinaryIO

from pydicom import config as _config
from pydicom import uid as _uid
from pydicom.charset import convert_encodings
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
    _Encoder,
    _InvalidError,
    _key,
    _public_vr,
    _UnhandledError,
)
from pixels.dicom.tags import PIXEL_DATA_TAGS
from pixels.errors import DicomReadError

__all__ = ["FIRST_READ", "MAX_HEADER", "MAX_SEQUENCE_DEPTH", "Parsed", "parse"]

#: Bytes read first (preamble, file meta and, in practice, the whole header).
FIRST_READ = 64 * 1024
#: Headers longer than this are left to pydicom.
MAX_HEADER = 8 * 1024 * 1024
#: Sequences nested deeper than this are refused (a clear error, not a ``RecursionError``).
MAX_SEQUENCE_DEPTH = 100

_NOT_EXPLICIT_LE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.2", *_DEFLATED}
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

_DEC, _BIN, _SQ, _NO = range(4)
#: How an explicit VR is read: (VR, 4-byte length, kind, single number size or 0,
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


_HEAD = struct.Struct("<HH2sH").unpack_from  # tag, VR, 2-byte length
_ITEM = struct.Struct("<HHL").unpack_from  # item tag, 4-byte length
_U32 = struct.Struct("<L").unpack_from
_DEFAULT_TABLE = _table(_DECODERS)

#: (JSON model, transfer syntax, file offset of the pixel data element or None,
#: its first 12 bytes, the character set's Python encodings).
Parsed = tuple[dict[str, Any], str, int | None, bytes, list[str]]


class _FallbackError(Exception):
    """Not a case the fast path handles: read the file with pydicom."""


class _NeedMoreError(Exception):
    """The header runs past the bytes read so far."""


def parse(fp: BinaryIO, start: int, bulk_threshold: int) -> Parsed | None:
    """Parse the header of the file at `start` in `fp`; None to let pydicom read it.

    `fp` is left at `start` when None is returned.
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


class _Parser:
    __slots__ = (
        "base",
        "buf",
        "early_text",
        "enc",
        "encodings",
        "eof",
        "limit",
        "n",
        "table",
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
        self.encodings: list[str] = ["iso8859"]  # pydicom's default_encoding
        self.early_text = False

    def short(self) -> None:
        """The bytes end inside the header: read more, or give up at the end of the file."""
        raise _FallbackError if self.eof else _NeedMoreError

    def run(self, fp: BinaryIO) -> Parsed:
        buf = self.buf
        if self.n < 132 or buf[128:132] != b"DICM":
            raise _FallbackError
        ts, pos = self.file_meta(132)
        if not ts or "\\" in ts or ts in _NOT_EXPLICIT_LE:
            raise _FallbackError
        js, pos = self.dataset(pos, -1, "", True)
        if not js:
            raise _FallbackError  # pydicom's empty dataset: let read_header report it
        if pos == self.n:  # the end of the file, no pixel data
            if fp.read(1):
                raise _FallbackError  # a short read, not the end of the file
            return js, ts, None, b"", self.encodings
        head = buf[pos : pos + 12]
        if len(head) < 12:
            self.short()
        if head[:4] == b"\xe0\x7f\x10\x00" and head[4:6] not in (b"OB", b"OW"):
            raise _FallbackError  # read_header would infer the VR from the dataset
        return js, ts, self.base + pos, head, self.encodings

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

    def dataset(self, pos: int, end: int, prefix: str, top: bool) -> tuple[dict[str, Any], int]:
        """Encode the elements from `pos`.

        A top-level dataset ends at pixel data or the end of the file, an item at
        `end` (defined length) or its delimiter (``end < 0``). Returns the JSON
        model and the position after the dataset (at the pixel data element).
        """
        buf = self.buf
        n = self.n
        base = self.base
        table = self.table
        keys = _KEYS
        encodings = self.encodings
        out: dict[str, Any] = {}
        prev = -1
        while True:
            if end >= 0 and pos >= end:
                if pos != end:
                    raise _FallbackError
                return out, pos
            if pos + 8 > n:
                if top and pos == n and self.eof:
                    return out, pos
                self.short()
            group, elem, raw_vr, length = _HEAD(buf, pos)
            tag = group << 16 | elem
            if top:
                if tag in PIXEL_DATA_TAGS:
                    return out, pos
                if tag < 0x00030000:
                    raise _FallbackError  # command or file meta elements in the dataset
            if group == 0xFFFE:
                if tag == 0xFFFEE00D and end < 0 and not top and buf[pos + 4 : pos + 8] == bytes(4):
                    return out, pos + 8
                raise _FallbackError
            info = table.get(raw_vr)
            if info is None or tag <= prev:
                raise _FallbackError
            prev = tag
            vr, long, kind, size, unpack, decoder = info
            if long:
                if pos + 12 > n:
                    self.short()
                length = _U32(buf, pos + 8)[0]
                pos += 12
            else:
                pos += 8
            key = keys.get(tag)
            if key is None:
                key = _key(tag)
            if tag <= 0x00080005:
                if tag == 0x00080005:
                    if not top or self.early_text or vr != "CS" or not length:
                        raise _FallbackError
                    encodings = self.encodings = self.charset(pos, length)
                elif kind == _SQ or vr in _CHARSET_VRS:
                    self.early_text = True
            if kind == _SQ:
                if not elem:
                    raise _FallbackError  # a group length written as a sequence
                items, pos = self.sequence(pos, length, prefix + key)
                out[key] = {"vr": "SQ", "Value": items}
                continue
            if length == _UNDEFINED or kind == _NO:
                raise _FallbackError  # UN, or a VR pydicom must convert
            vpos = pos
            pos += length
            if pos > n:
                self.short()
            if not elem:
                continue  # group length: not in the JSON model (PS3.18 F.2)
            if not length:
                out[key] = {"vr": vr}
                continue
            if kind == _BIN:
                if length > self.limit:
                    uri = self.enc.uri(prefix + key, base + vpos, length)
                    out[key] = {"vr": vr, "BulkDataURI": uri}
                else:
                    text = base64.b64encode(buf[vpos:pos]).decode("ascii")
                    out[key] = {"vr": vr, "InlineBinary": text}
                continue
            if length > MAX_INLINE_VALUE and vr in BULK_VRS:
                out[key] = {
                    "vr": vr,
                    "BulkDataURI": self.enc.uri(prefix + key, base + vpos, length),
                }
                continue
            if length == size:  # a single number (size is 0 for text VRs)
                v = unpack(buf, vpos)[0]
                if v == v and v - v == 0:  # finite (NaN and inf fail)
                    out[key] = {"vr": vr, "Value": [v]}
                    continue
            value = buf[vpos:pos]
            try:
                v = decoder(value, True, encodings)
            except _UnhandledError:
                raise _FallbackError from None
            except _InvalidError:
                public = _public_vr(tag, vr)
                if public is None:
                    out[key] = self.enc.binary("UN", value, prefix + key, base + vpos)
                elif public[1]:
                    out[key] = self.enc.binary(public[0], value, prefix + key, base + vpos)
                else:
                    out[key] = {"vr": public[0]}
                continue
            out[key] = {"vr": vr} if v is None else {"vr": vr, "Value": v}
        raise AssertionError("unreachable")  # pragma: no cover

    def charset(self, pos: int, length: int) -> list[str]:
        """(0008,0005) as pydicom's reader maps it to Python codecs."""
        if pos + length > self.n:
            self.short()
        try:
            return convert_encodings(convert_string(self.buf[pos : pos + length], True))
        except Exception:
            raise _FallbackError from None

    def sequence(self, pos: int, length: int, tagpath: str) -> tuple[list[Any], int]:
        """Encode the items of a sequence whose value starts at `pos`.

        Raises
        ------
        DicomReadError
            The sequence is nested more than :data:`MAX_SEQUENCE_DEPTH` levels deep.
        """
        if tagpath.count("/") >= 2 * MAX_SEQUENCE_DEPTH:
            outer, tag = tagpath.split("/", 1)[0], tagpath.rsplit("/", 1)[-1]
            raise DicomReadError(
                f"sequence ({tag[:4]},{tag[4:]}) is nested more than {MAX_SEQUENCE_DEPTH} "
                f"levels deep (inside ({outer[:4]},{outer[4:]})): refused"
            )
        items: list[Any] = []
        if not length:
            return items, pos
        buf = self.buf
        end = -1 if length == _UNDEFINED else pos + length
        while True:
            if end >= 0 and pos >= end:
                if pos != end:
                    raise _FallbackError
                return items, pos
            if pos + 8 > self.n:
                self.short()
            group, elem, size = _ITEM(buf, pos)
            tag = group << 16 | elem
            pos += 8
            if tag == 0xFFFEE0DD and end < 0:
                return items, pos
            if tag != 0xFFFEE000:
                raise _FallbackError
            prefix = f"{tagpath}/{len(items)}/"
            if size == _UNDEFINED:
                item, pos = self.dataset(pos, -1, prefix, False)
            else:
                item, pos = self.dataset(pos, pos + size, prefix, False)
            items.append(item)
