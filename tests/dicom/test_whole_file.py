"""Small local files are read whole with one system call: the same rows as through ``open_file``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import pixels.dicom.record as record
from corpus import pydicom_folder, sample_file
from pixels.dicom.record import catalog_record
from pixels.sources import iter_files


def _rows(folder: Path) -> dict[str, dict[str, object]]:
    out = {}
    for ref in iter_files(str(folder)):
        row = catalog_record(ref)
        row.pop("cataloged_at")
        out[ref.relative_path] = row
    return out


def test_files_read_whole_give_the_rows_open_file_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every file of pydicom's test folder (native, encapsulated, deflated, implicit VR,
    big endian, broken ones, non-DICOM): whole or through ``open_file``, the same row."""
    folder = tmp_path / "in"
    shutil.copytree(pydicom_folder(), folder)
    whole = _rows(folder)
    monkeypatch.setattr(record, "WHOLE_FILE_BYTES", 0)  # every file through open_file
    opened = _rows(folder)
    assert len(whole) > 50 and whole.keys() == opened.keys()
    for name, row in whole.items():
        assert row == opened[name], name
    assert sum(row["frame_offsets"] is not None for row in whole.values()) > 30


def test_a_file_changed_or_gone_since_listed_is_read_as_it_is_now(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The listed length no longer matches: the file is read through ``open_file`` as it is
    now (replaced by a longer or a shorter file, cut), and a vanished file's row says so."""
    ct, mr = sample_file("CT_small.dcm").read_bytes(), sample_file("MR_small.dcm").read_bytes()
    assert len(mr) < len(ct)
    (tmp_path / "longer.dcm").write_bytes(mr)
    (tmp_path / "shorter.dcm").write_bytes(ct)
    for name in ("cut.dcm", "gone.dcm", "same.dcm"):
        (tmp_path / name).write_bytes(ct)
    refs = {r.relative_path: r for r in iter_files(str(tmp_path))}
    (tmp_path / "longer.dcm").write_bytes(ct)
    (tmp_path / "shorter.dcm").write_bytes(mr)
    (tmp_path / "cut.dcm").write_bytes(ct[:-1000])
    (tmp_path / "gone.dcm").unlink()
    rows = {name: catalog_record(ref) for name, ref in refs.items()}
    monkeypatch.setattr(record, "WHOLE_FILE_BYTES", 0)
    opened = {name: catalog_record(ref) for name, ref in refs.items()}
    for name, row in rows.items():
        row.pop("cataloged_at")
        opened[name].pop("cataloged_at")
        assert row == opened[name], name
    assert rows["same.dcm"]["error"] is None and rows["same.dcm"]["frame_offsets"]
    assert rows["longer.dcm"]["meta"] == rows["same.dcm"]["meta"]
    assert rows["shorter.dcm"]["Modality"] == "MR" and rows["shorter.dcm"]["error"] is None
    cut = rows["cut.dcm"]["error"]
    assert cut is not None and cut.startswith(f"{refs['cut.dcm'].path}: truncated: pixel data")
    assert rows["gone.dcm"]["error"] == f"{refs['gone.dcm'].path}: file not found"
