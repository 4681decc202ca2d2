"""The region-grow model's clicks one at a time: each answer equals one computed from scratch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

pytest.importorskip("skimage", reason="region-grow needs the ml extra")

from series import ct_series

from pixels.ml.models import clicks


def _hu(folder: Path) -> np.ndarray:
    """A real CT (CT_small moved along its normal, values raised slice by slice) in HU, [X, Y, Z]."""
    files = ct_series(folder, 6, ramp=40)
    slices = []
    for path in files:
        ds = pydicom.dcmread(path)
        slices.append(ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept))
    return np.asfortranarray(np.stack(slices, axis=-1).transpose(1, 0, 2).astype(np.float32))


def test_later_clicks_reuse_the_flooded_region_and_answer_as_from_scratch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hu = _hu(tmp_path / "ct")
    spacing = (0.66, 0.66, 2.5)
    seed = [64, 80, 2]  # soft tissue below the vertebra
    clicks.forget()
    first = clicks.grow(hu, spacing, [seed])
    inside = np.argwhere(first == 1)
    assert 1000 < len(inside) < first.size // 2
    # a click inside the region on the seed's value (the same window: nothing to flood)
    same = inside[hu[tuple(inside.T)] == hu[tuple(seed)]]
    near = same[len(same) // 2].tolist()
    assert near != seed
    far = inside[-1].tolist()
    steps = [
        ([seed, near], []),  # inside, the same window: nothing to flood
        ([seed, near], [far]),  # a background click: the cut only
        ([seed, near, [10, 10, 0]], [far]),  # air: another window, from scratch
        ([seed], [far]),  # a click taken back: from scratch
        ([seed, [64, 80, 5]], []),  # another slice: flood from it too (if in the window)
    ]
    regions = [_entry(hu).region]
    for fg, bg in steps:
        got = clicks.grow(hu, spacing, fg, bg)
        regions.append(_entry(hu).region)
        with monkeypatch.context() as m:
            m.setattr(clicks, "KEPT", 0)  # nothing kept, nothing reused
            want = clicks.grow(hu, spacing, fg, bg)
        np.testing.assert_array_equal(got, want, f"foreground {fg}, background {bg}")
        assert got.sum() > 0
    # the second and third clicks flooded nothing: the first click's region, reused
    assert regions[1] is regions[0] and regions[2] is regions[0]
    assert regions[3] is not regions[0]
    assert not np.array_equal(regions[3], regions[0])
    kept = len(clicks._KEPT)
    del hu, regions  # a volume dropped frees its kept region
    clicks.grow(np.zeros((4, 4, 4), np.float32), (1.0, 1.0, 1.0), [[0, 0, 0]])
    assert kept == 1 and len(clicks._KEPT) == 1


def _entry(volume: np.ndarray) -> clicks._Flooded:
    (entry,) = [k for k in clicks._KEPT if k.ref() is volume]
    return entry


def test_clicks_on_two_volumes_in_turn(tmp_path: Path) -> None:
    """Two series clicked in turn (two kept regions, volumes of different shapes): a click
    on the series kept last answers as from scratch (the kept list once compared the
    entries field by field, arrays included: a ValueError, a 500 in the viewer)."""
    hu = _hu(tmp_path / "ct")
    small = np.ascontiguousarray(hu[::4, ::4, :5])
    spacing = (2.64, 2.64, 2.5)
    clicks.forget()
    first = clicks.grow(hu, spacing, [[64, 80, 2]])
    other = clicks.grow(small, spacing, [[16, 20, 2]])
    again = clicks.grow(small, spacing, [[16, 20, 2]], [[16, 25, 2]])
    assert first.sum() > 1000
    assert 0 < again.sum() < other.sum()
    clicks.forget()
    np.testing.assert_array_equal(again, clicks.grow(small, spacing, [[16, 20, 2]], [[16, 25, 2]]))
