"""The DICOM JSON model read_header writes follows PS3.18 F.2 where pydicom does not.

* no group length elements ``(gggg,0000)``, at any depth;
* the elements after the pixel data (GE's private 7FE1 group, Digital
  Signatures (FFFA,FFFA), trailing padding) are kept;
* person name component groups that are empty are absent, not ``""``;
* ``InlineBinary`` is little endian whatever the file's byte order.

All on real files (pydicom's test files), re-written by pydicom in each
transfer syntax, through both the fast and the pydicom path of read_header.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any

import pydicom
import pytest
from jsonref import normalise, reference_json, without_pixels
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from corpus import sample_file
from pixels.dicom.jsonenc import little_endian_value
from pixels.dicom.meta import read_header

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SYNTAXES = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
]
SIGNATURE = bytes(range(256)) * 2


def _with_trailing(ds: Dataset) -> Dataset:
    """`ds` with a GE private group and a digital signature after its pixel data."""
    ds.add_new(0x7FE10010, "LO", "GEMS_PARM_01")
    ds.add_new(0x7FE11001, "OB", b"\x01\x02\x03\x04")
    ds.add_new(0x7FE11002, "LO", "after pixels")
    item = Dataset()
    item.MACIDNumber = 1
    item.DigitalSignatureUID = "1.2.3.4"
    item.Signature = SIGNATURE
    ds.DigitalSignaturesSequence = Sequence([item])
    return ds


DCMCONV = {
    ExplicitVRLittleEndian: "+te",
    ImplicitVRLittleEndian: "+ti",
    ExplicitVRBigEndian: "+tb",
    DeflatedExplicitVRLittleEndian: "+td",
}


def _write(ds: Dataset, path: Path, syntax: str) -> Path:
    """`ds` saved by pydicom as read, then transcoded to `syntax` by dcmtk's dcmconv."""
    orig = path.with_suffix(".orig.dcm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(orig, enforce_file_format=True)
    if ds.file_meta.TransferSyntaxUID == syntax:
        return orig
    return _convert(orig, path, syntax)


def _convert(src: Path, path: Path, syntax: str) -> Path:
    """`src` transcoded to `syntax` by dcmtk's dcmconv (which keeps group lengths)."""
    if shutil.which("dcmconv") is None:  # pragma: no cover - dcmtk is installed in CI
        pytest.skip("dcmconv (dcmtk) not installed")
    subprocess.run(["dcmconv", DCMCONV[syntax], str(src), str(path)], check=True)
    return path


def _both(path: Path, threshold: int = 1024) -> dict[str, Any]:
    """read_header's JSON, the same through the fast and the pydicom path."""
    data = path.read_bytes()
    fast = read_header(io.BytesIO(data), path=str(path), bulk_threshold=threshold)
    slow = read_header(io.BytesIO(data), path=str(path), bulk_threshold=threshold, fast=False)
    assert fast == slow
    return json.loads(fast.meta)


def _full(path: Path) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, force=True)


@pytest.mark.parametrize("syntax", SYNTAXES)
@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm"])
def test_elements_after_pixel_data(tmp_path: Path, name: str, syntax: str) -> None:
    ds = _with_trailing(pydicom.dcmread(sample_file(name)))
    path = _write(ds, tmp_path / f"{name}.{syntax}.dcm", syntax)
    js = _both(path)
    assert list(js) == sorted(js)
    assert js["7FE10010"] == {"vr": "LO", "Value": ["GEMS_PARM_01"]}
    if syntax != ImplicitVRLittleEndian:  # (implicit: private elements are UN)
        assert js["7FE11002"] == {"vr": "LO", "Value": ["after pixels"]}
        ob = base64.b64encode(b"\1\2\3\4").decode()
        assert js["7FE11001"] == {"vr": "OB", "InlineBinary": ob}
    item = js["FFFAFFFA"]["Value"][0]
    assert item["04000100"] == {"vr": "UI", "Value": ["1.2.3.4"]}
    assert item["04000005"] == {"vr": "US", "Value": [1]}
    assert normalise(without_pixels(js)) == normalise(reference_json(_full(path)))
    if syntax != DeflatedExplicitVRLittleEndian:  # offsets point at the signature's bytes
        js0 = _both(path, threshold=0)
        uri = js0["FFFAFFFA"]["Value"][0]["04000120"]["BulkDataURI"]
        assert uri.startswith("bulkdata/FFFAFFFA/0/04000120?offset=")
        offset = int(uri.split("offset=")[1].split("&")[0])
        assert path.read_bytes()[offset : offset + len(SIGNATURE)] == SIGNATURE
    back = Dataset.from_json(json.dumps(js), bulk_data_uri_handler=lambda *a: None)
    assert back[0x7FE10010].value == "GEMS_PARM_01"


@pytest.mark.parametrize("name", ["JPEG2000.dcm", "emri_small_RLE.dcm", "MR_small_RLE.dcm"])
def test_elements_after_encapsulated_pixel_data(tmp_path: Path, name: str) -> None:
    """The fragments of encapsulated pixel data are stepped over item by item."""
    ds = _with_trailing(pydicom.dcmread(sample_file(name)))
    path = _write(ds, tmp_path / name, str(ds.file_meta.TransferSyntaxUID))
    js = _both(path)
    assert js["7FE11002"] == {"vr": "LO", "Value": ["after pixels"]}
    assert "FFFAFFFA" in js
    assert normalise(without_pixels(js)) == normalise(reference_json(_full(path)))


def _deep_keys(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [k for k, v in node.items() for k in [k, *_deep_keys(v)]]
    if isinstance(node, list):
        return [k for v in node for k in _deep_keys(v)]
    return []


@pytest.mark.parametrize("syntax", SYNTAXES)
def test_no_group_lengths(tmp_path: Path, syntax: str) -> None:
    """ExplVR_BigEnd.dcm carries six group lengths; none reach the JSON, in any syntax."""
    path = _convert(sample_file("ExplVR_BigEnd.dcm"), tmp_path / "gl.dcm", syntax)
    assert sum(e.tag.element == 0 for e in _full(path)) >= 5
    js = _both(path)
    assert not [k for k in _deep_keys(js) if len(k) == 8 and k.endswith("0000")]
    assert normalise(without_pixels(js)) == normalise(reference_json(_full(path)))


def test_no_group_lengths_fast_path() -> None:
    path = sample_file("693_J2KI.dcm")  # explicit VR little endian: read by fastread
    js = _both(path)
    assert sum(e.tag.element == 0 for e in _full(path)) >= 5
    assert not [k for k in _deep_keys(js) if len(k) == 8 and k.endswith("0000")]


@pytest.mark.parametrize(
    "name,value,expected,key",
    [
        ("Yamada^Tarou==やまだ^たろう", "ISO_IR 192",
         {"Alphabetic": "Yamada^Tarou", "Phonetic": "やまだ^たろう"}, "Yamada^Tarou==やまだ^たろう"),
        ("=山田^太郎", "ISO_IR 192", {"Ideographic": "山田^太郎"}, "=山田^太郎"),
        ("Doe^John=", "ISO_IR 100", {"Alphabetic": "Doe^John"}, "Doe^John"),
    ],
)  # fmt: skip
def test_empty_pn_groups_are_absent(
    tmp_path: Path, name: str, value: str, expected: Any, key: str
) -> None:
    for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        ds = pydicom.dcmread(sample_file("CT_small.dcm"))
        ds.SpecificCharacterSet = value
        ds.PatientName = name
        ds.ReferringPhysicianName = [name, "A^B"]
        path = _write(ds, tmp_path / "pn.dcm", syntax)
        js = _both(path)
        assert normalise(without_pixels(js)) == normalise(reference_json(_full(path)))
        assert js["00100010"] == {"vr": "PN", "Value": [expected]}
        assert js["00080090"] == {"vr": "PN", "Value": [expected, {"Alphabetic": "A^B"}]}
        header = read_header(io.BytesIO(path.read_bytes()), path="pn")
        assert header.keys["PatientName"] == key
        back = Dataset.from_json(json.dumps(js), bulk_data_uri_handler=lambda *a: None)
        assert str(back.PatientName) == key


def test_pn_with_code_extensions_has_no_empty_groups() -> None:
    """ISO 2022 names go through pydicom's own PN encoder: its "" groups are dropped too."""
    path = Path(pydicom.data.get_charset_files("chrH32.dcm")[0])
    js = _both(path)
    for v in js["00100010"]["Value"]:
        assert all(v.values()), v


@pytest.mark.parametrize(
    "name", ["MR_small_bigendian.dcm", "ExplVR_BigEnd.dcm", "US1_UNCR.dcm", "CT_small.dcm"]
)
def test_inline_binary_is_little_endian(tmp_path: Path, name: str) -> None:
    """Every OW/OF InlineBinary of a big endian copy equals the little endian original's."""
    ds = pydicom.dcmread(sample_file(name), force=True)
    ds.add_new(0x00091010, "LO", "PIXELS")
    ds.add_new(0x00091001, "OW", b"\x01\x02\x03\x04\x05\x06")
    ds.add_new(0x00091002, "OF", b"\x01\x02\x03\x04\x05\x06\x07\x08")
    ds.add_new(0x00091003, "OD", bytes(range(16)))
    little = _both(_write(ds, tmp_path / "le.dcm", ExplicitVRLittleEndian), threshold=1 << 30)
    big_path = _write(ds, tmp_path / "be.dcm", ExplicitVRBigEndian)
    big = _both(big_path, threshold=1 << 30)
    ref = _full(big_path)  # pydicom gives the bytes as stored: big endian words
    for key, vr in (("00091001", "OW"), ("00091002", "OF"), ("00091003", "OD")):
        stored = ref[int(key, 16)].value
        assert (
            big[key]["InlineBinary"]
            == base64.b64encode(little_endian_value(vr, stored, False)).decode()
        )
        assert little_endian_value(vr, stored, False) != stored
    inline = [k for k, v in little.items() if "InlineBinary" in v]
    assert len(inline) >= 3
    assert {k: big[k] for k in inline} == {k: little[k] for k in inline}
    # and pydicom reads the JSON back to the values it reads from the big endian file
    back = Dataset.from_json(json.dumps(big), bulk_data_uri_handler=lambda *a: None)
    for k in inline:
        if k in ("7FE00010",):
            continue
        tag = int(k, 16)
        assert back[tag].value == little_endian_value(ref[tag].VR, ref[tag].value), k


def test_little_endian_value() -> None:
    """The swap web-wado applies to bulk data of big endian files, per VR."""
    assert little_endian_value("OW", b"\1\2\3\4") == b"\2\1\4\3"
    assert little_endian_value("US", b"\1\2\3\4") == b"\2\1\4\3"
    assert little_endian_value("FL", b"\1\2\3\4") == b"\4\3\2\1"
    assert little_endian_value("FD", bytes(range(8))) == bytes(range(7, -1, -1))
    for vr in ("OB", "UN", "LT"):
        assert little_endian_value(vr, b"\1\2\3\4") == b"\1\2\3\4"
    assert little_endian_value("OW", b"\1\2\3") == b"\1\2\3"  # not whole words: as is
    assert little_endian_value("OW", b"\1\2", little=True) == b"\1\2"
