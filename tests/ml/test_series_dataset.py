"""SeriesDataset on real series: slice order, affine, HU, enhanced CT, MONAI, bad input."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from series import ct_series

from corpus import sample_file


def _lps_to_ras(p: np.ndarray) -> np.ndarray:
    return np.asarray([-p[0], -p[1], p[2]])


def _pydicom_sorted(paths: list[Path]) -> list[pydicom.Dataset]:
    """The slices as pydicom reads them, sorted by position along the slice normal."""
    dss = [pydicom.dcmread(p) for p in paths]
    iop = np.asarray([float(v) for v in dss[0].ImageOrientationPatient])
    normal = np.cross(iop[:3], iop[3:])
    return sorted(
        dss, key=lambda d: np.asarray([float(v) for v in d.ImagePositionPatient]) @ normal
    )


def test_reverse_named_series_follows_positions_not_names(ml_catalog, ml_data):
    from pixels.ml import SeriesDataset

    ds = SeriesDataset(ml_catalog, "relative_path LIKE 'rev/%'")
    assert len(ds) == 1
    item = ds[0]
    files = sorted((ml_data / "rev").iterdir())
    expected = _pydicom_sorted(files)
    # the first slice along the normal is the last file name, instance numbers are shuffled
    assert Path(item["paths"][0]).name == "005.dcm"
    assert [int(d.InstanceNumber) for d in expected] != sorted(
        int(d.InstanceNumber) for d in expected
    )
    assert [Path(p).name for p in item["paths"]] == [Path(d.filename).name for d in expected]
    img = item["image"]
    assert tuple(img.shape) == (1, 128, 128, 6)
    affine = item["affine"].numpy()
    iop = np.asarray([float(v) for v in expected[0].ImageOrientationPatient])
    dr, dc = (float(v) for v in expected[0].PixelSpacing)
    for k, d in enumerate(expected):
        ipp = np.asarray([float(v) for v in d.ImagePositionPatient])
        for i, j in ((0, 0), (127, 0), (5, 90)):
            lps = ipp + i * dc * iop[:3] + j * dr * iop[3:]
            np.testing.assert_allclose(affine @ [i, j, k, 1], [*_lps_to_ras(lps), 1], atol=1e-3)
        hu = d.pixel_array.astype(np.float64) * float(d.RescaleSlope) + float(d.RescaleIntercept)
        np.testing.assert_array_equal(img[0, :, :, k].numpy(), hu.T.astype(np.float32))
    assert item["spacing"] == pytest.approx((dc, dr, 2.5), abs=1e-4)
    np.testing.assert_allclose(img.affine.numpy(), affine)  # MetaTensor carries the affine
    assert item["SeriesInstanceUID"] == expected[0].SeriesInstanceUID
    assert item["Modality"] == "CT"


def test_volume_and_transforms_match_monai_loadimage(ml_catalog, ml_data):
    """Same voxels in the same place as MONAI's own DICOM reader, after MONAI transforms."""
    from monai.transforms import Compose, LoadImage, Orientationd, Spacingd

    from pixels.ml import SeriesDataset

    pipeline = Compose(
        [Orientationd(keys="image", axcodes="RAS"), Spacingd(keys="image", pixdim=(1.0, 0.8, 1.5))]
    )
    ds = SeriesDataset(ml_catalog, "relative_path LIKE 'ct5n/%'", transform=pipeline)
    ours = ds[0]["image"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = LoadImage(reader="PydicomReader", image_only=True)(str(ml_data / "ct5n"))
    theirs = pipeline({"image": ref[None]})["image"]
    assert ours.shape == theirs.shape
    assert ours.shape[1:] == (8, 10, 8)
    np.testing.assert_allclose(ours.affine.numpy(), theirs.affine.numpy(), atol=1e-4)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=1e-3)
    assert float(ours.min()) < -800  # Hounsfield units (air), not stored values


def test_enhanced_ct_is_one_volume(ml_catalog):
    from pixels.ml import SeriesDataset

    item = SeriesDataset(ml_catalog, "relative_path LIKE 'ect/%'")[0]
    ds = pydicom.dcmread(sample_file("eCT_Supplemental.dcm"))
    frames = ds.pixel_array
    assert tuple(item["image"].shape) == (1, 512, 512, 2)
    shared = ds.SharedFunctionalGroupsSequence[0]
    iop = np.asarray([float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient])
    normal = np.cross(iop[:3], iop[3:])
    per = ds.PerFrameFunctionalGroupsSequence
    pos = [
        np.asarray([float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient]) for f in per
    ]
    order = np.argsort([p @ normal for p in pos])
    affine = item["affine"].numpy()
    for k, f in enumerate(order):
        np.testing.assert_allclose(affine @ [0, 0, k, 1], [*_lps_to_ras(pos[f]), 1], atol=1e-3)
        pvt = (
            per[f].get("PixelValueTransformationSequence")
            or shared.PixelValueTransformationSequence
        )[0]
        hu = frames[f] * float(pvt.RescaleSlope) + float(pvt.RescaleIntercept)
        np.testing.assert_array_equal(item["image"][0, :, :, k].numpy(), hu.T.astype(np.float32))
    assert float(item["image"].min()) == -1024.0


def test_gap_is_reported_never_stacked(ml_catalog):
    from pixels.errors import SeriesError
    from pixels.ml import SeriesDataset

    with pytest.raises(SeriesError) as e:
        SeriesDataset(ml_catalog, "relative_path LIKE 'ct2/%'")
    msg = str(e.value)
    assert "irregular slice spacing: 202.500 mm" in msg
    assert "ct2/17106" in msg and "ct2/17136" in msg
    assert "1.3.6.1.4.1.5962.1.1.0.0.0.1196530851.28319.0.2" in msg
    with pytest.warns(UserWarning, match="1 series left out: .*irregular slice spacing"):
        ds = SeriesDataset(ml_catalog, "relative_path LIKE 'ct2/%'", on_error="skip")
    assert len(ds) == 0
    assert len(ds.problems) == 1 and len(ds.problems[0].rows) == 4


def test_missing_orientation_names_file_and_tag(ml_catalog):
    from pixels.errors import SeriesError
    from pixels.ml import SeriesDataset

    with pytest.raises(
        SeriesError, match=r"emri\.dcm.*no Image Orientation \(Patient\) \(0020,0037\)"
    ):
        SeriesDataset(ml_catalog, "relative_path LIKE 'emri/%'")


def test_where_may_use_slice_thickness(ml_catalog):
    from pixels.ml import SeriesDataset

    with pytest.warns(UserWarning, match="1 series left out"):  # CT2 (1.25 mm) has a gap
        ds = SeriesDataset(ml_catalog, "Modality = 'CT' AND SliceThickness <= 2.5", on_error="skip")
    assert [s.series_uid for s in ds.series] == ["1.3.6.1.4.1.5962.1.1.0.0.0.1194734704.16302.0.6"]


def test_bad_where_is_a_query_error(ml_catalog):
    from pixels.errors import QueryError
    from pixels.ml import SeriesDataset

    with pytest.raises(QueryError, match="NoSuchColumn"):
        SeriesDataset(ml_catalog, "NoSuchColumn = 1")


def test_mixed_sizes_reported(tmp_path):
    from pixels import Catalog
    from pixels.errors import SeriesError
    from pixels.ml import SeriesDataset

    paths = ct_series(tmp_path / "d", 3)
    other = pydicom.dcmread(sample_file("693_UNCI.dcm"))  # a 512x512 slice put in the same series
    other.SeriesInstanceUID = pydicom.dcmread(paths[0]).SeriesInstanceUID
    other.save_as(tmp_path / "d" / "big.dcm")
    cat = Catalog(str(tmp_path / "cat"))
    cat.catalog(str(tmp_path / "d"), workers=0)
    with pytest.raises(SeriesError, match=r"mixed slice sizes: .*(512x512|128x128)"):
        SeriesDataset(cat)


def test_the_same_instance_cataloged_twice_is_named(tmp_path):
    """A copy of a slice under another path (an instance cataloged from its folder and
    received again into the storage root): named as the same SOP instance twice, with
    both paths; a different instance at the same position stays 'several acquisitions'."""
    import re

    from pixels import Catalog
    from pixels.errors import SeriesError
    from pixels.ml import SeriesDataset

    paths = ct_series(tmp_path / "d", 3)
    (tmp_path / "d" / "again").mkdir()
    copy = tmp_path / "d" / "again" / "copy.dcm"
    shutil.copy(paths[1], copy)
    cat = Catalog(str(tmp_path / "cat"))
    cat.catalog(str(tmp_path / "d"), workers=0)
    sop = pydicom.dcmread(paths[1]).SOPInstanceUID
    with pytest.raises(SeriesError) as err:
        SeriesDataset(cat)[0]
    message = str(err.value)
    assert f"the same instance twice, SOP Instance UID (0008,0018) {sop}: " in message, message
    assert str(paths[1]) in message and str(copy) in message, message
    assert "remove_paths" in message  # what to do
    # another instance at that position: not the same instance
    ds = pydicom.dcmread(copy)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(copy)
    cat.catalog(str(tmp_path / "d"), workers=0)
    with pytest.raises(SeriesError, match=re.escape("several acquisitions, phases or echoes")):
        SeriesDataset(cat)[0]


def test_corrupt_slice_names_the_file_or_is_skipped(tmp_path):
    from pixels import Catalog
    from pixels.errors import SeriesError
    from pixels.ml import SeriesDataset

    bad = ct_series(tmp_path / "a", 4)
    good = ct_series(tmp_path / "b", 3)
    cat = Catalog(str(tmp_path / "cat"))
    cat.catalog(str(tmp_path), workers=0, pattern="*.dcm")
    # cut one slice inside its pixel data after cataloging (a file damaged on disk)
    data = bad[2].read_bytes()
    bad[2].write_bytes(data[: len(data) - 5000])
    ds = SeriesDataset(cat, "relative_path LIKE 'a/%'")
    with pytest.raises(SeriesError) as e:
        ds[0]
    assert str(bad[2]) in str(e.value) and "truncated" in str(e.value)
    both = SeriesDataset(cat, on_error="skip")
    first = next(
        i for i, s in enumerate(both.series) if s.rows[0]["path"].startswith(str(tmp_path / "a"))
    )
    with pytest.warns(UserWarning, match=f"{bad[2]}.*skipped"):
        item = both[first]
    assert item["paths"] == [str(p) for p in good]


def test_dataloader_with_two_workers(ml_catalog):
    import torch

    from pixels.ml import SeriesDataset

    ds = SeriesDataset(ml_catalog, "relative_path LIKE 'rev/%' OR relative_path LIKE 'ct5n/%'")
    loader = torch.utils.data.DataLoader(ds, num_workers=2, batch_size=None)
    got = {item["SeriesInstanceUID"]: tuple(item["image"].shape) for item in loader}
    assert got == {
        s.series_uid: (1, *s.plan.shape)
        for s in ds.series  # type: ignore[union-attr]
    }
    assert sorted(got.values()) == [(1, 16, 16, 5), (1, 128, 128, 6)]


def test_s3_catalog_reads_volumes(ml_data, s3_server, tmp_path):
    """Files and table on S3 (a real moto server): same volume as from disk."""
    import boto3

    from pixels import Catalog
    from pixels.ml import SeriesDataset

    s3 = boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    s3.create_bucket(Bucket="ml-series")
    for p in sorted((ml_data / "ct5n").iterdir()):
        s3.upload_file(str(p), "ml-series", f"ct5n/{p.name}")
    cat = Catalog(str(tmp_path / "cat"))
    cat.catalog("s3://ml-series/ct5n", workers=0, storage_options=s3_server.storage_options)
    ds = SeriesDataset(cat, storage_options=s3_server.storage_options)
    local = SeriesDataset(Catalog(str(tmp_path / "local")), None)
    assert len(local) == 0
    shutil.copytree(ml_data / "ct5n", tmp_path / "ct5n")
    Catalog(str(tmp_path / "local")).catalog(str(tmp_path / "ct5n"), workers=0)
    ref = SeriesDataset(Catalog(str(tmp_path / "local")))[0]
    item = ds[0]
    assert item["paths"][0].startswith("s3://ml-series/ct5n/")
    np.testing.assert_array_equal(item["image"].numpy(), ref["image"].numpy())
    np.testing.assert_allclose(item["affine"].numpy(), ref["affine"].numpy())


def test_jpeg2000_series_decodes_in_threads_same_volume(tmp_path):
    """A JPEG 2000 series read with several threads: the frames go to a codec that releases
    the GIL (so they decode in parallel), the volume is the one read in one thread and
    pydicom's, and a corrupt file still names itself."""
    from pixels import Catalog
    from pixels.dicom import codecs
    from pixels.dicom.decode import PixelInfo
    from pixels.errors import SeriesError
    from pixels.ml.volume import read_volume, select_series

    paths = ct_series(tmp_path / "j2k", 5, source="693_J2KR.dcm", ramp=0)
    cat = Catalog(str(tmp_path / "cat"))
    cat.catalog(str(tmp_path / "j2k"), workers=0)
    (series,) = select_series(cat).series
    ok, reason = codecs.OPENJP2.status()
    assert ok, reason  # libopenjp2 is installed by the test set-up
    info = PixelInfo.from_dataset(pydicom.dcmread(paths[0], stop_before_pixels=True))
    assert codecs.backends_for(codecs.J2K_LOSSLESS, info)[0] is codecs.OPENJPEG
    assert codecs.backends_for(codecs.J2K_LOSSLESS, info, threaded=True)[0] is codecs.OPENJP2
    one = read_volume(series, threads=1)
    three = read_volume(series, threads=3)
    assert np.array_equal(one.array, three.array)
    for k, p in enumerate(paths):  # paths are in position order
        ds = pydicom.dcmread(p)
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        assert np.array_equal(three.array[:, :, k], hu.T.astype(np.float32))
    data = paths[3].read_bytes()
    paths[3].write_bytes(data[: len(data) - 20000])  # cut inside the last frame's fragment
    with pytest.raises(SeriesError) as e:
        read_volume(series, threads=3)
    assert str(paths[3]) in str(e.value)
