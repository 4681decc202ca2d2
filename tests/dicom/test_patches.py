"""Patches: tiling geometry, foreground filter, per-frame decoding, encoding, the table driver."""

from __future__ import annotations

import io
import json
import shutil
import tracemalloc
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

import pixels
from pixels.dicom.decode import read_frames
from pixels.dicom.frames import index_from_header
from pixels.dicom.meta import read_header
from pixels.dicom.patches import Patch, encode_patch, iter_patches, patch_file, png_supported
from pixels.errors import QueryError
from pixels.patching import PATCH_SCHEMA, DicomPatcher, write_patches

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _file(name: str) -> str:
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} is not installed (pydicom-data)")
    return str(path)


@pytest.fixture(scope="module")
def ct() -> np.ndarray:
    return read_frames(_file("CT_small.dcm"))[0]


def _decode_png(data: bytes, dtype: str) -> np.ndarray:
    arr = np.asarray(Image.open(io.BytesIO(data)))
    dt = np.dtype(dtype)
    return arr.astype(f"u{dt.itemsize}").view(dt)


# --------------------------------------------------------------------------- geometry


def test_tiles_without_overlap(ct: np.ndarray) -> None:
    tiles = list(iter_patches(ct, size=64))
    assert [(p.x, p.y) for p in tiles] == [(0, 0), (64, 0), (0, 64), (64, 64)]
    for p in tiles:
        assert (p.width, p.height, p.valid_width, p.valid_height) == (64, 64, 64, 64)
        assert p.pixels.dtype == ct.dtype and p.pixels.flags.c_contiguous and not p.padded
        assert np.array_equal(p.pixels, ct[p.y : p.y + 64, p.x : p.x + 64])


def test_overlapping_stride(ct: np.ndarray) -> None:
    tiles = list(iter_patches(ct, size=64, stride=32))
    assert len(tiles) == 9
    assert [p.x for p in tiles[:3]] == [0, 32, 64]


def test_stitching_reproduces_the_frame(ct: np.ndarray) -> None:
    out = np.zeros_like(ct)
    for p in iter_patches(ct, size=(32, 16)):  # (height, width)
        assert p.pixels.shape == (32, 16)
        out[p.y : p.y + p.height, p.x : p.x + p.width] = p.pixels
    assert np.array_equal(out, ct)


def test_edges_dropped_or_padded(ct: np.ndarray) -> None:
    assert len(list(iter_patches(ct, size=100))) == 1  # the 28-pixel edges are dropped
    tiles = list(iter_patches(ct, size=100, pad=True, pad_value=-7))
    assert [(p.x, p.y, p.valid_width, p.valid_height) for p in tiles] == [
        (0, 0, 100, 100),
        (100, 0, 28, 100),
        (0, 100, 100, 28),
        (100, 100, 28, 28),
    ]
    for p in tiles:
        assert p.pixels.shape == (100, 100)
        vh, vw = p.valid_height, p.valid_width
        assert np.array_equal(p.pixels[:vh, :vw], ct[p.y : p.y + vh, p.x : p.x + vw])
        assert (p.pixels[vh:, :] == -7).all() and (p.pixels[:, vw:] == -7).all()
    assert tiles[3].padded and not tiles[0].padded


def test_pad_adds_no_tile_already_covered(ct: np.ndarray) -> None:
    # stride 32, size 64: the tile at 64 reaches the edge, none starts at 96
    assert len(list(iter_patches(ct, size=64, stride=32, pad=True))) == 9
    assert len(list(iter_patches(ct, size=200, pad=True))) == 1


def test_bad_arguments(ct: np.ndarray) -> None:
    with pytest.raises(ValueError, match="size"):
        list(iter_patches(ct, size=0))
    with pytest.raises(ValueError, match="min_foreground"):
        list(iter_patches(ct, size=8, min_foreground=2))
    with pytest.raises(ValueError, match="expected one of"):
        DicomPatcher(fmt="jpeg")
    with pytest.raises(ValueError, match="all, middle"):
        DicomPatcher(frames="first")


def test_min_foreground_skips_air() -> None:
    frame = read_frames(_file("693_J2KR.dcm"))[0]  # 512x512 head CT, -2000 outside the FOV
    every = list(iter_patches(frame, size=64))
    assert len(every) == 64
    # default background: the frame's minimum (the padding outside the field of view)
    inside = list(iter_patches(frame, size=64, min_foreground=0.05))
    assert len(inside) == 60
    # background given as a stored value: -900 HU with RescaleIntercept -1024 -> 124
    tissue = list(iter_patches(frame, size=64, min_foreground=0.05, background=124))
    assert 20 < len(tissue) < 50
    for p in tissue:
        assert np.count_nonzero(p.pixels > 124) >= 0.05 * 64 * 64
    kept = {(p.x, p.y) for p in tissue}
    for p in every:
        if (p.x, p.y) not in kept:
            assert np.count_nonzero(p.pixels > 124) < 0.05 * 64 * 64
    assert (256, 256) in kept and (0, 0) not in kept


def test_colour_tiles() -> None:
    rgb = read_frames(_file("SC_rgb.dcm"))[0]
    tiles = list(iter_patches(rgb, size=32, pad=True, pad_value=255))
    assert tiles[0].pixels.shape == (32, 32, 3)
    p = tiles[-1]
    assert np.array_equal(
        p.pixels[: p.valid_height, : p.valid_width],
        rgb[p.y : p.y + p.valid_height, p.x : p.x + p.valid_width],
    )


# --------------------------------------------------------------------------- files


def _open(name: str) -> tuple[Any, dict[str, Any], str, Any]:
    path = _file(name)
    fp = open(path, "rb")  # noqa: SIM115 - closed by the caller
    header = read_header(fp, path=path)
    meta = json.loads(header.meta)
    index = index_from_header(fp, meta, path=path)
    return fp, meta, header.transfer_syntax or "", index


def test_multi_frame_matches_pydicom() -> None:
    path = _file("emri_small.dcm")
    expected = pydicom.dcmread(path).pixel_array
    fp, meta, ts, index = _open("emri_small.dcm")
    with fp:
        tiles = list(patch_file(fp, meta, ts, index, path=path, size=24, stride=20))
    assert {p.frame for p in tiles} == set(range(10))
    assert len(tiles) == 10 * 3 * 3
    for p in tiles:
        assert np.array_equal(
            p.pixels, expected[p.frame, p.y : p.y + p.height, p.x : p.x + p.width]
        )


def test_chosen_frames_and_bad_frame() -> None:
    path = _file("emri_small.dcm")
    fp, meta, ts, index = _open("emri_small.dcm")
    with fp:
        tiles = list(patch_file(fp, json.dumps(meta), ts, index, frames=[3, 7], path=path, size=64))
        assert [p.frame for p in tiles] == [3, 7]
        with pytest.raises(pixels.PixelsError, match="frame 10 out of range"):
            list(patch_file(fp, meta, ts, index, frames=[10], path=path, size=64))


def test_large_frame_memory_is_one_frame_not_all_tiles() -> None:
    path = _file("RG1_J2KR.dcm")  # 1955 x 1841, 16-bit
    fp, meta, ts, index = _open("RG1_J2KR.dcm")
    frame_bytes = 1955 * 1841 * 2
    n = 0
    total = 0
    with fp:
        tracemalloc.start()
        try:
            for p in patch_file(fp, meta, ts, index, path=path, size=128, stride=16):
                n += 1
                total += int(p.pixels[0, 0])
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert n > 10_000  # 400+ MB of tiles if they were all held
    assert peak < 4 * frame_bytes, (peak, frame_bytes)


# --------------------------------------------------------------------------- encoding


@pytest.mark.parametrize("dtype", ["uint16", "int16", "uint8", "int8"])
def test_png_round_trips_grey(dtype: str) -> None:
    rng = np.random.default_rng(1)
    info = np.iinfo(dtype)
    px = rng.integers(info.min, info.max, (37, 53), endpoint=True).astype(dtype)
    px[0, :4] = [info.min, info.max, 0, 1]
    p = Patch(0, 0, 0, 53, 37, px, 53, 37)
    assert np.array_equal(_decode_png(encode_patch(p, "png"), dtype), px)
    assert np.array_equal(np.frombuffer(encode_patch(p, "raw"), dtype).reshape(37, 53), px)


def test_png_round_trips_real_ct_and_rgb(ct: np.ndarray) -> None:
    p = next(iter_patches(ct, size=64, stride=64))
    data = encode_patch(p, "png")
    assert data[:4] == b"\x89PNG"
    assert np.array_equal(_decode_png(data, "int16"), p.pixels)
    rgb = read_frames(_file("SC_rgb.dcm"))[0]
    q = next(iter_patches(rgb, size=(20, 30)))
    back = np.asarray(Image.open(io.BytesIO(encode_patch(q, "png"))))
    assert back.shape == (20, 30, 3) and np.array_equal(back, q.pixels)


def test_png_refuses_what_it_cannot_hold() -> None:
    assert not png_supported("uint32", 1) and not png_supported("uint16", 3)
    p = Patch(0, 0, 0, 2, 2, np.zeros((2, 2, 3), np.uint16), 2, 2)
    with pytest.raises(ValueError, match="use 'raw'"):
        encode_patch(p, "png")
    with pytest.raises(ValueError, match="unknown patch format"):
        encode_patch(p, "tiff")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- table driver


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("CT_small.dcm", "693_J2KR.dcm", "emri_small.dcm", "SC_rgb_16bit.dcm"):
        shutil.copy(_file(name), src / name)
    shutil.copy(_file("CT_small.dcm"), src / "cut.dcm")
    with zipfile.ZipFile(src / "study.zip", "w") as zf:
        zf.write(_file("CT_small.dcm"), "inner/ct.dcm")
    return src


def test_write_patches_end_to_end(tmp_path: Path, folder: Path) -> None:
    import deltalake
    import duckdb

    cat = pixels.Catalog(tmp_path / "cat")
    cat.catalog(folder, workers=0)
    # corrupt one file after cataloging: its pixel data is now cut short
    cut = folder / "cut.dcm"
    cut.write_bytes(cut.read_bytes()[:-5000])
    out = str(tmp_path / "patches")

    stats = write_patches(cat, out, where="Modality = 'CT'", size=64, min_foreground=0.01)
    # CT_small (4 tiles), its zipped copy (4), 693_J2KR (60 of 64), cut.dcm (error)
    assert stats["files"] == 4 and stats["errors"] == 1 and stats["patches"] == 68

    table = deltalake.DeltaTable(out).to_pyarrow_table()
    assert table.schema.equals(PATCH_SCHEMA, check_metadata=False)
    assert table.num_rows == 69
    errors = table.filter(pa.compute.is_valid(table["error"])).to_pylist()
    assert len(errors) == 1 and errors[0]["source_path"].endswith("cut.dcm")
    assert "truncated" in errors[0]["error"] and errors[0]["data"] is None

    con = duckdb.connect()
    con.register("patches", table)
    rows = con.sql(
        "SELECT source_path, frame, x, y, width, height, dtype, format, data FROM patches "
        "WHERE source_path LIKE '%693_J2KR.dcm' AND x = 256 AND y = 192"
    ).fetchall()
    assert len(rows) == 1
    _, frame, x, y, w, h, dtype, fmt, data = rows[0]
    expected = pydicom.dcmread(_file("693_J2KR.dcm")).pixel_array[y : y + h, x : x + w]
    assert (frame, dtype, fmt) == (0, "int16", "png")
    assert np.array_equal(_decode_png(data, dtype), expected)
    zipped = con.execute("SELECT count(*) FROM patches WHERE source_path LIKE 'zip://%'").fetchone()
    assert zipped == (4,)

    # appending: a second run adds rows, same schema
    again = write_patches(cat, out, where="Modality = 'MR'", size=32, frames="middle", fmt="raw")
    assert again["files"] == 1 and again["patches"] == 4 and again["errors"] == 0
    rows2 = deltalake.DeltaTable(out).to_pyarrow_table().to_pylist()
    raw = [r for r in rows2 if r["format"] == "raw"]
    assert len(raw) == 4 and {r["frame"] for r in raw} == {5}
    expected_mr = pydicom.dcmread(_file("emri_small.dcm")).pixel_array[5]
    for r in raw:
        arr = np.frombuffer(r["data"], r["dtype"]).reshape(r["height"], r["width"])
        assert np.array_equal(arr, expected_mr[r["y"] : r["y"] + 32, r["x"] : r["x"] + 32])


def test_write_patches_bad_sql_and_empty(tmp_path: Path, folder: Path) -> None:
    import deltalake

    cat = pixels.Catalog(tmp_path / "cat")
    cat.catalog(folder, workers=0)
    with pytest.raises(QueryError, match="Nope"):
        write_patches(cat, str(tmp_path / "p1"), where="Nope = 1")
    with pytest.raises(QueryError):
        write_patches(cat, str(tmp_path / "p1"), where="Modality = ")
    stats = write_patches(cat, str(tmp_path / "p2"), where="Modality = 'XX'")
    assert stats["files"] == 0 and stats["patches"] == 0
    assert deltalake.DeltaTable(str(tmp_path / "p2")).to_pyarrow_table().num_rows == 0


def test_patcher_on_a_dataframe_falls_back_to_raw(tmp_path: Path, folder: Path) -> None:
    cat = pixels.Catalog(tmp_path / "cat")
    cat.catalog(folder, workers=0)
    df = cat.sql("SELECT * FROM object_catalog WHERE path LIKE '%SC_rgb_16bit.dcm'")
    batches = list(DicomPatcher(50, fmt="png", batch_rows=3).transform(df))
    assert all(b.num_rows <= 3 for b in batches)
    rows = pa.Table.from_batches(batches).to_pylist()
    assert len(rows) == 4 and all(r["error"] is None for r in rows)
    r = rows[0]
    assert (r["format"], r["dtype"], r["samples"]) == ("raw", "uint16", 3)
    frame = pydicom.dcmread(_file("SC_rgb_16bit.dcm")).pixel_array
    arr = np.frombuffer(r["data"], r["dtype"]).reshape(50, 50, 3)
    assert np.array_equal(arr, frame[:50, :50])
