"""STOW-RS against hostile or broken input: force-only data sets, spools left by a crash."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.uid import generate_uid

from pixels import Catalog
from pixels.web import create_app
from web.conftest import running

CT = 'multipart/related; type="application/dicom"; boundary={b}'


@dataclass
class Stow:
    url: str
    storage: Path


@pytest.fixture(scope="module")
def stow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stow]:
    root = tmp_path_factory.mktemp("stow_hardening")
    catalog = str(root / "catalog")
    Catalog(catalog).catalog(str(pydicom.data.get_testdata_file("CT_small.dcm")), workers=0)
    storage = root / "stow"
    with running(create_app(catalog, token="", storage_root=str(storage), viewer=False)) as url:
        yield Stow(url, storage)


def _body(parts: list[bytes], boundary: str = "pixels-test-boundary") -> tuple[bytes, str]:
    out = b""
    for p in parts:
        out += f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + p + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), CT.format(b=boundary)


def _real(name: str) -> bytes:
    return Path(str(pydicom.data.get_testdata_file(name, download=False))).read_bytes()


def _stored(storage: Path) -> list[Path]:
    return sorted(p for p in storage.rglob("*.dcm") if ".incoming" not in p.parts)


@pytest.mark.parametrize(
    "name", ["ExplVR_LitEndNoMeta.dcm", "ExplVR_BigEndNoMeta.dcm", "meta_missing_tsyntax.dcm"]
)
def test_data_set_readable_only_by_force_is_refused(stow: Stow, name: str) -> None:
    before = _stored(stow.storage)
    good = pydicom.dcmread(pydicom.data.get_testdata_file("MR_small.dcm"))
    good.SOPInstanceUID = generate_uid()
    good.file_meta.MediaStorageSOPInstanceUID = good.SOPInstanceUID
    buf = io.BytesIO()
    good.save_as(buf, enforce_file_format=True)
    body, ctype = _body([_real(name), buf.getvalue()])
    r = httpx.post(f"{stow.url}/dicomweb/studies", content=body, headers={"Content-Type": ctype})
    assert r.status_code == 202, r.text
    res = r.json()
    [failed] = res["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [0xC000]
    assert (
        "DICM" in r.headers["warning"] or "Transfer Syntax UID (0002,0010)" in r.headers["warning"]
    )
    [ok] = res["00081199"]["Value"]
    assert ok["00081155"]["Value"] == [good.SOPInstanceUID]
    # only the good file was written
    new = [p for p in _stored(stow.storage) if p not in before]
    assert [p.name for p in new] == [f"{good.SOPInstanceUID}.dcm"]


def test_spools_left_by_a_killed_server_are_removed_at_start(tmp_path: Path) -> None:
    catalog = str(tmp_path / "catalog")
    Catalog(catalog).catalog(str(pydicom.data.get_testdata_file("CT_small.dcm")), workers=0)
    incoming = tmp_path / "stow" / ".incoming"
    incoming.mkdir(parents=True)
    # what a server killed during STOW leaves: the spooled body and a part being written
    body, _ = _body([_real("CT_small.dcm")])
    (incoming / "tmpk1ll3d.body").write_bytes(body)
    (incoming / "tmpp4rt.dcm").write_bytes(_real("CT_small.dcm"))
    old = time.time() - 30
    for p in incoming.iterdir():
        os.utime(p, (old, old))
    app = create_app(catalog, token="", storage_root=str(tmp_path / "stow"), viewer=False)
    assert list(incoming.iterdir()) == []
    # the new server stores normally, and leaves nothing behind
    with running(app) as url:
        ds = pydicom.dcmread(pydicom.data.get_testdata_file("MR_small.dcm"))
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        body, ctype = _body([buf.getvalue()])
        r = httpx.post(f"{url}/dicomweb/studies", content=body, headers={"Content-Type": ctype})
        assert r.status_code == 200, r.text
    assert list(incoming.iterdir()) == []
