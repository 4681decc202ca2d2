"""The DICOM JSON model (PS3.18 Annex F.2) of a dataset, fast.

:func:`encode_json` gives the same result as pydicom 3's ``Dataset.to_json_dict``
for every element pydicom can encode, at a fraction of the cost, except where
pydicom departs from PS3.18 (below): the raw bytes of the common VRs are decoded
here directly, following pydicom's own value converters (padding rules per VR,
character sets, endianness). Anything unusual (implicit VR private tags,
ambiguous VRs such as ``US or SS``, explicit ``UN``, ISO 2022 escape sequences
in person names, values the fast path cannot parse) is handed to pydicom element
by element (``ds[tag].to_json_dict(...)``): correctness first, speed second.

Where PS3.18 F.2 and pydicom differ, PS3.18 is followed
-------------------------------------------------------
* group length elements ``(gggg,0000)`` are not written (F.2: "shall not be
  included"), at any depth;
* a person name component group that is empty is absent rather than ``""``
  (``A^B==C`` -> ``{"Alphabetic": "A^B", "Phonetic": "C"}``), and a name with
  no group at all is ``null``;
* ``InlineBinary`` is little endian (F.2.7): OW/OF/OL/OD/OV values read from
  a big endian file have their words swapped (:func:`little_endian_value`).
  ``BulkDataURI`` offsets point at the bytes as stored: whoever serves them
  from a big endian file swaps them the same way.

Choices where pydicom raises instead of producing JSON
------------------------------------------------------
pydicom's ``to_json_dict`` fails the whole dataset on one bad element (or, with
``suppress_invalid_tags``, silently drops it). Here one bad element never
fails the file, and the JSON always loads back with pydicom's
``Dataset.from_json``:

* an element whose value cannot be represented in its VR's JSON type (an IS or
  DS string that is not a number, a US/SS/FL/... value whose length is not a
  multiple of the value size, an AT value of odd length, a non-finite FL/FD/DS,
  which strict JSON cannot hold) is written, for a private or unknown tag, as
  ``{"vr": "UN", "InlineBinary": <base64 of the bytes as stored>}`` (or a
  ``BulkDataURI`` when large); for a public tag under a binary VR its
  dictionary entry allows (``US or OW`` -> OW, the bytes kept), else as its VR
  with no value (``{"vr": "IS"}``): pydicom's ``from_json`` turns a ``UN`` of
  a public tag into the dictionary VR and fails on such values;
* an empty value inside a multi-valued IS, DS or PN (``1\\\\2``) is written as
  ``null`` (PS3.18 F.2.5) where pydicom raises;
* only when even the raw bytes are unavailable is :class:`~pixels.errors.DicomReadError`
  raised, naming the tag ``(gggg,eeee)``.

Bulk data
---------
A binary value longer than ``(bulk_threshold // 4) * 3`` bytes is replaced by
``{"BulkDataURI": "bulkdata/<tagpath>?offset=<o>&length=<n>"}`` where
``<tagpath>`` is the 8-hex-digit tags and item indexes joined by ``/``
(``bulkdata/54000100/0/54001010``) and ``offset`` is the byte offset of the
value in the file (absent for deflated files, whose offsets are in the inflated
stream). Pixel data, where pydicom stops, is added by :func:`pixels.dicom.meta.read_header`
from the element header found at the stop position:
``{"vr": "OB"|"OW"|"OF"|"OD", "BulkDataURI": "bulkdata/7FE00010?offset=<o>[&length=<n>]"}``
(no ``length`` for encapsulated, undefined-length pixel data).
"""

from __future__ import annotations

import base64
import json
import math
import struct
from collections.abc import Callable
from typing import Any, cast

from pydicom import config as _config
from pydicom.charset import decode_bytes
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from pixels.errors import DicomReadError

__all__ = ["MAX_SEQUENCE_DEPTH", "encode_json", "little_endian_value", "nested_too_deep"]

_UNDEFINED = 0xFFFFFFFF
_TEXT_DELIMS = {0x09, 0x0A, 0x0C, 0x0D, 0x5C}  # pydicom.charset.TEXT_VR_DELIMS
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW"})
_NUMBER_FORMATS = {
    "US": "H",
    "SS": "h",
    "UL": "L",
    "SL": "l",
    "FL": "f",
    "FD": "d",
    "SV": "q",
    "UV": "Q",
}
_DEFLATED = {"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.95"}

#: Values longer than this (bytes) of the VRs PS3.18 F.2.2 allows as bulk data
#: are written as BulkDataURI too, so a hostile or odd header (a 100 MB text,
#: a 64k-entry LUT written as US) cannot blow up the JSON. pydicom inlines them.
MAX_INLINE_VALUE = 64 * 1024
BULK_VRS = frozenset(
    {"DS", "FL", "FD", "IS", "LT", "SL", "SS", "ST", "SV", "UC", "UL", "UR", "US", "UT", "UV"}
)


#: Sequences nested deeper than this are refused, by the fast parser and the pydicom
#: path alike (pydicom itself stops near 200 levels, where Python's recursion limit is).
MAX_SEQUENCE_DEPTH = 100


_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
#: The C encoder that ``_JSON.encode`` builds anew at every call, built once (without
#: the check for circular references: a model is a tree).
_MAKE: Any = getattr(json.encoder, "c_make_encoder", None)
_ITERENCODE: Callable[[Any, int], Any] | None = (
    None
    if _MAKE is None
    else _MAKE(None, _JSON.default, json.encoder.encode_basestring, None, ":", ",", *[False] * 3)
)


def _dumps(o: Any) -> str:
    """The same text as ``_JSON.encode(o)``, without building an encoder per call."""
    return "".join(_ITERENCODE(o, 0))  # type: ignore[misc]  # (set when this is used)


#: Compact, strict JSON text of a model (``json.dumps`` with one encoder for every call).
dumps: Callable[[Any], str] = _JSON.encode if _ITERENCODE is None else _dumps


def nested_too_deep(tagpath: str) -> str | None:
    """The refusal of a sequence at ``tagpath`` nested past :data:`MAX_SEQUENCE_DEPTH`, or None.

    ``tagpath`` is the sequence's tags and item indexes joined by ``/``
    (``00081115/0/00081115``): one level per tag.
    """
    if tagpath.count("/") < 2 * MAX_SEQUENCE_DEPTH:
        return None
    outer, tag = tagpath.split("/", 1)[0], tagpath.rsplit("/", 1)[-1]
    return (
        f"sequence ({tag[:4]},{tag[4:]}) is nested more than {MAX_SEQUENCE_DEPTH} "
        f"levels deep (inside ({outer[:4]},{outer[4:]})): refused"
    )


class _UnhandledError(Exception):
    """The fast path does not handle this element; let pydicom convert it."""


class _InvalidError(Exception):
    """The value cannot be written in its VR's JSON type; write it as UN."""


# ---------------------------------------------------------------------------
# value decoders: bytes -> JSON "Value" list, or None for an empty value
# ---------------------------------------------------------------------------


def _decode_text(value: bytes, encodings: list[str]) -> str:
    if b"\x1b" not in value:
        try:
            return value.decode(encodings[0])
        except (UnicodeError, LookupError):
            pass
    return decode_bytes(value, encodings, _TEXT_DELIMS)


def _v_ascii(value: bytes, le: bool, enc: list[str]) -> list[Any] | None:
    # AS CS DA DT TM UI: pydicom multi_string(rstrip(" \0"))
    parts = value.decode("latin-1").rstrip(" \x00").split("\\")
    return None if parts == [""] else parts


def _v_ae(value: bytes, le: bool, enc: list[str]) -> list[Any] | None:
    parts = [s.strip() for s in value.decode("latin-1").split("\\")]
    return None if parts == [""] else parts


def _v_ur(value: bytes, le: bool, enc: list[str]) -> list[Any] | None:
    s = value.decode("latin-1").rstrip()
    return [s] if s else None


def _v_text_multi(value: bytes, le: bool, enc: list[str]) -> list[Any] | None:
    # SH LO UC
    parts = [s.rstrip("\x00 ") for s in _decode_text(value, enc).split("\\")]
    return None if parts == [""] else parts


def _v_text_single(value: bytes, le: bool, enc: list[str]) -> list[Any] | None:
    # ST LT UT
    s = _decode_text(value, enc).rstrip("\x00 ")
    return [s] if s else None


def _v_is(value: bytes, le: bool, enc: list[str]) -> list[Any] | None:
    parts = value.decode("latin-1").rstrip(" \x00").split("\\")
    if len(parts) == 1:
        s = parts[0]
        if not s.strip():
            return None
        return [_int(s)]
    return [_int(s) if s.strip() else None for s in parts]


def _int(s: str) -> int:
    try:
        n = int(s)
    except ValueError:
        raise _UnhandledError from None  # pydicom accepts "1.0"; let it decide
    if -(2**53) < n < 2**53:
        return n
    raise _UnhandledError


def _v_ds(value: bytes, le: bool, enc: list[str]) -> list[Any] | None:
    parts = value.decode("latin-1").strip().rstrip(" \x00").split("\\")
    if len(parts) == 1:
        s = parts[0]
        if not s.strip():
            return None
        return [_float(s)]
    return [_float(s) if s.strip() else None for s in parts]


def _float(s: str) -> float:
    try:
        f = float(s)
    except ValueError:
        raise _UnhandledError from None
    if math.isfinite(f):
        return f
    raise _InvalidError


def _v_pn(value: bytes, le: bool, enc: list[str]) -> list[Any] | None:
    value = value.rstrip(b"\x00 ")
    if not value:
        return None
    if b"\x1b" in value or (len(enc) != 1 and not value.isascii()):
        # code extensions: pydicom's PersonName handles them (an ASCII name without an
        # escape sequence is decoded with the first encoding, here as there)
        raise _UnhandledError
    try:
        text = value.decode(enc[0])
    except (UnicodeError, LookupError):
        raise _UnhandledError from None
    out: list[Any] = []
    for v in text.split("\\"):
        d = {k: c for k, c in zip(_PN_GROUPS, v.split("="), strict=False) if c}
        out.append(d or None)
    return out


#: The component groups of a person name, in order (PS3.18 F.2.2).
_PN_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")


def _clean_pn(values: list[Any]) -> list[Any]:
    """pydicom's PN values without empty component groups (absent, not ``""``; PS3.18 F.2.2)."""
    out: list[Any] = []
    for v in values:
        if isinstance(v, dict):
            v = {k: c for k, c in v.items() if c}
        out.append(v or None)
    return out


#: Binary VRs whose values are words: VR -> word size (byte-swapped from big endian).
_WORDS = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}
#: Numeric VRs (bulk data when large) -> value size, for :func:`little_endian_value`.
_NUMBER_WORDS = {"US": 2, "SS": 2, "AT": 2, "UL": 4, "SL": 4, "FL": 4, "FD": 8, "SV": 8, "UV": 8}


def little_endian_value(vr: str, value: bytes, little: bool = False) -> bytes:
    """The bytes of a binary value (OB, OW, OF, ...) in little endian byte order.

    The DICOM JSON model holds ``InlineBinary`` in little endian (PS3.18 F.2.7)
    and bulk data is served in an explicit VR little endian syntax: a value read
    from a big endian file (``little=False``) has its words swapped (2 bytes for
    OW/US/SS/AT, 4 for OF/OL/UL/SL/FL, 8 for OD/OV/FD/SV/UV); OB, UN, text and
    little endian values come back unchanged, as does a value whose length is
    not a multiple of its word size.

    Examples
    --------
    >>> little_endian_value("OW", b"\\x01\\x02\\x03\\x04")
    b'\\x02\\x01\\x04\\x03'
    >>> little_endian_value("OB", b"\\x01\\x02")
    b'\\x01\\x02'
    """
    size = _WORDS.get(vr) or _NUMBER_WORDS.get(vr)
    if little or size is None or len(value) % size:
        return value
    out = bytearray(len(value))
    for i in range(size):
        out[i::size] = value[size - 1 - i :: size]
    return bytes(out)


def _v_at(value: bytes, le: bool, enc: list[str]) -> list[Any] | None:
    n = len(value)
    if n % 4:
        raise _UnhandledError
    words = struct.unpack(("<" if le else ">") + f"{n // 2}H", value)
    return [f"{words[i]:04X}{words[i + 1]:04X}" for i in range(0, len(words), 2)]


def _number_decoder(code: str, is_float: bool) -> Callable[[bytes, bool, list[str]], list[Any]]:
    size = struct.calcsize("=" + code)
    single = {True: struct.Struct("<" + code), False: struct.Struct(">" + code)}

    def decode(value: bytes, le: bool, enc: list[str]) -> list[Any]:
        n = len(value)
        if n == size:
            out = list(single[le].unpack(value))
        elif n % size:
            raise _InvalidError
        else:
            out = list(struct.unpack(("<" if le else ">") + f"{n // size}{code}", value))
        if is_float and not all(map(math.isfinite, out)):
            raise _InvalidError
        return out

    return decode


_Decoder = Callable[[bytes, bool, list[str]], "list[Any] | None"]

_DECODERS: dict[str, _Decoder] = {
    "AE": _v_ae,
    "AS": _v_ascii,
    "CS": _v_ascii,
    "DA": _v_ascii,
    "DT": _v_ascii,
    "TM": _v_ascii,
    "UI": _v_ascii,
    "UR": _v_ur,
    "SH": _v_text_multi,
    "LO": _v_text_multi,
    "UC": _v_text_multi,
    "ST": _v_text_single,
    "LT": _v_text_single,
    "UT": _v_text_single,
    "PN": _v_pn,
    "IS": _v_is,
    "DS": _v_ds,
    "AT": _v_at,
}
for _vr, _code in _NUMBER_FORMATS.items():
    _DECODERS[_vr] = _number_decoder(_code, _vr in ("FL", "FD"))


#: Single-valued binary numbers: VR -> (size, little endian unpack, big endian unpack).
_SINGLE_NUMBERS: dict[str, tuple[int, Callable[[bytes], tuple[Any, ...]], Any]] = {
    vr: (
        struct.calcsize("<" + code),
        struct.Struct("<" + code).unpack,
        struct.Struct(">" + code).unpack,
    )
    for vr, code in _NUMBER_FORMATS.items()
}


def _active_decoders() -> dict[str, _Decoder]:
    """The fast decoders valid under the current pydicom configuration."""
    skip = []
    if _config.datetime_conversion:
        skip += ["DA", "DT", "TM"]
    if _config.use_DS_numpy or _config.use_DS_decimal:
        skip.append("DS")
    if _config.use_IS_numpy:
        skip.append("IS")
    if not skip:
        return _DECODERS
    return {k: v for k, v in _DECODERS.items() if k not in skip}


#: Implicit VR lookups by tag: the public dictionary VR, or None when pydicom
#: must decide (private tags, ambiguous VRs, unknown tags).
_IMPLICIT_VR: dict[int, str | None] = {}


def _implicit_vr(tag: int) -> str | None:
    try:
        return _IMPLICIT_VR[tag]
    except KeyError:
        pass
    vr: str | None = None
    if not (tag >> 16) & 1:
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            vr = None
        if vr is not None and (" " in vr or vr == "UN"):
            vr = None
    if len(_IMPLICIT_VR) < 100_000:
        _IMPLICIT_VR[tag] = vr
    return vr


# ---------------------------------------------------------------------------
# the encoder
# ---------------------------------------------------------------------------


#: "GGGGEEEE" JSON keys by tag.
_KEYS: dict[int, str] = {}


def _key(tag: int) -> str:
    key = f"{tag:08X}"
    if len(_KEYS) < 100_000:
        _KEYS[tag] = key
    return key


def _tag_str(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


class _Encoder:
    __slots__ = ("decoders", "deflated", "limit", "little", "threshold")

    def __init__(self, bulk_threshold: int, deflated: bool, little: bool = True) -> None:
        self.threshold = bulk_threshold
        self.limit = (bulk_threshold // 4) * 3
        self.deflated = deflated
        self.little = little  # the byte order of values pydicom has already converted
        self.decoders = _active_decoders()

    def uri(self, tagpath: str, offset: int | None, length: int | None) -> str:
        if offset is None or self.deflated:
            return f"bulkdata/{tagpath}"
        if length is None:
            return f"bulkdata/{tagpath}?offset={offset}"
        return f"bulkdata/{tagpath}?offset={offset}&length={length}"

    def binary(
        self, vr: str, value: bytes, tagpath: str, offset: int | None, little: bool = True
    ) -> dict[str, Any]:
        if not value:
            return {"vr": vr}
        if len(value) > self.limit:
            return {"vr": vr, "BulkDataURI": self.uri(tagpath, offset, len(value))}
        value = little_endian_value(vr, value, little)
        return {"vr": vr, "InlineBinary": base64.b64encode(value).decode("ascii")}

    def dataset(self, ds: Dataset, prefix: str, delta: int) -> dict[str, Any]:
        """Encode `ds`; `delta` turns its value_tell offsets into file offsets."""
        out: dict[str, Any] = {}
        elems = ds._dict
        encodings: Any = ds.original_character_set or ds._character_set
        if isinstance(encodings, str):
            encodings = [encodings]
        decoders = self.decoders
        singles = _SINGLE_NUMBERS
        keys = _KEYS
        values = list(elems.values())
        tags = [int(t) for t in elems]
        if tags != sorted(tags):
            order = sorted(range(len(tags)), key=tags.__getitem__)
            values = [values[i] for i in order]
            tags = [tags[i] for i in order]
        for tag, elem in zip(tags, values, strict=True):
            if not tag & 0xFFFF:
                continue  # group length: not in the JSON model (PS3.18 F.2)
            key = keys.get(tag)
            if key is None:
                key = _key(tag)
            if type(elem) is not RawDataElement:
                out[key] = self.element(cast(DataElement, elem), prefix + key, delta)
                continue
            # RawDataElement: tag, VR, length, value, value_tell, implicit, little, ...
            value = elem[3]
            vr: str = elem[1] or _implicit_vr(tag) or ""
            if value is not None:
                length = elem[2]
                if length != len(value) and length != _UNDEFINED:
                    raise DicomReadError(
                        f"truncated: element {_tag_str(tag)} at offset {delta + elem[4]} "
                        f"should have {length} bytes, the data holds {len(value)}"
                    )
                if len(value) > MAX_INLINE_VALUE and vr in BULK_VRS:
                    uri = self.uri(prefix + key, delta + elem[4], len(value))
                    out[key] = {"vr": vr, "BulkDataURI": uri}
                    continue
                num = singles.get(vr)
                if num is not None and len(value) == num[0]:
                    v = num[1](value)[0] if elem[6] else num[2](value)[0]
                    if v == v and v - v == 0:  # finite (NaN and inf fail)
                        out[key] = {"vr": vr, "Value": [v]}
                        continue
                decoder = decoders.get(vr)
                if decoder is not None:
                    if not value:
                        out[key] = {"vr": vr}
                        continue
                    try:
                        v = decoder(value, elem[6], encodings)
                    except _UnhandledError:
                        pass
                    except _InvalidError:
                        out[key] = self.invalid(elem, prefix + key, delta)
                        continue
                    else:
                        out[key] = {"vr": vr} if v is None else {"vr": vr, "Value": v}
                        continue
                elif vr in _BINARY_VRS:
                    out[key] = self.binary(vr, value, prefix + key, delta + elem[4], elem[6])
                    continue
            out[key] = self.slow(ds, tag, elem, prefix + key, delta)
        return out

    def slow(self, ds: Dataset, tag: int, raw: RawDataElement, tagpath: str, delta: int) -> Any:
        """Let pydicom convert the raw element; write it as UN when that fails."""
        try:
            elem = ds[tag]
        except Exception:
            return self.invalid(raw, tagpath, delta)
        if elem.VR == "SQ":
            # items parsed from the element's bytes count offsets from its value
            inner = delta + raw.value_tell if raw.length != _UNDEFINED else delta
            return self.sequence(elem, tagpath, inner)
        try:
            return self.convert(elem, tagpath, delta + raw.value_tell)
        except Exception:
            return self.invalid(raw, tagpath, delta)

    def invalid(self, raw: RawDataElement, tagpath: str, delta: int) -> dict[str, Any]:
        """A value its VR cannot hold: UN with its bytes, or no value for a public tag."""
        value = raw.value
        if not isinstance(value, bytes):
            raise DicomReadError(f"element {_tag_str(raw.tag)} cannot be encoded as DICOM JSON")
        public = _public_vr(int(raw.tag), raw.VR)
        if public is None:
            return self.binary("UN", value, tagpath, delta + raw.value_tell)
        vr, keep = public
        if keep:
            return self.binary(vr, value, tagpath, delta + raw.value_tell, raw.is_little_endian)
        return {"vr": vr}

    def sequence(self, elem: DataElement, tagpath: str, delta: int) -> dict[str, Any]:
        deep = nested_too_deep(tagpath)
        if deep:
            raise DicomReadError(deep)
        items = elem.value
        if not isinstance(items, Sequence | list):
            raise DicomReadError(f"element {_tag_str(elem.tag)}: SQ value is not a sequence")
        return {
            "vr": "SQ",
            "Value": [self.dataset(item, f"{tagpath}/{i}/", delta) for i, item in enumerate(items)],
        }

    def element(self, elem: DataElement, tagpath: str, delta: int) -> dict[str, Any]:
        """Encode an element pydicom has already converted (no raw bytes to fall back on)."""
        if elem.VR == "SQ":
            return self.sequence(elem, tagpath, delta)
        tell = elem.file_tell
        try:
            return self.convert(elem, tagpath, None if tell is None else delta + tell)
        except Exception as e:
            raise DicomReadError(
                f"element {_tag_str(elem.tag)} ({elem.VR}) cannot be encoded as DICOM JSON: {e}"
            ) from e

    def convert(self, elem: DataElement, tagpath: str, offset: int | None) -> dict[str, Any]:
        """pydicom's own ``to_json_dict`` with our BulkDataURIs; non-finite numbers refused."""

        def handler(e: DataElement) -> str:
            value = e.value
            return self.uri(tagpath, offset, len(value) if isinstance(value, bytes) else None)

        result: dict[str, Any] = elem.to_json_dict(handler, self.threshold)
        for v in result.get("Value", ()):
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"non-finite value in {_tag_str(elem.tag)}")
        if elem.VR == "PN" and "Value" in result:
            result["Value"] = _clean_pn(result["Value"])
        elif "InlineBinary" in result and not self.little and elem.VR in _WORDS:
            raw = base64.b64decode(result["InlineBinary"])
            swapped = little_endian_value(elem.VR, raw, False)
            result["InlineBinary"] = base64.b64encode(swapped).decode("ascii")
        return result


def _public_vr(tag: int, vr: str | None) -> tuple[str, bool] | None:
    """How to write a public element whose value its VR cannot hold; None: as UN.

    pydicom's ``Dataset.from_json`` converts a ``UN`` of a public tag to the
    dictionary VR and fails on a value that VR cannot hold, so a public element
    is written under a VR its dictionary entry allows: a binary one when it has
    one (``US or OW`` -> OW, the bytes kept), else its own VR with no value (the
    bytes stay in the file). Returns (VR, keep the bytes). Private and unknown
    elements keep their bytes as ``UN``.
    """
    if (tag >> 16) & 1:
        return None
    try:
        known = dictionary_VR(tag)
    except KeyError:
        return None
    if known == "UN":
        return None
    options = known.split(" or ")
    binary = [v for v in options if v in _BINARY_VRS]
    if binary:
        return binary[-1], True
    if vr and vr in options:
        return vr, False
    return options[0], False


def _is_deflated(ds: Dataset) -> bool:
    meta = getattr(ds, "file_meta", None)
    ts = meta.get(0x00020010) if meta is not None else None
    return ts is not None and str(ts.value).rstrip("\x00 ") in _DEFLATED


def encode_json(
    ds: Dataset, *, bulk_threshold: int = 1024, deflated: bool = False
) -> dict[str, Any]:
    """Return the DICOM JSON model (PS3.18 F.2) of `ds` as a dict.

    Parameters
    ----------
    ds : pydicom.Dataset
        A dataset as read by ``dcmread`` (raw, not yet converted elements are
        decoded here; converted ones are handed to pydicom).
    bulk_threshold : int
        Base64 size above which a binary value becomes a ``BulkDataURI``
        (pydicom's ``bulk_data_threshold``).
    deflated : bool
        The dataset was read from a deflated file: BulkDataURIs get no offset.
        Detected from ``ds.file_meta`` as well.

    Returns
    -------
    dict
        ``{"GGGGEEEE": {"vr": ..., "Value" | "InlineBinary" | "BulkDataURI": ...}}``
        sorted by tag; file meta (group 0002) is not included.

    Raises
    ------
    DicomReadError
        When an element is truncated or cannot be encoded at all (names the tag).
    """
    try:
        little = ds.original_encoding[1] is not False
    except Exception:
        little = True
    enc = _Encoder(bulk_threshold, deflated or _is_deflated(ds), little)
    return enc.dataset(ds, "", 0)
