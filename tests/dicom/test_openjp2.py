"""The ctypes binding to the system libopenjp2, on real JPEG 2000 / HTJ2K files."""

from __future__ import annotations

import gc
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels import pixel_array
from pydicom.uid import UID

from pixels.dicom import codecs, openjp2
from pixels.dicom.decode import read_frames
from pixels.errors import DecodeError

OK, REASON = openjp2.available()
pytestmark = [
    pytest.mark.skipif(not OK, reason=f"libopenjp2 not loadable: {REASON}"),
    pytest.mark.filterwarnings("ignore"),
]

PYDICOM_DIR = Path(str(get_testdata_file("CT_small.dcm", download=False))).parent
_emri = get_testdata_file("emri_small.dcm", download=False)
DATA_DIR = Path(str(_emri)).parent if _emri else None
LOSSY = {codecs.J2K, codecs.HTJ2K}


def _j2k_files() -> list[Path]:
    """Every J2K / HTJ2K file of pydicom and pydicom-data that pydicom itself decodes."""
    out = []
    folders = [PYDICOM_DIR] + ([DATA_DIR] if DATA_DIR else [])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for p in sorted(f for d in folders for f in d.glob("*.dcm")):
            try:
                ds = pydicom.dcmread(p)
                ts = str(ds.file_meta.TransferSyntaxUID)
                if ts not in codecs.J2K_SYNTAXES or "PixelData" not in ds:
                    continue
                pixel_array(ds, index=0, as_rgb=False)
            except Exception:
                continue
            out.append(p)
    return out


FILES = _j2k_files()


@pytest.fixture(scope="module")
def htj2k_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CT_small re-encoded as lossless HTJ2K with imagecodecs."""
    imagecodecs = pytest.importorskip("imagecodecs")
    ds = pydicom.dcmread(str(get_testdata_file("CT_small.dcm")))
    data = imagecodecs.htj2k_encode(ds.pixel_array, level=0)
    ds.PixelData = encapsulate([data])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = UID(codecs.HTJ2K_LOSSLESS)
    out = tmp_path_factory.mktemp("htj2k") / "CT_small_htj2k.dcm"
    ds.save_as(out, enforce_file_format=True)
    return out


def _all(extra: Path) -> list[Path]:
    return [*FILES, extra]


@pytest.fixture
def only_openjp2(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make openjp2-ctypes the only J2K backend, full and reduced."""
    for ts in codecs.J2K_SYNTAXES:
        monkeypatch.setitem(codecs.REGISTRY, ts, [codecs.OPENJP2])
        monkeypatch.setitem(codecs.REDUCERS, ts, [codecs.OPENJP2])
    yield


def _first_frame(path: Path) -> bytes:
    ds = pydicom.dcmread(path)
    n = int(ds.get("NumberOfFrames", 1) or 1)
    return bytes(next(generate_frames(ds.PixelData, number_of_frames=n)))


def _psnr(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(peak**2 / mse))


def _block_mean(a: np.ndarray, k: int) -> np.ndarray:
    """Mean of each 2^k x 2^k block (edge blocks padded by repetition): ceil shape."""
    s = 1 << k
    h, w = a.shape[:2]
    ph, pw = -(-h // s) * s, -(-w // s) * s
    pad = [(0, ph - h), (0, pw - w)] + [(0, 0)] * (a.ndim - 2)
    f = np.pad(a.astype(np.float64), pad, mode="edge")
    return f.reshape(ph // s, s, pw // s, s, *a.shape[2:]).mean(axis=(1, 3))


def test_found_the_files(htj2k_file: Path) -> None:
    names = {p.name for p in FILES}
    assert {"693_J2KR.dcm", "MR_small_jp2klossless.dcm", "US1_J2KR.dcm"} <= names or not DATA_DIR
    assert len(FILES) >= 4


def test_full_decode_matches_pydicom(htj2k_file: Path, only_openjp2: None) -> None:
    for path in _all(htj2k_file):
        ds = pydicom.dcmread(path)
        ts = str(ds.file_meta.TransferSyntaxUID)
        ref = pixel_array(ds, index=0, as_rgb=False)
        got = read_frames(str(path))[0]
        assert got.shape == ref.shape, path.name
        assert got.dtype == ref.dtype, (path.name, got.dtype, ref.dtype)
        if ts in LOSSY:
            peak = float(2 ** min(int(ds.BitsStored), 8 * ref.dtype.itemsize) - 1)
            assert _psnr(got, ref, peak) >= 40, path.name
        else:
            np.testing.assert_array_equal(got, ref, err_msg=path.name)


def test_raw_decode_matches_pylibjpeg_openjpeg(htj2k_file: Path) -> None:
    openjpeg = pytest.importorskip("openjpeg")
    for path in _all(htj2k_file):
        data = _first_frame(path)
        got = openjp2.decode(data)
        ref = np.asarray(openjpeg.decode(data))
        assert got.dtype == ref.dtype, path.name
        np.testing.assert_array_equal(got, ref, err_msg=path.name)  # incl. inverse RCT/ICT


@pytest.mark.parametrize("k", [1, 2])
def test_reduced_shape_and_values(htj2k_file: Path, only_openjp2: None, k: int) -> None:
    for path in _all(htj2k_file):
        full = read_frames(str(path))[0]
        got = read_frames(str(path), reduce=k)[0]
        rows, cols = full.shape[:2]
        assert got.shape == (-(-rows // (1 << k)), -(-cols // (1 << k)), *full.shape[2:])
        assert got.dtype == full.dtype
        ref = _block_mean(full, k)
        span = float(full.max()) - float(full.min()) or 1.0
        err = float(np.mean(np.abs(got.astype(np.float64) - ref))) / span
        # the wavelet low-pass is not a box filter: small detailed images (emri 64x64,
        # k=2) differ by up to ~9 % of the range, large ones by < 2 %
        assert err < 0.1, (path.name, err)
        corr = float(np.corrcoef(got.astype(np.float64).ravel(), ref.ravel())[0, 1])
        assert corr > 0.8, (path.name, corr)  # speckled US1 at k=2: 0.86; stride: 0.79


def test_signed_values_survive_reduction(only_openjp2: None) -> None:
    p = get_testdata_file("693_J2KR.dcm", download=False)
    if p is None:
        pytest.skip("pydicom-data not installed")
    full = read_frames(str(p))[0]
    assert full.dtype == np.int16 and full.min() < 0
    for k in (1, 2, 3):
        arr, applied = openjp2.decode_reduced(_first_frame(Path(str(p))), k)
        assert applied == k and arr.dtype == np.int16 and arr.min() < 0
        assert arr.shape == (512 >> k, 512 >> k)


def test_reduce_is_clamped_to_the_levels() -> None:
    p = Path(str(get_testdata_file("MR_small_jp2klossless.dcm")))
    arr, applied = openjp2.decode_reduced(_first_frame(p), 20)
    assert 0 < applied < 20
    assert arr.shape == (-(-64 // (1 << applied)),) * 2
    # decode_frame strides the rest: the contract's shape holds
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(codecs.REDUCERS, codecs.J2K_LOSSLESS, [codecs.OPENJP2])
        assert read_frames(str(p), reduce=7)[0].shape == (1, 1)


def test_corrupt_codestream_raises_decode_error() -> None:
    p = Path(str(get_testdata_file("MR_small_jp2klossless.dcm")))
    data = _first_frame(p)
    with pytest.raises(DecodeError, match=r"openjpeg: .+: .+"):
        openjp2.decode(data[:100])
    with pytest.raises(DecodeError, match="openjpeg"):
        openjp2.decode(b"\xff\x4f\xff\x51" + b"\x00" * 60)
    with pytest.raises(DecodeError):
        openjp2.decode(b"")
    with pytest.raises(ValueError):
        openjp2.decode(data, -1)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc")
def test_no_leak() -> None:
    p = get_testdata_file("MR2_J2KR.dcm", download=False)
    p = p or get_testdata_file("MR_small_jp2klossless.dcm")
    data = _first_frame(Path(str(p)))
    for _ in range(20):  # warm up the allocator
        openjp2.decode(data, 2)
    gc.collect()
    before = _rss()
    for i in range(200):
        openjp2.decode(data, 2)  # MR2: a leaked image would be 256 KiB each
        if i % 4 == 0:
            with pytest.raises(DecodeError):
                openjp2.decode(data[: len(data) // 2], 0)  # the error path frees too
    gc.collect()
    grown = _rss() - before
    assert grown < 4 * 2**20, f"RSS grew {grown / 2**20:.1f} MiB over 200 decodes"


def test_status_reports_a_missing_library(monkeypatch: pytest.MonkeyPatch) -> None:
    assert codecs.OPENJP2.status() == (True, "")
    monkeypatch.setattr(openjp2, "_find_library", lambda: "libno_such_openjp2.so.7")
    openjp2._load.cache_clear()
    try:
        ok, reason = codecs.OPENJP2.status()
        assert not ok and "libno_such_openjp2.so.7" in reason and "libopenjp2-7" in reason
        with pytest.raises(DecodeError, match="libopenjp2-7"):
            openjp2.decode(b"\xff\x4f")
        # the missing-decoder message says how to install it
        monkeypatch.setitem(codecs.REGISTRY, codecs.HTJ2K, [codecs.OPENJP2])
        msg = str(codecs.missing_decoder_error(codecs.HTJ2K))
        assert "apt-get install libopenjp2-7" in msg and "pip install" not in msg
    finally:
        monkeypatch.undo()
        openjp2._load.cache_clear()
    assert openjp2.available() == (True, "")


def test_registered_first_for_reduction() -> None:
    for ts in codecs.J2K_SYNTAXES:
        assert codecs.REDUCERS[ts][0] is codecs.OPENJP2
        assert codecs.OPENJP2 in codecs.REGISTRY[ts]
    st = codecs.codec_status()[codecs.J2K_LOSSLESS]
    assert ("openjp2-ctypes", True, "") in st
