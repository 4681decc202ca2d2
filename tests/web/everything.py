"""A catalog of every real DICOM test file at hand, for the server and the viewer.

pydicom's bundled test files and character-set files, pydicom-data's files, and
files generated from them: copies with fresh UIDs, dcmtk transcodes (big endian,
deflated), and mutations of the attributes a study list reads (no Modality, empty
or missing patient and study attributes, values that are not what their VR says).
"""

from __future__ import annotations

import os
import subprocess
import warnings
from collections.abc import Callable
from pathlib import Path

import pydicom
from pydicom.data import get_charset_files
from pydicom.uid import generate_uid

from corpus import copy_with_new_uids, pydicom_data_folder, pydicom_folder, sample_file
from pixels import Catalog

#: Study-level attributes a study list shows or sorts by.
STUDY_LIST_KEYWORDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyDescription",
    "ReferringPhysicianName",
    "StudyID",
    "Modality",
)


#: Study, series and SOP instance UIDs of the generated file ``hex-uids.dcm``.
HEX_UIDS = (
    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752",
    "fd61a03af4f77d870fc21e05e7e80678095c92d808cfb3b5c279ee04c74aca13",
)


def _drop(*keywords: str) -> Callable[[pydicom.Dataset], None]:
    def edit(ds: pydicom.Dataset) -> None:
        for kw in keywords:
            if kw in ds:
                delattr(ds, kw)

    return edit


def _empty(*keywords: str) -> Callable[[pydicom.Dataset], None]:
    def edit(ds: pydicom.Dataset) -> None:
        for kw in keywords:
            setattr(ds, kw, "")

    return edit


def _odd(ds: pydicom.Dataset) -> None:
    ds.StudyDate = "2020"  # not a DA
    ds.StudyTime = "99"
    ds.PatientName = "Odd^Values^^^"
    ds.PatientBirthDate = "unknown"


#: Mutations of a real MR file, each written as a study of its own.
MUTATIONS: dict[str, Callable[[pydicom.Dataset], None]] = {
    "no-modality": _drop("Modality"),
    "no-study-attributes": _drop(*STUDY_LIST_KEYWORDS),
    "empty-study-attributes": _empty(*STUDY_LIST_KEYWORDS),
    "odd-values": _odd,
}


def _fresh_uids(ds: pydicom.Dataset) -> None:
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()


def generate(folder: Path) -> None:
    """Write the generated files under ``folder``."""
    copy_with_new_uids(sample_file("CT_small.dcm"), folder / "copies", 3, per_series=1)
    for name, edit in MUTATIONS.items():
        ds = pydicom.dcmread(sample_file("MR_small.dcm"))
        _fresh_uids(ds)
        edit(ds)
        ds.save_as(folder / f"{name}.dcm", enforce_file_format=True)
    # UIDs that are not UIDs (64 hexadecimal digits), as some systems write them
    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = HEX_UIDS[0], HEX_UIDS[1]
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = HEX_UIDS[2]
    ds.save_as(folder / "hex-uids.dcm", enforce_file_format=True)
    # dcmtk transcodes of a real file, each a study of its own
    for flag in ("+tb", "+td"):
        ds = pydicom.dcmread(sample_file("CT_small.dcm"))
        _fresh_uids(ds)
        src = folder / f"ct-{flag[1:]}-source.dcm"
        ds.save_as(src, enforce_file_format=True)
        dst = folder / f"ct-{flag[1:]}.dcm"
        subprocess.run(["dcmconv", flag, str(src), str(dst)], check=True, capture_output=True)
        src.unlink()


def source_folders(generated: Path) -> list[Path]:
    """Every folder of real files: pydicom's, its character-set files', pydicom-data's, generated."""
    charset = Path(os.path.dirname(get_charset_files("chrH31.dcm")[0]))
    return [pydicom_folder(), charset, pydicom_data_folder(), generated]


def studies_in(folders: list[Path]) -> dict[str, set[str]]:
    """SOPInstanceUIDs by StudyInstanceUID of the files pydicom reads (forced) with all three UIDs."""
    out: dict[str, set[str]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for folder in folders:
            for p in sorted(folder.rglob("*")):
                if not p.is_file():
                    continue
                try:
                    ds = pydicom.dcmread(p, stop_before_pixels=True, force=True)
                    uids = [ds.get(k) for k in ("StudyInstanceUID", "SeriesInstanceUID")]
                    uids.append(ds.get("SOPInstanceUID"))
                except Exception:
                    continue
                if all(uids):
                    out.setdefault(str(uids[0]), set()).add(str(uids[2]))
    return out


def build(root: Path) -> tuple[str, dict[str, set[str]]]:
    """Catalog every source folder into ``root/catalog``; return it and the expected studies."""
    generated = root / "generated"
    generated.mkdir(parents=True)
    generate(generated)
    folders = source_folders(generated)
    catalog = str(root / "catalog")
    cat = Catalog(catalog)
    for folder in folders:
        cat.catalog(str(folder), workers=0)
    return catalog, studies_in(folders)
