"""Which images are suspect of burned-in text when Burned In Annotation (0028,0301) does not
say NO: by default (``conservative``) projection radiographs (CR, DX, MG...), fluoroscopy and
angiography (RF, XA) too, not only ultrasound and secondary capture (``narrow``, the earlier
default, kept behind ``--burned-in-suspects narrow``).

On pydicom-data's real CR (RG1_UNCR, no Burned In Annotation) and that file relabelled as the
DX, mammography, angiography and fluoroscopy classes a vendor would write.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner

from corpus import sample_file
from pixels import Catalog
from pixels.deid import DeidKey, DeidOptions, deidentify_file

KEY = DeidKey(b"b" * 32)

CLASSES = {
    "CR": "1.2.840.10008.5.1.4.1.1.1",
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",
    "MG": "1.2.840.10008.5.1.4.1.1.1.2",
    "XA": "1.2.840.10008.5.1.4.1.1.12.1",
    "RF": "1.2.840.10008.5.1.4.1.1.12.2",
}


def _radiograph(modality: str) -> pydicom.Dataset:
    ds = pydicom.dcmread(sample_file("RG1_UNCR.dcm"))
    assert ds.Modality == "CR" and "BurnedInAnnotation" not in ds
    ds.Modality = modality
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = CLASSES[modality]
    return ds


@pytest.mark.parametrize("modality", list(CLASSES))
def test_radiographs_angiography_and_fluoroscopy_without_a_no_are_suspect_by_default(
    modality: str,
) -> None:
    ds = _radiograph(modality)
    res = deidentify_file(ds, KEY, path=f"{modality}.dcm")
    assert res.status == "skipped" and res.data is None
    assert res.reason == (
        f"possible burned-in text: modality {modality} commonly has burned-in text and "
        "Burned In Annotation is not NO"
    )
    ds.Modality = ""  # a vendor that leaves Modality empty: the SOP class says it
    res = deidentify_file(ds, KEY, path=f"{modality}.dcm")
    assert res.status == "skipped" and "SOP class" in (res.reason or "")

    narrow = DeidOptions(burned_in_suspects="narrow")  # the earlier behaviour
    assert deidentify_file(ds, KEY, narrow).status == "written"
    assert narrow.describe() == "burned-in-suspects=narrow"  # in the audit's options
    ds.BurnedInAnnotation = "NO"
    assert deidentify_file(ds, KEY).status == "written"
    ds.BurnedInAnnotation = "YES"  # a YES is suspect in either set
    assert deidentify_file(ds, KEY, narrow).status == "skipped"


def test_cross_sectional_images_are_not_suspect_without_a_yes() -> None:
    for name in ("CT_small.dcm", "MR_small.dcm"):
        ds = pydicom.dcmread(sample_file(name))
        assert "BurnedInAnnotation" not in ds
        assert deidentify_file(ds, KEY, path=name).status == "written"
    with pytest.raises(ValueError, match="valid: conservative, narrow"):
        DeidOptions(burned_in_suspects="none")


def test_cli_burned_in_suspects(tmp_path: Path) -> None:
    from pixels.cli import main

    src = tmp_path / "src"
    src.mkdir()
    shutil.copyfile(sample_file("RG1_UNCR.dcm"), src / "cr.dcm")
    Catalog(tmp_path / "cat").catalog(src, workers=0)
    base = ["deid", "--table", str(tmp_path / "cat"), "--workers", "0", "-q", "--no-catalog"]
    res = CliRunner().invoke(
        main, [*base, "--out", str(tmp_path / "a"), "--key-file", str(tmp_path / "k" / "a.key")]
    )
    assert res.exit_code == 0, res.output
    assert "0 written, 1 skipped" in res.output and "skipped 1: possible burned-in" in res.output
    res = CliRunner().invoke(
        main,
        [
            *base,
            "--out",
            str(tmp_path / "b"),
            "--key-file",
            str(tmp_path / "k" / "b.key"),
            "--burned-in-suspects",
            "narrow",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "1 written, 0 skipped" in res.output
    bad = CliRunner().invoke(
        main, [*base, "--out", str(tmp_path / "c"), "--burned-in-suspects", "x"]
    )
    assert bad.exit_code == 2 and "conservative" in bad.output
