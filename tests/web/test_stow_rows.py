"""STOW-RS reads each part's header once, from the request: the row it commits is the row
``pixels catalog`` makes of the stored file, whether the body was held in memory or spooled."""

from __future__ import annotations

import glob
import io
import os
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pydicom
import pytest
from deltalake import DeltaTable
from pydicom.uid import generate_uid

import pixels.web.stow as stow_module
from pixels import Catalog
from pixels.dicom.record import catalog_record
from pixels.schema import SCHEMA
from pixels.sources.local import local_ref
from pixels.web import create_app
from web.conftest import running

BOUNDARY = "pixels-rows-boundary"
HEADERS = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'}
#: explicit and implicit VR little endian, big endian, deflated, JPEG 2000, RLE
NAMES = [
    "MR_small.dcm",
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "image_dfl.dcm",
    "JPEG2000.dcm",
    "SC_rgb_rle.dcm",
]


def _fresh(name: str) -> bytes:
    """A real test file with fresh SOP/Series UIDs (stored once per test)."""
    ds = pydicom.dcmread(pydicom.data.get_testdata_file(name, download=False))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _body(parts: list[bytes]) -> bytes:
    head = f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    return b"".join(head + p + b"\r\n" for p in parts) + f"--{BOUNDARY}--\r\n".encode()


def _comparable(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Rows by path as the table holds them, without ``cataloged_at`` (the time of the read)."""
    table = pa.Table.from_pylist(rows, schema=SCHEMA).drop_columns(["cataloged_at"])
    return {r["path"]: r for r in table.to_pylist()}


@pytest.mark.parametrize("spooled", [False, True])
def test_each_stored_part_gets_the_row_pixels_catalog_makes_of_the_stored_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spooled: bool
) -> None:
    if spooled:  # every body goes through the spool file and its mmap
        monkeypatch.setattr(stow_module, "IN_MEMORY", 1024)
    catalog = str(tmp_path / "catalog")
    Catalog(catalog).catalog(str(pydicom.data.get_testdata_file("CT_small.dcm")), workers=0)
    storage = tmp_path / "stow"
    parts = [_fresh(n) for n in NAMES]
    # a real file cut inside its pixel data: stored, and its row says what is wrong
    cut = _fresh("MR_small.dcm")
    parts.append(cut[:-1000])
    app = create_app(catalog, token="", storage_root=str(storage), viewer=False)
    with running(app) as url:
        r = httpx.post(f"{url}/dicomweb/studies", content=_body(parts), headers=HEADERS, timeout=60)
    assert r.status_code == 200, r.text
    stored = sorted(p for p in glob.glob(str(storage / "*" / "*" / "*.dcm")))
    assert len(stored) == len(parts)
    assert os.listdir(storage / ".incoming") == []
    held = DeltaTable(catalog).to_pyarrow_table()
    mine = held.filter(pa.compute.is_in(held["path"], pa.array(stored)))
    got = _comparable(mine.to_pylist())
    expected = _comparable(
        [catalog_record(local_ref(p, os.stat(p), os.path.basename(p))) for p in stored]
    )
    assert sorted(got) == stored
    for path in stored:
        assert got[path] == expected[path], path
    errors = {p: r["error"] for p, r in got.items() if r["error"]}
    assert len(errors) == 1
    [(path, error)] = errors.items()
    assert error.startswith(f"{path}: ") and "(7FE0,0010)" in error, error
    # the frame index too (a deflated file has none: its frames are inside the deflate stream)
    indexed = [r for r in got.values() if not r["error"] and r["frame_offsets"]]
    assert len(indexed) == len(parts) - 2


def test_file_meta_scan_finds_the_transfer_syntax_pydicom_reads() -> None:
    from pydicom.filereader import _read_file_meta_info

    folder = os.path.dirname(pydicom.data.get_testdata_file("MR_small.dcm", download=False))
    checked = 0
    for path in sorted(glob.glob(os.path.join(folder, "*.dcm"))):
        data = Path(path).read_bytes()
        if data[128:132] != b"DICM":
            continue
        found = stow_module._meta_transfer_syntax(data, 132, len(data))
        if found is None:  # left to pydicom
            continue
        fp = io.BytesIO(data)
        fp.seek(132)
        meta = _read_file_meta_info(fp)
        assert found == str(meta.get("TransferSyntaxUID", "") or "").strip(), path
        checked += 1
    assert checked > 50
    missing = Path(pydicom.data.get_testdata_file("meta_missing_tsyntax.dcm")).read_bytes()
    assert stow_module._meta_transfer_syntax(missing, 132, len(missing)) == ""
