"""Cut and lying files: a value cut short is an error naming the tag and the offset.

Real files are cut at every byte of their header, and lengths in real files are
made to lie (4 GB values, at the top level and inside sequences). Each cut is
either refused with a ``truncated`` error or falls exactly on the end of an
element (a shorter but well-formed data set); a lying length is refused before
its value is allocated.
"""

from __future__ import annotations

import io
import struct
import tracemalloc
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.filereader import _read_file_meta_info, data_element_generator, read_preamble

from corpus import sample_file
from pixels.dicom.meta import read_header
from pixels.dicom.record import catalog_record
from pixels.errors import DicomReadError
from pixels.sources.local import local_ref

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _read(data: bytes, fast: bool = True) -> str:
    """The error message read_header gives for `data` (fails when it reads it)."""
    with pytest.raises(DicomReadError) as info:
        read_header(io.BytesIO(data), path="cut.dcm", fast=fast)
    return str(info.value)


def test_cut_in_specific_character_set() -> None:
    data = sample_file("CT_small.dcm").read_bytes()
    assert data[336:344] == b"\x08\x00\x05\x00CS\x0a\x00"  # (0008,0005), 10 bytes at 344
    for fast in (True, False):
        assert _read(data[:346], fast) == (
            "cut.dcm: truncated: element (0008,0005) at offset 344 should have 10 bytes, "
            "the data holds 2"
        )


def test_cut_in_an_element_header() -> None:
    data = sample_file("CT_small.dcm").read_bytes()[:600]
    assert _read(data) == (
        "cut.dcm: truncated: the header of element (0008,0030) at offset 594 is cut short "
        "(6 of 8 bytes)"
    )


def test_cut_file_is_an_error_row(tmp_path: Path) -> None:
    path = tmp_path / "cut.dcm"
    path.write_bytes(sample_file("CT_small.dcm").read_bytes()[:346])
    row = catalog_record(local_ref(str(path), path.stat(), path.name))
    assert row["error"] == (
        f"{path}: truncated: element (0008,0005) at offset 344 should have 10 bytes, "
        "the data holds 2"
    )
    assert row["meta"] is None


def _boundaries(data: bytes) -> tuple[set[int], int]:
    """Offsets where a top-level element of the data set ends, and where pixel data starts."""
    fp = io.BytesIO(data)
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    implicit, little = ds.original_encoding
    read_preamble(fp, False)
    _read_file_meta_info(fp)
    ends = {fp.tell()}
    gen = data_element_generator(fp, implicit, little, stop_when=lambda t, v, n: t >> 16 == 0x7FE0)
    for _ in gen:
        ends.add(fp.tell())
    return ends, fp.tell()


@pytest.mark.parametrize(
    "name",
    ["CT_small.dcm", "rtplan.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm",
     "nested_priv_SQ.dcm", "reportsi.dcm"],
)  # fmt: skip
def test_cut_anywhere_in_the_header(name: str) -> None:
    data = sample_file(name).read_bytes()
    ends, stop = _boundaries(data)
    assert len(ends) >= 2
    assert _read(data[: min(ends)]).endswith("no data elements after the file meta information")
    for cut in range(min(ends) + 1, min(stop, 1500)):
        try:
            header = read_header(io.BytesIO(data[:cut]), path="cut.dcm")
        except DicomReadError as e:
            assert "truncated" in str(e), (cut, str(e))
            assert cut not in ends, cut
            continue
        assert cut in ends, (cut, header.meta[-200:])


# -- lying lengths ----------------------------------------------------------------------------


def _patched(name: str, find: bytes, new_length: bytes) -> bytes:
    """A real file with the length right after the bytes `find` replaced."""
    data = sample_file(name).read_bytes()
    at = data.index(find) + len(find)
    return data[:at] + new_length + data[at + len(new_length) :]


LYING = {
    # implicit VR, (0008,0008) declares 4 GB: the pydicom path
    "implicit top level": (
        _patched("MR_small_implicit.dcm", b"\x08\x00\x08\x00", struct.pack("<L", 0xFFFFFFF0)),
        "truncated: element (0008,0008) at offset ",
    ),
    # explicit VR, an OB of 4 GB: the fast path gives up, the pydicom path refuses it
    "explicit OB": (
        _patched("CT_small.dcm", b"\x02\x00\x01\x00OB\x00\x00", struct.pack("<L", 0xFFFFFFF0)),
        "",
    ),
    # inside an undefined-length sequence item of an implicit VR file
    "in a sequence": (
        _patched(
            "nested_priv_SQ.dcm",
            b"\xff\xff\xff\xff\xfe\xff\x00\xe0\xff\xff\xff\xff\x01\x00\x01\x00",
            struct.pack("<L", 0xFFFFFFF0),
        ),
        "truncated: ",
    ),
}


@pytest.mark.parametrize("case", list(LYING))
def test_lying_length_is_refused_before_allocating(tmp_path: Path, case: str) -> None:
    data, message = LYING[case]
    path = tmp_path / "lying.dcm"
    path.write_bytes(data)
    for fast in (True, False):
        tracemalloc.start()
        try:
            with open(path, "rb") as f, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with pytest.raises(DicomReadError) as info:
                    read_header(f, path=str(path), fast=fast)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert message in str(info.value)
        assert peak < 20_000_000, (case, peak, str(info.value))


# -- after the pixel data -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["MR_small.dcm", "MR_small_implicit.dcm", "JPEG2000.dcm"])
def test_junk_or_a_cut_after_the_pixel_data_keeps_header_and_frames(
    tmp_path: Path, name: str
) -> None:
    """Bytes after the pixel data that are no element: reported, the rest of the row kept."""
    data = sample_file(name).read_bytes()
    good = catalog_record(local_ref(str(sample_file(name)), sample_file(name).stat(), name))
    assert good["error"] is None and good["frame_offsets"]
    for junk, message in (
        (b"\x10\x00\x10\x00PN\x20\x00Doe", "after the pixel data: truncated: element (0010,0010)"),
        (b"\xe1\x7f\x10\x00", "after the pixel data: truncated: "),
    ):
        path = tmp_path / name
        path.write_bytes(data + junk)
        for fast in (True, False):
            header = read_header(io.BytesIO(data + junk), path=str(path), fast=fast)
            assert header.problem is None
            assert header.trailing is not None and header.trailing.startswith(message)
            assert header.meta == read_header(io.BytesIO(data), path="x", fast=fast).meta
        row = catalog_record(local_ref(str(path), path.stat(), name))
        assert row["error"].startswith(f"{path}: {message}"), row["error"]
        assert row["meta"] == good["meta"]
        assert row["frame_offsets"] == good["frame_offsets"]
        assert row["Modality"] == good["Modality"]
