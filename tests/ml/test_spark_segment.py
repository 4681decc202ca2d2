"""SegmentationTransformer on Spark gives what pixels segment gives locally."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from series import ct_series

from corpus import sample_file

pytestmark = [pytest.mark.spark, pytest.mark.filterwarnings("ignore::FutureWarning")]


def test_spark_transformer_parity_with_local_command(spark: Any, tmp_path: Path) -> None:
    from pixels import Catalog
    from pixels.ml.seg import segmentations
    from pixels.ml.segment import run_segment
    from pixels.ml.spark import SegmentationTransformer

    data = tmp_path / "data"
    ct_series(data / "a", 4)
    ct_series(data / "b", 3)
    (data / "mr").mkdir()
    shutil.copy(sample_file("MR_small.dcm"), data / "mr" / "mr.dcm")
    local = Catalog(str(tmp_path / "local" / "catalog"))
    local.catalog(str(data), workers=0)
    local_stats = run_segment(local, "ct-tissue", workers=0)
    assert (local_stats.segmented, local_stats.errors) == (2, 1)

    table = str(tmp_path / "spark" / "catalog")
    Catalog(table).catalog(str(data), workers=0)
    cat = Catalog(spark, table=table)
    segs = SegmentationTransformer("ct-tissue", catalog=cat).transform(cat.load())
    rows = {r["ReferencedSeriesInstanceUID"]: r for r in (x.asDict() for x in segs.collect())}
    by_local = {r.series_uid: r for r in local_stats.results}
    assert set(rows) == set(by_local)
    for uid, r in by_local.items():
        got = rows[uid]
        assert got["segment_status"] == r.status
        if r.status == "error":
            assert got["error"] == r.message and "takes CT series, this one is MR" in r.message
            continue
        # same SEG (same UIDs, same voxels), under the Spark table's seg/ folder
        assert got["error"] is None and got["Modality"] == "SEG"
        assert Path(got["path"]).name == Path(r.path).name
        assert got["path"].startswith(str(tmp_path / "spark" / "seg"))
        ours, theirs = pydicom.dcmread(got["path"]), pydicom.dcmread(r.path)
        assert ours.SeriesInstanceUID == theirs.SeriesInstanceUID
        np.testing.assert_array_equal(ours.pixel_array, theirs.pixel_array)
    cat.save(segs.where("segment_status = 'segmented'"))
    saved = segmentations(Catalog(table), "ct-tissue")
    assert set(saved["ReferencedSeriesInstanceUID"]) == {
        u for u, r in by_local.items() if r.status == "segmented"
    }
    # again: the segmented series are skipped (no rows), the MR series is an error again
    again = SegmentationTransformer("ct-tissue", catalog=cat).transform(cat.load()).collect()
    assert [r["segment_status"] for r in again] == ["error"]
