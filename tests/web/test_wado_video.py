"""WADO-RS of a video instance (H.264): the stream is one unit, served whole as video/mp4.

The file is real: pydicom's US cine (examples_ybr_color.dcm, 30 frames) re-encoded
with libx264 (PyAV) and encapsulated in fragments, as ``tests.corpus.h264_file`` makes it.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import pydicom
import pytest
from dicomweb_client import DICOMwebClient
from PIL import Image

from corpus import H264, h264_file
from pixels import Catalog
from pixels.web import create_app
from web.conftest import running
from web.test_wado_syntax import _parts

pytest.importorskip("av")


@dataclass
class Video:
    url: str
    base: str
    stream: bytes
    frames: np.ndarray
    uids: tuple[str, str, str]


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Video]:
    root = tmp_path_factory.mktemp("video")
    (root / "data").mkdir()
    path, frames = h264_file(root / "data" / "cine.dcm", fragment_size=4096)
    ds = pydicom.dcmread(path)
    stream = b"".join(pydicom.encaps.generate_fragments(ds.PixelData))
    assert len(list(pydicom.encaps.generate_fragments(ds.PixelData))) > 1  # several fragments
    catalog = str(root / "catalog")
    Catalog(catalog).catalog(str(root / "data"), workers=0)
    uids = ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
    with running(create_app(catalog, token="", viewer=False)) as base:
        url = f"{base}/dicomweb/studies/{uids[0]}/series/{uids[1]}/instances/{uids[2]}"
        yield Video(url, base, stream, frames, uids)


def test_frames_and_pixel_bulkdata_are_the_stream(video: Video) -> None:
    ts = f"video/mp4; transfer-syntax={H264}"
    # any frame (PS3.18: a video's frames are not separable): the whole stream, one part
    for nums in ("1", "30", "2,5"):
        r = httpx.get(
            f"{video.url}/frames/{nums}", headers={"Accept": 'multipart/related; type="video/mp4"'}
        )
        [(ctype, body)] = _parts(r)
        assert ctype == ts and body == video.stream, nums
    assert httpx.get(f"{video.url}/frames/31").status_code == 404
    r = httpx.get(f"{video.url}/bulkdata/7FE00010", headers={"Accept": "video/mp4"})
    assert r.status_code == 200 and r.headers["content-type"] == ts
    assert r.content == video.stream
    # dicomweb-client names MPEG-4 video video/mp4 too
    client = DICOMwebClient(url=f"{video.base}/dicomweb")
    meta = client.retrieve_instance_metadata(*video.uids)
    [got] = client.retrieve_bulkdata(
        meta["7FE00010"]["BulkDataURI"], media_types=(("video/mp4", H264),)
    )
    assert got == video.stream


def test_video_is_not_decoded_to_frames(video: Video) -> None:
    r = httpx.get(
        f"{video.url}/frames/1",
        headers={"Accept": 'multipart/related; type="application/octet-stream"'},
    )
    assert r.status_code == 406 and "video/mp4" in r.text
    accept = 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1'
    r = httpx.get(video.url, headers={"Accept": accept})
    assert r.status_code == 406 and "video" in r.text


def test_instance_keeps_its_video_syntax(video: Video) -> None:
    client = DICOMwebClient(url=f"{video.base}/dicomweb")
    ds = client.retrieve_instance(*video.uids)
    assert ds.file_meta.TransferSyntaxUID == H264
    assert b"".join(pydicom.encaps.generate_fragments(ds.PixelData)) == video.stream


def test_rendered_video(video: Video) -> None:
    r = httpx.get(f"{video.url}/rendered", headers={"Accept": "video/mp4"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("video/mp4")
    assert r.content == video.stream
    for path in ("rendered", "frames/1/rendered"):
        r = httpx.get(f"{video.url}/{path}", headers={"Accept": "image/png"})
        assert r.status_code == 200, r.text
        img = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB")).astype(int)
        assert img.shape == video.frames[0].shape
        assert np.abs(img - video.frames[0]).mean() < 8  # lossy H.264 (crf 18) of frame 1
    r = httpx.get(f"{video.url}/frames/2/rendered", headers={"Accept": "image/png"})
    assert r.status_code == 406 and "video/mp4" in r.text
