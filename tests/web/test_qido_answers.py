"""QIDO-RS answers kept per table version: a repeated search answers the same bytes; a
write (a STOW-RS request, another writer's commit) makes the next search see it; the
host a request names is in its URLs, whatever another request named."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pydicom
from pydicom.uid import generate_uid

from pixels import Catalog
from pixels.web import create_app
from web.conftest import running

BOUNDARY = "pixels-answers-boundary"
HEADERS = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'}


def _new_study(name: str, patient: str) -> tuple[bytes, str]:
    ds = pydicom.dcmread(pydicom.data.get_testdata_file(name, download=False))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.PatientName = patient
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue(), str(ds.StudyInstanceUID)


def _studies(r: httpx.Response) -> list[str]:
    assert r.status_code == 200, r.text
    return [s["0020000D"]["Value"][0] for s in r.json()]


def test_repeated_search_same_answer_until_the_table_changes(tmp_path: Path) -> None:
    catalog = str(tmp_path / "catalog")
    Catalog(catalog).catalog(str(pydicom.data.get_testdata_file("CT_small.dcm")), workers=0)
    app = create_app(
        catalog,
        token="",
        storage_root=str(tmp_path / "stow"),
        viewer=False,
        allowed_hosts=["pacs.example.org"],
    )
    query = {"PatientName": "Answers*", "includefield": "StudyDescription"}
    with running(app) as url, httpx.Client(base_url=f"{url}/dicomweb", timeout=60) as http:
        first = http.get("/studies", params=query)
        assert _studies(first) == []
        again = http.get("/studies", params=query)
        assert again.content == first.content
        # a STOW-RS request: the same search finds its study at once
        data, study = _new_study("MR_small.dcm", "Answers^One")
        head = f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        body = head + data + f"\r\n--{BOUNDARY}--\r\n".encode()
        assert http.post("/studies", content=body, headers=HEADERS).status_code == 200
        assert _studies(http.get("/studies", params=query)) == [study]
        # another writer's commit: seen by the next search too
        data2, study2 = _new_study("CT_small.dcm", "Answers^Two")
        folder = tmp_path / "other"
        folder.mkdir()
        (folder / "two.dcm").write_bytes(data2)
        Catalog(catalog).catalog(str(folder), workers=0)
        assert sorted(_studies(http.get("/studies", params=query))) == sorted([study, study2])
        # the same search naming another host: its own URLs
        other = http.get("/studies", params=query, headers={"Host": "pacs.example.org"})
        urls = [s["00081190"]["Value"][0] for s in other.json()]
        assert urls and all(u.startswith("http://pacs.example.org") for u in urls)
        mine = http.get("/studies", params=query)
        assert all(s["00081190"]["Value"][0].startswith(f"{url}/dicomweb/") for s in mine.json())
