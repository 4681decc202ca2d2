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


def test_kept_results_answer_what_a_fresh_server_answers(tmp_path: Path) -> None:
    """Searches of different shapes over the same studies, in one order on a server that
    keeps results: each answer is byte for byte what a new server gives."""
    catalog = str(tmp_path / "catalog")
    folder = tmp_path / "in"
    folder.mkdir()
    for i, name in enumerate(["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm"]):
        (folder / f"{i}.dcm").write_bytes(_new_study(name, f"Kept^{i}")[0])
    Catalog(catalog).catalog(str(folder), workers=0)
    queries = [
        ("/studies", {"PatientName": "Kept*"}),
        ("/studies", {"PatientName": "Kept*", "includefield": "all"}),
        ("/studies", {"PatientName": "Kept*", "includefield": "00180050"}),
        ("/studies", {"PatientName": "Kept*", "InstanceNumber": "1"}),
        ("/studies", {"ModalitiesInStudy": "MR"}),
        ("/series", {"PatientName": "Kept*"}),
        ("/series", {"Modality": "CT", "includefield": "all"}),
        ("/instances", {"PatientName": "Kept*"}),
        ("/instances", {"PatientName": "Kept*", "includefield": "all"}),
        ("/studies", {"PatientName": "Kept*", "limit": "2", "offset": "1"}),
    ]

    def answers(app: object) -> list[bytes]:
        with running(app) as url, httpx.Client(base_url=f"{url}/dicomweb", timeout=60) as http:
            got = []
            for path, params in queries * 2:
                r = http.get(path, params=params)
                assert r.status_code == 200, r.text
                got.append(r.content.replace(url.encode(), b"BASE"))
            return got

    warm = answers(create_app(catalog, token="", storage_root=str(tmp_path / "s1"), viewer=False))
    assert len(set(warm)) > 5
    for i, (path, params) in enumerate(queries):
        fresh = create_app(catalog, token="", storage_root=str(tmp_path / "s2"), viewer=False)
        with running(fresh) as url:
            r = httpx.get(f"{url}/dicomweb{path}", params=params, timeout=60)
        assert r.content.replace(url.encode(), b"BASE") == warm[i], (path, params)
        assert warm[i + len(queries)] == warm[i]


def test_study_search_on_an_instance_attribute(tmp_path: Path) -> None:
    """A study search by an instance-level key (SOPClassUID) groups the matching instances
    by study (the query joined the study sums on a column both had: 500 before)."""
    catalog = str(tmp_path / "catalog")
    folder = tmp_path / "in"
    folder.mkdir()
    ct, ct_study = _new_study("CT_small.dcm", "Instance^CT")
    (folder / "ct.dcm").write_bytes(ct)
    (folder / "mr.dcm").write_bytes(_new_study("MR_small.dcm", "Instance^MR")[0])
    Catalog(catalog).catalog(str(folder), workers=0)
    app = create_app(catalog, token="", storage_root=str(tmp_path / "stow"), viewer=False)
    with running(app) as url:
        r = httpx.get(
            f"{url}/dicomweb/studies",
            params={"SOPClassUID": "1.2.840.10008.5.1.4.1.1.2"},  # CT Image Storage
            timeout=60,
        )
    assert _studies(r) == [ct_study]
    [study] = r.json()
    assert study["00201208"]["Value"] == [1] and study["00080061"]["Value"] == ["CT"]
