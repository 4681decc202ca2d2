"""The Clean Graphics Option (PS3.15 E.3.3, 113103) and the burned-in summary of ``pixels deid``.

On real files: pydicom-data's MR-SIEMENS-DICOM-WithOverlays (a Siemens graphics overlay plane
with its own Overlay Data), a Grayscale Softcopy Presentation State made by dcmtk's dcmpsmk
from pydicom's CT_small with text and graphic annotations added, pydicom-data's CR and US
(no Burned In Annotation: suspect); outputs checked with dciodvfy.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from click.testing import CliRunner
from deid_corpus import gsps_by_dcmpsmk, iod_errors, leaked
from pydicom.dataset import Dataset

from corpus import sample_file
from pixels import Catalog
from pixels.deid import BlackoutRule, DeidKey, DeidOptions, Option, deidentify_file
from pixels.deid.graphics import identity_of

KEY = DeidKey(b"g" * 32)
OVERLAYS = "MR-SIEMENS-DICOM-WithOverlays.dcm"
SIEMENS = BlackoutRule((), manufacturer="SIEMENS")  # an operator looked: nothing to clear

#: Text annotations of the presentation state: (text, kept with clean-graphics).
TEXTS = [
    ("Lesion 12 mm, margin irregular", True),
    ("compare with CompressedSamples", False),  # a part of the patient's name
    ("Pt 1CT1", False),  # the Patient ID
    ("follow-up 19.01.2004", False),  # a date
    ("prior 20040119", False),  # a date, digits only
    ("L", True),
]


def _out(data: bytes | None) -> pydicom.Dataset:
    assert data is not None
    return pydicom.dcmread(io.BytesIO(data))


def _codes(ds: pydicom.Dataset) -> list[str]:
    return [str(i.CodeValue) for i in ds.DeidentificationMethodCodeSequence]


def _gsps(path: Path) -> Path:
    """A GSPS over CT_small (dcmpsmk) with one text object per :data:`TEXTS` and a polyline."""
    ds = pydicom.dcmread(gsps_by_dcmpsmk(path))
    layer = Dataset()
    layer.GraphicLayer = "ANNOT"
    layer.GraphicLayerOrder = 1
    ds.GraphicLayerSequence = [layer]
    ann = Dataset()
    ann.ReferencedImageSequence = ds.DisplayedAreaSelectionSequence[0].ReferencedImageSequence
    ann.GraphicLayer = "ANNOT"
    texts = []
    for n, (text, _) in enumerate(TEXTS):
        item = Dataset()
        item.AnchorPointAnnotationUnits = "PIXEL"
        item.UnformattedTextValue = text
        item.AnchorPoint = [10.0, 10.0 + 12 * n]
        item.AnchorPointVisibility = "N"
        texts.append(item)
    ann.TextObjectSequence = texts
    line = Dataset()
    line.GraphicAnnotationUnits = "PIXEL"
    line.GraphicDimensions = 2
    line.NumberOfGraphicPoints = 2
    line.GraphicData = [20.0, 20.0, 60.0, 70.0]
    line.GraphicType = "POLYLINE"
    line.GraphicFilled = "N"
    ann.GraphicObjectSequence = [line]
    ds.GraphicAnnotationSequence = [ann]
    ds.save_as(path, enforce_file_format=True)
    return path


def _texts(ds: pydicom.Dataset) -> list[str]:
    items = ds.GraphicAnnotationSequence[0].TextObjectSequence
    return [str(i.UnformattedTextValue) for i in items]


def test_presentation_state_text_annotations(tmp_path: Path) -> None:
    src = _gsps(tmp_path / "gsps.dcm")
    source = pydicom.dcmread(src)
    polyline = list(source.GraphicAnnotationSequence[0].GraphicObjectSequence[0].GraphicData)

    basic = _out(deidentify_file(src.read_bytes(), KEY, path="gsps.dcm").data)
    assert _texts(basic) == ["ANONYMIZED"] * len(TEXTS)  # as before: every text a dummy
    assert "113103" not in _codes(basic)

    opts = DeidOptions.of("clean-graphics")
    res = deidentify_file(src.read_bytes(), KEY, opts, path="gsps.dcm")
    assert res.status == "written" and res.data is not None
    out = _out(res.data)
    assert _texts(out) == [text if kept else "ANONYMIZED" for text, kept in TEXTS]
    graphic = out.GraphicAnnotationSequence[0].GraphicObjectSequence[0]
    assert list(graphic.GraphicData) == polyline and graphic.GraphicType == "POLYLINE"
    assert out.GraphicAnnotationSequence[0].GraphicLayer == "ANNOT"
    ref = out.GraphicAnnotationSequence[0].ReferencedImageSequence[0].ReferencedSOPInstanceUID
    assert ref == KEY.uid(
        str(
            source.ReferencedSeriesSequence[0]
            .ReferencedImageSequence[0]["ReferencedSOPInstanceUID"]
            .value
        )
    )
    assert _codes(out) == ["113100", "113103"]
    assert "clean-graphics" in list(out.DeidentificationMethod)
    assert opts.describe() == "clean-graphics"  # the audit's options
    assert not leaked(res.data, {"CompressedSamples", "1CT1", "19.01.2004", "20040119"})
    dst, plain = tmp_path / "out.dcm", tmp_path / "basic.dcm"
    dst.write_bytes(res.data)
    plain.write_bytes(deidentify_file(src.read_bytes(), KEY, path="gsps.dcm").data or b"")
    # no error the source lacks, with or without the option (Presentation Creation Date and
    # Time, X in the table but Type 1 in a GSPS, get dummies: pixels.deid.iod)
    assert iod_errors(dst) <= iod_errors(src)
    assert iod_errors(plain) <= iod_errors(src)


def _mr() -> pydicom.Dataset:
    ds = pydicom.dcmread(sample_file(OVERLAYS))
    assert (0x60003000) in ds and ds[0x60000040].value == "G" and ds.Manufacturer == "SIEMENS"
    assert int(ds.overlay_array(0x6000).sum()) > 0
    return ds


def test_overlays_without_the_option_are_removed_as_before() -> None:
    src = _mr()
    out = _out(deidentify_file(src, KEY, path=OVERLAYS).data)
    assert not [e for e in out if e.tag.group == 0x6000]
    assert np.array_equal(out.pixel_array, src.pixel_array)


def test_graphics_overlay_kept_only_with_a_matching_rule(tmp_path: Path) -> None:
    src = _mr()
    alone = deidentify_file(src, KEY, DeidOptions.of("clean-graphics"), path=OVERLAYS)
    out = _out(alone.data)  # no operator looked at this kind of image: removed
    assert not [e for e in out if e.tag.group == 0x6000]
    assert "113103" in _codes(out) and "overlay_planes_kept" not in alone.actions

    opts = DeidOptions.of("clean-graphics", blackout=(SIEMENS,))
    res = deidentify_file(src, KEY, opts, path=OVERLAYS)
    out = _out(res.data)
    assert res.actions["overlay_planes_kept"] == 1
    assert np.array_equal(out.overlay_array(0x6000), src.overlay_array(0x6000))
    assert np.array_equal(out.pixel_array, src.pixel_array)  # pixel data unchanged
    assert out[0x60000022].value == "Siemens MedCom Object Graphics"  # names no one
    for el in (0x0010, 0x0011, 0x0040, 0x0050, 0x0100, 0x0102):
        assert out[0x6000 << 16 | el].value == src[0x6000 << 16 | el].value
    assert "113103" in _codes(out)
    src_file, dst = tmp_path / "src.dcm", tmp_path / "out.dcm"
    shutil.copyfile(sample_file(OVERLAYS), src_file)
    dst.write_bytes(res.data or b"")
    assert iod_errors(dst) <= iod_errors(src_file)


def test_region_overlay_kept_and_its_text_cleaned() -> None:
    src = _mr()
    src[0x60000040].value = "R"  # a region of interest: an area, no text
    src.add_new(0x60001500, "LO", "Sssssss marked")  # Overlay Label naming the patient
    src.add_new(0x60004000, "LT", "ROI by reader 2")  # Overlay Comments naming no one
    res = deidentify_file(src, KEY, DeidOptions.of("clean-graphics"), path=OVERLAYS)
    out = _out(res.data)
    assert np.array_equal(out.overlay_array(0x6000), src.overlay_array(0x6000))
    assert np.array_equal(out.pixel_array, src.pixel_array)
    assert 0x60001500 not in out and out[0x60004000].value == "ROI by reader 2"
    assert "Sssssss" not in (res.data or b"").decode("latin-1")


def test_blackout_rectangles_clear_the_overlay_too() -> None:
    src = _mr()
    before = src.overlay_array(0x6000).astype(bool)
    oy = int(src[0x60000050].value[0]) - 1
    rule = BlackoutRule(((0, 0, 484, 200),), manufacturer="SIEMENS")
    res = deidentify_file(src, KEY, DeidOptions.of("clean-graphics", blackout=(rule,)))
    after = _out(res.data).overlay_array(0x6000).astype(bool)
    top = 200 - oy  # overlay rows inside the rectangle
    assert before[:top].any() and not after[:top].any()
    assert np.array_equal(after[top:], before[top:])
    assert res.actions["overlay_bits_blacked_out"] == int(before[:top].sum())


def test_identity_words_patterns_and_options() -> None:
    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    ident = identity_of(ds, frozenset())
    assert ident.holds("by compressedsamples")  # a name part, any case
    assert not ident.holds("CompressedSamplesX")  # whole words only
    assert ident.holds(["a", "1CT1"])  # Patient ID, in a multi-value
    assert ident.holds("seen 3/1/24") and ident.holds("seen 1 Mar 2024")
    assert ident.holds("MRN 0012345") and not ident.holds("12.5 mm, 45 HU")
    inst = str(ds.InstitutionName)
    assert identity_of(ds, frozenset()).holds(inst)
    kept = identity_of(ds, frozenset({Option.RETAIN_INSTITUTION_IDENTITY}))
    assert not kept.holds(inst)  # kept in the header with the option: not an identity


def _catalog(tmp_path: Path, names: dict[str, str]) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for target, name in names.items():
        shutil.copyfile(sample_file(name), src / target)
    Catalog(tmp_path / "cat").catalog(src, workers=0)
    return tmp_path / "cat"


def test_cli_burned_in_summary_says_why_with_counts_and_an_example(tmp_path: Path) -> None:
    from pixels.cli import main

    table = _catalog(
        tmp_path,
        {"cr-a.dcm": "RG1_UNCR.dcm", "cr-b.dcm": "RG1_UNCR.dcm", "us.dcm": "US1_UNCR.dcm"},
    )
    res = CliRunner().invoke(
        main,
        [
            *("deid", "--table", str(table), "--workers", "0", "-q", "--no-catalog"),
            *("--out", str(tmp_path / "out"), "--key-file", str(tmp_path / "k" / "a.key")),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "0 written, 3 skipped" in res.output
    lines = [ln.strip() for ln in res.output.splitlines() if ln.strip().startswith("skipped")]
    reason = "possible burned-in text: modality {} commonly has burned-in text and Burned In "
    reason += "Annotation is not NO"
    assert lines[0].startswith(f"skipped 2: {reason.format('CR')} (e.g. ")
    assert lines[0].endswith(("cr-a.dcm)", "cr-b.dcm)"))
    assert lines[1] == f"skipped 1: {reason.format('US')} (e.g. {tmp_path / 'src' / 'us.dcm'})"
    assert len(lines) == 2


def test_cli_clean_graphics(tmp_path: Path) -> None:
    from pixels.cli import main

    table = _catalog(tmp_path, {"mr.dcm": OVERLAYS})
    rules = tmp_path / "rules.json"
    rules.write_text('[{"manufacturer": "SIEMENS", "rectangles": []}]')
    res = CliRunner().invoke(
        main,
        [
            *("deid", "--table", str(table), "--workers", "0", "-q", "--no-catalog"),
            *("--out", str(tmp_path / "out"), "--key-file", str(tmp_path / "k" / "a.key")),
            *("--option", "clean-graphics", "--blackout", str(rules)),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "1 written" in res.output
    (written,) = (tmp_path / "out").rglob("*.dcm")
    out = pydicom.dcmread(written)
    assert "113103" in _codes(out) and (0x60003000) in out
    audit = (tmp_path / "k" / "a.key.audit.csv").read_text()
    assert "clean-graphics" in audit and "overlay_planes_kept" in audit
    bad = CliRunner().invoke(main, ["deid", "--table", str(table), "--out", "x", "--option", "x"])
    assert bad.exit_code == 2 and "clean-graphics" in bad.output


@pytest.mark.parametrize("name", ["CT_small.dcm", OVERLAYS])
def test_clean_graphics_changes_nothing_else(name: str) -> None:
    """Outside annotations and overlays the option changes nothing: same bytes elsewhere."""
    src = pydicom.dcmread(sample_file(name))
    a = _out(deidentify_file(src, KEY, path=name).data)
    b = _out(deidentify_file(src, KEY, DeidOptions.of("clean-graphics"), path=name).data)
    for ds in (a, b):
        del ds.DeidentificationMethod
        del ds.DeidentificationMethodCodeSequence
    assert a == b


def test_overlay_with_an_unreadable_size_or_origin() -> None:
    rule = BlackoutRule(((0, 0, 10, 10),), manufacturer="SIEMENS")
    opts = DeidOptions.of("clean-graphics", blackout=(rule,))
    src = _mr()
    src[0x60000050].value = [1]  # Overlay Origin with one value: where is the plane?
    res = deidentify_file(src, KEY, opts, path=OVERLAYS)
    out = _out(res.data)  # kept, cleared whole: the rectangle cannot be placed
    assert not out.overlay_array(0x6000).any()
    assert res.actions["overlay_bits_blacked_out"] == int(src.overlay_array(0x6000).sum())
    src = _mr()
    del src[0x60000011]  # no Overlay Columns: the bitmap cannot be read
    out = _out(deidentify_file(src, KEY, opts, path=OVERLAYS).data)
    assert not [e for e in out if e.tag.group == 0x6000]
