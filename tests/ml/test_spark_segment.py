"""SegmentationTransformer on Spark gives what pixels segment gives locally."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
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


def test_series_that_fail_stay_in_the_output_and_out_of_the_catalog(
    spark: Any, tmp_path: Path
) -> None:
    """An error row has no path: ``save`` stores the SEGs, names the failures, stores no ghost."""
    import os

    from pixels import Catalog
    from pixels.errors import TableError
    from pixels.ml.seg import segmentations
    from pixels.ml.spark import SegmentationTransformer
    from pixels.schema import empty_row

    data = tmp_path / "data"
    good = pydicom.dcmread(ct_series(data / "good", 3)[0]).SeriesInstanceUID
    mixed = ct_series(data / "mixed", 3)  # a 512x512 slice put in a 128x128 series
    big = pydicom.dcmread(sample_file("693_UNCI.dcm"))
    big.SeriesInstanceUID = mixed_uid = pydicom.dcmread(mixed[0]).SeriesInstanceUID
    big.save_as(data / "mixed" / "big.dcm")
    (data / "mr").mkdir()
    shutil.copy(sample_file("MR_small.dcm"), data / "mr" / "mr.dcm")
    mr_uid = pydicom.dcmread(data / "mr" / "mr.dcm").SeriesInstanceUID
    table = str(tmp_path / "catalog")
    Catalog(table).catalog(str(data), workers=0)
    cat = Catalog(spark, table=table)
    before = cat.count()

    segs = SegmentationTransformer("ct-tissue", catalog=cat).transform(cat.load())
    rows = {r["ReferencedSeriesInstanceUID"]: r.asDict() for r in segs.collect()}
    assert {u: r["segment_status"] for u, r in rows.items()} == {
        good: "segmented",
        mixed_uid: "error",
        mr_uid: "error",
    }
    for uid in (mixed_uid, mr_uid):  # visible: the series and why, and no file claimed
        assert rows[uid]["path"] is None and rows[uid]["relative_path"] is None
        assert f"series {uid}" in rows[uid]["error"]
    assert "takes CT series, this one is MR" in rows[mr_uid]["error"]
    mixed_error = rows[mixed_uid]["error"]
    assert "mixed slice sizes" in mixed_error and "Rows (0028,0010)" in mixed_error
    assert str(data / "mixed") in mixed_error  # the file at fault
    assert segs.where("error IS NOT NULL").count() == 2

    result = cat.save(segs)  # as the README says: the whole output
    assert result.no_path == 2 and result.rows == 1
    assert sorted(result.no_path_errors) == sorted(
        [rows[mixed_uid]["error"], rows[mr_uid]["error"]]
    )
    stored = Catalog(table).sql("SELECT path, error, Modality FROM object_catalog")
    assert len(stored) == before + 1
    assert all(os.path.isfile(p) for p in stored["path"]), "a row names a file that is not there"
    assert stored["path"].notna().all()
    assert set(segmentations(Catalog(table), "ct-tissue")["ReferencedSeriesInstanceUID"]) == {good}

    # the table's own writer (CLIs, Catalog.catalog) refuses such a row, naming it
    ghost = empty_row()
    ghost.update(error=rows[mr_uid]["error"])
    local = Catalog(table)
    version = local.table.version()
    with pytest.raises(TableError, match=f"1 row\\(s\\) without a path.*series {mr_uid}") as err:
        local.table.append(pa.Table.from_pylist([ghost]))
    assert table in str(err.value) and local.table.version() == version
