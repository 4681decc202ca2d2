"""Differential tests, driven by hypothesis: read_header and encode_json against pydicom.

Seeds are pydicom's own test files (every one pydicom reads), mutated:

* at the element level (:func:`test_encoder_matches_pydicom`): values of real
  elements replaced by generated ones of the element's VR (text in the file's
  character set, person names with empty component groups, numbers, binary
  words), elements removed, private elements and sequences added, then the
  dataset written by pydicom in a generated transfer syntax (uncompressed
  seeds; compressed ones keep theirs); read_header must
  give pydicom's ``to_json_dict`` (brought to PS3.18 by :mod:`jsonref`) and
  pydicom must read the JSON back;
* at the byte level (:func:`test_fast_parser_matches_pydicom_path`): value
  bytes overwritten, lengths and VRs changed, bytes flipped, the file cut
  (element-wise in explicit VR little endian seeds, byte-wise in the others); the fast
  parser and the pydicom path of read_header must give the same Header or the
  same error, and a header read without error must be pydicom's JSON.

Where pydicom's own ``to_json_dict`` raises on a mutated file, the example is
not compared (the documented deviations are tested in test_meta).
"""

from __future__ import annotations

import functools
import io
import json
import shutil
import struct
import subprocess
import tempfile
import warnings
import zlib
from pathlib import Path
from typing import Any

import pydicom
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from jsonref import normalise, reference_json, without_pixels
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filereader import _read_file_meta_info, data_element_generator, read_preamble
from pydicom.sequence import Sequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from corpus import pydicom_folder
from pixels.dicom.meta import Header, read_header
from pixels.errors import DicomReadError

pytestmark = pytest.mark.filterwarnings("ignore")

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)


def _seeds() -> list[tuple[Path, str]]:
    out = []
    for p in sorted(pydicom_folder().iterdir()):
        if not p.is_file() or p.stat().st_size > 2_000_000:
            continue
        data = p.read_bytes()
        if data[128:132] != b"DICM":
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(io.BytesIO(data))
                ds.to_json_dict(bulk_data_element_handler=lambda e: "x")
                ts = str(ds.file_meta.TransferSyntaxUID)
        except Exception:
            continue
        out.append((p, ts))
    return out


SEEDS = _seeds()
UNCOMPRESSED = [
    p
    for p, ts in SEEDS
    if ts in (ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian)
]
EXPLICIT_LE = [
    p
    for p, ts in SEEDS
    if ts not in (ImplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian)
]


def test_enough_seeds() -> None:
    assert len(SEEDS) >= 50 and len(UNCOMPRESSED) >= 15 and len(EXPLICIT_LE) >= 30


# -- values of a VR -----------------------------------------------------------------------------

_TEXT = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\\"), max_size=12
)
_ASCII = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters="\\"))
_NAME_GROUP = st.sampled_from(["", "Doe^John", "山田^太郎", "やまだ^たろう", "A^B^C^D^E", "Ä^ö"])


@st.composite
def _person_name(draw: st.DrawFn) -> str:
    groups = draw(st.lists(_NAME_GROUP, min_size=1, max_size=3))
    return "=".join(groups)


def _value(vr: str, charset_utf8: bool) -> st.SearchStrategy[Any]:
    """Values pydicom writes for `vr` (lists for multi-valued VRs)."""
    text = _TEXT if charset_utf8 else _ASCII
    words = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8, "OB": 1, "UN": 1}
    if vr in words:
        n = words[vr]
        return (
            st.integers(0, 40)
            .map(lambda k: k * n)
            .flatmap(lambda size: st.binary(min_size=size, max_size=size))
        )
    if vr in ("US", "UL", "SS", "SL", "UV", "SV"):
        bits = {"US": 16, "SS": 16, "UL": 32, "SL": 32, "UV": 64, "SV": 64}[vr]
        lo, hi = (
            (0, 2**bits - 1) if vr.startswith("U") else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        )
        return st.lists(st.integers(lo, hi), min_size=1, max_size=4)
    if vr in ("FL", "FD"):
        width = 32 if vr == "FL" else 64
        return st.lists(
            st.floats(allow_nan=False, allow_infinity=False, width=width), min_size=1, max_size=4
        )
    if vr == "IS":
        return st.lists(st.integers(-(2**31), 2**31 - 1).map(str), min_size=1, max_size=4)
    if vr == "DS":
        return st.lists(
            st.floats(-1e6, 1e6, allow_nan=False).map(lambda f: f"{f:.6g}"), min_size=1, max_size=4
        )
    if vr == "PN":
        return st.lists(_person_name(), min_size=1, max_size=3)
    if vr in ("DA",):
        return st.sampled_from(["20240131", "19991231", ""])
    if vr in ("TM",):
        return st.sampled_from(["101530.25", "1015", "23", ""])
    if vr == "UI":
        return st.lists(st.from_regex(r"1\.2\.[1-9][0-9]{0,8}", fullmatch=True), max_size=2)
    if vr in ("CS", "AE", "AS"):
        return st.lists(st.from_regex(r"[A-Z0-9_ ]{0,10}", fullmatch=True), max_size=3)
    if vr in ("SH", "LO", "UC"):
        return st.lists(text, max_size=3)
    if vr in ("ST", "LT", "UT"):
        return text
    return st.nothing()


_SYNTAXES = st.sampled_from(
    [
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
        ExplicitVRBigEndian,
        DeflatedExplicitVRLittleEndian,
    ]
)


@st.composite
def _mutated_dataset(draw: st.DrawFn) -> bytes:
    """A seed with element-level mutations, written by pydicom in a generated syntax."""
    path, seed_syntax = draw(st.sampled_from(SEEDS))
    ds = pydicom.dcmread(path)
    utf8 = draw(st.booleans())
    if utf8:
        ds.SpecificCharacterSet = "ISO_IR 192"
    tags = [e.tag for e in ds if e.tag != 0x00080005 and e.tag.element and e.tag.group != 0x7FE0]
    tags = [t for t in tags if ds[t].VR != "SQ"]
    chosen = draw(st.lists(st.sampled_from(tags), max_size=6, unique=True)) if tags else []
    for tag in chosen:
        elem = ds[tag]
        if draw(st.integers(0, 4)) == 0:
            del ds[tag]
            continue
        vr = str(elem.VR)
        strategy = _value(vr, utf8)
        if strategy.is_empty:
            continue
        ds[tag] = DataElement(tag, vr, draw(strategy))
    ds.add_new(0x00091010, "LO", "PIXELS TEST")
    for i, vr in enumerate(
        draw(st.lists(st.sampled_from(["OW", "OB", "OF", "US", "FD", "LO", "PN"]), max_size=4))
    ):
        ds.add_new(0x00091000 | (0x10 + i), vr, draw(_value(vr, utf8)))
    if draw(st.booleans()):
        item = Dataset()
        item.PatientName = draw(_person_name())
        item.add_new(0x00091010, "LO", "PIXELS TEST")
        item.add_new(0x00091011, "OW", draw(_value("OW", utf8)))
        ds.add_new(0x00091020, "SQ", Sequence([item, Dataset()]))
    # uncompressed seeds in any of the four syntaxes; the others in their own
    syntax = draw(_SYNTAXES) if path in UNCOMPRESSED else seed_syntax
    ds.file_meta.TransferSyntaxUID = syntax
    out = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pydicom.dcmwrite(out, ds, enforce_file_format=True)
    except Exception:
        assume(False)
    return out.getvalue()


def _reference(data: bytes) -> dict[str, Any] | None:
    """pydicom's JSON of the whole file under PS3.18; None when pydicom cannot give one."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
            head = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True)
            if _short_value(head):
                return None
            # pydicom drops the whole dataset when encapsulated pixel data is cut short
            return reference_json(head if set(head.keys()) - set(ds.keys()) else ds)
    except Exception:
        return None


def _short_value(ds: Dataset) -> bool:
    """Whether pydicom read some value shorter than its length (silently: a corrupt file).

    pydicom can write such files itself: the raw bytes of a sequence it never
    parsed are written as read, whatever the new transfer syntax.
    """
    for tag, elem in list(ds._dict.items()):
        if isinstance(elem, RawDataElement):
            if isinstance(elem.value, bytes) and elem.length not in (len(elem.value), 0xFFFFFFFF):
                return True
            try:
                elem = ds[tag]
            except Exception:
                return True
        if elem.VR == "SQ" and any(_short_value(item) for item in elem.value):
            return True
    return False


def _both(data: bytes) -> tuple[Header | str, Header | str]:
    out: list[Header | str] = []
    for fast in (True, False):
        try:
            out.append(read_header(io.BytesIO(data), path="m.dcm", fast=fast))
        except DicomReadError as e:
            out.append(str(e))
    return out[0], out[1]


@SETTINGS
@given(_mutated_dataset())
def test_encoder_matches_pydicom(data: bytes) -> None:
    theirs = _reference(data)
    assume(theirs is not None)  # (pydicom cannot encode it, or read a value short)
    fast, slow = _both(data)
    assert fast == slow
    assert isinstance(fast, Header), fast
    mine = json.loads(fast.meta)
    assert normalise(without_pixels(mine)) == normalise(theirs)
    Dataset.from_json(fast.meta, bulk_data_uri_handler=lambda *a: None)


# -- byte-level mutations -----------------------------------------------------------------------


def _transcoded() -> list[Path]:
    """dcmtk's implicit VR and deflated copies of real files (none without dcmconv)."""
    if shutil.which("dcmconv") is None:  # pragma: no cover - dcmtk is installed in CI
        return []
    folder = Path(tempfile.mkdtemp(prefix="pixels-differential-"))
    out = []
    for name in ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "waveform_ecg.dcm"):
        src = pydicom_folder() / name
        for flag in ("+ti", "+td"):
            dst = folder / f"{flag[1:]}_{name}"
            subprocess.run(["dcmconv", flag, str(src), str(dst)], check=True, capture_output=True)
            out.append(dst)
    return out


#: Implicit VR little endian and deflated files: pydicom's own and dcmtk's copies.
IMPLICIT_OR_DEFLATED = [
    p for p, ts in SEEDS if ts in (ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian)
] + _transcoded()


def test_enough_implicit_and_deflated_seeds() -> None:
    syntaxes = [str(pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID)
                for p in IMPLICIT_OR_DEFLATED]  # fmt: skip
    assert syntaxes.count(ImplicitVRLittleEndian) >= 8
    assert syntaxes.count(DeflatedExplicitVRLittleEndian) >= 4


def _layout(data: bytes) -> tuple[int, bool, bool]:
    """(offset of the data set, implicit VR, deflated) of a file with a preamble."""
    fp = io.BytesIO(data)
    read_preamble(fp, False)
    ts = str(_read_file_meta_info(fp).get(0x00020010).value).rstrip("\0 ")
    return fp.tell(), ts == ImplicitVRLittleEndian, ts == DeflatedExplicitVRLittleEndian


@functools.cache
def _elements(data: bytes, implicit: bool = False) -> list[tuple[int, int, int, str]]:
    """(header offset, value offset, length, VR) of the top-level elements before pixel data.

    `data` is a data set (explicit or implicit VR little endian), or a whole
    explicit VR little endian file.
    """
    fp = io.BytesIO(data)
    if data[128:132] == b"DICM":
        read_preamble(fp, False)
        _read_file_meta_info(fp)
    out = []
    gen = data_element_generator(fp, implicit, True, stop_when=lambda t, v, n: t >> 16 == 0x7FE0)
    while True:
        try:
            e = next(gen)
        except (StopIteration, Exception):
            break
        if not isinstance(e, RawDataElement) or e.length == 0xFFFFFFFF:
            continue  # (a sequence of undefined length, read whole)
        vr = "" if implicit else str(e.VR)
        head = (
            12
            if vr in ("OB", "OW", "OF", "OD", "OL", "OV", "SQ", "UN", "UT", "UC", "UR", "SV", "UV")
            else 8
        )
        out.append((e.value_tell - head, e.value_tell, e.length, vr))
    return out


def _mutate(draw: st.DrawFn, data: bytearray, elements: list[tuple[int, int, int, str]],
            implicit: bool) -> None:  # fmt: skip
    """Overwrite values, lengths, VRs or bits of some of `elements` in `data`."""
    for _ in range(draw(st.integers(1, 3))):
        head, value, length, _vr = draw(st.sampled_from(elements))
        kind = draw(st.sampled_from(["value", "length", "flip"] + ([] if implicit else ["vr"])))
        if kind == "value" and length:
            data[value : value + length] = draw(st.binary(min_size=length, max_size=length))
        elif kind == "length":
            if implicit or head + 12 == value:
                at = head + (4 if implicit else 8)
                data[at : at + 4] = struct.pack("<L", draw(st.integers(0, 2**32 - 1)))
            else:
                data[head + 6 : head + 8] = struct.pack("<H", draw(st.integers(0, 2**16 - 1)))
        elif kind == "flip":
            at = draw(st.integers(head, value + max(length, 1) - 1))
            if at < len(data):
                data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "vr":
            data[head + 4 : head + 6] = draw(
                st.sampled_from([b"UN", b"LO", b"US", b"OB", b"DS", b"SQ"])
            )


@st.composite
def _mutated_bytes(draw: st.DrawFn) -> bytes:
    path, _ = draw(st.sampled_from(SEEDS))
    data = bytearray(path.read_bytes())
    if path not in EXPLICIT_LE:  # implicit, big endian, deflated: flips in the header, cuts
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(132, min(len(data), 4096) - 1))
            data[at] ^= 1 << draw(st.integers(0, 7))
        if draw(st.booleans()):
            data = data[: draw(st.integers(132, len(data)))]
        return bytes(data)
    elements = _elements(bytes(data))
    assume(elements)
    _mutate(draw, data, elements, False)
    if draw(st.booleans()):
        data = data[: draw(st.integers(132, len(data)))]
    return bytes(data)


@st.composite
def _mutated_implicit_or_deflated(draw: st.DrawFn) -> bytes:
    """Element-level mutations of an implicit VR or deflated file (its inflated data set,
    deflated again), or the deflate stream itself cut or flipped."""
    path = draw(st.sampled_from(IMPLICIT_OR_DEFLATED))
    whole = path.read_bytes()
    begin, implicit, deflated = _layout(whole)
    body = bytearray(zlib.decompress(whole[begin:], -15) if deflated else whole[begin:])
    elements = _elements(bytes(body), implicit)
    assume(elements)
    _mutate(draw, body, elements, implicit)
    if deflated:
        packer = zlib.compressobj(6, zlib.DEFLATED, -15)
        out = bytearray(whole[:begin] + packer.compress(bytes(body)) + packer.flush())
        if draw(st.integers(0, 4)) == 0:  # the stream itself damaged
            at = draw(st.integers(begin, len(out) - 1))
            out[at] ^= 1 << draw(st.integers(0, 7))
    else:
        out = bytearray(whole[:begin] + body)
    if draw(st.booleans()):
        out = out[: draw(st.integers(132, len(out)))]
    return bytes(out)


@SETTINGS
@given(_mutated_bytes())
def test_fast_parser_matches_pydicom_path(data: bytes) -> None:
    fast, slow = _both(data)
    assert fast == slow
    if isinstance(fast, str):
        assert fast.startswith("m.dcm: ")
        return
    mine = json.loads(fast.meta)
    theirs = _reference(data)
    if theirs is not None and fast.problem is None:
        assert normalise(without_pixels(mine)) == normalise(theirs)
    Dataset.from_json(fast.meta, bulk_data_uri_handler=lambda *a: None)


@SETTINGS
@given(_mutated_implicit_or_deflated())
def test_fast_parser_matches_pydicom_path_implicit_and_deflated(data: bytes) -> None:
    """The fast parser's implicit VR and deflated readings against the pydicom path."""
    test_fast_parser_matches_pydicom_path.hypothesis.inner_test(data)  # type: ignore[attr-defined]
