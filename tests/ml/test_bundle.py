"""bundle:PATH end to end: a tiny UNet bundle made here, run on real CT through pixels segment."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from bundles import make_bundle
from series import ct_series


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundles") / "tiny_bone_ct")


def test_bundle_metadata_gives_name_labels_and_modality(bundle):
    from pixels.ml.models import get_model

    m = get_model(f"bundle:{bundle}")
    assert m.name == "bundle:tiny_bone_ct" and m.version == "0.1.0"
    assert m.modalities == ("CT",)
    (seg,) = m.segments
    assert (seg.label, seg.name) == (1, "bone")
    assert (seg.type.value, seg.type.scheme, seg.type.meaning) == ("272673000", "SCT", "Bone")


def test_bundle_segments_real_ct_through_pixels_segment(bundle, tmp_path):
    import highdicom as hd

    from pixels import Catalog
    from pixels.ml.seg import segmentations
    from pixels.ml.segment import run_segment

    paths = ct_series(tmp_path / "d" / "ct", 6)
    ct_series(tmp_path / "d" / "mr", 2, source="MR_small.dcm")
    cat = Catalog(str(tmp_path / "cat"))
    cat.catalog(str(tmp_path / "d"), workers=0)
    stats = run_segment(cat, f"bundle:{bundle}", workers=0)
    assert (stats.segmented, stats.errors) == (1, 1)
    (refused,) = [r for r in stats.results if r.status == "error"]
    assert "model bundle:tiny_bone_ct takes CT series, this one is MR" in refused.message
    (done,) = [r for r in stats.results if r.status == "segmented"]
    assert list(segmentations(cat, "bundle:tiny_bone_ct")["path"]) == [done.path]
    seg = hd.seg.segread(done.path)
    item = seg.SegmentSequence[0]
    assert item.SegmentLabel == "bone"
    assert item.SegmentAlgorithmName == "bundle:tiny_bone_ct"
    assert item.SegmentAlgorithmType == "AUTOMATIC"
    assert (
        item.SegmentationAlgorithmIdentificationSequence[0]
        .AlgorithmFamilyCodeSequence[0]
        .CodeMeaning
        == "Artificial Intelligence"
    )
    sources = [pydicom.dcmread(p) for p in paths]  # position order
    pred = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[d.SOPInstanceUID for d in sources], segment_numbers=[1]
    )[..., 0].astype(bool)
    hu = np.stack(
        [d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in sources]
    )
    assert pred.shape == hu.shape  # Invertd brought the prediction back to the series' voxels
    # the network learned "above 300 HU" on generated data: on real CT it finds the bone
    # (vertebra, ribs) in place (a flipped or shifted prediction would miss it) and not the lung
    assert pred[hu > 500].mean() > 0.9
    assert pred[hu < -300].mean() < 0.01
    assert 0.02 < pred.mean() < 0.3


def test_not_a_bundle_is_a_clear_error(tmp_path, ml_catalog):
    from click.testing import CliRunner

    from pixels.cli import main
    from pixels.errors import ModelError
    from pixels.ml.models import get_model

    (tmp_path / "b" / "configs").mkdir(parents=True)
    with pytest.raises(ModelError, match=r"b: not a MONAI bundle: no configs/inference.json"):
        get_model(f"bundle:{tmp_path / 'b'}")
    (tmp_path / "b" / "configs" / "inference.json").write_text(json.dumps({"x": 1}))
    with pytest.raises(ModelError, match=r"no models/model\.pt or models/model\.ts"):
        get_model(f"bundle:{tmp_path / 'b'}")
    res = CliRunner().invoke(
        main, ["segment", "-t", ml_catalog.table.uri, "-m", f"bundle:{tmp_path / 'b'}", "-q"]
    )
    assert res.exit_code == 2 and "not a MONAI bundle" in res.output, res.output


def test_torchscript_bundle_predicts_as_its_state_dict(bundle, tmp_path):
    """The same bundle with its network saved as TorchScript (models/model.ts, no model.pt):
    loaded with torch.jit.load, run through the bundle's own transforms and inferer, it gives
    the labels of the state-dict bundle on a real CT series."""
    import shutil

    import torch

    from pixels import Catalog
    from pixels.ml.models import get_model
    from pixels.ml.volume import read_volume, select_series

    ts = tmp_path / "tiny_bone_ct_ts"
    shutil.copytree(bundle, ts)
    pt = get_model(f"bundle:{bundle}")
    network = pt._load()["network"]  # the UNet with the bundle's weights, in eval mode
    torch.jit.script(network).save(str(ts / "models" / "model.ts"))
    (ts / "models" / "model.pt").unlink()
    scripted = get_model(f"bundle:{ts}")
    assert scripted.weights.endswith("model.ts")
    assert isinstance(scripted._load()["network"], torch.jit.ScriptModule)

    ct_series(tmp_path / "ct", 4)
    cat = Catalog(str(tmp_path / "cat"))
    cat.catalog(str(tmp_path / "ct"), workers=0)
    (series,) = select_series(cat).series
    vol = read_volume(series)
    want = pt.predict(vol.array, vol.plan.affine)
    got = scripted.predict(vol.array, vol.plan.affine)
    assert got.shape == vol.array.shape
    assert 0.02 < (got == 1).mean() < 0.3  # it finds bone, as the state-dict bundle
    assert np.array_equal(got, want)
