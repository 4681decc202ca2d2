"""Huge header values (hostile or odd files) become BulkDataURIs, never megabytes of JSON."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from corpus import sample_file
from pixels.dicom.jsonenc import MAX_INLINE_VALUE
from pixels.dicom.meta import read_header


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
@pytest.mark.parametrize("fast", [True, False])
def test_huge_text_and_lut_are_bulk(tmp_path: Path, syntax: str, fast: bool) -> None:
    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    comment = "x" * (3 * MAX_INLINE_VALUE)
    ds.ImageComments = comment  # LT
    ds.RedPaletteColorLookupTableData = b"\x01\x02" * MAX_INLINE_VALUE  # OW: binary bulk as always
    ds.add_new(0x00283006, "US", list(range(40_000)))  # LUT Data written as US, 80 KB
    ds.file_meta.TransferSyntaxUID = syntax
    path = tmp_path / "huge.dcm"
    ds.save_as(path, enforce_file_format=True)
    with open(path, "rb") as f:
        header = read_header(f, path=str(path), fast=fast)
    assert len(header.meta) < 20_000
    js = json.loads(header.meta)
    data = path.read_bytes()
    for key, expected in (("00204000", comment.encode()), ("00283006", None)):
        uri = js[key]["BulkDataURI"]
        m = re.fullmatch(rf"bulkdata/{key}\?offset=(\d+)&length=(\d+)", uri)
        assert m, uri
        off, length = int(m[1]), int(m[2])
        value = data[off : off + length]
        if expected is not None:
            assert value == expected
        else:
            assert value == b"".join(i.to_bytes(2, "little") for i in range(40_000))
    # small values next to them stay inline and exact
    assert js["00080018"]["Value"] == [ds.SOPInstanceUID]
