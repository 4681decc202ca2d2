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


def _decoded(data: bytes, fmt: str | None = None) -> list[np.ndarray]:
    import av

    with av.open(io.BytesIO(data), format=fmt) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_rendered_video_is_an_mp4_file(video: Video) -> None:
    """What a <video> element gets (OHIF's video viewport asks /rendered): an MP4 file, the
    stream copied (same frames, in display order, B-frames included), at the cine rate."""
    import av

    expected = _decoded(video.stream, "h264")
    assert len(expected) == 30
    for accept in ("video/mp4", "*/*", "video/*, image/jpeg;q=0.5"):
        r = httpx.get(f"{video.url}/rendered", headers={"Accept": accept})
        assert r.status_code == 200 and r.headers["content-type"] == "video/mp4", accept
        assert r.content[4:8] == b"ftyp"
        got = _decoded(r.content)
        assert len(got) == len(expected)
        assert all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))
    with av.open(io.BytesIO(r.content)) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert abs(float(stream.average_rate or 0) - 30) < 0.5  # FrameTime 33.333 ms


def test_rendered_video_as_an_image_is_its_first_frame(video: Video) -> None:
    for path in ("rendered", "frames/1/rendered"):
        r = httpx.get(f"{video.url}/{path}", headers={"Accept": "image/png"})
        assert r.status_code == 200, r.text
        img = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB")).astype(int)
        assert img.shape == video.frames[0].shape
        assert np.abs(img - video.frames[0]).mean() < 8  # lossy H.264 (crf 18) of frame 1
    r = httpx.get(f"{video.url}/frames/2/rendered", headers={"Accept": "image/png"})
    assert r.status_code == 406 and "video/mp4" in r.text


@pytest.mark.browser
def test_chromium_plays_the_rendered_video(video: Video) -> None:
    """A real <video> element (as OHIF's video viewport makes) loads /rendered and plays it."""
    from playwright.sync_api import sync_playwright

    from web.browser import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{video.base}/dicomweb/studies")  # same origin as the video
            state = page.evaluate(
                """url => new Promise(resolve => {
                    const v = document.createElement('video');
                    v.muted = true;
                    v.onerror = () => resolve({error: v.error && v.error.message});
                    v.onended = () => resolve({
                        width: v.videoWidth, height: v.videoHeight,
                        duration: v.duration, played: v.currentTime});
                    v.src = url;
                    document.body.appendChild(v);
                    v.play().catch(e => resolve({error: String(e)}));
                    setTimeout(() => resolve({timeout: true, ready: v.readyState}), 20000);
                })""",
                f"{video.url}/rendered",
            )
        finally:
            browser.close()
    frame = 1 / 30 + 1e-3
    assert (state.get("width"), state.get("height")) == (320, 240), state
    # 30 frames at the file's 33.333 ms Frame Time, played to the end (within a frame)
    assert abs(state["duration"] - 1) <= frame and abs(state["played"] - 1) <= frame, state
