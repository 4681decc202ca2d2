"""pixels.dicom.meta against pydicom, on real files.

Every file in pydicom's test files, its charset files and the pydicom-data
package is read with :func:`read_header` and compared with pydicom's own
``to_json_dict`` (bulk data URIs normalised), round-tripped through
``Dataset.from_json``, and its key columns compared with what pydicom reads.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import os
import random
import re
import shutil
import struct
import subprocess
import warnings
import zlib
from pathlib import Path
from typing import Any

import pydicom
import pytest
from jsonref import is_little, normalise, reference_json, without_pixels
from pydicom.data import get_charset_files, get_testdata_file
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import DA, TM

from pixels.dicom.jsonenc import little_endian_value
from pixels.dicom.meta import Header, encode_json, parse_da, parse_tm, read_header
from pixels.errors import DicomReadError
from pixels.schema import KEY_COLUMNS

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

PIXEL_TAGS = ("7FE00010", "7FE00008", "7FE00009")
URI = re.compile(r"bulkdata/[0-9A-F]{8}(/\d+/[0-9A-F]{8})*(\?offset=\d+(&length=\d+)?)?")


def _all_files() -> list[Path]:
    dirs = [Path(get_testdata_file("CT_small.dcm", download=False) or "").parent]
    dirs.append(Path(get_charset_files("chrH31.dcm")[0]).parent)
    emri = get_testdata_file("emri_small.dcm", download=False)
    if emri:
        dirs.append(Path(emri).parent)
    return sorted(p for d in dirs for p in d.rglob("*") if p.is_file())


FILES = _all_files()

#: Files that read_header rejects, with a word its message must contain.
#: pydicom "reads" the non-DICOM ones only with force=True, as garbage.
EXPECTED_ERRORS = {
    "README.txt": "not a DICOM file",
    "README": "not a DICOM file",
    "crayons.icc": "not a DICOM file",
    "rtplan.dump": "not a DICOM file",
    "rtstruct.dump": "not a DICOM file",
    "test1.json": "not a DICOM file",
    "test_PN.json": "not a DICOM file",
    "zipMR.gz": "not a DICOM file",
    "FileInfo.txt": "not a DICOM file",
    # starts with a stray byte before (0008,0005): pydicom's forced read is garbage
    "no_meta.dcm": "not a DICOM file",
    # truncated: pydicom silently returns a short value
    "rtplan_truncated.dcm": "truncated: element (300A,00B0)",
}

#: Files where pydicom's to_json_dict raises and read_header writes the bad
#: public element with its VR and no value (pydicom's from_json cannot load a
#: UN of a public tag): name -> {tag: JSON entry}.
PYDICOM_FAILS = {"badVR.dcm": {"00280008": {"vr": "IS"}}}


def _read(path: Path | str, **kw: Any) -> Header:
    with open(path, "rb") as f:
        return read_header(f, path=str(path), **kw)


def _ref(path: Path | str) -> Dataset:
    """The whole file as pydicom reads it (elements after the pixel data included)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = pydicom.dcmread(path, force=True)
        head = pydicom.dcmread(path, force=True, stop_before_pixels=True)
    # pydicom drops the whole dataset when encapsulated pixel data is cut short
    return head if set(head.keys()) - set(full.keys()) else full


_norm = normalise


def _uris(node: Any, out: list[str]) -> list[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "BulkDataURI":
                out.append(v)
            else:
                _uris(v, out)
    elif isinstance(node, list):
        for v in node:
            _uris(v, out)
    return out


def _pydicom_json(ds: Dataset) -> dict[str, Any]:
    return reference_json(ds, 1024)


def _compare_json(header: Header, ref: Dataset) -> dict[str, Any]:
    mine = json.loads(header.meta)
    assert list(mine) == sorted(mine), "keys sorted by tag"
    for uri in _uris(mine, []):
        assert URI.fullmatch(uri), uri
    assert not [k for k in _keys_deep(mine) if k.endswith("0000")], "no group lengths"
    theirs = _pydicom_json(ref)
    assert _norm(without_pixels(mine)) == _norm(theirs)
    return mine


def _keys_deep(node: Any) -> list[str]:
    out: list[str] = []
    if isinstance(node, dict):
        for k, v in node.items():
            out.append(k)
            out += _keys_deep(v)
    elif isinstance(node, list):
        for v in node:
            out += _keys_deep(v)
    return out


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, MultiValue | list) or isinstance(b, MultiValue | list):
        a = list(a) if isinstance(a, MultiValue | list) else [a]
        b = list(b) if isinstance(b, MultiValue | list) else [b]
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b, strict=True))
    if a in ("", None, b"") and b in ("", None, b""):
        return True
    if isinstance(a, int) and isinstance(b, int):
        return int(a) == int(b)
    if isinstance(a, float) or isinstance(b, float):
        return float(a) == float(b)
    return str(a) == str(b) if not isinstance(a, bytes) else a == b


def _compare_datasets(new: Dataset, ref: Dataset, js: dict[str, Any], little: bool) -> None:
    """What pydicom reads back from the JSON equals what it reads from the file."""
    for elem in ref:
        key = f"{elem.tag:08X}"
        if key.endswith("0000") or key in PIXEL_TAGS:
            continue  # group lengths are not in the JSON model; pixel data is bulk
        entry = js[key]
        if "BulkDataURI" in entry:
            continue
        other = new[elem.tag]
        if elem.VR == "SQ":
            assert len(other.value) == len(elem.value), key
            for i, (a, b) in enumerate(zip(other.value, elem.value, strict=True)):
                _compare_datasets(a, b, entry["Value"][i], little)
            continue
        expected = elem.value
        if isinstance(expected, bytes) and "InlineBinary" in entry:
            expected = little_endian_value(elem.VR, expected, little)
        assert _same_value(other.value, expected), (key, other.value, expected)


def _expected_key(ds: Dataset, tag: int) -> Any:
    """A key column as pydicom reads it, typed by the DICOM VR."""
    elem = ds.get(tag)
    if elem is None or elem.VR == "UN" or elem.value in (None, "", b""):
        return None
    value = elem.value
    vr = dictionary_VR(tag)
    if vr not in ("DA", "TM", "IS", "US"):
        return "\\".join(map(str, value)) if isinstance(value, MultiValue) else str(value)
    first = value[0] if isinstance(value, MultiValue) else value
    if vr == "DA":
        try:
            d = DA(first)
        except ValueError:
            return None
        return None if d is None else dt.date(d.year, d.month, d.day)
    if vr == "TM":
        try:
            t = TM(first)
        except ValueError:
            # pydicom refuses ACR-NEMA "HH:MM:SS"; read_header accepts it (as pydicom
            # accepts "YYYY.MM.DD" for DA)
            if re.fullmatch(r"\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?", first.strip()):
                return dt.time.fromisoformat(first.strip())
            return None
        return None if t is None else dt.time(t.hour, t.minute, t.second, t.microsecond)
    return int(first)


@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name}/{p.name}" for p in FILES])
def test_against_pydicom(path: Path) -> None:
    if path.name in EXPECTED_ERRORS:
        with pytest.raises(DicomReadError) as info:
            _read(path)
        assert str(path) in str(info.value)
        assert EXPECTED_ERRORS[path.name] in str(info.value)
        return
    header = _read(path)
    ref = _ref(path)
    # (2) pydicom reads the JSON back, always
    new = Dataset.from_json(header.meta, bulk_data_uri_handler=lambda tag, vr, uri: None)
    if path.name in PYDICOM_FAILS:
        with pytest.raises(ValueError):
            _pydicom_json(ref)
        mine = json.loads(header.meta)
        for key, entry in PYDICOM_FAILS[path.name].items():
            assert mine[key] == entry
            assert new[int(key, 16)].value is None
        return
    # (1) the same JSON as pydicom
    js = _compare_json(header, ref)
    # (2) ... to the same values
    _compare_datasets(new, _ref(path), js, is_little(ref))
    # (3) key columns as pydicom reads them
    ref = _ref(path)
    assert set(header.keys) == {c.name for c in KEY_COLUMNS}
    for col in KEY_COLUMNS:
        if col.name == "TransferSyntaxUID":
            continue
        assert col.tag is not None
        expected = _expected_key(ref, col.tag)
        assert header.keys[col.name] == expected, col.name
    ts = ref.file_meta.get("TransferSyntaxUID")
    if ts is not None:
        assert header.keys["TransferSyntaxUID"] == header.transfer_syntax == str(ts)
    assert header.forced == (path.read_bytes()[128:132] != b"DICM")
    # (4) a whole header with pixel data cut short: the header is kept, the defect reported
    if path.name == "MR_truncated.dcm":
        assert (
            header.problem
            == "truncated: pixel data (7FE0,0010) should have 8192 bytes, the file holds 8130"
        )
    else:
        assert header.problem is None


def test_enough_files_compared() -> None:
    compared = [p for p in FILES if p.name not in EXPECTED_ERRORS]
    assert len(compared) >= 200
    names = {p.name for p in FILES}
    assert set(EXPECTED_ERRORS) <= names
    assert set(PYDICOM_FAILS) <= names


def _ref_value(ds: Dataset, tagpath: str) -> bytes:
    parts = tagpath.split("/")
    node: Any = ds
    for i in range(0, len(parts) - 1, 2):
        node = node[int(parts[i], 16)].value[int(parts[i + 1])]
    return bytes(node[int(parts[-1], 16)].value)


@pytest.mark.parametrize("name", ["CT_small.dcm", "waveform_ecg.dcm", "MR_small_bigendian.dcm",
                                  "JPEG2000.dcm", "OT-PAL-8-face.dcm", "rtdose.dcm",
                                  "nested_priv_SQ.dcm", "emri_small_jpeg_2k_lossless.dcm",
                                  "SC_rgb_small_odd.dcm"])  # fmt: skip
def test_bulk_offsets_point_at_the_values(name: str) -> None:
    """With threshold 0 every binary value is bulk: its offset/length hold its bytes."""
    path = get_testdata_file(name, download=False)
    assert path is not None
    data = Path(path).read_bytes()
    header = _read(path, bulk_threshold=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = pydicom.dcmread(path, force=True)
    uris = _uris(json.loads(header.meta), [])
    assert uris
    for uri in uris:
        m = re.fullmatch(r"bulkdata/([0-9A-F/]+)\?offset=(\d+)(?:&length=(\d+))?", uri)
        assert m, uri
        tagpath, offset = m[1], int(m[2])
        value = _ref_value(full, tagpath)
        if m[3] is None:  # encapsulated pixel data
            assert tagpath == "7FE00010"
            assert data[offset : offset + 4] in (b"\xfe\xff\x00\xe0", b"\xff\xfe\xe0\x00")
            assert data[offset : offset + len(value)] == value
        else:
            assert int(m[3]) == len(value)
            assert data[offset : offset + len(value)] == value, uri


def test_charset_patient_names() -> None:
    files = get_charset_files("chr*.dcm")
    assert len(files) >= 10
    for path in files:
        header = _read(path)
        ds = pydicom.dcmread(path)
        if "PatientName" in ds:
            assert header.keys["PatientName"] == str(ds.PatientName), path
    h = _read(get_charset_files("chrH31.dcm")[0])
    assert h.keys["PatientName"] == "Yamada^Tarou=山田^太郎=やまだ^たろう"
    meta = json.loads(h.meta)
    assert meta["00100010"]["Value"][0]["Ideographic"] == "山田^太郎"


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """CT_small.dcm and MR_small.dcm rewritten by dcmtk in other transfer syntaxes."""
    if shutil.which("dcmconv") is None:  # pragma: no cover - dcmtk is installed in CI
        pytest.skip("dcmconv (dcmtk) not installed")
    out = {}
    root = tmp_path_factory.mktemp("dcmconv")
    for name in ("CT_small.dcm", "MR_small.dcm", "waveform_ecg.dcm", "rtplan.dcm"):
        src = get_testdata_file(name, download=False)
        for flag in ("+tb", "+ti", "+td", "+te"):
            dst = root / f"{flag[1:]}_{name}"
            subprocess.run(["dcmconv", flag, src, str(dst)], check=True, capture_output=True)
            out[dst.name] = dst
    return out


TS_FLAGS = [
    ("tb", "1.2.840.10008.1.2.2"),
    ("ti", "1.2.840.10008.1.2"),
    ("td", "1.2.840.10008.1.2.1.99"),
    ("te", "1.2.840.10008.1.2.1"),
]


@pytest.mark.parametrize("flag,ts", TS_FLAGS)
@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "waveform_ecg.dcm", "rtplan.dcm"])
def test_transfer_syntaxes(converted: dict[str, Path], flag: str, ts: str, name: str) -> None:
    path = converted[f"{flag}_{name}"]
    header = _read(path)
    assert header.transfer_syntax == ts == header.keys["TransferSyntaxUID"]
    js = _compare_json(header, _ref(path))
    uris = _uris(js, [])
    if flag == "td":
        assert all("?" not in u for u in uris), "no offsets in deflated files"
    else:
        assert all("?offset=" in u for u in uris)
    original = _read(get_testdata_file(name, download=False) or "")
    assert header.keys == {**original.keys, "TransferSyntaxUID": ts}
    if name in ("CT_small.dcm", "MR_small.dcm"):
        pixel = next(k for k in PIXEL_TAGS if k in js)
        assert js[pixel]["vr"] in ("OB", "OW")
        assert "BulkDataURI" in js[pixel]


def test_deflated_pydicom_file() -> None:
    header = _read(get_testdata_file("image_dfl.dcm", download=False) or "")
    js = json.loads(header.meta)
    assert header.transfer_syntax == "1.2.840.10008.1.2.1.99"
    assert js["7FE00010"] == {"vr": "OB", "BulkDataURI": "bulkdata/7FE00010"}


def test_no_preamble_no_meta_is_forced(tmp_path: Path) -> None:
    path = get_testdata_file("CT_small.dcm", download=False) or ""
    ds = pydicom.dcmread(path)
    del ds.file_meta
    ds.preamble = None
    for implicit, ts in ((False, "1.2.840.10008.1.2.1"), (True, "1.2.840.10008.1.2")):
        out = tmp_path / f"bare_{implicit}.dcm"
        pydicom.dcmwrite(
            out, ds, enforce_file_format=False, implicit_vr=implicit, little_endian=True
        )
        assert out.read_bytes()[:4] == b"\x08\x00\x05\x00"
        header = _read(out)
        assert header.forced is True
        assert header.transfer_syntax == ts
        _compare_json(header, _ref(out))
        assert header.keys["Modality"] == "CT"
        pixel = json.loads(header.meta)["7FE00010"]
        assert pixel["vr"] == "OW"
        offset = int(re.search(r"offset=(\d+)", pixel["BulkDataURI"])[1])  # type: ignore[index]
        assert out.read_bytes()[offset : offset + 16] == ds.PixelData[:16]


def test_waveform_is_not_inlined() -> None:
    header = _read(get_testdata_file("waveform_ecg.dcm", download=False) or "")
    js = json.loads(header.meta)
    # ~50 KB of real structure (the annotation sequence alone is ~32 KB of values);
    # the waveform samples themselves are bulk.
    assert len(header.meta.encode()) < 64_000
    inline = re.findall(r'"InlineBinary":"([^"]*)"', header.meta)
    assert all(len(v) <= 1024 for v in inline)
    items = js["54000100"]["Value"]
    assert len(items) >= 1
    uri = items[0]["54001010"]["BulkDataURI"]
    assert uri.startswith("bulkdata/54000100/0/54001010?offset=")


def test_key_types() -> None:
    header = _read(get_testdata_file("CT_small.dcm", download=False) or "")
    k = header.keys
    assert k["Modality"] == "CT"
    assert k["StudyDate"] == dt.date(2004, 1, 19)
    assert k["StudyTime"] == dt.time(7, 27, 30)
    assert k["Rows"] == 128 and k["Columns"] == 128 and k["BitsAllocated"] == 16
    assert isinstance(k["SeriesNumber"], int) and isinstance(k["InstanceNumber"], int)
    assert k["NumberOfFrames"] is None
    assert k["TransferSyntaxUID"] == "1.2.840.10008.1.2.1"
    assert header.forced is False


@pytest.mark.parametrize(
    "text,expected",
    [("20040119", dt.date(2004, 1, 19)), ("2004.01.19", dt.date(2004, 1, 19)),
     ("20041319", None), ("2004", None), ("", None), ("garbage!", None)],
)  # fmt: skip
def test_parse_da(text: str, expected: dt.date | None) -> None:
    assert parse_da(text) == expected


@pytest.mark.parametrize(
    "text,expected",
    [("1015", dt.time(10, 15)), ("10", dt.time(10)), ("101530.25", dt.time(10, 15, 30, 250000)),
     ("10:15:30", dt.time(10, 15, 30)), ("235960", dt.time(23, 59, 59)), ("2561", None),
     ("", None), ("1015.5", None)],
)  # fmt: skip
def test_parse_tm(text: str, expected: dt.time | None) -> None:
    assert parse_tm(text) == expected


# -- hand-made elements: edge cases of the value decoders against pydicom --------------------

_LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"}


def _element(tag: int, vr: str, value: bytes) -> bytes:
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr.encode()
    if vr in _LONG_VRS:
        return head + b"\0\0" + struct.pack("<L", len(value)) + value
    return head + struct.pack("<H", len(value)) + value


def _file(elements: list[tuple[int, str, bytes]]) -> bytes:
    ts = b"1.2.840.10008.1.2.1\0"
    meta = _element(0x00020010, "UI", ts)
    meta = _element(0x00020000, "UL", struct.pack("<L", len(meta))) + meta
    body = b"".join(_element(*e) for e in elements)
    return b"\0" * 128 + b"DICM" + meta + body


EDGE_CASES: list[tuple[int, str, bytes]] = [
    (0x00080005, "CS", b"ISO_IR 100"),
    (0x00080008, "CS", b"A\\\\B "),  # empty value inside
    (0x00080016, "UI", b"1.2.3\0"),
    (0x00080020, "DA", b"20010203"),
    (0x00080030, "TM", b"1015"),
    (0x00080050, "SH", b" lead "),
    (0x00080054, "AE", b" AE1 \\ AE2"),
    (0x00080060, "CS", b"CT\\"),
    (0x00080070, "LO", b"Caf\xe9\0"),
    (0x00080090, "PN", b"A^B=C^D=\\E"),
    (0x00081030, "LO", b"  "),
    (0x00081190, "UR", b"http://x/y  "),
    (0x00100010, "PN", b"Doe^J\xf6rg"),
    (0x00100020, "LO", b"ID\\2"),
    (0x00101010, "AS", b"042Y"),
    (0x00101030, "DS", b" 72.5 "),
    (0x00104000, "LT", b"line\\with backslash  "),
    (0x00180050, "DS", b"1\\2.5\\-3e2"),
    (0x00181000, "LO", b"x"),
    (0x00200011, "IS", b" 12 "),
    (0x00200013, "IS", b"1.0"),
    (0x00200032, "DS", b"1.5\\\\2"),  # pydicom raises: empty value -> null
    (0x00201041, "DS", b"nan"),  # non-finite -> UN
    (0x00209161, "UI", b"1.2"),
    (0x00280002, "US", b"\x03\x00"),
    (0x00280008, "IS", b"1A"),  # not a number -> UN
    (0x00280010, "US", b"\x40\x00\x20"),  # 3 bytes -> UN
    (0x00280011, "US", b"\x40\x00\x41\x00"),  # VM 2
    (0x00281050, "DS", b""),
    (0x00290010, "LO", b"PRIVATE CREATOR"),
    (0x00291001, "OB", b"\x01\x02\x03"),
    (0x00291002, "FL", struct.pack("<f", float("nan"))),  # non-finite -> UN
    (0x00291003, "FD", struct.pack("<2d", 1.5, -2.0)),
    (0x00291004, "AT", struct.pack("<HHHH", 0x0010, 0x0010, 0x7FE0, 0x0010)),
    (0x00291005, "SL", struct.pack("<l", -5)),
    (0x00291006, "UT", b"text \\ more"),
    (0x00291007, "OW", b""),
    (0x00291008, "UN", b"\x00\x01"),
    (0x00291009, "SS", struct.pack("<3h", -1, 0, 1)),
]

#: Where pydicom raises for the element, what read_header writes instead.
EDGE_DEVIATIONS = {
    "00200032": {"vr": "DS", "Value": [1.5, None, 2.0]},
    "00201041": {"vr": "DS"},
    "00280008": {"vr": "IS"},
    "00280010": {"vr": "US"},
    "00291002": {
        "vr": "UN",
        "InlineBinary": base64.b64encode(struct.pack("<f", float("nan"))).decode(),
    },
}


def test_edge_case_values(tmp_path: Path) -> None:
    path = tmp_path / "edge.dcm"
    path.write_bytes(_file(EDGE_CASES))
    mine = json.loads(_read(path).meta)
    ds = _ref(path)
    for tag, _, _ in EDGE_CASES:
        key = f"{tag:08X}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                theirs = ds[tag].to_json_dict(lambda e: "x", 1024)
                if any(isinstance(v, float) and v != v for v in theirs.get("Value", [])):
                    raise ValueError("NaN")
            except Exception:
                theirs = None
        if key in EDGE_DEVIATIONS:
            assert theirs is None, key
            assert mine[key] == EDGE_DEVIATIONS[key], key
        else:
            assert theirs is not None, key
            assert mine[key] == theirs, key
    assert mine["00080008"]["Value"] == ["A", "", "B"]
    assert mine["00200013"]["Value"] == [1]
    assert mine["00080090"]["Value"][1] == {"Alphabetic": "E"}


def test_empty_pn_component_is_null(tmp_path: Path) -> None:
    path = tmp_path / "pn.dcm"
    path.write_bytes(_file([(0x00080090, "PN", b"A\\\\B")]))
    mine = json.loads(_read(path).meta)
    assert mine["00080090"]["Value"] == [{"Alphabetic": "A"}, None, {"Alphabetic": "B"}]


def test_encode_json_on_a_dataset() -> None:
    ds = _ref(get_testdata_file("MR_small.dcm", download=False) or "")
    js = encode_json(ds, bulk_threshold=1024)
    assert _norm(without_pixels(js)) == _norm(
        _pydicom_json(_ref(get_testdata_file("MR_small.dcm") or ""))
    )
    # elements pydicom already converted are encoded too
    _ = ds.PatientName, ds.PixelSpacing
    assert encode_json(ds) == js


# -- bad input ----------------------------------------------------------------------------------


def _png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">L", len(data)) + body + struct.pack(">L", zlib.crc32(body))

    ihdr = struct.pack(">LLBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0\0"))
        + chunk(b"IEND", b"")
    )


BAD = {
    "empty.dcm": lambda: b"",
    "truncated.dcm": lambda: Path(get_testdata_file("CT_small.dcm") or "").read_bytes()[:600],
    "random.bin": lambda: random.Random(0).randbytes(4096),
    "image.png": _png,
    "preamble_only.dcm": lambda: b"\0" * 128 + b"DICM",
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_raises_with_path(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(BAD[name]())
    with pytest.raises(DicomReadError) as info:
        _read(path)
    assert str(path) in str(info.value)
    assert info.value.path == str(path)


def test_truncated_names_the_element(tmp_path: Path) -> None:
    path = tmp_path / "t.dcm"
    path.write_bytes(Path(get_testdata_file("CT_small.dcm") or "").read_bytes()[:600])
    with pytest.raises(
        DicomReadError, match=r"truncated: the header of element \(0008,0030\) at offset 594"
    ):
        _read(path)


def test_reads_from_memory_at_any_position() -> None:
    data = Path(get_testdata_file("CT_small.dcm") or "").read_bytes()
    h1 = read_header(io.BytesIO(data), path="mem")
    h2 = _read(get_testdata_file("CT_small.dcm") or "")
    assert h1 == h2
    assert os.path.basename(__file__) == "test_meta.py"


@pytest.mark.parametrize(
    ("name", "depth"),
    [
        ("CT_small.dcm", 200),  # explicit VR little endian: the fast parser refuses it
        ("CT_small.dcm", 5000),
        ("MR_small_implicit.dcm", 200),  # read by pydicom: its recursion named
        ("MR_small_bigendian.dcm", 1000),
    ],
)
def test_sequences_nested_too_deep_are_an_error_row_naming_the_tag(
    name: str, depth: int, tmp_path: Path
) -> None:
    """(0008,1115) nested `depth` levels before the first element of a real file: one error row
    naming the file and the tag; the other files of the run keep their rows."""
    import hostile
    from pixels import Catalog

    data = get_testdata_file(name, read=False)
    raw = Path(data).read_bytes()
    ts = pydicom.dcmread(data, stop_before_pixels=True).file_meta.TransferSyntaxUID
    first = min((e for e in hostile._elements(raw) if e.tag.group > 2), key=lambda e: e.value_tell)
    at = first.value_tell - (8 if (first.is_implicit_VR or not hostile._long_vr(first)) else 12)
    nested = hostile._nested(depth, 0x00081115, ts.is_little_endian, not ts.is_implicit_VR)
    src = tmp_path / "data"
    src.mkdir()
    deep = src / "deep.dcm"
    deep.write_bytes(raw[:at] + nested + raw[at:])
    shutil.copyfile(get_testdata_file("CT_small.dcm"), src / "ok.dcm")
    cat = Catalog(tmp_path / "cat")
    cat.catalog(src, workers=0)
    rows = {
        Path(r["path"]).name: r
        for r in cat.sql_arrow("SELECT path, error, SOPInstanceUID FROM object_catalog").to_pylist()
    }
    assert set(rows) == {"deep.dcm", "ok.dcm"}
    err = rows["deep.dcm"]["error"]
    assert err is not None and err.startswith(f"{deep}: sequence (0008,1115) is nested more than ")
    assert "levels deep (inside (0008,1115)" in err and "RecursionError" not in err
    assert rows["ok.dcm"]["error"] is None and rows["ok.dcm"]["SOPInstanceUID"]


def test_sequences_nested_within_the_limit_read_like_pydicom() -> None:
    """A real file with (0008,1115) nested 50 levels deep: read, the innermost item reached."""
    import hostile

    data = get_testdata_file("CT_small.dcm", read=False)
    raw = Path(data).read_bytes()
    first = min((e for e in hostile._elements(raw) if e.tag.group > 2), key=lambda e: e.value_tell)
    at = first.value_tell - (8 if (first.is_implicit_VR or not hostile._long_vr(first)) else 12)
    blob = raw[:at] + hostile._nested(50, 0x00081115, True, True) + raw[at:]
    js = json.loads(read_header(io.BytesIO(blob), path="deep.dcm").meta)
    level, n = js["00081115"], 1
    while level["Value"] and "00081115" in level["Value"][0]:
        level, n = level["Value"][0]["00081115"], n + 1
    assert n == 50 and js["00080060"]["Value"] == ["CT"]
