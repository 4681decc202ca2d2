"""The ct-tissue model on real CT (pydicom / pydicom-data slices made into short series)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from series import ct_series


@pytest.fixture(scope="module")
def volumes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Volumes (read through the catalog) of an abdomen, a chest slab and a head."""
    from pixels import Catalog
    from pixels.ml.volume import read_volume, select_series

    root = tmp_path_factory.mktemp("tissue")
    names = {
        "abdomen": "explicit_VR-UN.dcm",
        "chest": "CT_small.dcm",
        "head": "J2K_pixelrep_mismatch.dcm",
    }
    for key, src in names.items():
        ct_series(root / "data" / key, 3, source=src, ramp=0)
    cat = Catalog(str(root / "cat"))
    cat.catalog(str(root / "data"), workers=0)
    out = {}
    for key in names:
        (found,) = select_series(cat, f"relative_path LIKE '{key}/%'").series
        out[key] = read_volume(found)
    return out


def _ml(labels: np.ndarray, vol: object, segment: str) -> float:
    from pixels.ml.models.ct_tissue import CTTissue

    seg = next(s for s in CTTissue.segments if s.name == segment)
    return float(seg.mask(labels).sum()) * float(np.prod(vol.plan.spacing)) / 1000.0  # type: ignore[attr-defined]


def test_abdomen_body_without_table_fat_gas_bone(volumes):
    from pixels.ml.models import get_model

    vol = volumes["abdomen"]
    labels = get_model("ct-tissue")(vol.array, vol.plan.spacing)
    body = _ml(labels, vol, "Body")
    area_cm2 = body / (3 * vol.plan.spacing[2] / 10)
    assert 450 < area_cm2 < 700  # an adult abdomen, about 30 x 22 cm
    assert 0.25 < _ml(labels, vol, "Fat") / body < 0.5  # subcutaneous and visceral fat
    assert 0.02 < _ml(labels, vol, "Bone") / body < 0.06  # spine and ribs
    assert 0.01 < _ml(labels, vol, "Air") / body < 0.05  # bowel gas
    assert _ml(labels, vol, "Lung") == 0  # below the lungs: the gas is not lung
    # the curved table above the patient (rows 31-159 in this image) is dense but not body
    dense_outside = (vol.array > -500) & (labels == 0)
    assert dense_outside.sum() > 3 * 4000
    assert np.flatnonzero(dense_outside.any(axis=(0, 2))).max() < 160
    assert not (labels[:, :100, :] > 0).any()
    # the spine is bone, the fat in front of it fat
    assert labels[256, 156, 1] == 2  # spinous process (1178 HU)
    assert labels[256, 250, 1] == 3  # fat in front of the spine (-56 HU)


def test_chest_slab_has_lung_cut_by_the_field_of_view(volumes):
    from pixels.ml.models import get_model

    vol = volumes["chest"]
    labels = get_model("ct-tissue")(vol.array, vol.plan.spacing)
    assert labels[5, 5, 1] == 1  # lung parenchyma at the top corners of this cropped image
    assert labels[120, 5, 1] == 1
    assert labels[64, 64, 1] == 2  # the spinal canal's floor: vertebral body
    assert 0.15 < _ml(labels, vol, "Lung") / _ml(labels, vol, "Body") < 0.35
    assert _ml(labels, vol, "Air") < 0.01 * _ml(labels, vol, "Body")


def test_head_skull_and_sinus_air(volumes):
    from pixels.ml.models import get_model

    vol = volumes["head"]
    labels = get_model("ct-tissue")(vol.array, vol.plan.spacing)
    body = _ml(labels, vol, "Body")
    assert _ml(labels, vol, "Lung") == 0
    assert 0.1 < _ml(labels, vol, "Bone") / body < 0.3  # skull base
    assert 0.02 < _ml(labels, vol, "Air") / body < 0.08  # sinuses, mastoid cells
    assert labels[256, 300, 1] == 4  # brain: soft tissue


def test_overlay_paints_labels(volumes, tmp_path: Path):
    from PIL import Image

    from pixels.ml.models.ct_tissue import CTTissue
    from pixels.ml.overlay import overlay

    vol = volumes["chest"]
    labels = CTTissue()(vol.array, vol.plan.spacing)
    rgb = overlay(vol.array[:, :, 1], labels[:, :, 1], CTTissue.segments)
    assert rgb.shape == (128, 128, 3)
    lung = CTTissue.segments[0].color
    assert rgb[5, 5, 2] > rgb[5, 5, 0]  # lung tinted blue, as its colour (128, 174, 255)
    assert lung == (128, 174, 255)
    Image.fromarray(rgb).save(tmp_path / "overlay.png")
    assert (tmp_path / "overlay.png").stat().st_size > 1000


def test_shapes_on_blocks_match_full_resolution(volumes, monkeypatch):
    """The body and lungs are found on ~2 mm blocks for speed; the labels agree with the
    same steps run on every voxel (each class's Dice >= 0.98 on the real abdomen, chest, head)."""
    from pixels.ml.models import ct_tissue

    for key in ("abdomen", "chest", "head"):
        vol = volumes[key]
        assert ct_tissue._factors(vol.plan.spacing, vol.array.shape)[0] >= 2  # blocks are used
        fast = ct_tissue.ct_tissue_labels(vol.array, vol.plan.spacing)
        with monkeypatch.context() as m:
            m.setattr(ct_tissue, "WORK_MM", 1e-3)  # blocks of one voxel
            assert ct_tissue._factors(vol.plan.spacing, vol.array.shape) == (1, 1)
            exact = ct_tissue.ct_tissue_labels(vol.array, vol.plan.spacing)
        assert fast.shape == exact.shape == vol.array.shape
        for label in range(1, 6):
            a, b = fast == label, exact == label
            total = int(a.sum() + b.sum())
            if total:
                assert 2 * int((a & b).sum()) / total >= 0.98, (key, label)


def test_shifted_morphology_is_scipys():
    """The in-plane erosion / dilation (shifted ANDs / ORs) give scipy.ndimage's result,
    both border values, on a real CT slice thresholded at several levels."""
    import scipy.ndimage as ndi
    from pydicom import dcmread

    from corpus import sample_file
    from pixels.ml.models.ct_tissue import _disk, _morph

    hu = dcmread(sample_file("CT_small.dcm")).pixel_array.astype(np.float32)
    for level in (-500, 0, 200):
        m = np.stack([hu > level, hu > level + 100])
        for r in (1, 2, 3):
            st = np.zeros((1, 2 * r + 1, 2 * r + 1), bool)
            for dy, dx in _disk(r):
                st[0, dy + r, dx + r] = True
            for border in (False, True):
                got = _morph(m, _disk(r), erode=True, border=border)
                assert np.array_equal(got, ndi.binary_erosion(m, st, border_value=border))
                got = _morph(m, _disk(r), erode=False, border=border)
                assert np.array_equal(got, ndi.binary_dilation(m, st, border_value=border))


def test_small_crop_is_not_shrunk_to_nothing(tmp_path, monkeypatch):
    """A 16 x 16 crop of real CT (pydicom's CT5N, 0.49 mm pixels): too small for 2 mm
    blocks (the 3 mm opening would erase its 4 x 4 blocks), it is worked on voxel by voxel
    and gets the labels of the per-voxel steps: body with fat, soft tissue and lung."""
    import shutil

    from corpus import pydicom_folder
    from pixels import Catalog
    from pixels.ml.models import ct_tissue
    from pixels.ml.volume import read_volume, select_series

    shutil.copytree(pydicom_folder() / "dicomdirtests" / "98892001" / "CT5N", tmp_path / "ct")
    cat = Catalog(str(tmp_path / "cat"))
    cat.catalog(str(tmp_path / "ct"), workers=0)
    (series,) = select_series(cat).series
    vol = read_volume(series)
    assert vol.array.shape[:2] == (16, 16)
    assert ct_tissue._factors(vol.plan.spacing, vol.array.shape) == (1, 1)
    labels = ct_tissue.ct_tissue_labels(vol.array, vol.plan.spacing)
    counts = np.bincount(labels.ravel(), minlength=6)
    assert counts[1] and counts[3] and counts[4]  # lung, fat, soft tissue
    assert counts[0] < 0.2 * labels.size
    with monkeypatch.context() as m:
        m.setattr(ct_tissue, "MIN_BLOCKS", 1)  # blocks whatever the size: the old failure
        assert ct_tissue._factors(vol.plan.spacing, vol.array.shape)[0] == 4
        assert not ct_tissue.ct_tissue_labels(vol.array, vol.plan.spacing).any()
