"""Decoding real files against pydicom's pixel_array."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels import pixel_array

from pixels.dicom import codecs
from pixels.dicom.decode import PixelInfo, decode_frame, read_frames
from pixels.errors import DecodeError, DicomReadError

PYDICOM_DIR = Path(get_testdata_file("CT_small.dcm", download=False)).parent
_emri = get_testdata_file("emri_small.dcm", download=False)
DATA_DIR = Path(_emri).parent if _emri else None
LOSSY = {codecs.JPEG_BASELINE, codecs.JPEG_EXTENDED, codecs.J2K, codecs.JPEG_LS_NEAR, codecs.HTJ2K}


def _files() -> list[Path]:
    out = sorted(PYDICOM_DIR.glob("*.dcm"))
    if DATA_DIR:
        out += sorted(DATA_DIR.glob("*.dcm"))
    return out


def _psnr(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


def _check(path: Path, frames: list[int] | None = None) -> None:
    ds = pydicom.dcmread(path)
    ts = str(ds.file_meta.TransferSyntaxUID)
    n = int(ds.get("NumberOfFrames", 1) or 1)
    if frames is None:
        frames = list(range(n)) if n <= 16 else [0, n // 2, n - 1]
    got = read_frames(str(path), frames)
    info = PixelInfo.from_dataset(ds)
    for i, arr in zip(frames, got, strict=True):
        ref = pixel_array(ds, index=i, as_rgb=False)
        assert arr.shape == ref.shape, (path.name, i)
        assert arr.dtype.kind == ref.dtype.kind and arr.dtype.itemsize == ref.dtype.itemsize
        if ts in LOSSY:
            peak = float(2 ** min(info.bits_stored, 8 * ref.dtype.itemsize) - 1)
            assert _psnr(arr, ref, peak) >= 40, path.name
        else:
            np.testing.assert_array_equal(arr, ref, err_msg=f"{path.name} frame {i}")


def _ok_for_pydicom(path: Path) -> bool:
    try:
        ds = pydicom.dcmread(path)
        if "PixelData" not in ds:
            return False
        pixel_array(ds, index=0, as_rgb=False)
        return True
    except Exception:
        return False


SMALL = [p for p in _files() if p.stat().st_size < 1_500_000 and _ok_for_pydicom(p)]


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("path", SMALL, ids=lambda p: p.name)
def test_matches_pydicom(path: Path) -> None:
    _check(path)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize(
    "name", ["color3d_jpeg_baseline.dcm", "RG1_J2KR.dcm", "RG3_J2KI.dcm", "RG1_UNCR.dcm"]
)
def test_large_files(name: str) -> None:
    p = get_testdata_file(name, download=False)
    if p is None:
        pytest.skip("pydicom-data not installed")
    _check(Path(p))


def _check_index_path(path: Path) -> None:
    """What thumbnails and WADO-RS do (header JSON -> frame index -> read_frame -> decode_frame)
    gives pydicom's frames too."""
    import json

    from pixels.dicom.frames import index_from_header, read_frame
    from pixels.dicom.meta import read_header

    ds = pydicom.dcmread(path)
    ts = str(ds.file_meta.TransferSyntaxUID)
    with open(path, "rb") as f:
        header = read_header(f, path=str(path))
        meta = json.loads(header.meta)
        index = index_from_header(f, meta, path=str(path), transfer_syntax=header.transfer_syntax)
        if index is None:
            assert ts == codecs.DEFLATED_LE, path.name
            return
        info = PixelInfo.from_json(meta, header.transfer_syntax or "")
        n = len(index)
        for i in range(n) if n <= 16 else [0, n // 2, n - 1]:
            arr = decode_frame(read_frame(f, index, i), info, path=str(path))
            ref = pixel_array(ds, index=i, as_rgb=False)
            assert arr.shape == ref.shape, (path.name, i)
            if ts in LOSSY:
                peak = float(2 ** min(info.bits_stored, 8 * ref.dtype.itemsize) - 1)
                assert _psnr(arr, ref, peak) >= 40, path.name
            else:
                np.testing.assert_array_equal(arr, ref, err_msg=f"{path.name} frame {i}")


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("path", SMALL, ids=lambda p: p.name)
def test_frame_index_path_matches_pydicom(path: Path) -> None:
    _check_index_path(path)


def test_odd_sized_frames_through_the_frame_index() -> None:
    """SC_rgb_small_odd*: 3 x 3 RGB (27 bytes); the big endian copy is 8-bit written as OW, so
    its last pixel sits in the byte pair that holds the value's padding byte."""
    for name in ("SC_rgb_small_odd.dcm", "SC_rgb_small_odd_big_endian.dcm"):
        _check_index_path(Path(get_testdata_file(name, download=False)))


def test_native_ybr_full_422_with_odd_columns_is_a_clear_error() -> None:
    info = PixelInfo(codecs.EXPLICIT_LE, 3, 5, 3, 8, 8, 0, "YBR_FULL_422", 0, 1)
    with pytest.raises(
        DecodeError, match=r"odd\.dcm: .*even number of Columns \(0028,0011\), got 5"
    ):
        decode_frame(bytes(30), info, path="odd.dcm")


# --------------------------------------------------------------- dcmtk transcodes

DCMTK = {
    "jpeg_sv1": ("dcmcjpeg", ["+e1"], codecs.JPEG_LOSSLESS_SV1),
    "jpeg_p14": ("dcmcjpeg", ["+el"], codecs.JPEG_LOSSLESS),
    "jpeg_12bit": ("dcmcjpeg", ["+ee"], codecs.JPEG_EXTENDED),
    "jpeg_ls": ("dcmcjpls", [], codecs.JPEG_LS_LOSSLESS),
    "rle": ("dcmcrle", [], codecs.RLE_LOSSLESS),
    "big_endian": ("dcmconv", ["+tb"], codecs.EXPLICIT_BE),
    "deflated": ("dcmconv", ["+td"], codecs.DEFLATED_LE),
}


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("kind", sorted(DCMTK))
@pytest.mark.parametrize("src", ["CT_small.dcm", "emri_small.dcm"])
def test_dcmtk_transcodes(kind: str, src: str, tmp_path: Path) -> None:
    tool, args, ts = DCMTK[kind]
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} not installed")
    p = get_testdata_file(src, download=False)
    if p is None:
        pytest.skip("pydicom-data not installed")
    out = tmp_path / "out.dcm"
    subprocess.run([tool, *args, p, str(out)], check=True, capture_output=True)
    assert str(pydicom.dcmread(out, stop_before_pixels=True).file_meta.TransferSyntaxUID) == ts
    _check(out)
    if ts in LOSSY:  # also close to the original
        from pydicom.pixels import apply_modality_lut

        ods, nds = pydicom.dcmread(p), pydicom.dcmread(out)
        orig = apply_modality_lut(pixel_array(ods, index=0), ods)
        got = apply_modality_lut(read_frames(str(out))[0], nds)
        assert _psnr(got, orig, float(orig.max() - orig.min())) >= 40


def _htj2k_file(tmp_path: Path, syntax: str = codecs.HTJ2K_LOSSLESS) -> Path:
    import imagecodecs  # a test dependency (pyproject [test])
    from pydicom.encaps import encapsulate

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    arr = ds.pixel_array
    enc = imagecodecs.htj2k_encode(arr, level=0)  # level 0: reversible
    ds.PixelData = encapsulate([bytes(enc)])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = syntax
    out = tmp_path / "htj2k.dcm"
    ds.save_as(out, enforce_file_format=True)
    return out


@pytest.mark.parametrize(
    "syntax",
    ["1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"],
    ids=["HTJ2K-lossless", "HTJ2K-RPCL", "HTJ2K"],
)
def test_htj2k(tmp_path: Path, syntax: str) -> None:
    """The same reversible HTJ2K codestream under each of the three HTJ2K UIDs (.203 allows
    lossless too; .202 asks for RPCL order, which the decoder does not depend on)."""
    out = _htj2k_file(tmp_path, syntax)
    ref = pydicom.dcmread(get_testdata_file("CT_small.dcm")).pixel_array
    got = read_frames(str(out))[0]
    np.testing.assert_array_equal(got, ref)
    half = read_frames(str(out), reduce=1)[0]
    assert half.shape == (64, 64)


@pytest.mark.parametrize("reduce", [1, 2])
@pytest.mark.parametrize("name", ["MR2_J2KR.dcm", "US1_J2KR.dcm", "693_J2KR.dcm", "JPEG2000.dcm"])
def test_reduce_j2k(name: str, reduce: int) -> None:
    p = get_testdata_file(name, download=False)
    if p is None:
        pytest.skip("pydicom-data not installed")
    full = read_frames(p)[0]
    small = read_frames(p, reduce=reduce)[0]
    step = 2**reduce
    h, w = -(-full.shape[0] // step), -(-full.shape[1] // step)
    assert small.shape[:2] == (h, w)
    assert small.dtype == full.dtype
    # wavelet low-pass vs block mean: close relative to the dynamic range
    pad = np.zeros((h * step, w * step, *full.shape[2:]), dtype=np.float64)
    pad[: full.shape[0], : full.shape[1]] = full
    mean = pad.reshape(h, step, w, step, *full.shape[2:]).mean(axis=(1, 3))
    rng = float(full.max()) - float(full.min()) or 1.0
    assert float(np.median(np.abs(small - mean))) / rng < 0.02


def test_reduce_jpeg_baseline_uses_dct_scaling() -> None:
    p = get_testdata_file("SC_rgb_jpeg_dcmtk.dcm")
    full = read_frames(p)[0]
    small = read_frames(p, reduce=1)[0]
    assert small.shape == (50, 50, 3)
    mean = full.astype(float).reshape(50, 2, 50, 2, 3).mean(axis=(1, 3))
    assert np.abs(small - mean).mean() < 8


def test_reduce_native_strides() -> None:
    p = get_testdata_file("CT_small.dcm")
    full = read_frames(p)[0]
    np.testing.assert_array_equal(read_frames(p, reduce=2)[0], full[::4, ::4])


def test_from_json_matches_from_dataset() -> None:
    ds = pydicom.dcmread(get_testdata_file("SC_rgb_rle_2frame.dcm"))
    a = PixelInfo.from_dataset(ds)
    b = PixelInfo.from_json(ds.to_json_dict(), str(ds.file_meta.TransferSyntaxUID))
    assert a == b
    assert a.decoded_photometric == "RGB"


def test_decoded_photometric() -> None:
    base = {"rows": 1, "columns": 2, "samples_per_pixel": 3, "bits_allocated": 8}
    more = {"bits_stored": 8, "pixel_representation": 0, "planar_configuration": 0}
    mk = lambda ts, pi: PixelInfo(ts, **base, **more, photometric=pi, number_of_frames=1)  # noqa: E731
    assert mk(codecs.J2K_LOSSLESS, "YBR_RCT").decoded_photometric == "RGB"
    assert mk(codecs.JPEG_BASELINE, "YBR_FULL_422").decoded_photometric == "YBR_FULL"
    assert mk(codecs.EXPLICIT_LE, "YBR_FULL").decoded_photometric == "YBR_FULL"


def test_codec_status_and_missing_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    st = codecs.codec_status()
    for ts in [
        codecs.JPEG_BASELINE,
        codecs.J2K,
        codecs.HTJ2K,
        codecs.RLE_LOSSLESS,
        codecs.JPEG_LS_NEAR,
    ]:
        assert any(ok for _, ok, _ in st[ts]), ts
    gdcm = [r for _, ok, r in st[codecs.J2K] if not ok]
    assert all(r for r in gdcm)  # unavailable ones say why
    # a registry with no importable backend gives a DecodeError naming what to install
    broken = codecs.Backend("pylibjpeg-rle", "no_such_module_xyz", codecs.RLE.decode)
    monkeypatch.setitem(codecs.REGISTRY, codecs.RLE_LOSSLESS, [broken])
    ds = pydicom.dcmread(get_testdata_file("MR_small_RLE.dcm"))
    with pytest.raises(DecodeError) as e:
        read_frames(get_testdata_file("MR_small_RLE.dcm"))
    msg = str(e.value)
    assert "MR_small_RLE.dcm" in msg and codecs.RLE_LOSSLESS in msg
    assert "pip install pylibjpeg-rle" in msg and "no_such_module_xyz" in msg
    del ds


def test_corrupt_frame_is_decode_error() -> None:
    info = PixelInfo(codecs.J2K_LOSSLESS, 8, 8, 1, 16, 16, 0, "MONOCHROME2", 0, 1)
    with pytest.raises(DecodeError, match=r"x\.dcm"):
        decode_frame(b"\x00" * 64, info, path="x.dcm")


def test_reduce_is_done_by_the_codec_not_by_striding() -> None:
    """reduce=2 on JPEG 2000 asks openjpeg for resolution level 2 (the speed-up is measured in
    bench/bench_thumbnails.py, never asserted here): the backend reports the reduction applied."""
    from pydicom.encaps import generate_frames

    p = get_testdata_file("US1_J2KR.dcm", download=False)
    ds = pydicom.dcmread(p)
    info = PixelInfo.from_dataset(ds)
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    backend = codecs.backends_for(str(ds.file_meta.TransferSyntaxUID), info, reduce=2)[0]
    arr, applied = backend.run(frame, info, 2)
    assert applied == 2 and arr.shape[:2] == (-(-ds.Rows // 4), -(-ds.Columns // 4))


def test_a_panicking_codec_is_a_decode_error_of_the_file() -> None:
    """pylibjpeg-rle panics (``pyo3_runtime.PanicException``, a BaseException) on a real RLE
    frame whose first run replicates past the segment's end: one DecodeError naming the file."""
    from pydicom.encaps import generate_frames

    ds = pydicom.dcmread(get_testdata_file("MR_small_RLE.dcm"))
    frame = bytearray(next(generate_frames(ds.PixelData, number_of_frames=1)))
    frame[int.from_bytes(frame[4:8], "little")] = 0x81
    info = PixelInfo.from_dataset(ds)
    with pytest.raises(DecodeError) as e:
        decode_frame(bytes(frame), info, path="panic.dcm")
    assert str(e.value).startswith("panic.dcm: could not decode frame (RLE Lossless): ")
    assert "pylibjpeg-rle failed: PanicException: index out of bounds" in str(e.value)
    assert isinstance(e.value, Exception)


def _rewritten(name: str, tmp_path: Path, **values: object) -> Path:
    ds = pydicom.dcmread(get_testdata_file(name, download=False))
    for k, v in values.items():
        setattr(ds, k, v)
    out = tmp_path / f"lie_{name}"
    ds.save_as(out)
    return out


@pytest.mark.parametrize(
    ("name", "values", "words"),
    [
        # the decoder would allocate 65535 x 65535 x 2 bytes from the header alone
        ("MR_small_RLE.dcm", {"Rows": 65535, "Columns": 65535}, "RLE expands at most 64 times"),
        ("MR_small_RLE.dcm", {"SamplesPerPixel": 4}, "SamplesPerPixel (0028,0002) 4"),
        (
            "MR_small_jpeg_ls_lossless.dcm",
            {"Rows": 65535, "Columns": 65535},
            "codestream declares 64 x 64 x 1 samples, the header says Rows (0028,0010) 65535",
        ),
        ("JPEG2000.dcm", {"Rows": 7}, "the header says Rows (0028,0010) 7 x"),
    ],
)
def test_headers_lying_about_the_image_size(
    tmp_path: Path, name: str, values: dict, words: str
) -> None:
    """Real files whose header no longer matches their codestream: a DecodeError naming the
    file and the tags, before the decoder allocates from the header or shows a wrong image."""
    path = _rewritten(name, tmp_path, **values)
    with pytest.raises(DecodeError) as e:
        read_frames(str(path))
    assert str(e.value).startswith(f"{path}: ") and words in str(e.value), str(e.value)


def test_read_frames_of_a_video(tmp_path: Path) -> None:
    """read_frames on an H.264 cine (a real US cine re-encoded with libx264) decodes the frames
    asked for, as RGB, close to the frames the stream was made from."""
    from corpus import h264_file

    path, source = h264_file(tmp_path / "cine.dcm", fragment_size=16384)
    got = read_frames(str(path), [0, 14, 29])
    for arr, i in zip(got, (0, 14, 29), strict=True):
        assert arr.shape == source[i].shape and arr.dtype == np.uint8
        assert _psnr(arr, source[i], 255.0) > 30, i
    with pytest.raises(DicomReadError, match="frame 30 out of range"):
        read_frames(str(path), [30])


@pytest.mark.parametrize(
    ("name", "marker", "at"),
    [
        ("JPEG2000.dcm", b"\xff\x4f\xff\x51", 8),  # SIZ: Xsiz, Ysiz (32-bit)
        ("SC_rgb_jpeg_dcmtk.dcm", b"\xff\xc0", 5),  # SOF0: Y, X (16-bit)
        ("MR_small_jpeg_ls_lossless.dcm", b"\xff\xf7", 5),  # SOF55
    ],
)
def test_codestream_lying_about_its_size_is_refused_before_decoding(
    name: str, marker: bytes, at: int
) -> None:
    """A real frame whose codestream header claims 65535 x 65535 (the DICOM header is honest):
    refused from the marker segment, before a codec allocates gigabytes for it."""
    from pydicom.encaps import generate_frames

    ds = pydicom.dcmread(get_testdata_file(name, download=False))
    frame = bytearray(next(generate_frames(ds.PixelData, number_of_frames=1)))
    pos = frame.index(marker) + at
    if marker == b"\xff\x4f\xff\x51":
        frame[pos : pos + 8] = (65535).to_bytes(4, "big") * 2
    else:
        frame[pos : pos + 4] = (65535).to_bytes(2, "big") * 2
    with pytest.raises(DecodeError) as e:
        decode_frame(bytes(frame), PixelInfo.from_dataset(ds), path="x.dcm")
    assert "codestream declares 65535 x 65535 x" in str(e.value)
    assert f"the header says Rows (0028,0010) {ds.Rows} x Columns (0028,0011) {ds.Columns}" in str(
        e.value
    )


def test_header_and_codestream_agreeing_on_an_impossible_size_are_refused() -> None:
    """A real 1024 x 256 J2K frame (3 KB) whose DICOM header and SIZ both claim 65535 x 65535:
    no codec makes 8.6 GB from 3 KB; refused before decoding."""
    from pydicom.encaps import generate_frames

    ds = pydicom.dcmread(get_testdata_file("JPEG2000.dcm", download=False))
    frame = bytearray(next(generate_frames(ds.PixelData, number_of_frames=1)))
    pos = frame.index(b"\xff\x4f\xff\x51") + 8
    frame[pos : pos + 16] = (65535).to_bytes(4, "big") * 2 + bytes(8)
    ds.Rows = ds.Columns = 65535
    with pytest.raises(DecodeError) as e:
        decode_frame(bytes(frame), PixelInfo.from_dataset(ds), path="x.dcm")
    assert "cannot decode to Rows (0028,0010) 65535 x Columns (0028,0011) 65535" in str(e.value)


@pytest.mark.parametrize("name", ["693_UNCI.dcm", "MR2_UNCI.dcm"])
def test_bits_above_bits_stored_are_masked_or_sign_extended(name: str, tmp_path: Path) -> None:
    """Stored words with bits set above Bits Stored decode as pydicom decodes them (masked
    when unsigned, sign-extended when signed); clean words are returned as they are."""
    src = get_testdata_file(name)
    ds = pydicom.dcmread(src)
    info = PixelInfo.from_dataset(ds)
    assert info.bits_stored < info.bits_allocated == 16
    clean = decode_frame(ds.PixelData, info)
    np.testing.assert_array_equal(clean, ds.pixel_array)
    words = np.frombuffer(ds.PixelData, "<u2").copy()
    words[::7] |= np.uint16(0xFFFF << info.bits_stored & 0xFFFF)  # garbage in the high bits
    words[1::7] &= np.uint16((1 << info.bits_stored) - 1)  # and some cleared (negatives)
    ds.PixelData = words.tobytes()
    ds.save_as(tmp_path / "high.dcm")
    want = pydicom.dcmread(tmp_path / "high.dcm").pixel_array
    got = decode_frame(ds.PixelData, info)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    assert not np.array_equal(got.view("<u2"), words.reshape(got.shape))  # it did change
