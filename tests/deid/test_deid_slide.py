"""Whole-slide microscopy label and overview images: the photograph of the slide's label
(patient name, accession number, barcode) and the whole-slide overview that shows it.

They are suspect of burned-in text whatever Burned In Annotation and Specimen Label in Image
say (converters write NO for every image of a pyramid), and the label's values in the
header (Barcode Value, Label Text, the container and specimen identifiers and their issuers)
are handled as PS3.15 Table E.1-1 says.

On pydicom's real RGB secondary capture made a VL Whole Slide Microscopy label image as a
converter writes one, its specimen description written by highdicom.
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from deid_corpus import iod_errors
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from corpus import sample_file
from pixels.deid import BlackoutRule, DeidKey, DeidOptions, deidentify_file

KEY = DeidKey(b"w" * 32)
WSI = "1.2.840.10008.5.1.4.1.1.77.1.6"
#: What a slide label carries, planted in the header the way a scanner writes it.
PHI = ("Smith^John", "S26-4711", "MRN0042", "St Elsewhere Pathology", "S26-4711-A1")


def _slide_image(kind: str, label_in_image: str = "NO") -> pydicom.Dataset:
    ds = pydicom.dcmread(sample_file("SC_rgb.dcm"))
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = WSI
    ds.Modality = "SM"
    ds.ImageType = ["ORIGINAL", "PRIMARY", kind, "NONE"]
    ds.BurnedInAnnotation = "NO"  # what a converter writes for every image of the pyramid
    ds.SpecimenLabelInImage = label_in_image
    ds.LabelText = "Smith^John S26-4711"
    ds.BarcodeValue = "MRN0042 S26-4711"
    ds.ContainerIdentifier = "S26-4711-A1"
    issuer = hd.IssuerOfIdentifier("St Elsewhere Pathology")
    ds.IssuerOfTheContainerIdentifierSequence = Sequence([issuer])
    ds.SpecimenDescriptionSequence = Sequence(
        [
            hd.SpecimenDescription(
                specimen_id="S26-4711-A1",
                specimen_uid=hd.UID(),
                issuer_of_specimen_id=issuer,
            )
        ]
    )
    return ds


@pytest.mark.parametrize(
    ("kind", "label_in_image", "expected"),
    [
        ("LABEL", "NO", "microscopy LABEL image (Image Type (0008,0008) value 3)"),
        ("OVERVIEW", "NO", "microscopy OVERVIEW image (Image Type (0008,0008) value 3)"),
        ("THUMBNAIL", "", "THUMBNAIL image (Image Type (0008,0008) value 3) and Specimen Label"),
        ("THUMBNAIL", "YES", "Specimen Label In Image (0048,0010) is YES"),
    ],
)
def test_whole_slide_label_and_overview_images_are_suspect_whatever_their_flags(
    kind: str, label_in_image: str, expected: str
) -> None:
    ds = _slide_image(kind, label_in_image)
    res = deidentify_file(ds, KEY, path=f"slide-{kind}.dcm")
    assert res.status == "skipped" and res.data is None, res.actions
    assert res.reason is not None and expected in res.reason, res.reason


def test_a_thumbnail_without_the_label_and_a_volume_image_are_written() -> None:
    for kind in ("THUMBNAIL", "VOLUME"):
        res = deidentify_file(_slide_image(kind, "NO"), KEY, path=f"slide-{kind}.dcm")
        assert res.status == "written", (kind, res.reason)


def _iod_errors(path: Path) -> set[str]:
    # the UIDs are replaced: the errors are compared without them
    return {ln.split(" - ", 1)[-1] for ln in iod_errors(path)}


def _walk_values(ds: Dataset) -> list[str]:
    out: list[str] = []
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                out += _walk_values(item)
        elif elem.tag != 0x7FE00010:
            out.append(str(elem.value))
    return out


def test_a_blacked_out_label_is_written_with_its_identifiers_cleaned(tmp_path: Path) -> None:
    ds = _slide_image("LABEL")
    cols, rows = int(ds.Columns), int(ds.Rows)
    rule = BlackoutRule(rectangles=((0, 0, cols, rows),), rows=rows, columns=cols)
    src = tmp_path / "label.dcm"
    ds.save_as(src, enforce_file_format=True)
    opts = DeidOptions.of(blackout=[rule])
    res = deidentify_file(src.read_bytes(), KEY, opts, path="label.dcm")
    assert res.status == "written" and res.data is not None, res.reason
    assert deidentify_file(src.read_bytes(), KEY, opts, path="label.dcm").data == res.data
    out = pydicom.dcmread(io.BytesIO(res.data))
    assert not out.pixel_array.any()  # the whole label is black
    for value in PHI:
        assert value.encode() not in res.data, value
        assert not any(value in v for v in _walk_values(out)), value
    # Table E.1-1: Barcode Value and Label Text X/Z (empty), Container and Specimen
    # Identifier D (a dummy), their issuers' sequences Z (empty), Specimen UID U
    assert out.BarcodeValue == "" and out.LabelText == ""
    assert out.ContainerIdentifier == "ANONYMIZED"
    assert len(out.IssuerOfTheContainerIdentifierSequence) == 0
    spec = out.SpecimenDescriptionSequence[0]
    assert spec.SpecimenIdentifier == "ANONYMIZED"
    assert len(spec.IssuerOfTheSpecimenIdentifierSequence) == 0
    assert spec.SpecimenUID != ds.SpecimenDescriptionSequence[0].SpecimenUID
    target = tmp_path / "label.out.dcm"
    target.write_bytes(res.data)
    done = subprocess.run(["dcmdump", "-q", str(target)], capture_output=True, text=True)
    assert done.returncode == 0 and "E:" not in done.stderr, done.stderr
    assert _iod_errors(target) <= _iod_errors(src)


@pytest.mark.parametrize("suspects", ["conservative", "narrow"])
def test_cli_skips_the_label_of_a_slide_and_writes_its_volume(
    suspects: str, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from pixels import Catalog
    from pixels.cli import main

    src = tmp_path / "src"
    src.mkdir()
    for kind in ("LABEL", "VOLUME"):
        ds = _slide_image(kind)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = hd.UID()
        ds.save_as(src / f"{kind}.dcm", enforce_file_format=True)
    Catalog(tmp_path / "cat").catalog(src, workers=0)
    res = CliRunner().invoke(
        main,
        [
            *("deid", "--table", str(tmp_path / "cat"), "--workers", "0", "-q"),
            *("--no-catalog", "--out", str(tmp_path / "out")),
            *("--key-file", str(tmp_path / "k.key"), "--burned-in-suspects", suspects),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "1 written, 1 skipped" in res.output, res.output
    audit = (tmp_path / "k.key.audit.csv").read_text()
    skipped = [ln for ln in audit.splitlines() if "LABEL.dcm" in ln]
    assert len(skipped) == 1 and "LABEL image (Image Type (0008,0008) value 3)" in skipped[0]
    written = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert len(written) == 1
    out = pydicom.dcmread(written[0])
    assert list(out.ImageType)[2] == "VOLUME"
    assert all(value.encode() not in written[0].read_bytes() for value in PHI)
    help_text = CliRunner().invoke(main, ["deid", "--help"]).output
    assert "whole-slide microscopy LABEL and OVERVIEW" in " ".join(help_text.split())
