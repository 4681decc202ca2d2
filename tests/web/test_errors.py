"""Error answers: bad input gets the right status and a reason."""

from __future__ import annotations

import httpx
import pydicom
import pytest

from web.conftest import TOKEN, Server, create_app, running

CT_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"


def test_bad_uid_is_400(server: Server) -> None:
    for path in (
        "/studies/..%2F..%2Fetc/metadata",
        "/studies/1.2..3/series",
        "/studies/1.2%01x/series",
        f"/studies/{'1' * 257}",
    ):
        r = httpx.get(f"{server.url}/dicomweb{path}")
        assert r.status_code in (400, 404), path
    r = httpx.get(f"{server.url}/dicomweb/studies/1.2..x/metadata")
    assert r.status_code == 400 and "not a UID" in r.text
    r = httpx.get(f"{server.url}/dicomweb/studies", params={"StudyInstanceUID": "1.2\x01"})
    assert r.status_code == 400
    # any other UID is looked up (the catalog lists non-conformant ones), never run as SQL
    r = httpx.get(f"{server.url}/dicomweb/studies", params={"StudyInstanceUID": "1.2';DROP"})
    assert r.status_code == 200 and r.json() == []
    assert len(httpx.get(f"{server.url}/dicomweb/studies").json()) == 6


def test_invalid_values_of_known_keys_are_400(server: Server) -> None:
    url = f"{server.url}/dicomweb/studies"
    for params in (
        {"StudyDate": "2020"},
        {"includefield": "NotAKeyword"},
        {"SeriesNumber": "one"},
        {"limit": "-1"},
        {"offset": "x"},
        {"offset": "99999999999999999999"},
        {"limit": "99999999999999999999"},
    ):
        r = httpx.get(url, params=params)
        assert r.status_code == 400, (params, r.status_code, r.text)
        assert next(iter(params)) in r.text


def test_unknown_study_is_404(server: Server) -> None:
    r = httpx.get(f"{server.url}/dicomweb/studies/1.2.3.4/metadata")
    assert r.status_code == 404
    r = httpx.get(f"{server.url}/dicomweb/studies/1.2.3.4/series")
    assert r.status_code == 200 and r.json() == []


def test_token(secured: str) -> None:
    assert httpx.get(f"{secured}/dicomweb/studies").status_code == 401
    bad = {"Authorization": "Bearer nope"}
    assert httpx.get(f"{secured}/dicomweb/studies", headers=bad).status_code == 401
    good = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(f"{secured}/dicomweb/studies", headers=good).status_code == 200


def test_stow_content_type_and_multipart(server: Server) -> None:
    url = f"{server.url}/dicomweb/studies"
    r = httpx.post(url, content=b"x", headers={"Content-Type": "application/dicom"})
    assert r.status_code == 415
    ct = 'multipart/related; type="application/dicom+xml"; boundary=x'
    assert httpx.post(url, content=b"x", headers={"Content-Type": ct}).status_code == 415
    ct = "multipart/related; type=application/dicom; boundary=abc"
    r = httpx.post(
        url,
        content=b"--abc\r\nContent-Type: application/dicom\r\n\r\nno end",
        headers={"Content-Type": ct},
    )
    assert r.status_code == 400 and "closing" in r.text
    r = httpx.post(url, content=b"nothing here", headers={"Content-Type": ct})
    assert r.status_code == 400
    r = httpx.post(
        f"{server.url}/dicomweb/studies/not-a-uid", content=b"", headers={"Content-Type": ct}
    )
    assert r.status_code == 400


def test_upload_limit_413(corpus: tuple[str, dict[str, str]], tmp_path) -> None:
    app = create_app(corpus[0], storage_root=str(tmp_path), token="", max_upload=1000)
    with running(app) as url:
        ct = "multipart/related; type=application/dicom; boundary=abc"
        r = httpx.post(f"{url}/dicomweb/studies", content=b"x" * 5000, headers={"Content-Type": ct})
        assert r.status_code == 413
        chunks = iter([b"x" * 600, b"x" * 600])
        r = httpx.post(f"{url}/dicomweb/studies", content=chunks, headers={"Content-Type": ct})
        assert r.status_code == 413
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


@pytest.mark.parametrize(
    ("suffix", "accept"),
    [
        ("", 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50'),
        ("", "image/png"),
        ("/frames/1", 'multipart/related; type="image/jpeg"'),
        ("/metadata", "application/dicom+xml"),
        ("/rendered", "image/gif"),
    ],
)
def test_not_acceptable_406(server: Server, suffix: str, accept: str) -> None:
    ds = pydicom.dcmread(server.files["ct"], stop_before_pixels=True)
    url = f"{server.url}/dicomweb/studies/{CT_STUDY}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    r = httpx.get(url + suffix, headers={"Accept": accept})
    assert r.status_code == 406, r.text


def test_frame_out_of_range_and_bad_list(server: Server) -> None:
    ds = pydicom.dcmread(server.files["ct"], stop_before_pixels=True)
    url = f"{server.url}/dicomweb/studies/{CT_STUDY}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}/frames"
    assert httpx.get(url + "/2").status_code == 404
    assert httpx.get(url + "/x").status_code == 400
