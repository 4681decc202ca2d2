"""WADO-URI (/wado) and the window / quality parameters of /rendered, on a real server."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pydicom
from PIL import Image

from web.conftest import TOKEN, Server


def _uids(path: str) -> tuple[str, str, str]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID


def _query(path: str, **extra: str) -> dict[str, str]:
    study, series, sop = _uids(path)
    return {
        "requestType": "WADO",
        "studyUID": study,
        "seriesUID": series,
        "objectUID": sop,
        **extra,
    }


def _image(resp: httpx.Response) -> np.ndarray:
    assert resp.status_code == 200, resp.text
    return np.asarray(Image.open(io.BytesIO(resp.content)))


def test_wado_uri_dicom_bytes_equal_file(server: Server) -> None:
    for key in ("ct", "j2k", "sr"):
        path = server.files[key]
        r = httpx.get(f"{server.url}/wado", params=_query(path, contentType="application/dicom"))
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/dicom"
        with open(path, "rb") as f:
            assert r.content == f.read()
    # no contentType: JPEG for images, the file for objects without pixel data
    r = httpx.get(f"{server.url}/wado", params=_query(server.files["sr"]))
    assert r.headers["content-type"] == "application/dicom"


def test_wado_uri_jpeg_png_and_size(server: Server) -> None:
    path = server.files["mr"]
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    r = httpx.get(f"{server.url}/wado", params=_query(path))
    assert r.headers["content-type"] == "image/jpeg"
    img = Image.open(io.BytesIO(r.content))
    assert img.format == "JPEG"
    assert img.size == (ds.Columns, ds.Rows)
    r = httpx.get(
        f"{server.url}/wado", params=_query(path, contentType="image/png", rows="32", columns="50")
    )
    img = Image.open(io.BytesIO(r.content))
    assert img.format == "PNG"
    assert max(img.size) == 32
    assert img.size[0] / img.size[1] == ds.Columns / ds.Rows


def test_wado_uri_frame_number(server: Server) -> None:
    path = server.files["emri"]
    n = int(pydicom.dcmread(path, stop_before_pixels=True).NumberOfFrames)
    png = {"contentType": "image/png"}
    first = _image(httpx.get(f"{server.url}/wado", params=_query(path, frameNumber="1", **png)))
    last = _image(httpx.get(f"{server.url}/wado", params=_query(path, frameNumber=str(n), **png)))
    assert first.shape == last.shape
    assert not np.array_equal(first, last)
    r = httpx.get(f"{server.url}/wado", params=_query(path, frameNumber=str(n + 1)))
    assert r.status_code == 400


def test_wado_uri_errors(server: Server) -> None:
    url = f"{server.url}/wado"
    path = server.files["ct"]
    assert httpx.get(url, params=_query(path, requestType="WADX")).status_code == 400
    q = _query(path)
    del q["seriesUID"]
    r = httpx.get(url, params=q)
    assert r.status_code == 400 and "seriesUID" in r.text
    assert httpx.get(url, params=_query(path, objectUID="1.2/x")).status_code == 400
    assert httpx.get(url, params=_query(path, objectUID="1.2.3.4")).status_code == 404
    assert httpx.get(url, params=_query(path, contentType="text/html")).status_code == 406
    sr = server.files["sr"]
    assert httpx.get(url, params=_query(sr, contentType="image/jpeg")).status_code == 406
    assert httpx.get(url, params=_query(path, windowCenter="40")).status_code == 400
    assert httpx.get(url, params=_query(path, frameNumber="0")).status_code == 400


def test_wado_uri_token(secured: str, server: Server) -> None:
    params = _query(server.files["ct"], contentType="application/dicom")
    assert httpx.get(f"{secured}/wado", params=params).status_code == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = httpx.get(f"{secured}/wado", params=params, headers=auth)
    assert r.status_code == 200
    assert r.content[128:132] == b"DICM"


def _rendered_url(server: Server, key: str) -> str:
    study, series, sop = _uids(server.files[key])
    return f"{server.url}/dicomweb/studies/{study}/series/{series}/instances/{sop}/rendered"


def test_rendered_window(server: Server) -> None:
    url = _rendered_url(server, "ct")
    png = {"Accept": "image/png"}
    a = _image(httpx.get(url, params={"window": "40,400"}, headers=png))
    b = _image(httpx.get(url, params={"window": "300,1500,sigmoid"}, headers=png))
    assert a.shape == b.shape
    assert not np.array_equal(a, b)
    # a narrow window: nearly every pixel black or white
    arr = pydicom.dcmread(server.files["ct"])
    hu = arr.pixel_array * float(arr.RescaleSlope) + float(arr.RescaleIntercept)
    center = float(np.median(hu))
    c = _image(httpx.get(url, params={"window": f"{center},2,linear-exact"}, headers=png))
    assert np.mean((c == 0) | (c == 255)) > 0.9
    assert (c == 0).any() and (c == 255).any()


def test_rendered_bad_window_and_quality(server: Server) -> None:
    url = _rendered_url(server, "ct")
    for bad in ("40", "a,400", "40,0", "40,400,cubic", "40,400,linear,x"):
        assert httpx.get(url, params={"window": bad}).status_code == 400, bad
    for bad in ("0", "101", "x"):
        assert httpx.get(url, params={"quality": bad}).status_code == 400, bad
    low = httpx.get(url, params={"quality": "5"}, headers={"Accept": "image/jpeg"})
    high = httpx.get(url, params={"quality": "100"}, headers={"Accept": "image/jpeg"})
    assert low.status_code == high.status_code == 200
    assert len(low.content) < len(high.content)
