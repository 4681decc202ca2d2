"""Bytes after the end of a compressed frame's codestream (after a JPEG / JPEG-LS EOI, after
a JPEG 2000 EOC, in the last fragment's padding): no decoder reads them, a vendor's text can
hide there. They are dropped without re-encoding; the frames decode as before, and the Basic
or Extended Offset Table points at the frames as written.

On pydicom's real compressed files (dcmtk's JPEG, JPEG-LS, JPEG 2000, 10-frame MR in both),
with text appended after a frame's end and the frame split over two fragments.
"""

from __future__ import annotations

import io
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
from pixels.deid.streams import end_of_codestream

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
def test_bytes_after_the_end_of_each_compressed_frame_are_dropped(
    name: str, table: str, decoder: str | None, tmp_path: Path
) -> None:
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
    dirty = [c + HIDDEN if k in hidden_in else c for k, c in enumerate(codestreams)]
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
    assert res.actions["stream_bytes_dropped"] == len(HIDDEN) * len(hidden_in)
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


def test_a_frame_whose_end_cannot_be_found_is_left_whole() -> None:
    """A JPEG 2000 codestream in a JP2 wrapper (GDCM's), or a JPEG frame cut short: the walk
    does not know where it ends, so nothing of it is dropped."""
    ds = pydicom.dcmread(sample_file("GDCMJ2K_TextGBR.dcm"))
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    assert frame[4:8] == b"jP  "
    assert end_of_codestream(frame, str(ds.file_meta.TransferSyntaxUID)) is None
    jpeg = pydicom.dcmread(sample_file("SC_rgb_jpeg_dcmtk.dcm"))
    cut = next(generate_frames(jpeg.PixelData, number_of_frames=1))[:-40]
    assert end_of_codestream(cut, str(jpeg.file_meta.TransferSyntaxUID)) is None
