"""The display pipeline on real files."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_color_lut, convert_color_space, pixel_array

from pixels.dicom.decode import PixelInfo, read_frames
from pixels.dicom.display import to_display


def _load(name: str) -> tuple[pydicom.Dataset, np.ndarray, dict]:
    p = get_testdata_file(name, download=False)
    if p is None:
        pytest.skip("pydicom-data not installed")
    ds = pydicom.dcmread(p)
    return ds, read_frames(p)[0], ds.to_json_dict()


def test_ct_window_by_hand() -> None:
    ds, arr, meta = _load("CT_small.dcm")
    meta["00281050"] = {"vr": "DS", "Value": [40.0, 300.0]}  # first value is used
    meta["00281051"] = {"vr": "DS", "Value": [400.0, 1500.0]}
    ds.WindowCenter, ds.WindowWidth = 40, 400
    out = to_display(arr, meta)
    assert out.dtype == np.uint8 and out.shape == arr.shape
    assert out.std() > 20
    slope, icpt = float(ds.RescaleSlope), float(ds.RescaleIntercept)
    c = float(np.atleast_1d(ds.WindowCenter)[0])
    w = float(np.atleast_1d(ds.WindowWidth)[0])
    for y, x in [(10, 10), (64, 64), (100, 30), (50, 90)]:
        v = arr[y, x] * slope + icpt
        if v <= c - 0.5 - (w - 1) / 2:
            want = 0.0
        elif v > c - 0.5 + (w - 1) / 2:
            want = 255.0
        else:
            want = ((v - (c - 0.5)) / (w - 1) + 0.5) * 255
        assert abs(int(out[y, x]) - want) <= 1


def test_percentile_window_when_none() -> None:
    _ds, arr, meta = _load("MR_small.dcm")
    meta.pop("00281050", None)
    meta.pop("00281051", None)
    out = to_display(arr, meta)
    assert out.min() == 0 and out.max() == 255 and out.std() > 20


def test_monochrome1_inverted() -> None:
    _ds, arr, meta = _load("RG3_UNCR.dcm")
    arr = arr[::8, ::8]
    inv = to_display(arr, meta)
    plain = to_display(arr, meta, photometric="MONOCHROME2")
    np.testing.assert_array_equal(inv, 255 - plain)


@pytest.mark.parametrize("name", ["OBXXXX1A.dcm", "examples_palette.dcm", "gdcm-US-ALOKA-16.dcm"])
def test_palette_matches_pydicom(name: str) -> None:
    ds, arr, meta = _load(name)
    out = to_display(arr, meta)
    ref = apply_color_lut(pixel_array(ds, index=0), ds).astype(np.float64)
    if ref.max() > 255:
        ref = ref / 257.0
    assert out.shape == (*arr.shape, 3)
    assert np.abs(out.astype(np.float64) - ref).max() <= 1


@pytest.mark.parametrize(
    "name",
    [
        "SC_ybr_full_uncompressed.dcm",
        "SC_ybr_full_422_uncompressed.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
        "examples_ybr_color.dcm",
    ],
)
def test_ybr_to_rgb(name: str) -> None:
    ds, arr, meta = _load(name)
    info = PixelInfo.from_dataset(ds)
    out = to_display(arr, meta, photometric=info.decoded_photometric)
    ref = convert_color_space(pixel_array(ds, index=0, as_rgb=False), "YBR_FULL", "RGB")
    assert np.abs(out.astype(int) - ref.astype(int)).mean() < 2


def test_j2k_rct_is_already_rgb() -> None:
    ds, arr, meta = _load("US1_J2KR.dcm")
    info = PixelInfo.from_dataset(ds)
    assert info.decoded_photometric == "RGB"
    out = to_display(arr, meta, photometric=info.decoded_photometric)
    np.testing.assert_array_equal(out, ds.pixel_array)


def test_enhanced_functional_groups() -> None:
    ds, arr, meta = _load("eCT_Supplemental.dcm")
    out = to_display(arr, meta, frame=0)
    pf = ds.PerFrameFunctionalGroupsSequence[0]
    sh = ds.SharedFunctionalGroupsSequence[0]
    grp = pf if "FrameVOILUTSequence" in pf else sh
    voi = grp.FrameVOILUTSequence[0]
    grp = pf if "PixelValueTransformationSequence" in pf else sh
    pvt = grp.PixelValueTransformationSequence[0]
    c = float(np.atleast_1d(voi.WindowCenter)[0])
    w = float(np.atleast_1d(voi.WindowWidth)[0])
    v = arr.astype(float) * float(pvt.RescaleSlope) + float(pvt.RescaleIntercept)
    want = np.clip(((v - (c - 0.5)) / (w - 1) + 0.5), 0, 1) * 255
    assert np.abs(out - want).max() <= 1
    assert out.std() > 20


def test_voi_lut_sequence() -> None:
    ds, arr, meta = _load("vlut_04.dcm")
    out = to_display(arr, meta)
    from pydicom.pixels import apply_voi_lut

    ref = apply_voi_lut(pixel_array(ds), ds).astype(float)
    bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
    ref = np.rint(ref / (2**bits - 1) * 255)
    assert np.abs(out - ref).max() <= 1


def test_palette_color_without_tables_is_a_clear_error() -> None:
    """A real 8-bit image relabelled PALETTE COLOR with no palette tables."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    meta = ds.to_json_dict()
    meta["00280004"] = {"vr": "CS", "Value": ["PALETTE COLOR"]}
    with pytest.raises(ValueError, match=r"Descriptor \(0028,1101-1103\)"):
        to_display(ds.pixel_array.astype("uint16"), meta)
