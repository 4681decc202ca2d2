"""pixels.row_pixels: a catalog row's frames read through its frame index and decoded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from corpus import sample_file

FILES = ("CT_small.dcm", "MR_small_RLE.dcm", "emri_small_jpeg_2k_lossless.dcm", "JPEG-LL.dcm")


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    from pixels import Catalog

    root = tmp_path_factory.mktemp("rowpx")
    (root / "data").mkdir()
    for name in FILES:
        shutil.copy(sample_file(name), root / "data" / name)
    cat = Catalog(str(root / "cat"))
    cat.catalog(str(root / "data"), workers=0)
    table = cat.sql_arrow("SELECT * FROM object_catalog").to_pylist()
    return {Path(r["path"]).name: r for r in table}


@pytest.mark.parametrize("name", FILES)
def test_frames_are_pydicoms(rows, name):
    from pixels.row_pixels import RowPixels

    row = rows[name]
    px = RowPixels.of(row)
    ds = pydicom.dcmread(row["path"])
    want = ds.pixel_array if px.n_frames > 1 else ds.pixel_array[None]
    assert px.n_frames == int(ds.get("NumberOfFrames", 1) or 1) == len(want)
    got = dict(px.frames(list(range(px.n_frames))[::-1]))
    for f in range(px.n_frames):
        assert np.array_equal(got[f], want[f]), f
    with px.open() as fp:  # one frame: one ranged read through the index
        assert np.array_equal(px.decode(px.read(fp, px.n_frames - 1)), want[-1])


def test_bad_rows_name_the_file(rows):
    from pixels.errors import PixelsError
    from pixels.row_pixels import RowPixels

    row = dict(rows["CT_small.dcm"])
    for meta, reason in ((None, "no meta"), ("{not json", "not DICOM JSON")):
        with pytest.raises(PixelsError, match=reason) as e:
            RowPixels.of({**row, "meta": meta})
        assert row["path"] in str(e.value)
    px = RowPixels.of({**row, "frame_offsets": None})
    assert px.index is None
    with pytest.raises(PixelsError, match="no frame index") as e, px.open() as fp:
        px.read(fp, 0)
    assert row["path"] in str(e.value)
    # meta already parsed (a dict) is taken as is
    assert RowPixels.of({**row, "meta": json.loads(row["meta"])}).info.rows == 128
