"""File-type detection from the first bytes, on real files where there are some."""

from __future__ import annotations

import gzip
import io
import struct
import zipfile
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from pixels.sources import HEAD_BYTES, detect_file_type


def _head(name: str) -> bytes:
    path = get_testdata_file(name, download=False)
    assert path is not None, name
    return Path(str(path)).read_bytes()[:HEAD_BYTES]


@pytest.mark.parametrize(
    "name",
    ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "JPEG2000.dcm", "ExplVR_BigEndNoMeta.dcm"],
)
def test_real_dicom_files(name: str) -> None:
    assert detect_file_type(_head(name), name) == "dicom"


@pytest.mark.parametrize("implicit", [True, False])
def test_dicom_without_preamble(implicit: bool) -> None:
    """CT_small.dcm's data set written bare: no preamble, no DICM, no file meta."""
    import pydicom
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    ds = pydicom.dcmread(str(get_testdata_file("CT_small.dcm", download=False)))
    buf = DicomBytesIO()
    buf.is_little_endian = True
    buf.is_implicit_VR = implicit
    write_dataset(buf, ds)
    head = buf.getvalue()[:HEAD_BYTES]
    assert head[:2] == b"\x08\x00"  # starts at group 0008
    assert detect_file_type(head) == "dicom"


def _nifti1(magic: bytes = b"n+1\x00") -> bytes:
    return struct.pack("<i", 348) + bytes(340) + magic + bytes(4)


@pytest.mark.parametrize(
    ("head", "name", "expected"),
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(16), "", "png"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "", "jpeg"),
        (b"\x00\x00\x00\x0cjP  \r\n\x87\n" + bytes(8), "", "jpeg2000"),
        (b"\xff\x4f\xff\x51\x00\x2f", "", "jpeg2000"),
        (b"II*\x00\x08\x00\x00\x00", "", "tiff"),
        (b"MM\x00*\x00\x00\x00\x08", "", "tiff"),
        (b"%PDF-1.7\n", "", "pdf"),
        (_nifti1(), "", "nifti"),
        (_nifti1(b"ni1\x00"), "x.hdr", "nifti"),
        (struct.pack("<i", 540) + b"n+2\x00\r\n\x1a\n" + bytes(8), "", "nifti"),
        (b"hello world" * 10, "", "unknown"),
        (b"", "", "unknown"),
        (bytes(600), "", "unknown"),
        # a TIFF header in a DICOM preamble is still DICOM (dual-personality files)
        (b"II*\x00" + bytes(124) + b"DICM", "", "dicom"),
        # group 0008 but nonsense after it: not DICOM
        (b"\x08\x00\x05\x00ZZ\xff\xff\xff\xff" + bytes(20), "", "unknown"),
    ],
)
def test_signatures(head: bytes, name: str, expected: str) -> None:
    assert detect_file_type(head, name) == expected


def test_gzip_and_nifti_gz() -> None:
    data = gzip.compress(_nifti1())
    assert detect_file_type(data[:HEAD_BYTES], "brain.nii.gz") == "nifti"
    assert detect_file_type(data[:HEAD_BYTES], "BRAIN.NII.GZ") == "nifti"
    assert detect_file_type(data[:HEAD_BYTES], "data.gz") == "gzip"


def test_zip() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.txt", "x")
    assert detect_file_type(buf.getvalue()[:HEAD_BYTES]) == "zip"
    empty = io.BytesIO()
    zipfile.ZipFile(empty, "w").close()
    assert detect_file_type(empty.getvalue()) == "zip"
