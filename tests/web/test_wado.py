"""WADO-RS through dicomweb-client (and httpx for media types) against a real server."""

from __future__ import annotations

import io
import json

import httpx
import numpy as np
import pydicom
import pytest
from dicomweb_client import DICOMwebClient
from PIL import Image

from pixels.dicom.meta import read_header
from web.conftest import Server


@pytest.fixture(scope="module")
def client(server: Server) -> DICOMwebClient:
    return DICOMwebClient(url=f"{server.url}/dicomweb")


def _uids(path: str) -> tuple[str, str, str]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID


def test_retrieve_instance_bytes_equal_file(client: DICOMwebClient, server: Server) -> None:
    for key in ("ct", "j2k", "sr"):
        path = server.files[key]
        ds = client.retrieve_instance(*_uids(path))
        ref = pydicom.dcmread(path)
        assert ds == ref
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        with open(path, "rb") as f:
            assert buf.getvalue() == f.read()


def test_retrieve_series_and_study(client: DICOMwebClient, server: Server) -> None:
    study, series, sop = _uids(server.files["emri"])
    got = client.retrieve_series(study, series)
    assert [d.SOPInstanceUID for d in got] == [sop]
    assert len(client.retrieve_study(study)) == 1


def test_metadata_has_absolute_bulkdata_uris(client: DICOMwebClient, server: Server) -> None:
    path = server.files["ct"]
    study, series, sop = _uids(path)
    meta = client.retrieve_instance_metadata(study, series, sop)
    with open(path, "rb") as f:
        expected = json.loads(read_header(f, path=path).meta)
    base = f"{server.url}/dicomweb/studies/{study}/series/{series}/instances/{sop}"
    assert meta["7FE00010"]["BulkDataURI"] == f"{base}/bulkdata/7FE00010"
    uri = meta["00431029"]["BulkDataURI"]
    assert uri == f"{base}/bulkdata/00431029"
    for tag in expected:
        if "BulkDataURI" not in expected[tag]:
            assert meta[tag] == expected[tag]
    assert client.retrieve_series_metadata(study, series) == [meta]
    assert client.retrieve_study_metadata(study) == [meta]
    # the private OB element's value, as pydicom reads it
    data = client.retrieve_bulkdata(uri)
    assert data[0] == pydicom.dcmread(path)[0x00431029].value


def test_frames_native_multiframe(client: DICOMwebClient, server: Server) -> None:
    path = server.files["emri"]
    ref = pydicom.dcmread(path).pixel_array
    frames = client.retrieve_instance_frames(*_uids(path), frame_numbers=[1, 6])
    assert frames[0] == ref[0].tobytes()
    assert frames[1] == ref[5].tobytes()


def test_frames_compressed_as_stored_and_decoded(client: DICOMwebClient, server: Server) -> None:
    path = server.files["j2k"]
    uids = _uids(path)
    ds = pydicom.dcmread(path)
    stored = client.retrieve_instance_frames(
        *uids, frame_numbers=[1], media_types=(("image/jp2", "1.2.840.10008.1.2.4.91"),)
    )
    assert stored[0] == pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=1).__next__()
    decoded = client.retrieve_instance_frames(
        *uids,
        frame_numbers=[1],
        media_types=(("application/octet-stream", "1.2.840.10008.1.2.1"),),
    )
    arr = np.frombuffer(decoded[0], dtype=ds.pixel_array.dtype).reshape(ds.pixel_array.shape)
    assert np.array_equal(arr, ds.pixel_array)


def test_frames_transfer_syntax_star_gives_stored(server: Server) -> None:
    path = server.files["color"]
    study, series, sop = _uids(path)
    url = f"{server.url}/dicomweb/studies/{study}/series/{series}/instances/{sop}/frames/60"
    accept = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
    r = httpx.get(url, headers={"Accept": accept})
    assert r.status_code == 200
    assert "transfer-syntax=1.2.840.10008.1.2.4.50" in r.headers["content-type"]
    ds = pydicom.dcmread(path)
    frame = list(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=120))[59]
    assert frame in r.content and r.content.count(b"\xff\xd8") >= 1


def test_thumbnail_and_rendered(server: Server) -> None:
    study, series, sop = _uids(server.files["ct"])
    base = f"{server.url}/dicomweb/studies/{study}/series/{series}"
    r = httpx.get(f"{base}/instances/{sop}/thumbnail", headers={"Accept": "image/jpeg"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(r.content)).size == (128, 128)
    r = httpx.get(f"{base}/thumbnail?viewport=64,64", headers={"Accept": "image/png"})
    assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).size == (64, 64)
    r = httpx.get(
        f"{server.url}/dicomweb/studies/{study}/rendered", headers={"Accept": "image/png"}
    )
    assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).format == "PNG"
