"""The Clean Structured Content Option (PS3.15 E.3.3) on an SR written by highdicom: the
content tree is kept, item by item, with TEXT replaced, PNAME given the key's pseudonym,
DATE / DATETIME shifted by the patient's offset, TIME kept, UIDREF replaced as every UID,
codes and numbers kept; without the option the Basic Profile's dummies."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pydicom
from deid_corpus import iod_errors
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from corpus import sample_file
from pixels.deid import DeidKey, DeidOptions, Option, deidentify_file
from pixels.deid.dates import shift_da, shift_dt
from pixels.deid.file import _patient_identity

KEY = DeidKey(b"s" * 32)
TRACKED = "1.2.826.0.1.3680043.10.9999.4711"


def _sr(path: Path) -> pydicom.Dataset:
    """A Comprehensive SR by highdicom over CT_small: one container, one item of each type."""
    import highdicom as hd
    from pydicom.sr.coding import Code

    ct = pydicom.dcmread(sample_file("CT_small.dcm"))
    local = "99PIXELS"
    items = [
        hd.sr.TextContentItem(
            Code("T1", local, "Finding"), "Mr Smith's lesion, seen by Dr Who", "CONTAINS"
        ),
        hd.sr.PnameContentItem(Code("P1", local, "Reader"), "Who^Doctor", "CONTAINS"),
        hd.sr.PnameContentItem(Code("P2", local, "Second reader"), "WHO^DOCTOR ", "CONTAINS"),
        hd.sr.DateContentItem(Code("D1", local, "Date of finding"), "20190304", "CONTAINS"),
        hd.sr.DateTimeContentItem(
            Code("D2", local, "Time of finding"), "20190304101112", "CONTAINS"
        ),
        hd.sr.TimeContentItem(Code("D3", local, "Clock time"), "101112", "CONTAINS"),
        hd.sr.UIDRefContentItem(codes.DCM.TrackingUniqueIdentifier, TRACKED, "CONTAINS"),
        hd.sr.NumContentItem(
            Code("N1", local, "Diameter"), 12.5, codes.UCUM.Millimeter, relationship_type="CONTAINS"
        ),
        hd.sr.CodeContentItem(
            codes.SCT.FindingSite, codes.SCT.Liver, relationship_type="HAS CONCEPT MOD"
        ),
    ]
    root = hd.sr.ContainerContentItem(codes.DCM.ImagingMeasurementReport)
    root.ContentSequence = items
    sr = hd.sr.ComprehensiveSR(
        evidence=[ct],
        content=root,
        series_instance_uid=generate_uid(),
        series_number=3,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="Pixels tests",
    )
    sr.save_as(path, enforce_file_format=True)
    return sr


def _items(ds: Any) -> dict[str, Any]:
    """Concept meaning -> the content item, over the tree below the root."""
    return {i.ConceptNameCodeSequence[0].CodeMeaning: i for i in ds.ContentSequence}


def test_clean_structured_content_keeps_the_tree_and_replaces_the_values(tmp_path: Path) -> None:
    src = tmp_path / "sr.dcm"
    sr = _sr(src)
    days = KEY.date_offset_days(_patient_identity(sr))
    opts = DeidOptions.of(Option.CLEAN_STRUCTURED_CONTENT)
    res = deidentify_file(src.read_bytes(), KEY, opts, path="sr.dcm")
    assert res.status == "written" and res.data is not None
    assert deidentify_file(src.read_bytes(), KEY, opts, path="sr.dcm").data == res.data
    for planted in (b"Smith", b"Who", b"WHO", b"20190304", TRACKED.encode()):
        assert planted not in res.data, planted
    out = pydicom.dcmread(io.BytesIO(res.data))
    items = _items(out)
    assert list(items) == [
        "Finding",
        "Reader",
        "Second reader",
        "Date of finding",
        "Time of finding",
        "Clock time",
        "Tracking Unique Identifier",
        "Diameter",
        "Finding Site",
    ]  # the tree, in order
    assert items["Finding"].TextValue == "ANONYMIZED"
    reader = items["Reader"].PersonName
    assert reader == KEY.person_name("Who^Doctor") != "ANONYMIZED"
    assert items["Second reader"].PersonName == reader  # the same person, the same pseudonym
    assert items["Date of finding"].Date == shift_da("20190304", days) != "20190304"
    assert items["Time of finding"].DateTime == shift_dt("20190304101112", days)
    assert items["Clock time"].Time == "101112"  # whole-day offsets: the time of day stays
    assert KEY.uid(TRACKED) == items["Tracking Unique Identifier"].UID
    num = items["Diameter"].MeasuredValueSequence[0]
    assert float(num.NumericValue) == 12.5 and num.MeasurementUnitsCodeSequence[0].CodeValue == "mm"
    assert items["Finding Site"].ConceptCodeSequence[0].CodeMeaning == "Liver"
    codes_used = {c.CodeValue for c in out.DeidentificationMethodCodeSequence}
    assert codes_used == {"113100", "113104"}
    assert out.LongitudinalTemporalInformationModified == "MODIFIED"
    dst = tmp_path / "out.dcm"
    dst.write_bytes(res.data)
    assert iod_errors(dst) <= iod_errors(src)

    # without the option: the Basic Profile's D, the tree kept with dummies
    basic = pydicom.dcmread(io.BytesIO(deidentify_file(src.read_bytes(), KEY).data))  # type: ignore[arg-type]
    items = _items(basic)
    assert items["Reader"].PersonName == "ANONYMIZED"
    assert items["Date of finding"].Date == "19000101"
    assert KEY.uid(TRACKED) == items["Tracking Unique Identifier"].UID

    # with full dates the content's dates are kept as they are
    full = DeidOptions.of(Option.CLEAN_STRUCTURED_CONTENT, Option.RETAIN_FULL_DATES)
    kept = pydicom.dcmread(io.BytesIO(deidentify_file(src.read_bytes(), KEY, full).data))  # type: ignore[arg-type]
    assert _items(kept)["Date of finding"].Date == "20190304"


def test_acquisition_context_and_specimen_preparation_are_kept_and_cleaned() -> None:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    context = Dataset()
    context.ValueType = "PNAME"
    concept = Dataset()
    concept.CodeValue, concept.CodingSchemeDesignator, concept.CodeMeaning = "C1", "99X", "Operator"
    context.ConceptNameCodeSequence = Sequence([concept])
    context.PersonName = "Smith^Anna"
    ds.AcquisitionContextSequence = Sequence([context])
    step = Dataset()
    step.ValueType = "DATETIME"
    step.ConceptNameCodeSequence = Sequence([concept])
    step.DateTime = "20190304101112"
    prep = Dataset()
    prep.SpecimenPreparationStepContentItemSequence = Sequence([step])
    ds.SpecimenPreparationSequence = Sequence([prep])
    basic = pydicom.dcmread(io.BytesIO(deidentify_file(ds, KEY).data))  # type: ignore[arg-type]
    assert len(basic.AcquisitionContextSequence) == 0  # X/Z: emptied
    assert len(basic.SpecimenPreparationSequence) == 0  # Z
    res = deidentify_file(ds, KEY, DeidOptions.of(Option.CLEAN_STRUCTURED_CONTENT))
    assert res.data is not None and b"Smith" not in res.data and b"20190304" not in res.data
    out = pydicom.dcmread(io.BytesIO(res.data))
    assert out.AcquisitionContextSequence[0].PersonName == KEY.person_name("Smith^Anna")
    assert out.AcquisitionContextSequence[0].ConceptNameCodeSequence[0].CodeMeaning == "Operator"
    days = KEY.date_offset_days(_patient_identity(ds))
    shifted = out.SpecimenPreparationSequence[0].SpecimenPreparationStepContentItemSequence[0]
    assert shifted.DateTime == shift_dt("20190304101112", days)
