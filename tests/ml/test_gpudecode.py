"""FrameDataset(encoded=True) + FrameDecoder on real files in many transfer syntaxes.

A decoded batch must equal FrameDataset's own decoded items exactly. These tests decode
on the CPU (CI has no GPU, and a skipped test fails the strict run); the same comparison
on a GPU with nvImageCodec is ``bench/bench_gpu.py run`` (``product_check``: 337 frames
equal on an H100, bench/README.md "GPU")."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from corpus import sample_file


def _htj2k(src: Path, dest: Path) -> None:
    """``src`` re-encoded as HTJ2K lossless (transfer syntax 1.2.840.10008.1.2.4.201)."""
    import imagecodecs
    from pydicom.encaps import encapsulate
    from pydicom.uid import UID

    ds = pydicom.dcmread(src)
    arr = ds.pixel_array
    ds.PixelData = encapsulate([imagecodecs.htj2k_encode(arr, level=0)])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.4.201")
    ds.save_as(dest, enforce_file_format=True)


@pytest.fixture(scope="module")
def syntaxes(tmp_path_factory: pytest.TempPathFactory) -> object:
    """A catalog of real frames in nine syntaxes, some with a rescale, some colour."""
    from pixels import Catalog

    root = tmp_path_factory.mktemp("syntaxes")
    names = {
        "j2k.dcm": "explicit_VR-UN.dcm",  # real abdomen CT, JPEG 2000 lossless, signed
        "raw.dcm": "CT_small.dcm",  # native, RescaleSlope/Intercept
        "rle.dcm": "MR_small_RLE.dcm",
        "ybr.dcm": "SC_rgb_jpeg_dcmtk.dcm",  # colour JPEG baseline: decoded on the CPU
        "mf.dcm": "emri_small_jpeg_2k_lossless.dcm",  # 10 frames, JPEG 2000
        "j2k12.dcm": "JPEG2000.dcm",  # 16-bit allocated, 12 stored? (NM, lossy J2K)
    }
    for dest, name in names.items():
        shutil.copy(sample_file(name), root / dest)
    _htj2k(sample_file("CT_small.dcm"), root / "htj2k.dcm")  # HTJ2K with a rescale
    subprocess.run(  # JPEG lossless SV1 by dcmtk
        ["dcmcjpeg", "+e1", str(sample_file("CT_small.dcm")), str(root / "jpegll.dcm")],
        check=True,
    )
    cat = Catalog(str(tmp_path_factory.mktemp("syntaxes-cat") / "catalog"))
    stats = cat.catalog(str(root), workers=0)
    assert stats.errors == 0
    return cat


def _decoded_by_dataset(cat: object, **kw: object) -> tuple[list[dict], list[object]]:
    from pixels.ml import FrameDataset

    plain = FrameDataset(cat, **kw)
    encoded = FrameDataset(cat, encoded=True, **kw)
    assert len(plain) == len(encoded) > 0
    return [plain[k] for k in range(len(plain))], [encoded[k] for k in range(len(encoded))]


def test_cpu_decode_of_encoded_frames_equals_the_dataset(syntaxes):
    from pixels.ml import EncodedFrame, FrameDecoder

    items, frames = _decoded_by_dataset(syntaxes)
    assert all(isinstance(f, EncodedFrame) for f in frames)
    assert {Path(f.path).name for f in frames} == {
        "j2k.dcm",
        "raw.dcm",
        "rle.dcm",
        "ybr.dcm",
        "mf.dcm",
        "j2k12.dcm",
        "htj2k.dcm",
        "jpegll.dcm",
    }
    decoder = FrameDecoder("cpu")
    assert not decoder.uses_gpu_codec
    for k, (item, frame) in enumerate(zip(items, frames, strict=True)):
        got = decoder([frame])
        assert got["path"] == [item["path"]] and int(got["frame"][0]) == item["frame"]
        assert got["SOPInstanceUID"] == [item["SOPInstanceUID"]]
        assert got["image"].dtype == item["image"].dtype
        np.testing.assert_array_equal(
            got["image"][0].numpy(), item["image"].numpy(), err_msg=str(k)
        )
    assert decoder.frames_on_cpu == len(frames) and decoder.frames_on_gpu == 0
    raw = next(i for i, f in zip(items, frames, strict=True) if f.path.endswith("raw.dcm"))
    ref = pydicom.dcmread(sample_file("CT_small.dcm"))
    hu = ref.pixel_array * float(ref.RescaleSlope) + float(ref.RescaleIntercept)
    np.testing.assert_array_equal(raw["image"][0].numpy(), hu.astype(np.float32))


def test_batches_from_loader_workers_resized(syntaxes):
    import torch

    from pixels.ml import FrameDataset, FrameDecoder

    where = "relative_path IN ('mf.dcm', 'j2k.dcm', 'htj2k.dcm', 'jpegll.dcm')"
    plain = FrameDataset(syntaxes, where, size=64)
    ds = FrameDataset(syntaxes, where, size=64, encoded=True)
    loader = torch.utils.data.DataLoader(ds, batch_size=5, num_workers=2, collate_fn=list)
    decoder = FrameDecoder("cpu")
    batches = [decoder(b) for b in loader]
    assert [tuple(b["image"].shape) for b in batches] == [(5, 1, 64, 64)] * 2 + [(3, 1, 64, 64)]
    got = torch.cat([b["image"] for b in batches])
    want = torch.stack([plain[k]["image"] for k in range(len(plain))])
    assert torch.equal(got, want)


def test_wrong_use_is_a_clear_error(syntaxes):
    from pixels.ml import FrameDataset, FrameDecoder

    with pytest.raises(ValueError, match="encoded=True gives undecoded frames"):
        FrameDataset(syntaxes, encoded=True, display=True)
    plain = FrameDataset(syntaxes, "relative_path = 'raw.dcm'")
    with pytest.raises(TypeError, match=r"EncodedFrame items .* not dict"):
        FrameDecoder("cpu")([plain[0]])
    with pytest.raises(ValueError, match="gpu_codec=True needs a CUDA device, not cpu"):
        FrameDecoder("cpu", gpu_codec=True)
    import torch

    if torch.cuda.is_available():  # a GPU machine: the README's FrameDecoder("cuda") works
        assert FrameDecoder("cuda").device.type == "cuda"
    else:  # was: the first batch failed in pin_memory, naming no device
        with pytest.raises(ValueError, match=r"FrameDecoder\('cuda'\): torch sees no CUDA GPU"):
            FrameDecoder("cuda")
        assert FrameDecoder().device.type == "cpu"


def test_a_corrupt_frame_names_its_file_and_frame(tmp_path):
    from pixels import Catalog
    from pixels.errors import PixelsError
    from pixels.ml import FrameDataset, FrameDecoder

    src = sample_file("explicit_VR-UN.dcm")
    bad = tmp_path / "d" / "bad.dcm"
    bad.parent.mkdir()
    shutil.copy(src, bad)
    cat = Catalog(str(tmp_path / "cat"))
    cat.catalog(str(tmp_path / "d"), workers=0)
    ds = FrameDataset(cat, encoded=True)
    frame = ds[0]
    data = bytearray(frame.data)
    data[200:4000] = b"\xff" * 3800  # the codestream's packets overwritten
    import dataclasses

    broken = dataclasses.replace(frame, data=bytes(data))
    with pytest.raises(PixelsError, match=f"{bad}: frame 0: "):
        FrameDecoder("cpu")([broken])


def test_a_batch_of_frames_of_different_shapes_names_two_of_them(syntaxes):
    """Without ``size`` a batch of 512x512 and 128x128 frames failed inside torch.stack
    ("stack expects each tensor to be equal size"), naming no file."""
    from pixels.ml import FrameDataset, FrameDecoder

    ds = FrameDataset(syntaxes, "relative_path IN ('j2k.dcm', 'raw.dcm')", encoded=True)
    batch = sorted((ds[k] for k in range(len(ds))), key=lambda f: f.path)
    assert [Path(f.path).name for f in batch] == ["j2k.dcm", "raw.dcm"]
    with pytest.raises(
        ValueError,
        match=r"different shapes in one batch: \S+/j2k\.dcm frame 0 is 1x512x512 .*"
        r"\S+/raw\.dcm frame 0 is 1x128x128: give the dataset a size=",
    ):
        FrameDecoder("cpu")(batch)
    sized = FrameDataset(syntaxes, "relative_path IN ('j2k.dcm', 'raw.dcm')", encoded=True, size=64)
    assert tuple(FrameDecoder("cpu")([sized[0], sized[1]])["image"].shape) == (2, 1, 64, 64)
