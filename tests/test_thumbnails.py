"""Thumbnails in the catalog: in the catalog pass, in a later pass, and as a contact sheet."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from deltalake import DeltaTable
from PIL import Image

from corpus import copy_tree, h264_file, sample_file, seg_5x5
from pixels import Catalog
from pixels.dicom.display import to_display

PIXELS = [sys.executable, "-m", "pixels.cli"]
FILES = [
    "CT_small.dcm",  # CT, windowed
    "MR_small_RLE.dcm",
    "US1_J2KR.dcm",  # colour, J2K
    "color3d_jpeg_baseline.dcm",  # 120-frame YBR JPEG: middle frame
    "OBXXXX1A.dcm",  # PALETTE COLOR
    "RG1_UNCR.dcm",  # MONOCHROME1, 1955 x 1841
    "693_J2KR.dcm",  # signed 16-bit J2K CT
    "rtplan.dcm",  # no pixel data
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("thumbs") / "data"
    copy_tree([sample_file(n) for n in FILES], root)
    # broken pixel data: a real J2K file whose codestream header (SOC + SIZ markers) is wiped
    bad = bytearray(sample_file("693_J2KR.dcm").read_bytes())
    soc = bad.index(b"\xff\x4f\xff\x51")
    bad[soc : soc + 64] = bytes(64)
    (root / "broken_j2k.dcm").write_bytes(bytes(bad))
    (root / "panic_rle.dcm").write_bytes(panicking_rle_file())
    return root


def panicking_rle_file() -> bytes:
    """A real RLE file whose first run of segment 1 replicates 128 bytes past the row's end:
    pylibjpeg-rle (Rust) panics on it with ``pyo3_runtime.PanicException``, a BaseException."""
    raw = bytearray(sample_file("MR_small_RLE.dcm").read_bytes())
    first = raw.index(b"\xfe\xff\x00\xe0", raw.index(b"\xe0\x7f\x10\x00") + 12)  # BOT
    first = raw.index(b"\xfe\xff\x00\xe0", first + 8) + 8  # fragment 0: the RLE header
    seg1 = int.from_bytes(raw[first + 4 : first + 8], "little")
    raw[first + seg1] = 0x81
    return bytes(raw)


def _image(blob: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(blob)))


def _reference(name: str, frame: int, size: tuple[int, int]) -> np.ndarray:
    """pydicom's decode + our display pipeline + a plain resize: what the thumbnail must look like."""
    ds = pydicom.dcmread(sample_file(name))
    arr = ds.pixel_array
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        arr = arr[frame]
    photometric = "RGB" if ds.SamplesPerPixel == 3 else ds.PhotometricInterpretation
    shown = to_display(arr, ds.to_json_dict(), frame=frame, photometric=photometric)
    return np.asarray(Image.fromarray(shown).resize(size, Image.Resampling.BILINEAR)).astype(float)


@pytest.fixture(scope="module")
def rows(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    table = tmp_path_factory.mktemp("cat") / "cat"
    out = subprocess.run(
        [
            *PIXELS,
            "catalog",
            str(folder),
            "--table",
            str(table),
            "--thumbnails",
            "--thumbnail-format",
            "png",
            "--thumbnail-size",
            "128",
            "-q",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "errors 0" in out.stderr, out.stderr
    return {
        Path(r["path"]).name: r
        for r in Catalog(table).sql_arrow("SELECT * FROM object_catalog").to_pylist()
    }


def test_thumbnail_columns_and_geometry(rows: dict[str, dict]) -> None:
    for name in FILES[:-1]:
        r = rows[name]
        assert r["thumbnail_error"] is None, r["thumbnail_error"]
        img = _image(r["thumbnail"])
        assert (img.shape[1], img.shape[0]) == (r["thumbnail_width"], r["thumbnail_height"])
        assert max(img.shape[:2]) <= 128
        # aspect ratio kept
        assert abs(img.shape[1] / img.shape[0] - r["Columns"] / r["Rows"]) < 0.05, name
    assert rows["color3d_jpeg_baseline.dcm"]["thumbnail_frame"] == 60
    # no pixel data: no thumbnail, no error
    assert rows["rtplan.dcm"]["thumbnail"] is None and rows["rtplan.dcm"]["thumbnail_error"] is None


@pytest.mark.parametrize(
    "name", ["CT_small.dcm", "693_J2KR.dcm", "RG1_UNCR.dcm", "US1_J2KR.dcm", "OBXXXX1A.dcm"]
)
def test_thumbnail_looks_like_the_image(rows: dict[str, dict], name: str) -> None:
    """Orientation, windowing, inversion and colour: close to a full decode + display + resize."""
    r = rows[name]
    img = _image(r["thumbnail"]).astype(float)
    ref = _reference(name, r["thumbnail_frame"], (img.shape[1], img.shape[0]))
    assert img.shape == ref.shape
    assert img.std() > 20, "flat thumbnail"
    corr = np.corrcoef(img.ravel(), ref.ravel())[0, 1]
    # reduced-resolution decodes and Lanczos differ from a plain resize on fine detail
    # (burned-in text): 0.93 on the US frame, which looks identical side by side
    assert corr > 0.9, corr
    # flipped or transposed would not correlate as well
    assert corr > np.corrcoef(img[::-1].ravel(), ref.ravel())[0, 1] + 0.02


def test_monochrome1_is_inverted(rows: dict[str, dict]) -> None:
    """RG1 is MONOCHROME1: high stored values (dense bone) must come out dark."""
    r = rows["RG1_UNCR.dcm"]
    img = _image(r["thumbnail"]).astype(float)
    ds = pydicom.dcmread(sample_file("RG1_UNCR.dcm"))
    raw = np.asarray(
        Image.fromarray(ds.pixel_array.astype(np.float32)).resize((img.shape[1], img.shape[0]))
    )
    assert np.corrcoef(img.ravel(), raw.ravel())[0, 1] < -0.8


def test_colour_thumbnails_are_rgb(rows: dict[str, dict]) -> None:
    for name in ("US1_J2KR.dcm", "OBXXXX1A.dcm", "color3d_jpeg_baseline.dcm"):
        img = _image(rows[name]["thumbnail"])
        assert img.ndim == 3 and img.shape[2] == 3, name
        # colour pixels exist (the echo frame is mostly grey, its Doppler box is not)
        assert np.abs(img[..., 0].astype(int) - img[..., 1]).max() > 30, f"{name} looks grey"


@pytest.mark.parametrize("name", ["broken_j2k.dcm", "panic_rle.dcm"])
def test_broken_pixel_data_keeps_the_row(rows: dict[str, dict], name: str) -> None:
    r = rows[name]
    assert r["thumbnail"] is None
    assert r["thumbnail_error"] and name in r["thumbnail_error"]
    if name == "panic_rle.dcm":
        assert "pylibjpeg-rle failed: PanicException" in r["thumbnail_error"]
    assert r["error"] is None and r["SOPInstanceUID"] and r["meta"]


def test_thumbnail_pass_later(folder: Path, tmp_path: Path) -> None:
    table = tmp_path / "cat"
    cat = Catalog(table)
    cat.catalog(folder, workers=0)
    assert cat.sql("SELECT count(thumbnail) n FROM object_catalog").n[0] == 0
    before = set(DeltaTable(str(table)).file_uris())
    stats = cat.thumbnails(where="Modality = 'CT'", workers=0, fmt="png", size=64)
    rows = cat.sql_arrow(
        "SELECT path, Modality, thumbnail, thumbnail_width FROM object_catalog"
    ).to_pylist()
    assert len(rows) == len({r["path"] for r in rows}) == len(FILES) + 2
    made = {Path(r["path"]).name for r in rows if r["thumbnail"] is not None}
    assert made == {"CT_small.dcm", "693_J2KR.dcm"}
    assert stats.made == 2 and stats.errors == 1  # broken_j2k.dcm is a CT too
    assert set(DeltaTable(str(table)).file_uris()) != before
    # a second pass finds nothing to do; then the rest
    assert cat.thumbnails(where="Modality = 'CT'", workers=0).rows == 0
    rest = cat.thumbnails(workers=2)
    assert rest.made == len(FILES) - 1 - 2 and rest.errors == 1  # panic_rle.dcm
    assert cat.count() == len(FILES) + 2


def test_thumbnail_pass_bad_where(folder: Path, tmp_path: Path) -> None:
    table = tmp_path / "cat"
    Catalog(table).catalog(folder, workers=0)
    out = subprocess.run(
        [*PIXELS, "thumbnails", "--table", str(table), "--where", "Nope = 1"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1 and "Nope" in out.stderr and "Traceback" not in out.stderr


def test_show_writes_a_contact_sheet(rows: dict[str, dict], folder: Path, tmp_path: Path) -> None:
    table = tmp_path / "cat"
    shutil.copytree(folder, tmp_path / "data")
    Catalog(table).catalog(tmp_path / "data", workers=0)  # no thumbnails stored: made on the fly
    out = tmp_path / "sheet.png"
    res = subprocess.run(
        [
            *PIXELS,
            "show",
            "--table",
            str(table),
            "--where",
            "Modality IN ('CT', 'MR')",
            "--out",
            str(out),
            "--size",
            "96",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    # broken_j2k.dcm and panic_rle.dcm have a tile but no image
    assert "5 tiles (3 with an image)" in res.stderr, res.stderr
    sheet = np.asarray(Image.open(out))
    assert sheet.shape[0] > 96 and sheet.std() > 20


def test_public_helpers_in_pixels_dicom() -> None:
    import pixels.dicom as pd_

    ct = sample_file("CT_small.dcm")
    ds = pydicom.dcmread(ct)
    (frame,) = pd_.read_frames(str(ct), frames=[0])
    assert np.array_equal(frame, ds.pixel_array)
    thumb = pd_.thumbnail(str(ct), max_size=64)
    assert thumb is not None and (thumb.width, thumb.height) == (64, 64)
    assert _image(thumb.data).shape == (64, 64)


def test_palette_tables_given_as_bulk_data() -> None:
    """16-bit palettes (65,536 entries) sit in meta as BulkDataURIs: read and applied, either endianness."""
    import pixels.dicom as pd_

    ds = pydicom.dcmread(sample_file("gdcm-US-ALOKA-16.dcm"))
    little = _image(pd_.thumbnail(str(sample_file("gdcm-US-ALOKA-16.dcm")), 128, "png").data)
    big = _image(pd_.thumbnail(str(sample_file("gdcm-US-ALOKA-16_big.dcm")), 128, "png").data)
    assert little.shape == (96, 128, 3) and np.array_equal(little, big)
    from pydicom.pixels import apply_color_lut

    ref = apply_color_lut(ds.pixel_array, ds)
    ref8 = np.asarray(Image.fromarray((ref / 257).astype(np.uint8)).resize((128, 96))).astype(float)
    assert np.corrcoef(little.astype(float).ravel(), ref8.ravel())[0, 1] > 0.9


def test_a_palette_thumbnail_adds_no_warning_to_the_row(tmp_path: Path) -> None:
    """Applying a segmented palette once rebuilt the whole header with pydicom, whose
    warnings landed in the row as faults of the file: "No bulk data URI handler ...
    7FE00010" (tagged (0028,1223)) and Image Type's "Invalid value for VR CS", which the
    header pass (the same file cataloged without thumbnails) does not report."""
    src = tmp_path / "src"
    src.mkdir()
    shutil.copyfile(sample_file("gdcm-US-ALOKA-16.dcm"), src / "us.dcm")
    cat = Catalog(tmp_path / "cat")
    cat.catalog(src, workers=0, thumbnails=True)
    row = cat.sql("SELECT warnings, thumbnail_width, thumbnail_error FROM object_catalog")
    assert row.thumbnail_width[0] == 256 and not isinstance(row.thumbnail_error[0], str)
    assert row.warnings[0] is None, row.warnings[0]


def test_thumbnail_of_a_bit_packed_frame_that_starts_mid_byte(tmp_path: Path) -> None:
    """Frame 2 of a highdicom SEG of 5 x 5 frames starts at bit 50 (bit 2 of byte 6)."""
    from pixels.dicom.meta import read_header
    from pixels.dicom.thumb import thumbnail_from_file

    path = seg_5x5(tmp_path / "seg.dcm")
    ds = pydicom.dcmread(path)
    for frame in range(4):
        with open(path, "rb") as f:
            header = read_header(f, path=str(path))
            thumb = thumbnail_from_file(
                f, header.meta, header.transfer_syntax or "", path=str(path), frame=frame
            )
        assert thumb is not None and (thumb.width, thumb.height) == (5, 5)
        want = to_display(ds.pixel_array[frame], ds.to_json_dict(), frame=frame)
        assert np.array_equal(_image(thumb.data), want), f"frame {frame}"


def test_video_file_is_cataloged_with_a_thumbnail_of_its_first_frame(tmp_path: Path) -> None:
    """H.264 (1.2.840.10008.1.2.4.102): one row, no error, the stream as one frame-index entry,
    and a thumbnail decoded by FFmpeg (PyAV) that looks like the cine's first frame."""
    folder = tmp_path / "data"
    folder.mkdir()
    _, frames = h264_file(folder / "cine.dcm", fragment_size=16384)
    cat = Catalog(tmp_path / "cat")
    cat.catalog(folder, workers=0, thumbnails=True, thumbnail_format="png", thumbnail_size=160)
    (row,) = cat.sql_arrow("SELECT * FROM object_catalog").to_pylist()
    assert row["error"] is None and row["thumbnail_error"] is None, row
    assert row["NumberOfFrames"] == 30 and len(row["frame_offsets"]) == 1
    fragments = row["frame_fragments"][0]  # offset, length, offset, length...
    assert len(fragments) > 2 and sum(fragments[1::2]) == row["frame_lengths"][0]
    assert fragments[0] == row["frame_offsets"][0]
    assert row["thumbnail_frame"] == 0
    img = _image(row["thumbnail"]).astype(float)
    assert img.shape == (120, 160, 3)
    ref = np.asarray(Image.fromarray(frames[0]).resize((160, 120))).astype(float)
    assert np.corrcoef(img.ravel(), ref.ravel())[0, 1] > 0.95
    assert np.abs(img - ref).mean() < 8


@pytest.mark.parametrize("name", ["OBXXXX1A.dcm", "examples_palette.dcm"])
def test_big_endian_palette_color_renders_like_little_endian(name: str, tmp_path: Path) -> None:
    """Explicit VR Big Endian copies (dcmtk ``dcmconv +tb``) of 8-bit PALETTE COLOR images with
    16-bit palette entries: the thumbnail equals the little endian one (it was all black: the
    palette's words were read in the wrong byte order), and the RLE copy's too."""
    import pixels.dicom as pd_

    if shutil.which("dcmconv") is None:
        pytest.skip("dcmtk (dcmconv) not installed")
    big = tmp_path / f"be_{name}"
    subprocess.run(["dcmconv", "+tb", str(sample_file(name)), str(big)], check=True)
    assert pydicom.dcmread(big).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.2"
    little = _image(pd_.thumbnail(str(sample_file(name)), 128, "png").data)
    assert little.ndim == 3 and little.std() > 20
    assert np.array_equal(_image(pd_.thumbnail(str(big), 128, "png").data), little)
    if name == "OBXXXX1A.dcm":
        rle = _image(pd_.thumbnail(str(sample_file("OBXXXX1A_rle.dcm")), 128, "png").data)
        assert np.array_equal(rle, little)


def test_worker_killed_mid_pass_costs_one_thumbnail(tmp_path: Path) -> None:
    """A worker SIGKILLed on a file mid-pass: that row's thumbnail_error names it, all others made.

    The file is replaced by a FIFO after cataloging, so the worker reading it blocks in
    ``open`` and the kill lands mid-chunk, deterministically (as in tests/engines/test_pool.py).
    """
    import os
    import signal
    import threading
    import time

    from corpus import readable_dicom_files
    from pixels.dicom.record import RecordOptions, thumbnail_rows
    from pixels.engines.pool import THUMBNAILS, FilePool
    from pixels.thumbnails import run_thumbnails

    ct = sample_file("CT_small.dcm")
    copy_tree(readable_dicom_files(ct.parent)[:16], tmp_path / "data")
    cat = Catalog(tmp_path / "cat")
    cat.catalog(tmp_path / "data", workers=0)
    opts = RecordOptions(thumbnails=True, thumbnail_format="png", thumbnail_size=32)
    rows0 = cat.sql_arrow(
        "SELECT * FROM object_catalog WHERE frame_offsets IS NOT NULL ORDER BY path"
    ).to_pylist()
    paths = [r["path"] for r in rows0]
    assert len(paths) >= 10
    killer = paths[5]
    # what an undisturbed in-process pass makes for every other file
    want = {r["path"]: t for r, t in zip(rows0, thumbnail_rows(rows0, opts), strict=True)}
    assert sum(t["thumbnail"] is not None for t in want.values()) >= 8
    os.unlink(killer)
    os.mkfifo(killer)
    kills: list[int] = []
    stop = threading.Event()

    def watch(pool: FilePool) -> None:
        seen: set[int] = set()
        while not stop.is_set():
            for pid, row in pool.reading().items():
                if row["path"] == killer and pid not in seen:
                    seen.add(pid)
                    kills.append(pid)
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.005)

    with FilePool(2, opts, memory_limit=None, work=THUMBNAILS) as pool:
        watcher = threading.Thread(target=watch, args=(pool,), daemon=True)
        watcher.start()
        try:
            stats = run_thumbnails(cat.table, options=opts, chunk_rows=4, pool=pool)
        finally:
            stop.set()
            watcher.join()
        assert pool.restarts == 2
    assert len(kills) == 2  # once among the others, once read alone
    got = {
        r["path"]: r
        for r in cat.sql_arrow(
            "SELECT path, thumbnail, thumbnail_error FROM object_catalog "
            "WHERE frame_offsets IS NOT NULL"
        ).to_pylist()
    }
    assert set(got) == set(paths) and stats.rows == len(paths)
    err = got[killer]["thumbnail_error"]
    assert err is not None and killer in err and "SIGKILL" in err and "alone" in err
    assert got[killer]["thumbnail"] is None
    for p in paths:
        if p != killer:
            assert got[p]["thumbnail"] == want[p]["thumbnail"], p
            assert got[p]["thumbnail_error"] == want[p]["thumbnail_error"], p
    assert stats.made == sum(t["thumbnail"] is not None for t in want.values()) - (
        want[killer]["thumbnail"] is not None
    )
