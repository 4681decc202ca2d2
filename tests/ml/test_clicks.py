"""The region-grow model's clicks one at a time: each answer equals one computed from scratch
the plain way (the whole volume thresholded and labelled, distances to every click)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

pytest.importorskip("skimage", reason="region-grow needs the ml extra")

from scipy import ndimage
from series import ct_series

from pixels.ml.models import clicks


def _hu(folder: Path, n: int = 6) -> np.ndarray:
    """A real CT (CT_small moved along its normal, values raised slice by slice) in HU, [X, Y, Z]."""
    files = ct_series(folder, n, ramp=40)
    slices = []
    for path in files:
        ds = pydicom.dcmread(path)
        slices.append(ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept))
    return np.asfortranarray(np.stack(slices, axis=-1).transpose(1, 0, 2).astype(np.float32))


def _reference(
    volume: np.ndarray,
    spacing: tuple[float, ...],
    fg: list[list[int]],
    bg: list[list[int]],
    tolerance: float = clicks.DEFAULT_TOLERANCE,
) -> np.ndarray:
    """The model's definition over the whole volume: the window's 6-connected components
    holding a foreground click, less the voxels whose float32 squared distance (mm) to a
    background click is not above the one to every foreground click, then what stays
    connected to a foreground click."""
    six = ndimage.generate_binary_structure(3, 1)
    f = np.asarray(fg)
    values = volume[tuple(f.T)]
    window = (volume >= float(values.min()) - tolerance) & (
        volume <= float(values.max()) + tolerance
    )
    labels, _ = ndimage.label(window, six)
    region = np.isin(labels, labels[tuple(f.T)]) & window
    if bg:
        grid = np.indices(volume.shape)

        def nearest(points: list[list[int]]) -> np.ndarray:
            d = [
                (
                    ((grid[0] - p[0]) * spacing[0]) ** 2 + ((grid[1] - p[1]) * spacing[1]) ** 2
                ) + ((grid[2] - p[2]) * spacing[2]) ** 2
                for p in points
            ]  # fmt: skip
            return np.min([x.astype(np.float32) for x in d], axis=0)

        labels, _ = ndimage.label(region & (nearest(fg) < nearest(bg)), six)
        held = labels[tuple(f.T)]
        region = np.isin(labels, held[held > 0])
    return region.astype(np.uint8)


def test_later_clicks_reuse_what_was_found_and_answer_as_from_scratch(tmp_path: Path) -> None:
    hu = _hu(tmp_path / "ct")
    spacing = (0.66, 0.66, 2.5)
    seed = [64, 80, 2]  # soft tissue below the vertebra
    clicks.forget()
    first = clicks.grow(hu, spacing, [seed])
    np.testing.assert_array_equal(first, _reference(hu, spacing, [seed], []))
    assert not first.flags.writeable  # answers are shared: nobody may change them
    inside = np.argwhere(first == 1)
    assert 1000 < len(inside) < first.size // 2
    # a click inside the region on the seed's value: the same window, nothing new
    same = inside[hu[tuple(inside.T)] == hu[tuple(seed)]]
    near = same[len(same) // 2].tolist()
    assert near != seed
    assert clicks.grow(hu, spacing, [seed, near]) is first
    far = inside[-1].tolist()
    mid = inside[len(inside) // 3].tolist()
    steps = [
        ([seed, near], [far]),  # a background click: the cut only
        ([seed, near], [far, mid]),  # another one: removed from the last cut
        ([seed, near, [10, 10, 0]], [far]),  # air: another window
        ([seed, near, [10, 10, 0]], []),  # background clicks taken back
        ([seed], [far]),  # a click taken back: the window before
        ([seed, [64, 80, 5]], []),  # another slice (in the window or not)
        ([seed, [64, 80, 5], [70, 40, 3]], [[64, 90, 2], far]),
    ]
    answers = []
    for fg, bg in steps:
        got = clicks.grow(hu, spacing, fg, bg)
        np.testing.assert_array_equal(got, _reference(hu, spacing, fg, bg), f"{fg}, {bg}")
        assert got.sum() > 0
        answers.append(got)
    assert answers[1].sum() < answers[0].sum() < first.sum()  # background clicks cut
    assert clicks.grow(hu, spacing, *steps[-1]) is answers[-1]  # the same clicks again
    kept = len(clicks._KEPT)
    del hu, first, answers  # a volume dropped frees what was kept for it
    clicks.grow(np.zeros((4, 4, 4), np.float32), (1.0, 1.0, 1.0), [[0, 0, 0]])
    assert kept == 1 and len(clicks._KEPT) == 1


def test_random_clicks_on_a_real_ct_answer_as_from_scratch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Clicks drawn at random (added and taken back, both kinds), on a real CT in both memory
    orders, with a 1-voxel margin so that the labelled box grows many times: every answer is
    the plain computation's, voxel for voxel."""
    monkeypatch.setattr(clicks, "MARGIN", 1)
    hu = _hu(tmp_path / "ct", 5)[::2, ::2]
    rng = np.random.default_rng(11)
    for volume, spacing, tolerance in (
        (np.asfortranarray(hu), (1.32, 1.32, 2.5), 60.0),
        (np.ascontiguousarray(hu), (0.7, 1.1, 3.0), 150.0),
    ):
        clicks.forget()
        fg: list[list[int]] = []
        bg: list[list[int]] = []
        for step in range(30):
            p = [int(rng.integers(0, n)) for n in volume.shape]
            r = rng.random()
            if r < 0.45 or not fg:
                fg.append(p)
            elif r < 0.8:
                bg.append(p if r < 0.7 or not fg else list(fg[-1]))  # on a foreground click too
            elif r < 0.9 and len(fg) > 1:
                fg.pop(int(rng.integers(0, len(fg))))
            elif bg:
                bg.pop(int(rng.integers(0, len(bg))))
            got = clicks.grow(volume, spacing, fg, bg, tolerance=tolerance)
            want = _reference(volume, spacing, fg, bg, tolerance)
            np.testing.assert_array_equal(got, want, f"step {step}: {fg}, {bg}")


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


def test_server_reuses_the_series_and_answer_until_the_table_changes(tmp_path: Path) -> None:
    """Over the MONAI Label API: the same clicks answer the same bytes; a slice added to the
    series (a new table version) is in the next answer (the series is looked up again)."""
    import httpx

    from pixels import Catalog
    from pixels.web import create_app, monailabel
    from web.conftest import running

    files = ct_series(tmp_path / "ct", 4, ramp=40)
    catalog = Catalog(str(tmp_path / "catalog"))
    assert catalog.catalog(str(tmp_path / "ct"), workers=0).errors == 0
    uid = pydicom.dcmread(files[0]).SeriesInstanceUID
    params = {"foreground": [[64, 80, 1]], "background": []}

    def click(url: str) -> bytes:
        r = httpx.post(
            f"{url}/monailabel/infer/region-grow",
            params={"image": uid, "output": "image"},
            files={"params": (None, json.dumps(params))},
            timeout=120,
        )
        assert r.status_code == 200, r.text
        return r.content

    with running(create_app(str(tmp_path / "catalog"), viewer=False)) as url:
        first = click(url)
        assert b"sizes: 128 128 4\n" in first
        assert click(url) == first
        # a fifth slice of the same series, after the last one along the normal
        ds = pydicom.dcmread(files[-1])
        step = np.subtract(
            [float(v) for v in ds.ImagePositionPatient],
            [float(v) for v in pydicom.dcmread(files[-2]).ImagePositionPatient],
        )
        ds.ImagePositionPatient = [f"{v:.4f}" for v in np.add(ds.ImagePositionPatient, step)]
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        (tmp_path / "more").mkdir()
        ds.save_as(tmp_path / "more" / "fifth.dcm")
        assert catalog.catalog(str(tmp_path / "more"), workers=0).errors == 0
        grown = click(url)
        assert b"sizes: 128 128 5\n" in grown
        assert click(url) == grown
    with monailabel._CACHE_LOCK:
        monailabel._CACHE.clear()
