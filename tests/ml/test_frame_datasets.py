"""FrameDataset and PatchDataset on real files."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from corpus import sample_file


def test_frames_of_enhanced_mr_equal_pydicom(ml_catalog):
    from pixels.ml import FrameDataset

    ds = FrameDataset(ml_catalog, "relative_path LIKE 'emri/%'")
    ref = pydicom.dcmread(sample_file("emri_small.dcm")).pixel_array
    assert len(ds) == 10
    for k in (0, 3, 9):
        item = ds[k]
        assert item["frame"] == k and item["path"].endswith("emri.dcm")
        np.testing.assert_array_equal(item["image"][0].numpy(), ref[k].astype(np.float32))


def test_frames_resized_and_displayed_batch_in_two_workers(ml_catalog):
    import torch

    from pixels.ml import FrameDataset

    ds = FrameDataset(ml_catalog, "relative_path LIKE 'emri/%'", size=32, display=True)
    loader = torch.utils.data.DataLoader(ds, num_workers=2, batch_size=5)
    batches = list(loader)
    assert [tuple(b["image"].shape) for b in batches] == [(5, 1, 32, 32), (5, 1, 32, 32)]
    assert [int(f) for b in batches for f in b["frame"]] == list(range(10))
    images = torch.cat([b["image"] for b in batches])
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    assert float(images.max()) > 0.9  # windowed, not raw values squashed into a corner


def test_ct_frame_in_hounsfield_units(ml_catalog):
    from pixels.ml import FrameDataset

    ds = FrameDataset(ml_catalog, "relative_path = 'rev/005.dcm'")
    ref = pydicom.dcmread(sample_file("CT_small.dcm"))
    hu = ref.pixel_array * float(ref.RescaleSlope) + float(ref.RescaleIntercept)
    np.testing.assert_array_equal(ds[0]["image"][0].numpy(), hu.astype(np.float32))


def test_frame_read_error_names_the_file(tmp_path):
    from series import ct_series

    from pixels import Catalog
    from pixels.errors import PixelsError
    from pixels.ml import FrameDataset

    paths = ct_series(tmp_path / "d", 2)
    cat = Catalog(str(tmp_path / "cat"))
    cat.catalog(str(tmp_path / "d"), workers=0)
    data = paths[0].read_bytes()
    paths[0].write_bytes(data[:-3000])
    ds = FrameDataset(cat)
    index = next(i for i, (r, _) in enumerate(ds.items) if ds.rows[r]["path"] == str(paths[0]))
    with pytest.raises(PixelsError, match=f"{paths[0]}: frame 0: .*truncated"):
        ds[index]
    skipping = FrameDataset(cat, on_error="skip")
    with pytest.warns(UserWarning, match="skipped"):
        assert skipping[index]["path"] == str(paths[1])
    # a batch (DataLoader with batch_size calls __getitems__): the same error, the same skip
    with pytest.raises(PixelsError, match=f"{paths[0]}: frame 0: .*truncated"):
        ds.__getitems__([1 - index, index])
    with pytest.warns(UserWarning, match="skipped"):
        got = skipping.__getitems__([index, 1 - index])
    assert [item["path"] for item in got] == [str(paths[1]), str(paths[1])]


def test_batch_items_equal_single_items(ml_catalog):
    import torch

    from pixels.ml import FrameDataset

    ds = FrameDataset(ml_catalog, "relative_path LIKE 'emri/%' OR relative_path LIKE 'rev/%'")
    assert len(ds) == 16  # ten frames of one enhanced MR file, six CT slices
    indices = [7, 0, 15, 3, 7, -1, 12, 9]  # frames of one file out of order, repeats, negative
    batch = ds.__getitems__(indices)
    assert len(batch) == len(indices)
    for k, item in zip(indices, batch, strict=True):
        one = ds[k]
        assert (item["path"], item["frame"]) == (one["path"], one["frame"])
        assert item["SOPInstanceUID"] == one["SOPInstanceUID"]
        torch.testing.assert_close(item["image"], one["image"], rtol=0, atol=0)
    with pytest.raises(IndexError, match="out of range"):
        ds.__getitems__([0, 16])

    class Tagged(FrameDataset):  # a subclass's own items are what batches hold
        def __getitem__(self, index):
            return {**super().__getitem__(index), "tag": index}

    tagged = Tagged(ml_catalog, "relative_path LIKE 'rev/%'")
    assert [item["tag"] for item in tagged.__getitems__([2, 0])] == [2, 0]
    # through a DataLoader in batches: the same frames as one at a time
    loader = torch.utils.data.DataLoader(ds, num_workers=0, batch_size=5, shuffle=False)
    frames = [(p, int(f)) for b in loader for p, f in zip(b["path"], b["frame"], strict=True)]
    assert frames == [(ds[k]["path"], ds[k]["frame"]) for k in range(len(ds))]


def test_patches_tile_the_hu_slice(ml_catalog):
    import torch

    from pixels.ml import PatchDataset

    ds = PatchDataset(ml_catalog, "relative_path LIKE 'rev/%'", size=64)
    ref = pydicom.dcmread(sample_file("CT_small.dcm"))
    hu = (ref.pixel_array * float(ref.RescaleSlope) + float(ref.RescaleIntercept)).astype(
        np.float32
    )
    got = list(torch.utils.data.DataLoader(ds, num_workers=2, batch_size=None))
    assert len(got) == 6 * 4  # six 128x128 slices, four 64x64 tiles each
    first = [p for p in got if p["path"].endswith("rev/005.dcm")]  # the unshifted slice
    assert sorted((p["x"], p["y"]) for p in first) == [(0, 0), (0, 64), (64, 0), (64, 64)]
    for p in first:
        np.testing.assert_array_equal(
            p["image"][0].numpy(), hu[p["y"] : p["y"] + 64, p["x"] : p["x"] + 64]
        )


def _with_heap_flag(item):
    from pixels.ml import datasets

    return {**item, "heap_tuned": datasets._heap_tuned}


def test_worker_heap_tuned_in_loader_workers_only(ml_catalog):
    import torch

    from pixels.ml import FrameDataset, datasets

    ds = FrameDataset(ml_catalog, "relative_path LIKE 'rev/%'", transform=_with_heap_flag)
    assert ds[0]["heap_tuned"] is False  # the main process's allocator is left alone
    loader = torch.utils.data.DataLoader(ds, num_workers=1, batch_size=None)
    assert [item["heap_tuned"] for item in loader] == [True] * len(ds)
    assert datasets._heap_tuned is False


def test_parsed_rows_kept_within_the_frame_budget(ml_catalog, monkeypatch):
    from pixels.ml import FrameDataset, datasets

    ds = FrameDataset(ml_catalog, "relative_path LIKE 'emri/%' OR relative_path LIKE 'rev/%'")
    parsed = ds._parsed
    assert parsed.keep == datasets.TRIMMED_ROWS
    monkeypatch.setattr(datasets, "PARSED_FRAMES", 12)
    images = [ds[k]["image"] for k in range(len(ds))]  # ten frames of one file, six files
    assert sum(px.n_frames for px in parsed.cache.values()) == parsed.frames <= 12
    assert len(parsed.cache) == 6  # the enhanced MR (10 frames) left when the CT slices came
    again = [ds[k]["image"] for k in range(len(ds))]
    assert all(a.equal(b) for a, b in zip(images, again, strict=True))
    assert parsed.cache and all(
        set(px.meta) <= set(datasets.MODALITY_TAGS) for px in parsed.cache.values()
    )
