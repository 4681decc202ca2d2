"""pixels.dicom.frames against pydicom, on real files.

Every file of pydicom's test files and of pydicom-data that pydicom reads with
its pixel data is indexed from its header (``read_header`` + ``index_from_header``)
and every frame (up to 200 a file) read with ``read_frame`` is compared with
what pydicom gives: the slice of ``ds.PixelData`` for native data,
``pydicom.encaps.get_frame`` for encapsulated data. Real files rewritten with
pydicom cover what the corpus lacks: an Extended Offset Table, frames of several
fragments with and without a Basic Offset Table, bit-packed frames that do not
start on a byte; truncated and corrupted copies cover the errors.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate, encapsulate_extended, generate_frames, get_frame
from pydicom.pixels import pack_bits

from corpus import h264_file, pydicom_data_folder, pydicom_folder, sample_file, seg_5x5
from pixels.dicom.frames import FrameIndex, index_frames, index_from_header, read_frame
from pixels.dicom.meta import read_header
from pixels.errors import DicomReadError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

MAX_FRAMES = 200
US_CINE = "color3d_jpeg_baseline.dcm"  # 120-frame JPEG baseline US cine in pydicom-data


def _index(path: Path) -> FrameIndex | None:
    with open(path, "rb") as f:
        header = read_header(f, path=str(path))
        return index_from_header(f, json.loads(header.meta), path=str(path))


def _frames(ds: pydicom.Dataset) -> int:
    try:
        return max(int(ds.get("NumberOfFrames") or 1), 1)
    except (TypeError, ValueError):  # badVR.dcm: "1A"
        return 1


def _expected(ds: pydicom.Dataset, index: FrameIndex, i: int) -> bytes:
    if index.encapsulated:
        ext = None
        if "ExtendedOffsetTable" in ds:
            ext = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
        return get_frame(ds.PixelData, i, number_of_frames=_frames(ds), extended_offsets=ext)
    if index.bit_offsets is not None:  # re-aligned: the frame packed alone
        return bytes(pack_bits(ds.pixel_array[i], pad=False))
    start = index.offsets[i] - index.offsets[0]
    return bytes(ds.PixelData[start : start + index.lengths[i]])


def _check_all_frames(path: Path) -> FrameIndex:
    ds = pydicom.dcmread(path)
    index = _index(path)
    assert index is not None
    assert len(index) == _frames(ds)
    assert index.fragments is None or len(index.fragments) == len(index)
    with open(path, "rb") as f:
        for i in range(min(len(index), MAX_FRAMES)):
            assert read_frame(f, index, i) == _expected(ds, index, i), f"{path.name} frame {i}"
    return index


def _corpus() -> list[Path]:
    out = []
    for folder in (pydicom_folder(), pydicom_data_folder()):
        for p in sorted(folder.iterdir()):
            if not p.is_file():
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ds = pydicom.dcmread(p)
            except Exception:
                continue
            if "PixelData" in ds:
                out.append(p)
    return out


CORPUS = _corpus()


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_every_frame_matches_pydicom(path: Path) -> None:
    ds = pydicom.dcmread(path)
    try:
        index = _index(path)
    except DicomReadError as e:
        # only where pydicom cannot make pixels of it either (truncated, no Rows)
        assert "(7FE0,0010)" in str(e) and str(path) in str(e)
        with pytest.raises(Exception):  # noqa: B017 - any pydicom failure
            ds.pixel_array  # noqa: B018
        return
    if index is None:
        assert ds.file_meta.TransferSyntaxUID.is_deflated
        return
    _check_all_frames(path)


def test_corpus_covers_the_cases() -> None:
    assert len(CORPUS) > 100
    names = {p.name for p in CORPUS}
    assert {US_CINE, "examples_ybr_color.dcm", "SC_ybr_full_422_uncompressed.dcm"} <= names
    assert {"emri_small_big_endian.dcm", "liver.dcm", "MR2_J2KR.dcm"} <= names


def test_bot_multiframe() -> None:
    path = sample_file("examples_ybr_color.dcm")  # 30 frames, Basic Offset Table
    index = _check_all_frames(path)
    assert len(index) == 30 and index.encapsulated


def test_one_fragment_per_frame_no_bot() -> None:
    index = _check_all_frames(sample_file(US_CINE))
    assert len(index) == 120 and index.fragments is not None
    assert all(len(f) == 1 for f in index.fragments)
    assert index.offsets == tuple(f[0][0] for f in index.fragments)


def test_single_frame_of_many_fragments() -> None:
    index = _check_all_frames(sample_file("MR2_J2KR.dcm"))
    assert index.fragments is not None and len(index.fragments[0]) == 9
    assert index.lengths[0] == sum(n for _, n in index.fragments[0])


def test_native_multiframe_and_big_endian() -> None:
    for name in ("emri_small.dcm", "emri_small_big_endian.dcm", "rtdose.dcm"):
        index = _check_all_frames(sample_file(name))
        assert not index.encapsulated and index.fragments is None
        assert len(set(index.lengths)) == 1


def test_ybr_full_422_native_frame_is_two_thirds() -> None:
    path = sample_file("SC_ybr_full_422_uncompressed.dcm")
    ds = pydicom.dcmread(path)
    index = _check_all_frames(path)
    assert index.lengths[0] == ds.Rows * ds.Columns * 3 // 3 * 2


# ---------------------------------------------------------------------------
# real files rewritten with pydicom
# ---------------------------------------------------------------------------


def _rewrite(src: str, dest: Path, edit: Callable[[pydicom.Dataset, list[bytes]], None]) -> Path:
    ds = pydicom.dcmread(sample_file(src))
    frames = list(generate_frames(ds.PixelData, number_of_frames=_frames(ds)))
    edit(ds, frames)
    ds.save_as(dest, enforce_file_format=True)
    return dest


@pytest.mark.parametrize("src", [US_CINE, "emri_small_jpeg_2k_lossless.dcm"])
def test_extended_offset_table(tmp_path: Path, src: str) -> None:
    """120 frames: the tables are BulkDataURIs read from the file; 10: InlineBinary."""

    def edit(ds: pydicom.Dataset, frames: list[bytes]) -> None:
        ds.PixelData, ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths = encapsulate_extended(
            frames
        )

    path = _rewrite(src, tmp_path / "eot.dcm", edit)
    with open(path, "rb") as f:
        meta = json.loads(read_header(f, path=str(path)).meta)
    inline = "InlineBinary" in meta["7FE00001"]
    assert inline == (src != US_CINE)
    index = _check_all_frames(path)
    original = pydicom.dcmread(sample_file(src))
    with open(path, "rb") as f:
        for i in (0, len(index) - 1):
            assert read_frame(f, index, i) == get_frame(
                original.PixelData, i, number_of_frames=len(index)
            )


@pytest.mark.parametrize("has_bot", [True, False])
def test_frames_of_several_fragments(tmp_path: Path, has_bot: bool) -> None:
    """With a BOT; without one, frames are found by their JPEG EOI marker."""

    def edit(ds: pydicom.Dataset, frames: list[bytes]) -> None:
        ds.PixelData = encapsulate(frames[:40], fragments_per_frame=3, has_bot=has_bot)
        ds.NumberOfFrames = 40

    path = _rewrite(US_CINE, tmp_path / "frag.dcm", edit)
    index = _check_all_frames(path)
    assert index.fragments is not None
    assert all(len(f) == 3 for f in index.fragments)
    original = pydicom.dcmread(sample_file(US_CINE))
    with open(path, "rb") as f:
        assert read_frame(f, index, 39) == get_frame(original.PixelData, 39, number_of_frames=120)


def test_bit_packed_frames_not_on_byte_boundaries(tmp_path: Path) -> None:
    ds = pydicom.dcmread(sample_file("liver.dcm"))
    path = tmp_path / "bits.dcm"
    arr = ds.pixel_array[:, :7, :5]  # 35 bits a frame
    ds.Rows, ds.Columns = 7, 5
    ds.PixelData = pack_bits(arr)
    ds.save_as(path, enforce_file_format=True)
    index = _check_all_frames(path)
    assert index.bit_offsets == (0, 3, 6)
    assert index.offsets[1] - index.offsets[0] == 4  # bit 35 is in byte 4
    assert index.frame_bits == 35
    with open(path, "rb") as f:
        for i in range(3):
            raw = np.frombuffer(read_frame(f, index, i), dtype=np.uint8)
            assert raw.size == 5  # ceil(35 / 8), re-aligned to bit 0
            bits = np.unpackbits(raw, bitorder="little")
            assert not bits[35:].any()
            assert np.array_equal(bits[:35].reshape(7, 5), pydicom.dcmread(path).pixel_array[i])


def test_highdicom_seg_frames_not_on_byte_boundaries(tmp_path: Path) -> None:
    """Every frame of a bit-packed SEG read by read_frame and decoded equals pydicom's."""
    from pixels.dicom.decode import PixelInfo, decode_frame

    path = seg_5x5(tmp_path / "seg5x5.dcm")
    index = _check_all_frames(path)
    assert index.bit_offsets == (0, 1, 2, 3) and index.frame_bits == 25
    ds = pydicom.dcmread(path)
    assert ds.BitsAllocated == 1 and ds.NumberOfFrames == 4
    info = PixelInfo.from_dataset(ds)
    with open(path, "rb") as f:
        for i in range(4):
            got = decode_frame(read_frame(f, index, i), info)
            assert np.array_equal(got, ds.pixel_array[i]), f"frame {i}"


@pytest.mark.skipif(shutil.which("dcmconv") is None, reason="dcmtk's dcmconv is not installed")
def test_big_endian_bit_packed_frames_read_swapped_equal_little_endian(tmp_path: Path) -> None:
    """dcmtk's big endian copy (OW words swapped) of 35-bit frames: each frame as pydicom's LE."""
    import subprocess

    from pixels.dicom.frames import read_frame_swapped

    ds = pydicom.dcmread(sample_file("liver.dcm"))
    cut = ds.pixel_array[:, 144:151, 240:245]
    ds.Rows, ds.Columns = 7, 5
    ds.PixelData = pack_bits(cut)
    ds["PixelData"].VR = "OW"
    little, big = tmp_path / "le.dcm", tmp_path / "be.dcm"
    ds.save_as(little, enforce_file_format=True)
    subprocess.run(["dcmconv", "+tb", str(little), str(big)], check=True, capture_output=True)
    with open(big, "rb") as f:
        header = read_header(f, path=str(big))
        meta = json.loads(header.meta)
        index = index_from_header(f, meta, path=str(big), transfer_syntax=header.transfer_syntax)
    assert index is not None and index.bit_offsets == (0, 3, 6)
    with open(big, "rb") as f:
        for i in range(3):
            got = read_frame_swapped(f, index, i, 2, path=str(big))
            assert got == bytes(pack_bits(cut[i], pad=False)), f"frame {i}"
        with pytest.raises(IndexError):
            read_frame_swapped(f, index, 3, 2)
        # read_frame knows from the index (and so do thumbnails and /rendered)
        assert index.word_swapped and not _index(little).word_swapped  # type: ignore[union-attr]
        for i in range(3):
            assert read_frame(f, index, i) == bytes(pack_bits(cut[i], pad=False)), f"frame {i}"
    from pixels.dicom.decode import read_frames

    for i, arr in enumerate(read_frames(str(big), [0, 1, 2])):
        assert np.array_equal(arr, cut[i]), f"read_frames, frame {i}"


def test_bit_packed_aligned_has_no_bit_offsets() -> None:
    index = _check_all_frames(sample_file("liver.dcm"))
    assert index.bit_offsets is None and index.lengths == (512 * 512 // 8,) * 3


# ---------------------------------------------------------------------------
# reads only the frame
# ---------------------------------------------------------------------------


class _Counting(io.FileIO):
    read_bytes = 0

    def read(self, size: int | None = -1, /) -> bytes:
        data = super().read(size)
        self.read_bytes += len(data)
        return data


def test_index_and_read_touch_only_item_headers_and_the_frame() -> None:
    path = sample_file(US_CINE)
    with open(path, "rb") as f:
        meta = json.loads(read_header(f, path=str(path)).meta)
    with _Counting(path) as f:
        index = index_from_header(f, meta, path=str(path))
        assert index is not None
        assert f.read_bytes <= 8 * (120 + 2)
        f.read_bytes = 0
        frame = read_frame(f, index, 77)
        assert f.read_bytes == len(frame) == index.lengths[77]


# ---------------------------------------------------------------------------
# no pixel data, deflated
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["rtplan.dcm", "test-SR.dcm", "image_dfl.dcm"])
def test_none_without_pixel_data_or_offsets(name: str) -> None:
    assert _index(sample_file(name)) is None


# ---------------------------------------------------------------------------
# malformed
# ---------------------------------------------------------------------------


def _copy(src: str, dest: Path, size: int | None = None) -> Path:
    shutil.copyfile(sample_file(src), dest)
    if size is not None:
        with open(dest, "r+b") as f:
            f.truncate(size)
    return dest


def _pixel_offset(path: Path) -> int:
    with open(path, "rb") as f:
        meta = json.loads(read_header(f, path=str(path)).meta)
    return int(meta["7FE00010"]["BulkDataURI"].split("offset=")[1].split("&")[0])


def _index_error(path: Path) -> str:
    with pytest.raises(DicomReadError) as e:
        _index(path)
    msg = str(e.value)
    assert "(7FE0,0010)" in msg and str(path) in msg
    return msg


def test_real_truncated_file() -> None:
    assert "truncated" in _index_error(sample_file("MR_truncated.dcm"))


def test_native_truncated_inside_a_frame(tmp_path: Path) -> None:
    full = sample_file("emri_small.dcm")
    start = _pixel_offset(full)
    path = _copy("emri_small.dcm", tmp_path / "cut.dcm", start + 5 * 8192 + 100)
    msg = _index_error(path)
    assert "truncated" in msg and "frame 5 " in msg


@pytest.mark.parametrize("cut", [100, 0, 4])  # inside a value, at an item, in an item header
def test_encapsulated_truncated(tmp_path: Path, cut: int) -> None:
    full = sample_file(US_CINE)
    index = _index(full)
    assert index is not None
    path = _copy(US_CINE, tmp_path / "cut.dcm", index.offsets[60] - 8 + cut)
    msg = _index_error(path)
    assert "truncated" in msg
    if cut:
        assert "frame 60" in msg


def _patch(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def test_bad_item_tag(tmp_path: Path) -> None:
    index = _index(sample_file(US_CINE))
    assert index is not None
    path = _copy(US_CINE, tmp_path / "bad.dcm")
    _patch(path, index.offsets[7] - 8, struct.pack("<HH", 0xFFFE, 0xE00D))
    msg = _index_error(path)
    assert "(FFFE,E00D)" in msg and "fragment 7" in msg


def test_bad_basic_offset_table_item(tmp_path: Path) -> None:
    path = _copy("examples_ybr_color.dcm", tmp_path / "bad.dcm")
    _patch(path, _pixel_offset(path), struct.pack("<HH", 0x0008, 0x0010))
    assert "Basic Offset Table" in _index_error(path)


def test_bot_pointing_outside(tmp_path: Path) -> None:
    path = _copy("examples_ybr_color.dcm", tmp_path / "bad.dcm")
    _patch(path, _pixel_offset(path) + 8 + 3 * 4, struct.pack("<L", 10**9))
    msg = _index_error(path)
    assert "Basic Offset Table" in msg and "frame 3" in msg


def _index_args(name: str, **kw: Any) -> tuple[BinaryIO, dict[str, Any]]:
    path = sample_file(name)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    offset = _pixel_offset(path)
    f = open(path, "rb")  # noqa: SIM115 - closed by the caller
    ts = ds.file_meta.TransferSyntaxUID
    args: dict[str, Any] = {
        "pixel_offset": offset,
        "pixel_length": None
        if ts.is_encapsulated
        else ds.Rows * ds.Columns * ds.SamplesPerPixel * ds.BitsAllocated // 8 * _frames(ds),
        "number_of_frames": _frames(ds),
        "rows": ds.Rows,
        "columns": ds.Columns,
        "samples_per_pixel": ds.SamplesPerPixel,
        "bits_allocated": ds.BitsAllocated,
        "encapsulated": ts.is_encapsulated,
        "path": str(path),
    }
    args.update(kw)
    return f, args


@pytest.mark.parametrize(
    ("name", "frames", "words"),
    [
        (US_CINE, 121, "frame 120 has no data"),  # fewer fragments than frames, no table
        ("examples_ybr_color.dcm", 31, "30 entries for 31 frames"),  # short BOT
        ("emri_small.dcm", 11, "too few for 11 frame(s)"),  # native pixel data too short
    ],
)
def test_fewer_fragments_or_bytes_than_frames(name: str, frames: int, words: str) -> None:
    f, args = _index_args(name, number_of_frames=frames)
    with f, pytest.raises(DicomReadError) as e:
        index_frames(f, **args)
    assert words in str(e.value) and "(7FE0,0010)" in str(e.value)


def test_extended_table_pointing_outside() -> None:
    f, args = _index_args("emri_small_jpeg_2k_lossless.dcm")
    offsets = struct.pack("<10Q", *range(0, 10**7, 10**6))
    with f, pytest.raises(DicomReadError) as e:
        index_frames(f, extended_offsets=offsets, extended_lengths=bytes(80), **args)
    assert "(7FE0,0001)" in str(e.value) and "frame 1 " in str(e.value)


def test_read_frame_out_of_range() -> None:
    path = sample_file("emri_small.dcm")
    index = _index(path)
    assert index is not None
    with open(path, "rb") as f, pytest.raises(IndexError, match="frame 10"):
        read_frame(f, index, 10)


def test_read_frame_of_a_file_cut_after_indexing(tmp_path: Path) -> None:
    path = _copy("emri_small.dcm", tmp_path / "x.dcm")
    index = _index(path)
    assert index is not None
    with open(path, "r+b") as f:
        f.truncate(index.offsets[9] + 10)
        with pytest.raises(DicomReadError, match="frame 9"):
            read_frame(f, index, 9)


def test_index_frames_matches_index_from_header() -> None:
    f, args = _index_args("emri_small.dcm")
    with f:
        assert index_frames(f, **args) == _index(sample_file("emri_small.dcm"))


_LYING_SCRIPT = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from pixels.dicom.frames import index_from_header
from pixels.dicom.meta import read_header
from pixels.errors import DicomReadError
path = sys.argv[1]
with open(path, "rb") as f:
    try:
        index_from_header(f, json.loads(read_header(f, path=path).meta), path=path)
    except DicomReadError as e:
        print("ERROR", e)
"""


def test_lying_number_of_frames_is_refused_before_anything_is_built(tmp_path: Path) -> None:
    """A small real file declaring 2**31-1 frames of 65535 x 65535 16-bit pixels (finding of
    issue 9: the index used to build every offset first, 23 GB). Run under a 1 GiB address
    space limit: the error must come from the size check, not from memory running out."""
    import subprocess
    import sys

    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    ds.NumberOfFrames = 2147483647
    ds.Rows = ds.Columns = 65535
    ds.PixelData = bytes(64)
    path = tmp_path / "lying.dcm"
    ds.save_as(path)
    assert path.stat().st_size < 10_000
    out = subprocess.run(
        [sys.executable, "-c", _LYING_SCRIPT, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    msg = out.stdout.strip()
    assert msg.startswith(f"ERROR {path}: pixel data (7FE0,0010) holds 64 bytes, too few for "), msg
    assert "NumberOfFrames (0028,0008) 2147483647" in msg and "(0028,0010)" in msg


@pytest.mark.parametrize("fragment_size", [0, 8192])
def test_video_stream_is_indexed_as_one_unit(tmp_path: Path, fragment_size: int) -> None:
    """An H.264 cine of 30 frames (a real US cine re-encoded with libx264): one stream, an empty
    Basic Offset Table; it used to be an error row ("Basic Offset Table ... for 30 frames")."""
    from pydicom.encaps import generate_fragments

    path, _ = h264_file(tmp_path / "h264.dcm", fragment_size=fragment_size)
    ds = pydicom.dcmread(path)
    assert ds.NumberOfFrames == 30
    fragments = list(generate_fragments(ds.PixelData[8:]))  # after the empty BOT item
    assert (len(fragments) > 1) == bool(fragment_size)
    with open(path, "rb") as f:
        header = read_header(f, path=str(path))
        index = index_from_header(
            f, json.loads(header.meta), path=str(path), transfer_syntax=header.transfer_syntax
        )
        assert index is not None and len(index) == 1 and index.encapsulated
        assert index.fragments is not None and len(index.fragments[0]) == len(fragments)
        stream = read_frame(f, index, 0)
    assert stream == b"".join(fragments) and index.lengths == (len(stream),)
    assert stream.startswith(b"\x00\x00\x00\x01")  # an Annex B H.264 stream
