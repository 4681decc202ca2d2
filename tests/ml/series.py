"""Real CT series for the pixels.ml tests, made by mutating real files (never invented headers)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import generate_uid

from corpus import pydicom_folder, sample_file


def ct_series(
    dest: Path,
    n: int = 6,
    *,
    source: str = "CT_small.dcm",
    step: float = 2.5,
    reverse_names: bool = True,
    ramp: int = 7,
) -> list[Path]:
    """``n`` slices of a real CT file, moved ``step`` mm apart along its slice normal.

    Each slice gets fresh SOP UIDs (one new series and study for all), its pixel values
    raised by ``k * ramp`` (so slice order is visible in the pixels; stored uncompressed
    then; ``ramp=0`` keeps the file's own, possibly compressed, pixel data), and Instance
    Numbers that do not follow the positions. With ``reverse_names`` the file that lies
    first along the normal gets the last name. Returns the paths in position order.
    """
    ds = pydicom.dcmread(sample_file(source))
    if ramp and ds.file_meta.TransferSyntaxUID.is_compressed:
        ds.decompress()  # the pixels change: store them uncompressed
    dest.mkdir(parents=True, exist_ok=True)
    iop = np.asarray([float(v) for v in ds.ImageOrientationPatient])
    normal = np.cross(iop[:3], iop[3:])
    ipp0 = np.asarray([float(v) for v in ds.ImagePositionPatient])
    base = ds.pixel_array.copy() if ramp else None
    study, series = generate_uid(), generate_uid()
    out = []
    for k in range(n):
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        sop = generate_uid()
        ds.SOPInstanceUID = sop
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.InstanceNumber = (k * 3) % n + 1
        ds.ImagePositionPatient = [f"{v:.4f}" for v in ipp0 + k * step * normal]
        ds.SliceLocation = f"{(ipp0 + k * step * normal) @ normal:.4f}"
        if base is not None:
            ds.PixelData = (base + k * ramp).astype(base.dtype).tobytes()
        name = f"{(n - 1 - k) if reverse_names else k:03d}.dcm"
        ds.save_as(dest / name)
        out.append(dest / name)
    return out


def dicomdir_series(name: str, dest: Path) -> list[Path]:
    """Copy a real multi-file series of pydicom's dicomdirtests (``98892001/CT5N``...)."""
    src = pydicom_folder() / "dicomdirtests" / name
    shutil.copytree(src, dest)
    return sorted(p for p in dest.iterdir() if p.is_file())
