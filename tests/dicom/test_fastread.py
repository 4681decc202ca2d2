"""pixels.dicom.fastread: the fast path of read_header gives the slow path's Header.

Every file the fast path accepts is read both ways (``read_header(fast=False)``
is pydicom's ``dcmread`` + the encoder) and the two Headers must be equal; the
fast path must accept most real files; and every case it must leave to pydicom
(other transfer syntaxes, odd structures, truncation) is left to pydicom.
"""

from __future__ import annotations

import io
import struct
import warnings
from pathlib import Path
from typing import Any

import pytest
from pydicom.data import get_testdata_file
from pydicom.filereader import _read_file_meta_info, read_preamble
from test_meta import EXPECTED_ERRORS, FILES, converted  # noqa: F401 (fixture)

from pixels.dicom import fastread
from pixels.dicom.meta import Header, read_header
from pixels.errors import DicomReadError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _accepted(data: bytes, start: int = 0) -> bool:
    fp = io.BytesIO(data)
    fp.seek(start)
    parsed = fastread.parse(fp, start, 1024)
    if parsed is None:
        assert fp.tell() == start, "rewound for pydicom"
    return parsed is not None


def _both(data: bytes, **kw: Any) -> tuple[Header | str, Header | str]:
    """read_header with and without the fast path (a DicomReadError as its message)."""
    out: list[Header | str] = []
    for fast in (True, False):
        try:
            out.append(read_header(io.BytesIO(data), path="f.dcm", fast=fast, **kw))
        except DicomReadError as e:
            out.append(str(e))
    return out[0], out[1]


def _same(data: bytes) -> None:
    for threshold in (1024, 0):
        fast, slow = _both(data, bulk_threshold=threshold)
        assert fast == slow


# -- real files ---------------------------------------------------------------------------------


#: Files with a preamble and an explicit VR little endian syntax that the fast path
#: still leaves to pydicom, and why (by name, or folder/name where names repeat).
KNOWN_FALLBACKS = {
    "bad_sequence.dcm": "explicit UN",
    "explicit_VR-UN.dcm": "explicit UN (of a sequence)",
    "UN_sequence.dcm": "explicit UN",
    "rtdose_rle.dcm": "explicit UN",
    "rtdose_rle_1frame.dcm": "explicit UN",
    "chrH31.dcm": "ISO 2022 code extensions in a person name",
    "chrH32.dcm": "ISO 2022 code extensions in a person name",
    "chrI2.dcm": "ISO 2022 code extensions in a person name",
    "chrJapMulti.dcm": "ISO 2022 code extensions in a person name",
    "chrJapMultiExplicitIR6.dcm": "ISO 2022 code extensions in a person name",
    "chrKoreanMulti.dcm": "ISO 2022 code extensions in a person name",
    "chrSQEncoding1.dcm": "ISO 2022 code extensions in a person name",
    "chrSQEncoding.dcm": "(0008,0005) inside a sequence item",
    "badVR.dcm": "an IS value pydicom must convert ('1A')",
    "SC_rgb_jpeg.dcm": "tags out of order",
    "dicomdirtests/DICOMDIR": "group 0004 text before (0008,0005)",
    "dicomdirtests/DICOMDIR-nooffset": "group 0004 text before (0008,0005)",
    "dicomdirtests/DICOMDIR-nopatient": "group 0004 text before (0008,0005)",
    "dicomdirtests/DICOMDIR-reordered": "group 0004 text before (0008,0005)",
    "dicomdirtests/DICOMDIR-implicit": "group 0004 text before (0008,0005)",
    "gdcm-US-ALOKA-16.dcm": "implicit VR: an ambiguous VR pydicom resolves from the data set",
    "empty_charset_LEI.dcm": "an empty (0008,0005)",
    "nested_priv_SQ.dcm": "implicit VR: a private element of undefined length",
}

_OTHER_SYNTAXES = {"1.2.840.10008.1.2.2": "big endian"}


def _fallback_reason(path: Path) -> str | None:
    """Why the fast path must leave `path` to pydicom, found without the fast path; None: it must not."""
    data = path.read_bytes()
    if data[128:132] != b"DICM":
        return "no preamble"
    if path.name in EXPECTED_ERRORS:
        return "not readable"
    fp = io.BytesIO(data)
    read_preamble(fp, False)
    ts = _read_file_meta_info(fp).get(0x00020010)
    if ts is None or not ts.value:
        return "no transfer syntax"
    known = KNOWN_FALLBACKS.get(f"{path.parent.name}/{path.name}", KNOWN_FALLBACKS.get(path.name))
    return _OTHER_SYNTAXES.get(str(ts.value).rstrip("\0 ")) or known


@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name}/{p.name}" for p in FILES])
def test_fast_equals_slow(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = path.read_bytes()
    reason = _fallback_reason(path)
    # the fast path reads every file it is not known to leave to pydicom ...
    assert _accepted(data) == (reason is None), reason
    # ... and read_header gives the same Header (or error) either way, for every file
    _same(data)
    if reason is not None:
        return
    # the same when the header is read in small chunks (the buffer grows)
    monkeypatch.setattr(fastread, "FIRST_READ", 256)
    assert _accepted(data)
    fast, slow = _both(data)
    assert fast == slow


def test_known_fallbacks_exist() -> None:
    names = {p.name for p in FILES} | {f"{p.parent.name}/{p.name}" for p in FILES}
    assert set(KNOWN_FALLBACKS) <= names


def test_fast_path_share() -> None:
    names = [p.name for p in FILES if p.name not in EXPECTED_ERRORS]
    accepted = {p.name for p in FILES if _accepted(p.read_bytes())}
    assert len(accepted) >= 0.6 * len(names), (len(accepted), len(names))
    for name in ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "emri_small.dcm",
                 "waveform_ecg.dcm", "MR_truncated.dcm", "SC_rgb_small_odd.dcm",
                 "emri_small_jpeg_2k_lossless.dcm", "chrX1.dcm"):  # fmt: skip
        assert name in accepted, name


@pytest.mark.parametrize(
    "name",
    ["MR_small_bigendian.dcm", "no_meta.dcm", "rtplan_truncated.dcm", "explicit_VR-UN.dcm",
     "chrH31.dcm", "DICOMDIR"],
)  # fmt: skip
def test_left_to_pydicom(name: str) -> None:
    path = next(p for p in FILES if p.name == name)
    assert not _accepted(path.read_bytes())


def test_transcoded(converted: dict[str, Path]) -> None:  # noqa: F811 (fixture)
    """dcmtk's copies: explicit and implicit VR little endian and deflated ones take the fast
    path, with the same Header as pydicom's path (also when read in small chunks)."""
    for name, path in converted.items():
        data = path.read_bytes()
        if name == "ti_waveform_ecg.dcm":  # (5400,1010) "OB or OW" in an item: pydicom decides
            assert not _accepted(data)
            _same(data)
        elif name.startswith(("te_", "ti_", "td_")):  # explicit, implicit, deflated
            assert _accepted(data), name
            _same(data)
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(fastread, "FIRST_READ", 256)
                assert _accepted(data), name
                _same(data)
        else:  # big endian
            assert not _accepted(data), name


def test_not_at_the_start_of_the_stream() -> None:
    data = Path(get_testdata_file("waveform_ecg.dcm", download=False) or "").read_bytes()
    prefixed = b"x" * 1000 + data
    assert _accepted(prefixed, 1000)
    headers = []
    for fast in (True, False):
        fp = io.BytesIO(prefixed)
        fp.seek(1000)
        headers.append(read_header(fp, path="f", fast=fast, bulk_threshold=0))
    assert headers[0] == headers[1]
    assert "offset=1" in headers[0].meta


# -- hand-made files ----------------------------------------------------------------------------

LONG = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"}
ITEM = b"\xfe\xff\x00\xe0"
ITEM_END = b"\xfe\xff\x0d\xe0\0\0\0\0"
SEQ_END = b"\xfe\xff\xdd\xe0\0\0\0\0"
PIXEL = b"\xe0\x7f\x10\x00OW\0\0" + struct.pack("<L", 32) + bytes(32)
VRS = ["AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "OB", "OD", "OF",
       "OL", "OV", "OW", "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UR",
       "US", "UT", "UV"]  # fmt: skip


def el(tag: int, vr: str, value: bytes, undefined: bool = False) -> bytes:
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr.encode()
    if vr in LONG:
        length = 0xFFFFFFFF if undefined else len(value)
        return head + b"\0\0" + struct.pack("<L", length) + value
    return head + struct.pack("<H", len(value)) + value


def item(body: bytes, undefined: bool = False) -> bytes:
    if undefined:
        return ITEM + b"\xff\xff\xff\xff" + body + ITEM_END
    return ITEM + struct.pack("<L", len(body)) + body


def seq(tag: int, items: list[bytes], undefined: bool = False) -> bytes:
    body = b"".join(items) + (SEQ_END if undefined else b"")
    return el(tag, "SQ", body, undefined)


def dicom(body: bytes, ts: bytes = b"1.2.840.10008.1.2.1\0", pixel: bytes = PIXEL) -> bytes:
    meta = el(0x00020010, "UI", ts)
    meta = el(0x00020000, "UL", struct.pack("<L", len(meta))) + meta
    return b"\0" * 128 + b"DICM" + meta + body + pixel


def test_every_vr_empty() -> None:
    body = el(0x00080005, "CS", b"ISO_IR 100") + el(0x00090010, "LO", b"CREATOR")
    data = dicom(body + b"".join(el(0x00091000 + i, vr, b"") for i, vr in enumerate(VRS)))
    assert _accepted(data)
    _same(data)


def _nested(undefined_seq: bool, undefined_item: bool) -> bytes:
    name = el(0x00100010, "PN", b"M\xfcller^J\xf6rg")
    blob = el(0x00540001, "OB", bytes(range(200)) * 6)  # bulk at threshold 1024
    inner = seq(0x00081115, [item(name + blob, undefined_item), item(b"", undefined_item)],
                undefined_seq)  # fmt: skip
    outer = [item(el(0x00080100, "SH", b"CODE") + inner, undefined_item), item(b"", False)]
    return (
        el(0x00080005, "CS", b"ISO_IR 100")
        + el(0x00080060, "CS", b"CT")
        + seq(0x00081110, outer, undefined_seq)
        + seq(0x00081111, [], undefined_seq)
        + el(0x00100010, "PN", b"Caf\xe9^A")
        + el(0x00280100, "US", b"\x10\x00")
    )


@pytest.mark.parametrize("undefined_seq", [False, True])
@pytest.mark.parametrize("undefined_item", [False, True])
def test_nested_sequences(undefined_seq: bool, undefined_item: bool) -> None:
    data = dicom(_nested(undefined_seq, undefined_item))
    assert _accepted(data)
    _same(data)
    fast, _ = _both(data, bulk_threshold=0)
    assert isinstance(fast, Header)
    assert "bulkdata/00081110/0/00081115/0/00540001?offset=" in fast.meta
    assert "Müller^Jörg" in fast.meta


@pytest.mark.parametrize(
    "charset",
    [b"  ", b"ISO_IR 100", b"ISO_IR 192", b"ISO_IR 999", b"\\", b"ISO_IR 100\\",
     b"ISO 2022 IR 100", b"GB18030", b"ISO_IR 6 ", b"ISO_IR 13", b"ISO_IR 166"],
)  # fmt: skip
@pytest.mark.parametrize("text", [b"Caf\xe9", "Café".encode()])
def test_character_sets(charset: bytes, text: bytes) -> None:
    """(0008,0005) applies to text at the top level and in items, as pydicom reads it."""
    data = dicom(
        el(0x00080005, "CS", charset)
        + el(0x00080070, "LO", text)
        + seq(0x00081110, [item(el(0x00100010, "PN", text))], True)
        + seq(0x00081111, [item(el(0x00100010, "PN", text))], False)
        + el(0x00100010, "PN", text)
    )
    if charset in (b"ISO_IR 100", b"ISO_IR 6 ", b"ISO_IR 166"):
        assert _accepted(data)
    fast, slow = _both(data)
    assert fast == slow


@pytest.mark.parametrize("pixel", [b"", PIXEL, PIXEL[:-10],
                                   b"\xe0\x7f\x10\x00OB\0\0\xff\xff\xff\xff" + ITEM + bytes(4),
                                   b"\xe0\x7f\x08\x00OF\0\0\x04\0\0\0\0\0\x80\x3f"])  # fmt: skip
def test_pixel_data(pixel: bytes) -> None:
    data = dicom(el(0x00080060, "CS", b"MR"), pixel=pixel)
    assert _accepted(data)
    _same(data)


def _edge(**kw: bytes) -> bytes:
    return dicom(el(0x00080060, "CS", b"MR") + el(0x00100010, "PN", b"A^B"), **kw)


FALLBACKS = {
    "implicit syntax, explicit data set": _edge(ts=b"1.2.840.10008.1.2\0"),
    "big endian": _edge(ts=b"1.2.840.10008.1.2.2\0"),
    "deflated syntax, data not deflated": _edge(ts=b"1.2.840.10008.1.2.1.99"),
    "no transfer syntax": b"\0" * 128 + b"DICM" + el(0x00020001, "OB", b"\0\1") + PIXEL,
    "no preamble": _edge()[128:],
    "duplicate": dicom(el(0x00080060, "CS", b"MR") + el(0x00080060, "CS", b"CT")),
    "out of order": dicom(el(0x00100010, "PN", b"A") + el(0x00080060, "CS", b"CT")),
    "group 2 in dataset": dicom(el(0x00020002, "UI", b"1.2") + el(0x00080060, "CS", b"CT")),
    "UN": dicom(el(0x00080060, "UN", b"CT")),
    "undefined OB": dicom(el(0x00091001, "OB", ITEM + bytes(4) + SEQ_END, True)),
    "unknown VR": dicom(el(0x00080060, "XX", b"CT")),
    "charset in item": dicom(seq(0x00081110, [item(el(0x00080005, "CS", b"ISO_IR 192"))])),
    "text before charset": dicom(el(0x00041130, "LO", b"\xe9") + el(0x00080005, "CS", b"ISO_IR 100")),
    "item overruns": dicom(seq(0x00081110, [ITEM + struct.pack("<L", 4) + el(0x00080060, "CS", b"CT")])),
    "implicit item": dicom(seq(0x00081110, [item(b"\x08\x00\x60\x00\x02\0\0\0CT")])),
    "not an item": dicom(el(0x00081110, "SQ", b"\x08\x00\x60\x00CS\x02\0CT")),
    "pixel data VR": dicom(el(0x00280100, "US", b"\x08\x00"), pixel=b"\xe0\x7f\x10\x00UN\0\0\x02\0\0\0\0\0"),
    "multi-byte charset PN": dicom(el(0x00080005, "CS", b"\\ISO 2022 IR 87") + el(0x00100010, "PN", b"\xc8\xdd")),
    "invalid IS": dicom(el(0x00200013, "IS", b"1.0")),
    "trailing bytes": dicom(el(0x00080060, "CS", b"MR"), pixel=b"\0\0\0"),
    "cut value": dicom(el(0x00080060, "CS", b"MR"), pixel=b"\x10\x00\x10\x00PN\x08\0AB"),
    "cut header": dicom(el(0x00080060, "CS", b"MR"), pixel=b"\x10\x00\x10\x00PN\x08"),
    "empty dataset": dicom(b""),
}  # fmt: skip


@pytest.mark.parametrize("name", list(FALLBACKS))
def test_fallbacks(name: str) -> None:
    data = FALLBACKS[name]
    assert not _accepted(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast, slow = _both(data)
    assert fast == slow


def iel(tag: int, value: bytes, undefined: bool = False) -> bytes:
    """An implicit VR little endian element."""
    length = 0xFFFFFFFF if undefined else len(value)
    return struct.pack("<HHL", tag >> 16, tag & 0xFFFF, length) + value


IMPLICIT = b"1.2.840.10008.1.2\0"
IPIXEL = b"\xe0\x7f\x10\x00" + struct.pack("<L", 8) + bytes(8)

#: Cases the fast path reads (as pydicom's path does) since it reads implicit VR,
#: private elements written as UN, and ASCII names under code extensions.
ACCEPTED = {
    "implicit": dicom(iel(0x00080060, b"MR") + iel(0x00100010, b"A^B ") + iel(0x00280010, b"\x02\0"),
                      ts=IMPLICIT, pixel=IPIXEL),
    "implicit private, unknown creator": dicom(
        iel(0x00090010, b"PIXELS TEST ") + iel(0x00091001, b"\x01\x02\x03\x04")
        + iel(0x00091002, b"") + iel(0x00110001, b"ab"), ts=IMPLICIT, pixel=IPIXEL),
    "implicit private, known creator": dicom(
        iel(0x00090010, b"GEMS_IDEN_01") + iel(0x00091001, b"CT_LIGHTSPEED ")
        + iel(0x00091002, b"XX") + iel(0x00430010, b"GEMS_PARM_01") + iel(0x00431012, b"\x01\0\x02\0"),
        ts=IMPLICIT, pixel=IPIXEL),
    "implicit US or SS after (0028,0103)": dicom(
        iel(0x00280103, b"\x01\0") + iel(0x00280106, b"\xff\xff") + iel(0x00280107, b"\x10\0"),
        ts=IMPLICIT, pixel=IPIXEL),
    "implicit sequences": dicom(
        iel(0x00081110, iel(0xFFFEE000, iel(0x00081150, b"1.2\0")) +
            iel(0xFFFEE000, iel(0x00081155, b"1.3\0") + b"\xfe\xff\x0d\xe0\0\0\0\0", True)
            + b"\xfe\xff\xdd\xe0\0\0\0\0", True), ts=IMPLICIT, pixel=IPIXEL),
    "explicit private UN": dicom(
        el(0x00090010, "UN", b"GEMS_IDEN_01") + el(0x00091001, "UN", b"CT_LIGHTSPEED ")
        + el(0x00190010, "LO", b"SOMEONE ") + el(0x00191000, "UN", b"\x01\x02")),
    "ASCII name, code extensions": dicom(el(0x00080005, "CS", b"\\ISO 2022 IR 87")
                                         + el(0x00100010, "PN", b"Yamada^Tarou=Y")),
    "trailing padding": dicom(el(0x00080060, "CS", b"MR"), pixel=PIXEL + el(0xFFFCFFFC, "OB", bytes(64))),
}  # fmt: skip


@pytest.mark.parametrize("name", ACCEPTED)
def test_accepted(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each read by the fast path, with pydicom's path's Header (also in 64-byte reads)."""
    data = ACCEPTED[name]
    assert _accepted(data)
    _same(data)
    monkeypatch.setattr(fastread, "FIRST_READ", 64)
    assert _accepted(data)
    _same(data)
    fast, _ = _both(data)
    assert isinstance(fast, Header) and fast.trailing is None and fast.problem is None


def test_implicit_vrs_as_pydicom_reads_them() -> None:
    """Private creators are LO, a GEMS tag has its private dictionary's VR, an unknown private
    element is UN, US or SS follows (0028,0103)."""
    fast, _ = _both(ACCEPTED["implicit private, known creator"])
    assert isinstance(fast, Header)
    js = fast.model or {}
    assert js["00090010"] == {"vr": "LO", "Value": ["GEMS_IDEN_01"]}
    assert js["00091001"] == {"vr": "LO", "Value": ["CT_LIGHTSPEED"]}
    assert js["00431012"] == {"vr": "SS", "Value": [1, 2]}
    fast, _ = _both(ACCEPTED["implicit US or SS after (0028,0103)"])
    assert isinstance(fast, Header) and fast.model
    assert fast.model["00280106"] == {"vr": "SS", "Value": [-1]}
    fast, _ = _both(ACCEPTED["implicit private, unknown creator"])
    assert isinstance(fast, Header) and fast.model
    assert fast.model["00091001"] == {"vr": "UN", "InlineBinary": "AQIDBA=="}


def test_header_longer_than_max(monkeypatch: pytest.MonkeyPatch) -> None:
    data = dicom(el(0x00091001, "OB", bytes(5000)))
    assert _accepted(data)
    monkeypatch.setattr(fastread, "FIRST_READ", 1024)
    assert _accepted(data)
    monkeypatch.setattr(fastread, "MAX_HEADER", 4096)
    assert not _accepted(data)
    fast, slow = _both(data)
    assert fast == slow


def test_invalid_values_as_un() -> None:
    body = el(0x00201041, "DS", b"nan") + el(0x00280010, "US", b"\x40\x00\x20")
    data = dicom(body + el(0x00291002, "FL", struct.pack("<f", float("inf"))))
    assert _accepted(data)
    _same(data)


# -- sequences nested deep: both paths alike ---------------------------------------------------


def _nested_sq(depth: int, tag: int, explicit: bool, defined: bool, o: str = "<") -> bytes:
    """`tag` as a sequence of one item holding the same sequence, `depth` levels deep."""
    group, elem = tag >> 16, tag & 0xFFFF
    body = b""
    for _ in range(depth):
        if defined:
            value = struct.pack(f"{o}HHL", 0xFFFE, 0xE000, len(body)) + body
        else:
            value = struct.pack(f"{o}HHL", 0xFFFE, 0xE000, 0xFFFFFFFF) + body
            value += struct.pack(f"{o}HHL", 0xFFFE, 0xE00D, 0)
            value += struct.pack(f"{o}HHL", 0xFFFE, 0xE0DD, 0)
        length = len(value) if defined else 0xFFFFFFFF
        if explicit:
            body = struct.pack(f"{o}HH", group, elem) + b"SQ\0\0" + struct.pack(f"{o}L", length)
        else:
            body = struct.pack(f"{o}HHL", group, elem, length)
        body += value
    return body


@pytest.mark.parametrize("defined", [False, True], ids=["undefined", "defined"])
@pytest.mark.parametrize(
    "name", ["CT_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm"]
)
def test_nesting_depth_is_refused_alike_by_both_paths(name: str, defined: bool) -> None:
    """(0008,1115) nested 100 levels reads the same both ways; 101, 150 and 250 levels are
    refused with the same error naming the tag (pydicom alone read 150 levels, the fast
    parser refused past 100)."""
    import hostile

    raw = Path(get_testdata_file(name, download=False) or "").read_bytes()
    first = min((e for e in hostile._elements(raw) if e.tag.group > 2), key=lambda e: e.value_tell)
    at = first.value_tell - (8 if (first.is_implicit_VR or not hostile._long_vr(first)) else 12)
    explicit, o = not first.is_implicit_VR, "<" if first.is_little_endian else ">"
    for depth in (100, 101, 150, 250):
        data = raw[:at] + _nested_sq(depth, 0x00081115, explicit, defined, o) + raw[at:]
        fast, slow = _both(data)
        assert fast == slow, depth
        if depth == 100:
            assert isinstance(fast, Header)
            assert fast.meta.count('"00081115"') == 100
        else:
            assert fast == (
                "f.dcm: sequence (0008,1115) is nested more than 100 levels deep "
                "(inside (0008,1115)): refused"
            )


# -- the element cache --------------------------------------------------------------------------


def _text_of_model(header: Header) -> str:
    import json

    return json.dumps(header.model, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def test_cached_elements_give_the_same_json(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every real file read cold, then again with its elements cached: the slow path's Header,
    and ``meta`` (joined from cached texts) is the JSON of ``model`` whichever way."""
    monkeypatch.setattr(fastread, "_CACHES", {})
    seen = 0
    for path in FILES:
        data = path.read_bytes()
        if _fallback_reason(path) is not None:
            continue
        slow = read_header(io.BytesIO(data), path="f.dcm", fast=False)
        for _ in range(2):
            fast = read_header(io.BytesIO(data), path="f.dcm")
            assert fast == slow, path
            assert fast.meta == _text_of_model(fast), path
        seen += 1
    assert seen > 100
    assert any(fastread._CACHES.values())


def test_cache_keeps_character_sets_and_offsets_apart() -> None:
    """The same element bytes under another (0008,0005) decode with that character set, and
    bulk data at another offset or tag path gets its own URI (never a cached one)."""
    name = el(0x00100010, "PN", b"Caf\xc3\xa9^A")
    blob = el(0x00540001, "OB", bytes(range(100)))
    bodies = [
        el(0x00080005, "CS", b"ISO_IR 100") + name + blob,
        el(0x00080005, "CS", b"ISO_IR 192") + name + blob,
        el(0x00080005, "CS", b"ISO_IR 192") + el(0x00080060, "CS", b"CT") + name + blob,
        el(0x00080005, "CS", b"ISO_IR 192") + seq(0x00081110, [item(name + blob)]) + name + blob,
    ]
    metas = set()
    for body in bodies * 2:  # the second time round, from the cache
        data = dicom(body)
        assert _accepted(data)
        for threshold in (1024, 0):
            fast, slow = _both(data, bulk_threshold=threshold)
            assert fast == slow
            assert isinstance(fast, Header)
            assert fast.meta == _text_of_model(fast)
            metas.add(fast.meta)
    assert len(metas) == 8  # 4 files x 2 thresholds, each its own JSON
    assert any("Café" in m for m in metas) and any("CafÃ©" in m for m in metas)


@pytest.mark.parametrize(
    ("trailing", "keys"),
    [
        (el(0xFFFCFFFC, "OB", bytes(8)), ["00080060", "7FE00010", "FFFCFFFC"]),
        (el(0x00100020, "LO", b"ID01") + el(0xFFFCFFFC, "OB", bytes(8)),
         ["00080060", "00100020", "7FE00010", "FFFCFFFC"]),
        (el(0x00080060, "CS", b"US"), ["00080060", "7FE00010"]),  # repeated: the first kept
    ],
    ids=["after", "before-and-after", "repeated"],
)  # fmt: skip
def test_cached_entries_with_trailing_elements(trailing: bytes, keys: list[str]) -> None:
    """Elements after the pixel data join the cached texts in tag order."""
    for body in [el(0x00080060, "CS", b"CT"), el(0x00080060, "CS", b"MR")] * 2:
        data = dicom(body) + trailing
        assert _accepted(data)
        fast, slow = _both(data)
        assert fast == slow
        assert isinstance(fast, Header)
        assert fast.meta == _text_of_model(fast)
        assert list(fast.model or {}) == keys


def iel(tag: int, value: bytes) -> bytes:
    """An implicit VR little endian element."""
    return struct.pack("<HHL", tag >> 16, tag & 0xFFFF, len(value)) + value


def test_implicit_cache_keeps_character_sets_and_pixel_representation_apart() -> None:
    """Implicit VR elements come from the cache only where their bytes say it all: another
    (0008,0005) decodes the same name again, and ``US or SS`` follows (0028,0103) each time."""
    name = iel(0x00100010, b"Caf\xc3\xa9^A")
    metas = set()
    for charset in [b"ISO_IR 100", b"ISO_IR 192"] * 2:
        for rep in (b"\x00\x00", b"\x01\x00"):
            body = (
                iel(0x00080005, charset)
                + iel(0x00080060, b"CT")
                + name
                + iel(0x00280103, rep)
                + iel(0x00280106, b"\xff\xff")
            )
            data = dicom(body, ts=b"1.2.840.10008.1.2\0", pixel=b"")
            assert _accepted(data)
            fast, slow = _both(data)
            assert fast == slow
            assert isinstance(fast, Header)
            assert fast.meta == _text_of_model(fast)
            metas.add(fast.meta)
    assert len(metas) == 4
    assert any('"SS","Value":[-1]' in m for m in metas)
    assert any('"US","Value":[65535]' in m for m in metas)


@pytest.mark.parametrize("undefined", [False, True], ids=["defined", "undefined"])
def test_runs_of_cached_elements_give_the_same_json(
    undefined: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run of cached elements taken whole (its bytes as last time) gives the slow path's
    Header: a run that changed inside, a run whose private creator names the element after
    it, a run that would cross the end of its item, each read again as it is."""
    monkeypatch.setattr(fastread, "_CACHES", {})
    monkeypatch.setattr(fastread, "_RUNS", {})
    creator = el(0x00090010, "LO", b"GEMS_IDEN_01")

    def body(uid: bytes, maker: bytes, name: bytes) -> bytes:
        return (
            el(0x00080018, "UI", uid)
            + el(0x00080060, "CS", b"CT")
            + el(0x00080070, "LO", maker)
            + creator
            + el(0x00091001, "UN", b"FULL")  # its VR from the creator the run holds
            + el(0x00100010, "PN", name)
            + el(0x00100020, "LO", b"ID01")
        )

    metas = set()
    for i, maker in enumerate([b"ACME", b"ACME", b"ACME", b"ACMF", b"ACMF", b"ACME"]):
        uid = b"1.2.%d" % (i * 11)
        inner = body(uid, maker, b"A^B")
        # the same elements as a sequence item too, cut short after the run the second time
        cut = inner if i < 5 else inner[: inner.index(creator)]
        items = [item(inner, undefined), item(cut, undefined)]
        data = dicom(body(uid, maker, b"A^B") + seq(0x00400275, items, undefined))
        assert _accepted(data)
        fast, slow = _both(data)
        assert fast == slow
        assert isinstance(fast, Header)
        assert fast.meta == _text_of_model(fast)
        # key columns typed from shared entries (memoized): this file's values
        assert (fast.keys["SOPInstanceUID"], fast.keys["Manufacturer"]) == (
            uid.decode(),
            maker.decode(),
        )
        assert fast.keys["Modality"] == "CT" and fast.keys["PatientName"] == "A^B"
        metas.add(fast.meta)
    assert len(metas) == 6
    assert any(fastread._RUNS.values())  # runs were kept, and taken


def test_cached_trailing_elements_keep_offsets_and_character_sets_apart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same bytes after the pixel data, file after file: the same elements, except that
    bulk data after pixel data of another length gets its own offset and text under another
    (0008,0005) its own decoding, as pydicom's path gives them."""
    monkeypatch.setattr(fastread, "_TRAILING", {})
    trailing = el(0x00191010, "LO", b"Caf\xc3\xa9 ") + el(0xFFFCFFFC, "OB", bytes(range(40)))
    metas = set()
    for charset in (b"ISO_IR 100", b"ISO_IR 192") * 2:
        for pixels in (2, 6):
            pixel = el(0x7FE00010, "OB", bytes(pixels))
            data = dicom(el(0x00080005, "CS", charset) + el(0x00080060, "CS", b"CT"), pixel=pixel)
            data += trailing
            assert _accepted(data)
            for threshold in (1024, 0):  # (0: the OB as a BulkDataURI after the pixel data)
                fast, slow = _both(data, bulk_threshold=threshold)
                assert fast == slow
                assert isinstance(fast, Header)
                assert fast.meta == _text_of_model(fast) and fast.trailing is None
                metas.add(fast.meta)
    assert len(metas) == 8  # 2 character sets x 2 pixel data lengths x 2 thresholds
    assert any("Café" in m for m in metas) and any("CafÃ©" in m for m in metas)
    assert len(fastread._TRAILING) == 2  # no bulk data in them: per character set


@pytest.mark.parametrize("undefined", [False, True], ids=["defined", "undefined"])
def test_repeated_sequences_give_the_same_json(
    undefined: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A top-level sequence whose bytes are those of a sequence read before is taken whole
    (the same model entry): file after file the slow path's Header; a sequence changed
    inside, one whose bulk data URI holds an offset (never kept), one under another
    character set, each read as it is."""
    monkeypatch.setattr(fastread, "_CACHES", {})
    monkeypatch.setattr(fastread, "_RUNS", {})
    monkeypatch.setattr(fastread, "_SEQS", {})
    code = el(0x00080100, "SH", b"121322") + el(0x00080104, "LO", b"Caf\xc3\xa9 ")
    nested = seq(0x0040A170, [item(code, undefined)], undefined)

    def source(ref: bytes) -> bytes:
        body = el(0x00081150, "UI", b"1.2.840.10008.5.1.4.1.1.2\0") + el(0x00081155, "UI", ref)
        return seq(0x00082112, [item(body + nested, undefined)], undefined)

    blob = seq(0x00400260, [item(el(0x00091010, "OB", bytes(range(8))), undefined)], undefined)
    metas: dict[tuple[bytes, int], set[str]] = {}
    shared = []
    for charset in (b"ISO_IR 100", b"ISO_IR 192"):
        for i, ref in enumerate([b"1.2.3.4", b"1.2.3.4", b"1.2.3.4", b"1.2.3.5", b"1.2.3.5"]):
            uid = b"1.2.%d" % (i * 11)  # another length each file: the blob's offset moves
            data = dicom(
                el(0x00080005, "CS", charset)
                + el(0x00080018, "UI", uid)
                + source(ref)
                + el(0x00100010, "PN", b"A^B")
                + blob
            )
            assert _accepted(data)
            for threshold in (1024, 0):  # (0: the OB as a BulkDataURI with its offset)
                fast, slow = _both(data, bulk_threshold=threshold)
                assert fast == slow
                assert isinstance(fast, Header) and fast.model is not None
                assert fast.meta == _text_of_model(fast)
                metas.setdefault((charset, threshold), set()).add(fast.meta)
                if threshold == 1024 and charset == b"ISO_IR 100" and i < 3:
                    shared.append(fast.model["00082112"])
    # every file its own text (UIDs, offsets); the same sequence bytes: the same entry
    assert all(len(m) == 5 for m in metas.values())
    assert shared[1] is shared[2] and shared[0] == shared[1]
    assert any("Café" in m for m in metas[(b"ISO_IR 192", 1024)])
    assert any("CafÃ©" in m for m in metas[(b"ISO_IR 100", 1024)])
    # kept per bulk data limit and character set; never with a bulk data URI (an offset)
    blobs = {
        key[0]: [s for s in seqs.values() if s[1] == blob] for key, seqs in fastread._SEQS.items()
    }
    assert blobs[768] and not blobs[0]
    assert all("BulkDataURI" not in s[3] for seqs in fastread._SEQS.values() for s in seqs.values())
