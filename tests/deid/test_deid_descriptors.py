"""Free-text descriptors Table E.1-1 does not list (Segment Label and Description, Document
Title, Content Label and Description...): kept by the Basic Profile, as the standard keeps
every attribute it does not list; cleaned with the Clean Descriptors Option like the table's
``C`` descriptors; and the table's descriptors are cleaned at every depth.

On a SEG written by highdicom over pydicom's CT_small and on CT_small itself, mutated the
way a user's typing leaves them.
"""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
from deid_corpus import iod_errors, seg_of_ct
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from corpus import sample_file
from pixels.deid import DeidKey, DeidOptions, Option, deidentify_file

KEY = DeidKey(b"d" * 32)


def _seg_with_typed_text(tmp_path: Path) -> Path:
    src = tmp_path / "seg.dcm"
    seg_of_ct(src)
    ds = pydicom.dcmread(src)
    ds.SegmentSequence[0].SegmentLabel = "Smith liver"
    ds.SegmentSequence[0].SegmentDescription = "lesion of John Smith, MRN X-4711"
    ds.ContentLabel = "SMITH_J"
    ds.ContentDescription = "Segmentation for Smith^John"
    ds.save_as(src, enforce_file_format=True)
    return src


def test_unlisted_descriptors_are_kept_by_the_basic_profile_and_cleaned_with_the_option(
    tmp_path: Path,
) -> None:
    src = _seg_with_typed_text(tmp_path)
    basic = deidentify_file(src.read_bytes(), KEY, path="seg.dcm")
    assert basic.status == "written" and basic.data is not None
    kept = pydicom.dcmread(io.BytesIO(basic.data))
    # not in Table E.1-1: the Basic Profile keeps them (documented in --help and the README)
    assert kept.SegmentSequence[0].SegmentLabel == "Smith liver"
    assert kept.ContentDescription == "Segmentation for Smith^John"

    clean = deidentify_file(src.read_bytes(), KEY, DeidOptions.of(Option.CLEAN_DESCRIPTORS))
    assert clean.status == "written" and clean.data is not None
    # (not digits alone: the new UIDs are random digits, which held "4711" in one CI run)
    for planted in (b"Smith", b"SMITH", b"X-4711"):
        assert planted not in clean.data, planted
    out = pydicom.dcmread(io.BytesIO(clean.data))
    segment = out.SegmentSequence[0]
    assert segment.SegmentLabel == "ANONYMIZED"  # Type 1: a dummy
    assert "SegmentDescription" not in segment  # Type 3: removed
    assert out.ContentLabel == "ANONYMIZED" and out.ContentDescription == ""  # Type 1, Type 2
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Tissue"  # codes kept
    dst = tmp_path / "out.dcm"
    dst.write_bytes(clean.data)
    assert iod_errors(dst) <= iod_errors(src)

    # a descriptor the user has checked is kept, the others are still cleaned
    named = DeidOptions.of(Option.CLEAN_DESCRIPTORS, keep_descriptors=("SegmentLabel",))
    out = pydicom.dcmread(io.BytesIO(deidentify_file(src.read_bytes(), KEY, named).data))  # type: ignore[arg-type]
    assert out.SegmentSequence[0].SegmentLabel == "Smith liver"
    assert out.ContentDescription == ""


def test_listed_descriptors_are_cleaned_at_every_depth_and_a_document_title_with_the_option() -> (
    None
):
    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    ds.DocumentTitle = "Report for Smith^John"
    request = Dataset()
    request.RequestedProcedureDescription = "CT for Smith follow-up"
    request.ScheduledProcedureStepDescription = "Smith bed 12"
    ds.ReferencedRequestSequence = Sequence([request])
    frame = Dataset()
    frame.FrameComments = "Smith moved"
    group = Dataset()
    group.FrameContentSequence = Sequence([frame])
    ds.PerFrameFunctionalGroupsSequence = Sequence([group])
    series = Dataset()
    series.SeriesInstanceUID = str(ds.SeriesInstanceUID)
    series.SeriesDescription = "Smith head"
    ds.ReferencedSeriesSequence = Sequence([series])
    for options in (DeidOptions(), DeidOptions.of(Option.CLEAN_DESCRIPTORS)):
        res = deidentify_file(ds, KEY, options, path="CT_small+descriptors.dcm")
        assert res.status == "written" and res.data is not None
        out = pydicom.dcmread(io.BytesIO(res.data))
        item = out.ReferencedRequestSequence[0]
        assert item.get("RequestedProcedureDescription", "") == ""  # X/Z
        assert "ScheduledProcedureStepDescription" not in item
        assert (
            "FrameComments" not in out.PerFrameFunctionalGroupsSequence[0].FrameContentSequence[0]
        )
        assert "SeriesDescription" not in out.ReferencedSeriesSequence[0]
        if options.options:
            assert b"Smith" not in res.data and "DocumentTitle" in out
            assert out.DocumentTitle == ""  # Type 2 in the Encapsulated Document module
        else:
            assert out.DocumentTitle == "Report for Smith^John"  # unlisted: the profile keeps it


def test_cli_help_says_unlisted_descriptors_are_kept_without_clean_descriptors() -> None:
    from click.testing import CliRunner

    from pixels.cli import main

    res = CliRunner().invoke(main, ["deid", "--help"], terminal_width=200)
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert (
        "Descriptors Table E.1-1 does not list (Segment Label and Description, Document Title, "
        "Content Label and Description...) are kept unless clean-descriptors is on" in text
    )
