"""Explicit VR Big Endian (retired) to little endian by the transcoder (WADO's, the
viewer's): every word of every binary value swapped, nested ones included.

Sources are written little endian by pydicom and made big endian by dcmtk's ``dcmconv
+tb`` (a real writer of the retired syntax); what comes out is compared with what went in.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from corpus import sample_file
from pixels.dicom.transcode import open_transcoder

ICON = np.arange(16, dtype=np.uint16).reshape(4, 4) * 4097  # both bytes of each word differ


def _big_endian(tmp_path: Path, ds: Dataset) -> Path:
    if shutil.which("dcmconv") is None:
        pytest.skip("dcmtk's dcmconv is not installed")
    src, dst = tmp_path / "le.dcm", tmp_path / "be.dcm"
    ds.save_as(src, enforce_file_format=True)
    subprocess.run(["dcmconv", "+tb", str(src), str(dst)], check=True)
    assert pydicom.dcmread(dst).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.2"
    return dst


def _transcoded(path: Path) -> Dataset:
    with open(path, "rb") as fp:
        data = b"".join(open_transcoder(fp, path=str(path)).chunks())
    return pydicom.dcmread(io.BytesIO(data))


def test_an_icon_image_inside_a_sequence_comes_out_little_endian(tmp_path: Path) -> None:
    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    icon = Dataset()
    icon.Rows, icon.Columns = 4, 4
    icon.SamplesPerPixel, icon.PhotometricInterpretation = 1, "MONOCHROME2"
    icon.BitsAllocated, icon.BitsStored, icon.HighBit, icon.PixelRepresentation = 16, 16, 15, 0
    icon.PixelData = ICON.tobytes()
    icon["PixelData"].VR = "OW"
    ds.IconImageSequence = Sequence([icon])
    out = _transcoded(_big_endian(tmp_path, ds))
    got = np.frombuffer(out.IconImageSequence[0].PixelData, dtype="<u2").reshape(4, 4)
    np.testing.assert_array_equal(got, ICON)
    np.testing.assert_array_equal(out.pixel_array, ds.pixel_array)  # the top level's too
