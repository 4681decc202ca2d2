"""De-identified objects stay valid IODs (:mod:`pixels.deid.iod`): dciodvfy finds no error
in an output that its source lacks.

On real files: a Grayscale Softcopy Presentation State made by dcmtk's dcmpsmk from pydicom's
CT_small, and grayscale, pseudo-color, color (over SC_rgb) and advanced blending
presentation states made by highdicom (Presentation Creation Date and Time: ``X`` in Table
E.1-1, Type 1 in every presentation state); pydicom-data's JPGLosslessP14SV1_1s_1f_8b (an
US image with Referenced Study and Referenced Performed Procedure Step Sequences: ``X/Z``,
Type 3: removed, not emptied); a KOS made by highdicom (Referenced Performed Procedure Step
Sequence: Type 2 there, kept empty); pydicom-data's OBXXXX1A_expb (big endian, 16-bit
palette LUT data: its words swapped when written little endian).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from deid_corpus import gsps_by_dcmpsmk, iod_errors, kos_of_ct, presentation_state

from corpus import sample_file
from pixels.deid import DeidKey, DeidOptions, deidentify_file
from pixels.deid.iod import REQUIREMENTS, action_for, requirement

KEY = DeidKey(b"i" * 32)
GSPS = "1.2.840.10008.5.1.4.1.1.11.1"
CT = "1.2.840.10008.5.1.4.1.1.2"


def _deid(src: Path, dst: Path, opts: DeidOptions | None = None) -> pydicom.Dataset:
    res = deidentify_file(src.read_bytes(), KEY, opts, path=src.name)
    assert res.status == "written" and res.data is not None, res.reason
    dst.write_bytes(res.data)
    return pydicom.dcmread(io.BytesIO(res.data))


@pytest.mark.parametrize("options", [(), ("clean-graphics",)])
def test_dcmpsmk_gsps_stays_valid_with_a_dummy_creation_date(
    tmp_path: Path, options: tuple[str, ...]
) -> None:
    src = gsps_by_dcmpsmk(tmp_path / "gsps.dcm")
    source = pydicom.dcmread(src)
    assert source.SOPClassUID == GSPS and source.PresentationCreationDate
    out = _deid(src, tmp_path / "out.dcm", DeidOptions.of(*options))
    assert iod_errors(tmp_path / "out.dcm") <= iod_errors(src)
    assert out.PresentationCreationDate == "19000101" != source.PresentationCreationDate
    assert out.PresentationCreationTime == "000000" != source.PresentationCreationTime
    for kw in ("StudyDate", "SeriesDate", "ContentDate"):  # the table's own rows, as before
        assert kw not in out or str(out[kw].value) != str(source[kw].value)


def test_gsps_creation_date_shifted_with_retain_dates_and_kept_with_full_dates(
    tmp_path: Path,
) -> None:
    src = gsps_by_dcmpsmk(tmp_path / "gsps.dcm")
    source = pydicom.dcmread(src)
    shifted = _deid(src, tmp_path / "shifted.dcm", DeidOptions.of("retain-dates"))
    assert shifted.PresentationCreationDate not in ("", "19000101", source.PresentationCreationDate)
    assert iod_errors(tmp_path / "shifted.dcm") <= iod_errors(src)
    full = _deid(src, tmp_path / "full.dcm", DeidOptions.of("retain-full-dates"))
    assert full.PresentationCreationDate == source.PresentationCreationDate  # the user's choice


@pytest.mark.parametrize("kind", ["gsps", "pseudo-color", "color", "advanced-blending"])
def test_highdicom_presentation_states_stay_valid(tmp_path: Path, kind: str) -> None:
    src = presentation_state(kind, tmp_path / f"{kind}.dcm")
    source = pydicom.dcmread(src)
    for options in ((), ("clean-graphics",)):
        out = _deid(src, tmp_path / "out.dcm", DeidOptions.of(*options))
        assert iod_errors(tmp_path / "out.dcm") <= iod_errors(src), (kind, options)
        assert out.PresentationCreationDate != source.PresentationCreationDate


def test_type_3_reference_sequences_are_removed_not_emptied(tmp_path: Path) -> None:
    ds = pydicom.dcmread(sample_file("JPGLosslessP14SV1_1s_1f_8b.dcm"))
    assert ds.ReferencedStudySequence and ds.ReferencedPerformedProcedureStepSequence
    ds.BurnedInAnnotation = "NO"  # an US image: suspect of burned-in text unless it says NO
    src = tmp_path / "us.dcm"
    ds.save_as(src, enforce_file_format=True)
    out = _deid(src, tmp_path / "out.dcm")
    assert iod_errors(tmp_path / "out.dcm") <= iod_errors(src)
    assert "ReferencedStudySequence" not in out
    assert "ReferencedPerformedProcedureStepSequence" not in out
    kept = _deid(src, tmp_path / "uids.dcm", DeidOptions.of("retain-uids"))  # U:K: kept
    assert len(kept.ReferencedStudySequence) == 1


def test_kos_keeps_its_type_2_procedure_step_sequence_empty(tmp_path: Path) -> None:
    src = kos_of_ct(tmp_path / "kos.dcm")
    assert "ReferencedPerformedProcedureStepSequence" in pydicom.dcmread(src)
    out = _deid(src, tmp_path / "out.dcm")
    assert iod_errors(tmp_path / "out.dcm") <= iod_errors(src)
    assert len(out.ReferencedPerformedProcedureStepSequence) == 0


def test_requirements_table() -> None:
    assert requirement(GSPS, 0x00700083).module == "PresentationStateIdentification"
    assert requirement(CT, 0x00700082) is None  # Presentation Creation Date: not a CT's
    assert action_for(GSPS, 0x00700082, "X", False) == "D"
    assert action_for(GSPS, 0x00700082, "C", False) == "C"  # retain-dates: shifted as before
    assert action_for(CT, 0x00081110, "Z", True) == "X"  # Type 3 sequence in every IOD
    kos = "1.2.840.10008.5.1.4.1.1.88.59"
    assert action_for(kos, 0x00081111, "Z", True) == "Z"  # Type 2 in KOS: its own row wins
    assert action_for(CT, 0x00081111, "Z", True) == "X"
    display = "1.2.840.10008.5.1.4.1.1.131"  # Basic Structured Display: dciodvfy's Type 1
    assert action_for(display, 0x00700083, "X", False) == "D"
    assert all(r.source and r.module and r.type in "123" for r in REQUIREMENTS)


def test_big_endian_palette_lut_words_are_swapped(tmp_path: Path) -> None:
    """pydicom-data's OBXXXX1A_expb (US, palette color, Explicit VR Big Endian): its 16-bit
    palette LUT data (OW) keeps its values when written little endian."""
    from pixels.deid import BlackoutRule

    name = "OBXXXX1A_expb.dcm"
    src = sample_file(name)
    source = pydicom.dcmread(src)
    assert source.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRBigEndian
    looked = BlackoutRule((), rows=int(source.Rows), columns=int(source.Columns))
    res = deidentify_file(src.read_bytes(), KEY, DeidOptions(blackout=(looked,)), path=name)
    assert res.status == "written" and res.data is not None, res.reason
    (tmp_path / "out.dcm").write_bytes(res.data)
    out = pydicom.dcmread(io.BytesIO(res.data))
    assert out.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    for color in ("Red", "Green", "Blue"):
        kw = f"{color}PaletteColorLookupTableData"
        want = np.frombuffer(source[kw].value, ">u2")
        assert np.array_equal(np.frombuffer(out[kw].value, "<u2"), want), kw
        assert want.max() > 0xFF  # 16-bit entries: swapped bytes would show
    assert res.actions["words_swapped"] == 3
    assert np.array_equal(out.pixel_array, source.pixel_array)
    assert iod_errors(tmp_path / "out.dcm") <= iod_errors(src)


def test_big_endian_lut_data_of_odd_length_keeps_its_last_byte_high() -> None:
    """OBXXXX1A_expb with its red LUT data one byte short (511 bytes: an odd-length OW):
    the last, partial word's byte is its most significant one; it was left in place and
    became the least significant byte of the little endian word. It is now padded and
    swapped like the other words; the other LUTs and the pixels are as before."""
    from pixels.deid import BlackoutRule

    source = pydicom.dcmread(sample_file("OBXXXX1A_expb.dcm"))
    red = bytes(source.RedPaletteColorLookupTableData)[:-1]
    source.RedPaletteColorLookupTableData = red
    buf = io.BytesIO()
    source.save_as(buf)  # pydicom pads it to 512 bytes: cut the pad again, in the file
    head = b"\x00\x28\x12\x01OW\x00\x00" + (512).to_bytes(4, "big")
    at = buf.getvalue().index(head)
    start = at + len(head)
    data = buf.getvalue()
    data = data[:at] + head[:-4] + (511).to_bytes(4, "big") + red + data[start + 512 :]
    assert pydicom.dcmread(io.BytesIO(data)).RedPaletteColorLookupTableData == red
    buf = io.BytesIO(data)
    looked = BlackoutRule((), rows=int(source.Rows), columns=int(source.Columns))
    res = deidentify_file(buf.getvalue(), KEY, DeidOptions(blackout=(looked,)), path="odd")
    out = pydicom.dcmread(io.BytesIO(res.data or b""))
    got = np.frombuffer(out.RedPaletteColorLookupTableData, "<u2")
    want = np.frombuffer(red + b"\x00", ">u2")
    assert np.array_equal(got, want) and got[-1] == red[-1] << 8
    green = np.frombuffer(out.GreenPaletteColorLookupTableData, "<u2")
    assert np.array_equal(green, np.frombuffer(source.GreenPaletteColorLookupTableData, ">u2"))
    assert np.array_equal(out.pixel_array, source.pixel_array)
