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

from fsyncs import record_fsyncs
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


def _deflate_bomb(inflated_size: int) -> bytes:
    """pydicom's image_dfl.dcm (a real deflated file) whose Pixel Data is re-declared as
    `inflated_size` bytes of zeros: ~1/1000 of that once deflated."""
    import zlib

    from pydicom.filereader import _read_file_meta_info, read_preamble

    raw = _real("image_dfl.dcm")
    fp = io.BytesIO(raw)
    read_preamble(fp, False)
    _read_file_meta_info(fp)
    head = raw[: fp.tell()]
    dataset = zlib.decompress(raw[fp.tell() :], -zlib.MAX_WBITS)
    at = dataset.index(b"\xe0\x7f\x10\x00")  # (7FE0,0010), explicit VR little endian
    assert dataset[at + 4 : at + 6] in (b"OB", b"OW")
    element = dataset[at : at + 8] + inflated_size.to_bytes(4, "little")
    z = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    out = [head, z.compress(dataset[:at] + element)]
    zeros = bytes(16 << 20)
    for _ in range(inflated_size // len(zeros)):
        out.append(z.compress(zeros))
    out.append(z.compress(bytes(inflated_size % len(zeros))))
    out.append(z.flush())
    return b"".join(out)


@pytest.mark.slow
def test_deflate_bomb_is_refused_without_exhausting_memory(stow: Stow) -> None:
    """A deflated part inflating past the header pass's cap (1 GiB from ~1 MB): refused, and
    the server never holds more than a bounded part of it."""
    import tracemalloc

    from pixels.dicom.deflate import MAX_INFLATED

    size = MAX_INFLATED + (64 << 20)
    size -= size % 2
    bomb = _deflate_bomb(size)
    assert len(bomb) < size // 500  # a real bomb: ~1,000 to 1
    before = _stored(stow.storage)
    body, ctype = _body([bomb])
    tracemalloc.start()
    try:
        r = httpx.post(
            f"{stow.url}/dicomweb/studies",
            content=body,
            headers={"Content-Type": ctype},
            timeout=300,
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.status_code == 409, r.text
    assert r.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0xC000]
    assert "inflates to more than" in r.headers["warning"]
    assert peak < 256 << 20, f"peak {peak >> 20} MiB for a {len(bomb)} byte bomb"
    assert _stored(stow.storage) == before


def test_a_stored_instance_is_on_disk_before_the_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A STOW-RS answer comes after the stored file, its series folder, the study folder
    made for it (in its parent), the storage root made at the first write (in its parent),
    and the table's commit of its row are ``fsync``-ed: a power loss after the answer
    loses neither the file nor its row (``os.fsync`` spied on, the real one runs)."""
    catalog = tmp_path / "catalog"
    Catalog(str(catalog)).catalog(str(pydicom.data.get_testdata_file("CT_small.dcm")), workers=0)
    storage = tmp_path / "stow"
    ds = pydicom.dcmread(io.BytesIO(_real("MR_small.dcm")))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    buf = io.BytesIO()
    ds.save_as(buf)
    events: list[str] = []
    record_fsyncs(monkeypatch, events.append)
    with running(
        create_app(str(catalog), token="", storage_root=str(storage), viewer=False)
    ) as url:
        body, ctype = _body([buf.getvalue()])
        r = httpx.post(
            f"{url}/dicomweb/studies", content=body, headers={"Content-Type": ctype}, timeout=60
        )
        events.append("answered")
    assert r.status_code == 200, r.text
    stored = storage / ds.StudyInstanceUID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"
    assert stored.is_file()
    before = events[: events.index("answered")]
    # the file's data is synced on its spool descriptor (the name it had then)
    spooled = [e for e in before if e.startswith(str(storage / ".incoming") + os.sep)]
    assert len(spooled) == 1, before
    for folder in (stored.parent, stored.parent.parent, storage, tmp_path):
        assert str(folder) in before, (folder, before)
    assert before.index(spooled[0]) < before.index(str(stored.parent))
    logs = [e for e in before if e.startswith(str(catalog / "_delta_log") + os.sep)]
    assert logs and str(catalog / "_delta_log") in before, before
