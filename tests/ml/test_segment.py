"""Batch segmentation to DICOM SEG: files valid, cataloged, skipped on re-run, bad input reported."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from series import ct_series, dicomdir_series

from corpus import sample_file


@pytest.fixture(scope="module")
def segmented(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A catalog of real series, segmented once with ct-tissue (in this process)."""
    from pixels import Catalog
    from pixels.ml.segment import run_segment

    root = tmp_path_factory.mktemp("segment")
    data = root / "data"
    ct_series(data / "rev", 6)
    dicomdir_series("98892001/CT5N", data / "ct5n")
    dicomdir_series("77654033/CT2", data / "ct2")  # a gap
    (data / "ect").mkdir()
    shutil.copy(sample_file("eCT_Supplemental.dcm"), data / "ect" / "ect.dcm")
    (data / "mr").mkdir()
    shutil.copy(sample_file("MR_small.dcm"), data / "mr" / "mr.dcm")  # not CT
    cat = Catalog(str(root / "catalog"))
    cat.catalog(str(data), workers=0)
    stats = run_segment(cat, "ct-tissue", workers=0)
    return {"root": root, "catalog": cat, "stats": stats, "data": data}


def _by_series(stats: object) -> dict[str, object]:
    return {r.series_uid: r for r in stats.results}  # type: ignore[attr-defined]


def test_one_seg_per_series_and_errors_named(segmented):
    stats = segmented["stats"]
    assert (stats.series, stats.segmented, stats.skipped, stats.errors) == (5, 3, 0, 2)
    errors = [r.message for r in stats.results if r.status == "error"]
    assert any("irregular slice spacing" in m and "ct2/17136" in m for m in errors)
    mr_uid = pydicom.dcmread(sample_file("MR_small.dcm")).SeriesInstanceUID
    assert any(
        m.startswith(f"series {mr_uid}: model ct-tissue takes CT series, this one is MR")
        for m in errors
    )
    seg_root = segmented["root"] / "seg"
    files = sorted(seg_root.rglob("*.dcm"))
    assert len(files) == 3
    assert not list(seg_root.rglob("*.partial"))


def test_seg_valid_and_references_the_source(segmented):
    import highdicom as hd

    from pixels.ml.models.ct_tissue import CTTissue

    stats, cat = segmented["stats"], segmented["catalog"]
    src_dir = segmented["data"] / "rev"
    sources = sorted(
        (pydicom.dcmread(p) for p in src_dir.iterdir()),
        key=lambda d: float(d.ImagePositionPatient[2]),
    )
    result = _by_series(stats)[sources[0].SeriesInstanceUID]
    seg = hd.seg.segread(result.path)
    raw = pydicom.dcmread(result.path)
    assert raw.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4" and raw.Modality == "SEG"
    assert seg.SegmentationType == "BINARY"
    assert seg.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
    assert seg.StudyInstanceUID == sources[0].StudyInstanceUID
    assert seg.PatientID == sources[0].PatientID
    ref = seg.ReferencedSeriesSequence[0]
    assert ref.SeriesInstanceUID == sources[0].SeriesInstanceUID
    assert {i.ReferencedSOPInstanceUID for i in ref.ReferencedInstanceSequence} == {
        d.SOPInstanceUID for d in sources
    }
    # the references resolve to the source instances in the catalog
    found = cat.sql(
        "SELECT SOPInstanceUID FROM object_catalog WHERE SeriesInstanceUID = ?",
        [ref.SeriesInstanceUID],
    )
    assert set(found["SOPInstanceUID"]) == {d.SOPInstanceUID for d in sources}
    names = [s.SegmentLabel for s in seg.SegmentSequence]
    assert names == ["Lung", "Bone", "Fat", "Soft tissue", "Air", "Body"]
    codes = {s.SegmentLabel: s.SegmentedPropertyTypeCodeSequence[0] for s in seg.SegmentSequence}
    assert (codes["Lung"].CodeValue, codes["Lung"].CodingSchemeDesignator) == ("39607008", "SCT")
    assert codes["Body"].CodeValue == "38266002"
    assert seg.SegmentSequence[0].SegmentAlgorithmName == "ct-tissue"
    # the voxels: what the model gives on the volume, slice by slice, per source instance
    hu = np.stack(
        [(d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept)).T for d in sources],
        axis=-1,
    ).astype(np.float32)
    spacing = (float(sources[0].PixelSpacing[1]), float(sources[0].PixelSpacing[0]), 2.5)
    labels = CTTissue()(hu, spacing)
    got = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[d.SOPInstanceUID for d in sources],
        segment_numbers=[1, 2, 3, 4, 5],
        combine_segments=True,
        relabel=False,
    )
    np.testing.assert_array_equal(got, labels.transpose(2, 1, 0))
    body = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[d.SOPInstanceUID for d in sources], segment_numbers=[6]
    )[..., 0]
    np.testing.assert_array_equal(body.astype(bool), labels.transpose(2, 1, 0) > 0)


def test_segment_volumes_are_the_seg_voxels(segmented):
    """The millilitres reported per segment are the voxels of each segment of the SEG."""
    segmented_ok = [r for r in segmented["stats"].results if r.status == "segmented"]
    assert segmented_ok
    for result in segmented_ok:
        seg = pydicom.dcmread(result.path)  # binary: each frame is one segment's plane
        frames = seg.pixel_array.reshape(-1, seg.Rows, seg.Columns)
        of_frame = [
            int(f.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
            for f in seg.PerFrameFunctionalGroupsSequence
        ]
        names = [s.SegmentLabel for s in seg.SegmentSequence]
        assert set(result.volumes_ml) == set(names)
        counts = dict.fromkeys(names, 0)
        for plane, number in zip(frames, of_frame, strict=True):
            counts[names[number - 1]] += int(plane.astype(bool).sum())
        # one voxel volume for all segments (the series' spacing): ml / voxels is constant
        voxel_ml = result.volumes_ml["Body"] / counts["Body"]
        for name in names:
            want = counts[name] * voxel_ml
            assert result.volumes_ml[name] == pytest.approx(want, rel=1e-3, abs=2e-3), name
        assert result.volumes_ml["Body"] > 0


def test_volumes_of_wide_label_maps_match_the_masks():
    from pixels.ml.models.ct_tissue import CTTissue
    from pixels.ml.segment import _volumes_ml

    ref = pydicom.dcmread(sample_file("CT_small.dcm"))
    hu = (ref.pixel_array * float(ref.RescaleSlope) + float(ref.RescaleIntercept)).T
    model = CTTissue()
    labels = model(np.repeat(hu[..., None], 4, axis=-1).astype(np.float32), (0.7, 0.7, 2.5))
    want = {s.name: round(int(s.mask(labels).sum()) * 0.5, 3) for s in model.segments}
    assert _volumes_ml(model, labels, 0.5) == want  # the histogram path (uint8)
    assert _volumes_ml(model, labels.astype(np.int64), 0.5) == want  # the mask path
    assert _volumes_ml(model, np.asfortranarray(labels), 0.5) == want


def test_cataloged_and_queryable_by_model(segmented):
    from pixels.ml.seg import segmentations

    cat, stats = segmented["catalog"], segmented["stats"]
    df = segmentations(cat, "ct-tissue")
    done = {r.series_uid for r in stats.results if r.status == "segmented"}
    assert set(df["ReferencedSeriesInstanceUID"]) == done
    assert sorted(df["path"]) == sorted(r.path for r in stats.results if r.path)
    assert segmentations(cat, "another-model").empty
    rows = cat.sql("SELECT SeriesDescription FROM object_catalog WHERE Modality = 'SEG'")
    assert list(rows["SeriesDescription"]) == ["ct-tissue segmentation"] * 3


def test_rerun_skips_and_force_replaces(segmented, tmp_path):
    from pixels import Catalog
    from pixels.ml.segment import run_segment

    # work on a copy: the module's catalog stays as the other tests expect it
    root = tmp_path / "copy"
    shutil.copytree(segmented["root"], root, symlinks=True)
    cat = Catalog(str(root / "catalog"))
    # the copy's rows point at the original files; segment the original data again here
    n_rows = cat.count()
    again = run_segment(cat, "ct-tissue", workers=0, output=str(root / "seg"))
    assert (again.segmented, again.skipped, again.errors) == (0, 3, 2)
    assert cat.count() == n_rows
    forced = run_segment(
        cat, "ct-tissue", workers=0, force=True, output=str(root / "seg"),
        where="Modality = 'CT' AND relative_path LIKE 'rev/%'",
    )  # fmt: skip
    assert (forced.segmented, forced.skipped, forced.errors) == (1, 0, 0)
    path = forced.results[0].path
    assert path.startswith(str(root / "seg"))
    # same UIDs as the first SEG of that series, so the same file name
    first = _by_series(segmented["stats"])[forced.results[0].series_uid].path
    assert Path(path).name == Path(first).name
    assert cat.count() == n_rows + 1  # the new SEG file; the old one is not duplicated
    segs = cat.sql("SELECT SOPInstanceUID FROM object_catalog WHERE Modality = 'SEG'")
    assert segs["SOPInstanceUID"].value_counts().max() == 2  # one per folder: copy + original


def test_labelmap_seg_is_rle_and_round_trips(tmp_path):
    import highdicom as hd

    from pixels import Catalog
    from pixels.ml.models.ct_tissue import CTTissue
    from pixels.ml.segment import run_segment
    from pixels.ml.volume import read_volume, select_series

    ct_series(tmp_path / "d", 4)
    cat = Catalog(str(tmp_path / "cat"))
    cat.catalog(str(tmp_path / "d"), workers=0)
    stats = run_segment(cat, "ct-tissue", workers=0, labelmap=True)
    assert stats.segmented == 1
    seg = hd.seg.segread(stats.results[0].path)
    assert seg.SegmentationType == "LABELMAP"
    assert seg.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.5"  # RLE Lossless
    assert [s.SegmentLabel for s in seg.SegmentSequence] == [
        "Background",
        "Lung",
        "Bone",
        "Fat",
        "Soft tissue",
        "Air",
    ]  # fmt: skip (highdicom describes label 0 in label maps, as OHIF does)
    (series,) = select_series(cat, "Modality = 'CT'").series
    vol = read_volume(series)
    labels = CTTissue()(vol.array, vol.plan.spacing)
    uids = [pydicom.dcmread(series.rows[s.row]["path"]).SOPInstanceUID for s in vol.plan.slices]
    got = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids, combine_segments=True, relabel=False
    )
    np.testing.assert_array_equal(got, labels.transpose(2, 1, 0))


def test_cli_segment_with_processes_and_models(tmp_path):
    from click.testing import CliRunner

    from pixels.cli import main

    for k in range(2):
        ct_series(tmp_path / "d" / f"s{k}", 3)
    runner = CliRunner()
    table = str(tmp_path / "cat")
    assert (
        runner.invoke(
            main, ["catalog", str(tmp_path / "d"), "-t", table, "-w", "0", "-q"]
        ).exit_code
        == 0
    )
    res = runner.invoke(
        main, ["segment", "-t", table, "--where", "Modality = 'CT'", "-w", "2", "-q"]
    )
    assert res.exit_code == 0, res.output
    assert "segmented 2 · skipped 0" in res.output
    res = runner.invoke(main, ["segment", "-t", table, "-q"])
    assert "segmented 0 · skipped 2 (already segmented) · errors 0" in res.output
    res = runner.invoke(main, ["segment", "-t", table, "--model", "no-such-model", "-q"])
    assert res.exit_code == 2 and "unknown model 'no-such-model'; known: ct-tissue" in res.output
    res = runner.invoke(main, ["models"])
    assert res.exit_code == 0
    assert "ok  ct-tissue" in res.output and "bundle:PATH" in res.output


def test_warnings_are_summarised_by_series_not_printed(tmp_path):
    """highdicom's and pydicom's warnings (here: a one-part Patient's Name, as in the
    Medical Segmentation Decathlon's PANCREAS_0001) went to stderr naming no series."""
    from click.testing import CliRunner

    from pixels.cli import main

    paths = ct_series(tmp_path / "d" / "s", 3)
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.PatientName = "PANCREAS_0001"
        ds.save_as(p)
    table = str(tmp_path / "cat")
    runner = CliRunner()
    assert (
        runner.invoke(
            main, ["catalog", str(tmp_path / "d"), "-t", table, "-w", "0", "-q"]
        ).exit_code
        == 0
    )
    res = runner.invoke(main, ["segment", "-t", table, "-w", "0", "-q"])
    assert res.exit_code == 0, res.output
    uid = pydicom.dcmread(paths[0]).SeriesInstanceUID
    assert "warnings: 1 series with warnings" in res.output, res.output
    assert "unlikely to represent the intended person name" in res.output
    assert f"e.g. series {uid}" in res.output
    assert "UserWarning" not in res.output and "PANCREAS_0001" not in res.output


def test_resume_after_kill_9(tmp_path):
    """kill -9 mid-run, run again: every series ends with exactly one SEG, cataloged once."""
    from pixels import Catalog
    from pixels.ml.seg import segmentations

    n = 8
    for k in range(n):
        ct_series(tmp_path / "d" / f"s{k}", 3)
    table = str(tmp_path / "cat")
    cat = Catalog(table)
    cat.catalog(str(tmp_path / "d"), workers=0)
    cmd = [sys.executable, "-m", "pixels.cli", "segment", "-t", table, "-w", "0", "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seg_root = tmp_path / "seg"
    deadline = time.monotonic() + 120
    while not list(seg_root.rglob("*.dcm")) and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = segmentations(cat, "ct-tissue")
    assert len(before) < n, "the run finished before it was killed"
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"skipped {len(before)} (already segmented)" in done.stderr
    after = segmentations(cat, "ct-tissue")
    assert len(after) == n
    assert after["ReferencedSeriesInstanceUID"].nunique() == n
    assert len(list(seg_root.rglob("*.dcm"))) == n


class _Dense:
    """A user model: voxels above 300 HU, label 1 (and, when asked, an undeclared label 7)."""

    version = "0.1"
    modalities = ("CT",)
    min_slices = 2

    def __init__(self, name: str, stray: bool = False) -> None:
        from pixels.ml.models import Code, Segment

        self.name = name
        self.stray = stray
        self.segments = (
            Segment(
                1,
                "Dense",
                Code("91723000", "SCT", "Anatomical Structure"),
                Code("272673000", "SCT", "Bone"),
            ),
        )

    def __call__(self, volume: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
        out = (volume > 300).astype(np.uint8)
        if self.stray:
            out[0, 0, 0] = 7
        return out


def test_registered_user_model_runs_and_bad_output_is_an_error(tmp_path):
    import highdicom as hd

    from pixels import Catalog
    from pixels.ml.models import get_model, register, unregister
    from pixels.ml.segment import run_segment

    ct_series(tmp_path / "d" / "a", 3)
    ct_series(tmp_path / "d" / "one", 1)  # too small for a model that needs 2 slices
    cat = Catalog(str(tmp_path / "cat"))
    cat.catalog(str(tmp_path / "d"), workers=0)
    register(_Dense("dense-test"))
    register(lambda: _Dense("stray-test", stray=True), "stray-test")
    try:
        assert get_model("dense-test").name == "dense-test"
        stats = run_segment(cat, "dense-test", workers=0)
        assert (stats.segmented, stats.errors) == (1, 1)
        (bad,) = [r for r in stats.results if r.status == "error"]
        assert "model dense-test needs at least 2 slices, the series has 1" in bad.message
        (ok,) = [r for r in stats.results if r.status == "segmented"]
        seg = hd.seg.segread(ok.path)
        assert [s.SegmentLabel for s in seg.SegmentSequence] == ["Dense"]
        assert seg.SegmentSequence[0].SegmentAlgorithmName == "dense-test"
        stray = run_segment(cat, "stray-test", workers=0, where="relative_path LIKE 'a/%'")
        assert stray.errors == 1
        assert "returned labels [7] it does not declare" in stray.results[0].message
    finally:
        unregister("dense-test")
        unregister("stray-test")


def test_seg_of_an_s3_catalog_is_written_to_s3_and_cataloged(s3_server, tmp_path):
    """Files and table on S3 (a real moto server): the SEG goes next to the table on S3 in
    one PUT, is cataloged at once, reads back with highdicom, references the source series;
    a re-run skips it."""
    import io
    import uuid

    import highdicom as hd
    import s3fs

    from pixels import Catalog
    from pixels.ml.seg import segmentations
    from pixels.ml.segment import run_segment

    bucket = f"seg-{uuid.uuid4().hex[:10]}"
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **s3_server.storage_options)
    fs.mkdir(bucket)
    paths = ct_series(tmp_path / "ct", 4)
    for p in paths:
        fs.pipe(f"{bucket}/data/{p.name}", p.read_bytes())
    opts = s3_server.storage_options
    cat = Catalog(f"s3://{bucket}/catalog", storage_options=opts)
    cat.catalog(f"s3://{bucket}/data", workers=0, storage_options=opts)
    stats = run_segment(cat, "ct-tissue", workers=0, storage_options=opts)
    assert (stats.segmented, stats.errors) == (1, 0), [r.message for r in stats.results]
    (done,) = stats.results
    assert done.path.startswith(f"s3://{bucket}/seg/")
    assert not list(tmp_path.glob("**/seg"))  # nothing written to the local disk
    assert list(segmentations(cat, "ct-tissue")["path"]) == [done.path]
    source = pydicom.dcmread(paths[0])
    seg = hd.seg.Segmentation.from_dataset(pydicom.dcmread(io.BytesIO(fs.cat(done.path))))
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    assert seg.StudyInstanceUID == source.StudyInstanceUID
    assert [s.SegmentLabel for s in seg.SegmentSequence][:2] == ["Lung", "Bone"]
    again = run_segment(cat, "ct-tissue", workers=0, storage_options=opts)
    assert (again.segmented, again.skipped) == (0, 1)
    assert len(fs.glob(f"{bucket}/seg/**/*.dcm")) == 1
