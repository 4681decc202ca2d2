"""Real DICOM test data for the tests: pydicom's bundled files, pydicom-data's, copies with fresh UIDs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid


def sample_file(name: str) -> Path:
    """Path of one of pydicom's bundled (or pydicom-data's) test files."""
    p = get_testdata_file(name, download=False)
    assert p is not None, f"pydicom test file {name} is not installed"
    return Path(str(p))


def pydicom_folder() -> Path:
    """The folder of pydicom's bundled test files."""
    return sample_file("CT_small.dcm").parent


def pydicom_data_folder() -> Path:
    """The folder of the pydicom-data package's files."""
    return sample_file("emri_small.dcm").parent


def readable_dicom_files(folder: Path) -> list[Path]:
    """Files in ``folder`` that pydicom reads as DICOM (header only, no force)."""
    out = []
    for p in sorted(folder.iterdir()):
        if not p.is_file():
            continue
        try:
            pydicom.dcmread(p, stop_before_pixels=True)
        except Exception:
            continue
        out.append(p)
    return out


def copy_with_new_uids(src: Path, dest_dir: Path, n: int, per_series: int = 50) -> list[Path]:
    """Write ``n`` copies of a real file with fresh Study/Series/SOP UIDs; return their paths."""
    ds = pydicom.dcmread(src)
    dest_dir.mkdir(parents=True, exist_ok=True)
    out = []
    study = generate_uid()
    series = generate_uid()
    for i in range(n):
        if i % per_series == 0:
            series = generate_uid()
        if i % (per_series * 3) == 0:
            study = generate_uid()
        sop = generate_uid()
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.SOPInstanceUID = sop
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.InstanceNumber = i + 1
        p = dest_dir / f"s{i // per_series:04d}" / f"{i:06d}.dcm"
        p.parent.mkdir(exist_ok=True)
        ds.save_as(p)
        out.append(p)
    return out


def copy_tree(files: list[Path], dest: Path) -> list[Path]:
    """Copy files flat into ``dest`` keeping names; return the new paths."""
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for f in files:
        d = dest / f.name
        shutil.copyfile(f, d)
        out.append(d)
    return out


def tree_files(root: Path) -> list[str]:
    """Absolute paths of every regular file under ``root``."""
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)


def binary_seg(
    path: Path, ct: pydicom.Dataset, mask: np.ndarray, *, labels: list[str], serial: str = "1"
) -> Path:
    """A binary SEG written by highdicom over ``ct`` to ``path``: ``mask`` is (frames, rows,
    columns[, segments]), one segment per label."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    segments = [
        hd.seg.SegmentDescription(
            segment_number=k + 1,
            segment_label=label,
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        )
        for k, label in enumerate(labels)
    ]
    seg = hd.seg.Segmentation(
        source_images=[ct],
        pixel_array=mask,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segments,
        series_instance_uid=hd.UID(),
        series_number=2,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="Pixels tests",
        manufacturer_model_name="test",
        software_versions="0",
        device_serial_number=serial,
        transfer_syntax_uid=pydicom.uid.ExplicitVRLittleEndian,
    )
    seg.save_as(path)
    return path


def seg_5x5(path: Path) -> Path:
    """A binary SEG written by highdicom over a real CT cut to 5 x 5: 4 segments, so 4 frames
    of 25 bits, which start at bits 0, 25, 50, 75 (bit 1, 2, 3 of a byte for frames 1-3)."""
    ct = pydicom.dcmread(sample_file("CT_small.dcm"))
    ct.PixelData = np.ascontiguousarray(ct.pixel_array[:5, :5]).tobytes()
    ct.Rows = ct.Columns = 5
    mask = np.zeros((1, 5, 5, 4), dtype=bool)
    rng = np.random.default_rng(9)
    for k in range(4):
        mask[0, ..., k] = rng.random((5, 5)) < 0.5
        mask[0, k, k, k] = True  # no empty frame
    return binary_seg(path, ct, mask, labels=[f"region {k + 1}" for k in range(4)])


H264 = "1.2.840.10008.1.2.4.102"  # MPEG-4 AVC/H.264 High Profile / Level 4.1


def h264_file(path: Path, *, fragment_size: int = 0) -> tuple[Path, np.ndarray]:
    """A real US cine (pydicom's ``examples_ybr_color.dcm``, 30 frames 240 x 320) re-encoded as
    an H.264 stream with PyAV's libx264 and encapsulated with pydicom: one stream for all
    frames, an empty Basic Offset Table, in fragments of ``fragment_size`` bytes (0: one).

    Returns the path and the source frames (RGB) the stream was encoded from.
    """
    import io

    import av
    from pydicom.encaps import encapsulate

    ds = pydicom.dcmread(sample_file("examples_ybr_color.dcm"))
    frames = np.asarray(ds.pixel_array)  # RGB
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="h264") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = ds.Columns, ds.Rows, "yuv420p"
        stream.options = {"crf": "18"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    data = buf.getvalue()
    fragments = -(-len(data) // fragment_size) if fragment_size else 1
    ds.PixelData = encapsulate([data], fragments_per_frame=fragments, has_bot=False)
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = H264
    ds.PhotometricInterpretation = "YBR_PARTIAL_420"
    ds.PlanarConfiguration = 0
    ds.NumberOfFrames = len(frames)
    ds.save_as(path)
    return path, frames
