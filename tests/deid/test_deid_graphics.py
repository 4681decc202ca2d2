"""The Clean Graphics Option (PS3.15 E.3.3, 113103) and the burned-in summary of ``pixels deid``.

On real files: pydicom-data's MR-SIEMENS-DICOM-WithOverlays (a Siemens graphics overlay plane
with its own Overlay Data), a Grayscale Softcopy Presentation State made by dcmtk's dcmpsmk
from pydicom's CT_small with text and graphic annotations added, pydicom-data's CR and US
(no Burned In Annotation: suspect); outputs checked with dciodvfy.
"""

from __future__ import annotations

import contextlib
import io
import random
import re
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
from pixels.deid.graphics import Identity, identity_of

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


def _mangled(how: str) -> pydicom.Dataset:
    """The Siemens MR with its overlay plane made to disagree with its own description."""
    src = _mr()
    data = bytes(src[0x60003000].value)
    if how == "rows doubled":
        src[0x60000010].value = 2 * src[0x60000010].value
    elif how == "three frames":
        src[0x60000015].value = 3
    elif how == "one byte short":
        src[0x60003000].value = data[:-1]
    elif how == "empty":
        src[0x60003000].value = b""
    elif how == "huge size":
        src[0x60000010].value = src[0x60000011].value = 65535
    elif how == "16 bits allocated":
        src[0x60000100].value = 16
    elif how == "bit position 3":
        src[0x60000102].value = 3
    return src


@pytest.mark.parametrize(
    ("how", "named"),
    [
        ("rows doubled", "(6000,3000) Overlay Data holds 29282 bytes"),
        ("three frames", "(484 x 484 x 3) need 87846"),
        ("one byte short", "(6000,3000) Overlay Data holds 29281 bytes"),
        ("empty", "(6000,3000) Overlay Data holds 0 bytes"),
        ("huge size", "(65535 x 65535 x 1) need 536854529"),
        ("16 bits allocated", "(6000,0100) Overlay Bits Allocated is '16', not 1"),
        ("bit position 3", "(6000,0102) Overlay Bit Position is '3', not 0"),
    ],
)
def test_an_overlay_whose_data_disagrees_with_its_description_is_removed_and_named(
    how: str, named: str
) -> None:
    """Overlay Data shorter than Overlay Rows x Columns x Frames (or laid out other than one
    bit per pixel) was kept with a matching rule, its rectangles cleared in the bits it has,
    or in the wrong bits, or not at all (the bits past the end were left as they were; an
    empty one raised a TypeError naming nothing): the plane is now removed as without the
    option, and the result's reason names the element; the rest of the file is written."""
    rule = BlackoutRule(((0, 0, 484, 484),), manufacturer="SIEMENS")
    src = _mangled(how)
    res = deidentify_file(src, KEY, DeidOptions.of("clean-graphics", blackout=(rule,)))
    assert res.status == "written"
    assert res.reason is not None and named in res.reason, res.reason
    assert res.reason.startswith("overlay plane 6000 removed: ")
    out = _out(res.data)
    assert not [e for e in out if e.tag.group == 0x6000]
    assert res.actions["overlay_planes_removed"] == 1 and "overlay_planes_kept" not in res.actions
    assert out.Rows == src.Rows and out.PixelData is not None and "113103" in _codes(out)


def test_overlay_data_past_the_plane_is_cut() -> None:
    """Bytes after the plane's last bit (and unused bits of its last byte) are no overlay
    pixel: no viewer shows them and no rectangle cleared them. They were written as they
    came; now they are cut, the plane itself unchanged."""
    src = _mr()
    src[0x60003000].value = bytes(src[0x60003000].value) + b"\xff" * 1001
    res = deidentify_file(src, KEY, DeidOptions.of("clean-graphics", blackout=(SIEMENS,)))
    out = _out(res.data)
    assert len(out[0x60003000].value) == 484 * 484 // 8
    assert np.array_equal(out.overlay_array(0x6000), _mr().overlay_array(0x6000))
    assert res.actions["overlay_bytes_dropped"] == 1001 and res.reason is None

    src = _mr()  # 483 x 483: 29161.125 bytes, the last byte's 7 spare bits set
    src[0x60000010].value = src[0x60000011].value = 483
    src[0x60003000].value = b"\xff" * 29162
    res = deidentify_file(src, KEY, DeidOptions.of("clean-graphics", blackout=(SIEMENS,)))
    data = bytes(_out(res.data)[0x60003000].value)
    assert data == b"\xff" * 29161 + b"\x01" and "overlay_bytes_dropped" not in res.actions


def _multi_frame(rows: int, cols: int, frames: int) -> tuple[pydicom.Dataset, np.ndarray]:
    """The Siemens MR with a random overlay of ``frames`` frames (its bits, frame by frame)."""
    src = _mr()
    bits = np.random.default_rng(7).integers(0, 2, rows * cols * frames, dtype=np.uint8)
    src[0x60000010].value, src[0x60000011].value = rows, cols
    src[0x60000015].value = frames
    src[0x60000050].value = [3, 2]  # row 3, column 2
    data = np.packbits(bits, bitorder="little").tobytes()
    src[0x60003000].value = data + b"\x00" * (len(data) & 1)
    return src, bits.reshape(frames, rows, cols)


def test_a_multi_frame_overlay_is_cleared_in_every_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plane of 3 frames of 37 x 29 bits (frames and rows not on byte boundaries) cleared
    a band of two rows at a time is cleared where a whole-array reference clears it."""
    from pixels.deid import graphics

    monkeypatch.setattr(graphics, "CHUNK_BITS", 64)
    src, bits = _multi_frame(37, 29, 3)
    rule = BlackoutRule(((5, 10, 10, 20), (0, 36, 100, 100)), manufacturer="SIEMENS")
    res = deidentify_file(src, KEY, DeidOptions.of("clean-graphics", blackout=(rule,)))
    want = bits.copy()
    want[:, 10 - 2 : 30 - 2, 5 - 1 : 15 - 1] = 0  # origin (3, 2): overlay row 1 is image row 3
    want[:, 36 - 2 :, :] = 0
    got = np.unpackbits(
        np.frombuffer(_out(res.data)[0x60003000].value, np.uint8), bitorder="little"
    )[: bits.size]
    assert np.array_equal(got.reshape(bits.shape), want)
    assert res.actions["overlay_bits_blacked_out"] == int(bits.sum() - want.sum()) > 0


def test_a_huge_overlay_is_blacked_out_in_bounded_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bitmap was unpacked whole, a byte per bit, then copied twice: 16 times the
    overlay's bytes or more at the peak (a 1 GB overlay, 16 GB). It is now unpacked a band
    at a time: the peak is a copy of its bytes and a band."""
    import tracemalloc

    from pixels.deid import graphics
    from pixels.deid.graphics import black_out_overlays

    monkeypatch.setattr(graphics, "CHUNK_BITS", 1 << 20)
    src, bits = _multi_frame(2048, 2048, 4)
    del bits
    size = len(src[0x60003000].value)
    tracemalloc.start()
    try:
        black_out_overlays(src, [0x6000], [(0, 0, 1024, 4096)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * size, (peak, size)


def test_annotation_text_under_a_binary_vr_is_removed(tmp_path: Path) -> None:
    """An explicit VR file may give a text attribute of an annotation a binary VR (Bounding
    Box Annotation Units, CS, as OB holding the patient's name): its bytes were kept as
    they came, unread. Bytes where the dictionary says text are now removed; the text
    object and the other annotations stay."""
    ds = pydicom.dcmread(_gsps(tmp_path / "gsps.dcm"))
    item = ds.GraphicAnnotationSequence[0].TextObjectSequence[0]
    item.add_new(0x00700003, "OB", b"CompressedSamples^CT1 ")
    ds.save_as(tmp_path / "ob.dcm", enforce_file_format=True)
    res = deidentify_file((tmp_path / "ob.dcm").read_bytes(), KEY, DeidOptions.of("clean-graphics"))
    out = _out(res.data)
    assert 0x00700003 not in out.GraphicAnnotationSequence[0].TextObjectSequence[0]
    assert _texts(out) == [text if kept else "ANONYMIZED" for text, kept in TEXTS]
    assert not leaked(res.data or b"", {"CompressedSamples"})


@pytest.mark.parametrize(
    ("charset_file", "texts"),
    [
        ("chrFren.dcm", ["seen BucJérôme", "for JérômeBuc", "Buc"]),  # ISO_IR 100
        ("chrX1.dcm", ["WangXiaoDong", "王小東 ok"]),  # ISO_IR 192
        ("chrH31.dcm", ["YamadaTarou", "山田太郎 follow-up"]),  # ISO 2022 IR 87
    ],
)
def test_a_name_run_together_in_an_annotation_is_an_identity(
    charset_file: str, texts: list[str]
) -> None:
    """pydicom's character set files' names written in an annotation without the caret
    (``SmithJohn``, as some devices print them) were kept: whole-word matching saw a word
    that is no name part. Family and given name run together are now identities too."""
    from pydicom.data import get_charset_files

    (path,) = get_charset_files(charset_file)
    ident = identity_of(pydicom.dcmread(path), frozenset())
    assert [t for t in texts if not ident.holds(t)] == []
    assert not ident.holds("plain text 12 mm")


def _whole_regex(words: frozenset[str]) -> re.Pattern[str]:
    """The matcher :class:`Identity` had: one regex alternating every word (the reference)."""
    from pixels.deid.graphics import _PATTERNS

    alts = [rf"(?<![0-9A-Z]){re.escape(w)}(?![0-9A-Z])" for w in sorted(words, key=len)[::-1]]
    return re.compile("|".join([*alts, *_PATTERNS]))


def test_identity_matching_finds_what_one_whole_regex_finds() -> None:
    """Words are looked up by their first run of letters and digits, not tried one by one
    at each position (minutes for a header of 5000 names and a 1 MB annotation:
    bench_deid_identity.py): on texts mixing the names of pydicom's character set files,
    their parts, accents, ideographs and punctuation, it says what the whole regex said."""
    from pydicom.data import get_charset_files

    words = set()
    for path in [*get_charset_files("*"), str(sample_file("CT_small.dcm"))]:
        with contextlib.suppress(Exception):
            words |= identity_of(pydicom.dcmread(path), frozenset()).words
    words |= {"A", "AB", "ABC", "O'BRIEN", "ST. MARY", "-X-", " Y", "Z "}
    ident, reference = Identity(frozenset(words)), _whole_regex(frozenset(words))
    choices, noise = sorted(words), [*"abcxyzAZ09 .-^'/,", "é", "山", "Ä"]
    rng = random.Random(5)
    found = 0
    for _ in range(3000):
        text = ""
        for _ in range(rng.randint(1, 5)):
            word = rng.choice(choices)
            text += (word.lower() if rng.random() < 0.5 else word) + "".join(
                rng.choice(noise) for _ in range(rng.randint(0, 3))
            )
        want = reference.search(" ".join(text.upper().split())) is not None
        assert ident.holds(text) == want, text
        found += want
    assert 300 < found < 2700  # both answers met often


def test_annotations_and_content_nested_in_each_other_keep_the_stricter_rule(
    tmp_path: Path,
) -> None:
    """A presentation state with a Content Sequence (``D``: its text all dummies) inside an
    annotation, and an annotation inside a Content Sequence item: with clean-graphics both
    kept "seen by Dr Jones" / "call Dr Jones 555" (Jones is in no header: the annotation
    rule, which keeps text naming no one, won over the dummy sequence's). Now a plain-D
    sequence's text is a dummy wherever it is; the annotations' own text is as before."""
    ds = pydicom.dcmread(_gsps(tmp_path / "gsps.dcm"))
    seen = Dataset()
    seen.ValueType, seen.TextValue = "TEXT", "seen by Dr Jones"
    ds.GraphicAnnotationSequence[0].ContentSequence = [seen]
    text = Dataset()
    text.UnformattedTextValue = "call Dr Jones 555"
    text.AnchorPoint, text.AnchorPointAnnotationUnits = [1.0, 1.0], "PIXEL"
    text.AnchorPointVisibility = "N"
    inner = Dataset()
    inner.GraphicLayer, inner.TextObjectSequence = "ANNOT", [text]
    container = Dataset()
    container.ValueType, container.GraphicAnnotationSequence = "CONTAINER", [inner]
    ds.ContentSequence = [container]
    ds.save_as(tmp_path / "nested.dcm", enforce_file_format=True)
    data = (tmp_path / "nested.dcm").read_bytes()
    res = deidentify_file(data, KEY, DeidOptions.of("clean-graphics"))
    out = _out(res.data)
    assert not leaked(res.data or b"", {"Jones"})
    assert out.GraphicAnnotationSequence[0].ContentSequence[0].TextValue == "ANONYMIZED"
    nested = out.ContentSequence[0].GraphicAnnotationSequence[0].TextObjectSequence[0]
    assert nested.UnformattedTextValue == "ANONYMIZED"
    assert _texts(out) == [text if kept else "ANONYMIZED" for text, kept in TEXTS]
