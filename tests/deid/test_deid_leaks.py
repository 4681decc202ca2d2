"""Leaks found by auditing pixels.deid as a privacy officer would: attributes outside PS3.15
Table E.1-1 that identify a person or an original instance, pixel data the burned-in check
did not look at, private elements kept by the safe list whatever they hold.

Every test runs on a real file (pydicom's test files) mutated the way other vendors' files
are, and looks for the planted values in the raw output bytes.
"""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from corpus import sample_file
from pixels.deid import BlackoutRule, DeidKey, DeidOptions, Option, deidentify_file
from pixels.errors import DeidError

KEY = DeidKey(b"a" * 32)


def _item(**values: object) -> Dataset:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def test_unlisted_names_urls_comments_and_encrypted_originals_do_not_survive() -> None:
    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    study = str(ds.StudyInstanceUID)
    url = f"https://pacs.stmary.example/wado/studies/{study}"
    ds.RetrieveURL = url
    ds.ReferencedSeriesSequence = Sequence(
        [_item(SeriesInstanceUID=str(ds.SeriesInstanceUID), RetrieveURL=url + "/series/1")]
    )
    ds.PatientBirthDateInAlternativeCalendar = "1363/07/14 Hijri"
    ds.PatientDeathDateInAlternativeCalendar = "1440/01/02 Hijri"
    ds.EvaluatorName = "Evaluator^Eve"  # PN, not in the table
    ds.CommentsOnTheScheduledProcedureStep = "Mr Smith is claustrophobic, call his wife"
    ds.ReferencedImageSequence = Sequence(
        [
            _item(
                ReferencedSOPClassUID=str(ds.SOPClassUID),
                ReferencedSOPInstanceUID=str(ds.SOPInstanceUID),
                DoseComment="dose for Smith",
            )
        ]
    )
    encrypted = _item(EncryptedContentTransferSyntaxUID="1.2.840.10008.1.2")
    encrypted.EncryptedContent = b"CMS-enveloped PatientName=Smith^John" + b"\x00" * 4
    ds.EncryptedAttributesSequence = Sequence([encrypted])
    hl7 = "2.16.840.1.113883.19.5^DOC-4711"
    ds.HL7StructuredDocumentReferenceSequence = Sequence(
        [_item(ReferencedSOPClassUID="1.2.840.10008.5.1.4.1.1.104.1", HL7InstanceIdentifier=hl7)]
    )
    ds.ContactDisplayName = "Nurse Ratched"
    ds.IssuerOfAccessionNumberSequence = Sequence(
        [_item(LocalNamespaceEntityID="STMARY-RIS", UniversalEntityID="2.16.840.1.999.77")]
    )
    ds.CodingSchemeIdentificationSequence = Sequence(
        [_item(CodingSchemeDesignator="SCT", CodingSchemeURL="http://snomed.info/sct")]
    )
    res = deidentify_file(ds, KEY, path="CT_small+unlisted.dcm")
    assert res.status == "written" and res.data is not None
    for planted in (
        study,
        "stmary",
        "Hijri",
        "Evaluator",
        "Smith",
        "claustrophobic",
        "DOC-4711",
        "Ratched",
        "STMARY",
        "2.16.840.1.999.77",
    ):
        assert planted.encode() not in res.data, planted
    out = pydicom.dcmread(io.BytesIO(res.data))
    assert "RetrieveURL" not in out and "RetrieveURL" not in out.ReferencedSeriesSequence[0]
    assert out.EvaluatorName == "ANONYMIZED"
    for kw in ("EncryptedAttributesSequence", "IssuerOfAccessionNumberSequence"):
        assert kw not in out, kw
    # an HL7 document's instance identifier is an instance UID: replaced consistently
    assert out.HL7StructuredDocumentReferenceSequence[0].HL7InstanceIdentifier == KEY.uid(hl7)
    # a code system's URL names no one: kept
    assert out.CodingSchemeIdentificationSequence[0].CodingSchemeURL == "http://snomed.info/sct"
    # a comment is a descriptor: kept only when the user names it as checked
    named = DeidOptions.of(
        Option.CLEAN_DESCRIPTORS, keep_descriptors=("CommentsOnTheScheduledProcedureStep",)
    )
    kept = pydicom.dcmread(io.BytesIO(deidentify_file(ds, KEY, named).data))  # type: ignore[arg-type]
    assert kept.CommentsOnTheScheduledProcedureStep == ds.CommentsOnTheScheduledProcedureStep
    assert "DoseComment" not in kept.ReferencedImageSequence[0]


def _float_ct(double: bool = False) -> tuple[pydicom.Dataset, np.ndarray]:
    """CT_small with its pixels as Float (or Double Float) Pixel Data, as a parametric map."""
    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    values = ds.pixel_array.astype(np.float64 if double else np.float32) / 7.0
    del ds.PixelData
    for kw in ("BitsStored", "HighBit", "PixelRepresentation", "SmallestImagePixelValue"):
        if kw in ds:
            delattr(ds, kw)
    ds.BitsAllocated = 64 if double else 32
    if double:
        ds.DoubleFloatPixelData = values.tobytes()
    else:
        ds.FloatPixelData = values.tobytes()
    return ds, values


def test_float_pixel_data_with_burned_in_text_is_refused_or_blacked_out() -> None:
    for double in (False, True):
        ds, values = _float_ct(double)
        ds.BurnedInAnnotation = "YES"
        res = deidentify_file(ds, KEY, path="float.dcm")
        assert res.status == "skipped" and res.data is None, double
        assert res.reason is not None and "is YES" in res.reason
        rule = BlackoutRule(((0, 0, 30, 10),), rows=int(ds.Rows), columns=int(ds.Columns))
        res = deidentify_file(ds, KEY, DeidOptions(blackout=(rule,)), path="float.dcm")
        assert res.status == "written" and res.data is not None
        out = pydicom.dcmread(io.BytesIO(res.data))
        assert out.BurnedInAnnotation == "NO" and res.actions["blacked_out"] == 1
        keyword = "DoubleFloatPixelData" if double else "FloatPixelData"
        arr = np.frombuffer(out[keyword].value, values.dtype).reshape(values.shape)
        assert (arr[0:10, 0:30] == values.min()).all()
        mask = np.ones(values.shape, bool)
        mask[0:10, 0:30] = False
        assert np.array_equal(arr[mask], values[mask])


@pytest.mark.parametrize(
    "flag",
    ["RecognizableVisualFeatures", "SpecimenLabelInImage", "functional-group"],
)
def test_faces_slide_labels_and_per_frame_burned_in_text_are_suspect(flag: str) -> None:
    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    ds.BurnedInAnnotation = "NO"  # the top level says no text...
    assert deidentify_file(ds, KEY).status == "written"
    if flag == "functional-group":  # ...a frame's group says otherwise
        ds.SharedFunctionalGroupsSequence = Sequence(
            [_item(FrameContentSequence=Sequence([_item(BurnedInAnnotation="YES")]))]
        )
        expected = "YES in FrameContentSequence"
    else:
        setattr(ds, flag, "YES")
        expected = {
            "RecognizableVisualFeatures": "Recognizable Visual Features (0028,0302) is YES",
            "SpecimenLabelInImage": "Specimen Label In Image (0048,0010) is YES",
        }[flag]
    res = deidentify_file(ds, KEY, path="CT_small+flag.dcm")
    assert res.status == "skipped" and res.data is None
    assert res.reason is not None and expected in res.reason


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
def test_safe_private_elements_keep_numbers_and_terms_only(implicit: bool) -> None:
    ds = pydicom.dcmread(sample_file("MR_small.dcm"))
    good = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
    good.add_new(0x0C, "IS", "1000")  # b-value
    good.add_new(0x0D, "CS", "DIRECTIONAL")
    good.add_new(0x0E, "FD", [0.5, -0.5, 0.70710678])
    # the same creator reserving a second block of the group: (0019,11xx)
    ds.add_new(0x00190011, "LO", "SIEMENS MR HEADER")
    ds.add_new(0x0019110C, "LO", "Smith^John")  # a name where a b-value belongs
    ds.add_new(0x0019110D, "CS", "SMITHJ")
    ds.add_new(0x0019110E, "LO", "Jones^Ann")
    if implicit:  # as an implicit VR file holds it: VRs from the private dictionary or UN
        buf = io.BytesIO()
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
        ds.save_as(buf, enforce_file_format=True)
        source: object = buf.getvalue()
    else:
        source = ds
    res = deidentify_file(source, KEY, DeidOptions.of(Option.RETAIN_SAFE_PRIVATE))  # type: ignore[arg-type]
    assert res.status == "written" and res.data is not None
    for planted in (b"Smith", b"SMITHJ", b"Jones"):
        assert planted not in res.data, planted
    out = pydicom.dcmread(io.BytesIO(res.data))
    kept = {int(e.tag): e for e in out if e.tag.is_private}
    block = good.get_tag(0)
    assert sorted(kept) == [0x00190010, block + 0x0C, block + 0x0D, block + 0x0E]
    assert block == 0x00191000
    assert int(kept[block + 0x0C].value) == 1000
    assert res.actions["kept_private"] == 3


@pytest.mark.parametrize("name", ["examples_overlay.dcm", "emri_small_big_endian.dcm"])
def test_an_overlay_embedded_in_pixel_data_bits_is_cleared(name: str) -> None:
    """A (retired) overlay kept in Pixel Data's unused bits: the 60xx group goes, the bits too."""
    ds = pydicom.dcmread(sample_file(name))
    assert (int(ds.BitsAllocated), int(ds.BitsStored), int(ds.HighBit)) == (16, 12, 11)
    big = not ds.file_meta.TransferSyntaxUID.is_little_endian
    words = np.frombuffer(ds.PixelData, ">u2" if big else "<u2").copy()
    rows, cols = int(ds.Rows), int(ds.Columns)
    # the overlay: examples_overlay's own plane (else a box) drawn into bit 12
    plane = np.zeros(words.size, bool).reshape(-1, rows, cols)
    if 0x60003000 in ds:  # (a repeating group: its keyword is not found with `in`)
        plane[0] = ds.overlay_array(0x6000).astype(bool)
        del ds[0x60003000]
    else:
        plane[:, 2:20, 2:40] = True
        ds.add_new(0x60000010, "US", rows)
        ds.add_new(0x60000011, "US", cols)
        ds.add_new(0x60000040, "CS", "G")
        ds.add_new(0x60000050, "SS", [1, 1])
    ds.add_new(0x60000100, "US", 16)
    ds.add_new(0x60000102, "US", 12)
    assert plane.any()
    words |= plane.reshape(-1).astype(words.dtype) << 12
    ds.PixelData = words.astype(">u2" if big else "<u2").tobytes()
    ds.BurnedInAnnotation = "NO"  # the pixels proper hold no text
    res = deidentify_file(ds, KEY, path=name)
    assert res.status == "written" and res.data is not None
    out = pydicom.dcmread(io.BytesIO(res.data))
    assert not any(0x6000 <= e.tag.group <= 0x60FF for e in out)
    after = np.frombuffer(out.PixelData, "<u2")  # written little endian
    assert not (after >> 12).any()  # the overlay's bit plane is gone
    assert np.array_equal(after, words & 0x0FFF)  # every stored value as it was
    assert res.actions["overlay_bits_cleared"] == 1


def test_free_text_of_content_items_outside_content_sequence_gets_a_dummy() -> None:
    """Text Value / Unformatted Text Value were dummies in Content Sequence only."""
    ds = pydicom.dcmread(sample_file("waveform_ecg.dcm"))  # a real ECG's typed interpretation
    typed = [e.value for e in ds.iterall() if e.keyword == "UnformattedTextValue"]
    assert typed == ["RITMO SINUSALE", "ECG NORMALE"]
    protocol = _item(
        CodeValue="P1",
        CodingSchemeDesignator="99LOCAL",
        CodeMeaning="ECG rest",
        ProtocolContextSequence=Sequence(
            [_item(ValueType="TEXT", TextValue="patient Rossi Mario, bed 12")]
        ),
    )
    ds.PerformedProtocolCodeSequence = Sequence([protocol])
    res = deidentify_file(ds, KEY, path="waveform_ecg.dcm")
    assert res.status == "written" and res.data is not None
    for planted in (b"RITMO", b"NORMALE", b"Rossi"):
        assert planted not in res.data, planted
    out = pydicom.dcmread(io.BytesIO(res.data))
    texts = [e.value for e in out.iterall() if e.keyword in ("UnformattedTextValue", "TextValue")]
    assert texts == ["ANONYMIZED"] * 3  # annotations and content items kept, text replaced
    assert out.PerformedProtocolCodeSequence[0].CodeMeaning == "ECG rest"  # codes are kept


def test_cli_help_says_which_profile_options_are_not_offered() -> None:
    from click.testing import CliRunner

    from pixels.cli import main

    res = CliRunner().invoke(main, ["deid", "--help"], terminal_width=200)
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "Not offered: Clean Recognizable Visual Features." in text
    assert "clean-graphics keeps text annotations" in text
    assert "clean-structured-content keeps SR content trees" in text


def test_a_public_tag_the_dictionary_cannot_name_is_removed_whatever_its_vr() -> None:
    ds = pydicom.dcmread(sample_file("CT_small.dcm"))  # explicit VR: the file says LO
    ds.add_new(0x00209999, "LO", "Smith^Hidden")  # an even group, no keyword
    ds.ReferencedImageSequence = Sequence([_item(ReferencedSOPInstanceUID=str(ds.SOPInstanceUID))])
    ds.ReferencedImageSequence[0].add_new(0x00089999, "ST", "Smith again")
    res = deidentify_file(ds, KEY, DeidOptions.of(Option.RETAIN_FULL_DATES))
    assert res.status == "written" and res.data is not None
    assert b"Smith" not in res.data
    out = pydicom.dcmread(io.BytesIO(res.data))
    assert 0x00209999 not in out and 0x00089999 not in out.ReferencedImageSequence[0]


def _implicit(ds: pydicom.Dataset) -> bytes:
    buf = io.BytesIO()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_an_unreadable_value_is_named_by_tag_never_repeated_in_the_error() -> None:
    """The error goes to the audit and the console: it names the element, not its value."""
    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    ds.add_new(0x00189087, "OB", b"Smith^John")  # Diffusion b-Value is FD: 10 bytes do not fit
    with pytest.raises(DeidError, match=r"bad\.dcm.*\(0018,9087\)") as err:
        deidentify_file(_implicit(ds), KEY, path="bad.dcm")
    assert "Smith" not in str(err.value)


def test_kept_numbers_times_and_uids_holding_text_are_emptied() -> None:
    """A name typed into Instance Number (IS) or Acquisition Time (TM, kept with dates)."""
    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    for tag, value in ((0x00200013, "Smith^John"), (0x00080032, "Jones"), (0x00200012, "7")):
        ds.add_new(tag, "LO", value)
    ds.add_new(0x00189087, "FD", 1000.0)
    data = _implicit(ds)  # as the dictionary reads them back: IS, TM, IS
    res = deidentify_file(data, KEY, DeidOptions.of(Option.RETAIN_DATES), path="typed.dcm")
    assert res.status == "written" and res.data is not None
    assert b"Smith" not in res.data and b"Jones" not in res.data
    out = pydicom.dcmread(io.BytesIO(res.data))
    assert out.InstanceNumber is None and out.AcquisitionTime == ""
    assert out.AcquisitionNumber == 7  # a well-formed one is kept
    assert out.SliceThickness == pydicom.dcmread(sample_file("CT_small.dcm")).SliceThickness


@pytest.mark.parametrize("name", ["CT_small.dcm", "SC_rgb_2frame.dcm", "MR_small_bigendian.dcm"])
def test_bytes_hidden_after_the_last_frame_of_native_pixel_data_are_dropped(name: str) -> None:
    ds = pydicom.dcmread(sample_file(name))
    ds.BurnedInAnnotation = "NO"
    before = ds.pixel_array.copy()
    hidden = b"Smith^John 19700101 MRN 4711"
    ds.PixelData = bytes(ds.PixelData) + hidden  # no image needs them: nobody sees them
    res = deidentify_file(ds, KEY, path=name)
    assert res.status == "written" and res.data is not None
    assert b"Smith" not in res.data and b"4711" not in res.data
    assert res.actions["pixel_bytes_dropped"] == len(hidden)
    out = pydicom.dcmread(io.BytesIO(res.data))
    assert np.array_equal(out.pixel_array, before)
    assert len(out.PixelData) == before.size * int(ds.BitsAllocated) // 8


def _segment(marker: bytes, payload: bytes) -> bytes:
    return marker + (len(payload) + 2).to_bytes(2, "big") + payload


@pytest.mark.parametrize("name", ["JPEG-LL.dcm", "SC_rgb_jpeg_dcmtk.dcm", "JPEG2000.dcm"])
def test_comments_and_exif_inside_compressed_frames_are_removed(name: str) -> None:
    """A camera's Exif (owner, GPS), a JFIF thumbnail, a COM: in the frame, not the header."""
    from pydicom.encaps import encapsulate, generate_frames

    ds = pydicom.dcmread(sample_file(name))
    ds.BurnedInAnnotation = "NO"
    before = ds.pixel_array.copy()
    n = int(ds.get("NumberOfFrames", 1) or 1)
    frames = list(generate_frames(ds.PixelData, number_of_frames=n))
    text = b"Owner Smith^John GPS 45.07N 7.68E"
    if name.startswith("JPEG2000"):  # a COM marker segment after SIZ in the main header
        siz = 4 + int.from_bytes(frames[0][4:6], "big")
        frames[0] = frames[0][:siz] + _segment(b"\xff\x64", b"\x00\x01" + text) + frames[0][siz:]
    else:
        exif = _segment(b"\xff\xe1", b"Exif\x00\x00" + text)
        comment = _segment(b"\xff\xfe", b"Patient " + text)
        frames[0] = frames[0][:2] + exif + comment + frames[0][2:]
    expected = 2
    if name == "SC_rgb_jpeg_dcmtk.dcm":  # dcmtk's JFIF APP0, given a 2 x 1 RGB thumbnail
        at = frames[0].find(b"\xff\xe0")
        jfif = frames[0][at : at + 2 + int.from_bytes(frames[0][at + 2 : at + 4], "big")]
        assert jfif[4:9] == b"JFIF\x00" and len(jfif) == 18
        thumb = _segment(b"\xff\xe0", jfif[4:16] + b"\x02\x01" + b"SMITHS")
        frames[0] = frames[0][:at] + thumb + frames[0][at + len(jfif) :]
        expected = 3
    ds.PixelData = encapsulate(frames, has_bot=n > 1)
    res = deidentify_file(ds, KEY, path=name)
    assert res.status == "written" and res.data is not None
    assert b"Smith" not in res.data and b"GPS" not in res.data
    # JPEG2000.dcm's encoder wrote a COM of its own ("Kakadu-2.2"): gone too
    assert res.actions["stream_segments_removed"] == expected
    assert b"SMITHS" not in res.data
    assert b"Kakadu" not in res.data
    out = pydicom.dcmread(io.BytesIO(res.data))
    assert out.file_meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID  # not re-encoded
    assert np.array_equal(out.pixel_array, before)  # the coded image is untouched


def test_file_meta_elements_outside_the_file_meta_are_removed() -> None:
    """A writer that put Source AE Title in the data set or in an item: the file was lost."""
    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    ds.add_new(0x00020016, "AE", "STMARY_PACS")
    ds.ReferencedImageSequence = Sequence([_item(ReferencedSOPInstanceUID=str(ds.SOPInstanceUID))])
    ds.ReferencedImageSequence[0].add_new(0x00020016, "AE", "STMARY_RIS")
    res = deidentify_file(ds, KEY, path="meta-in-body.dcm")
    assert res.status == "written" and res.data is not None
    assert b"STMARY" not in res.data
    out = pydicom.dcmread(io.BytesIO(res.data))
    assert "SourceApplicationEntityTitle" not in out.file_meta
    assert out.file_meta.ImplementationVersionName == "PIXELS_DEID"


def test_a_date_time_with_a_utc_offset_and_no_time_keeps_its_offset() -> None:
    """``20200301-0500`` is one DT (a date and its offset), not a range to year 500."""
    from pixels.deid.dates import shift_dt
    from pixels.deid.file import _patient_identity

    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    ds.AcquisitionDateTime = "20200301-0500"
    ds.ContentDate = "20200301"
    res = deidentify_file(ds, KEY, DeidOptions.of(Option.RETAIN_DATES))
    out = pydicom.dcmread(io.BytesIO(res.data))  # type: ignore[arg-type]
    days = KEY.date_offset_days(_patient_identity(ds))
    shifted = out.ContentDate
    assert shifted != "20200301"
    assert out.AcquisitionDateTime == f"{shifted}-0500"
    assert shift_dt("2020-2021", -1) == "2019-2020"  # a range of years stays a range
    assert shift_dt("2020-0500", days)[4:] == "-0500"
