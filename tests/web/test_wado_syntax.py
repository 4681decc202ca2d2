"""WADO-RS transfer syntaxes, photometric agreement, deflated files and error statuses.

Every file is a real file (pydicom's test files, dcmtk transcodes of them) copied
with fresh UIDs, so each instance is addressed on its own.
"""

from __future__ import annotations

import email.parser
import io
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from dicomweb_client import DICOMwebClient
from PIL import Image
from pydicom.uid import generate_uid

from pixels import Catalog
from pixels.web import create_app
from web.conftest import running

EXPLICIT_LE = "1.2.840.10008.1.2.1"
SOURCES = {
    "mr": "MR_small.dcm",
    "implicit": "MR_small_implicit.dcm",
    "big": "MR_small_bigendian.dcm",
    "rle": "MR_small_RLE.dcm",
    "jls": "MR_small_jpeg_ls_lossless.dcm",
    "j2k_lossy": "JPEG2000.dcm",
    "deflated": "image_dfl.dcm",
    "ybr422": "SC_rgb_dcmtk_+eb+cy+np.dcm",
    "rct": "examples_jpeg2k.dcm",
    "odd_big": "SC_rgb_small_odd_big_endian.dcm",
    "odd": "SC_rgb_small_odd.dcm",
    "odd_jpeg": "SC_rgb_small_odd_jpeg.dcm",
    "rgb_planar_big": "ExplVR_BigEnd.dcm",
    "rle_2frame": "SC_rgb_rle_2frame.dcm",
    "no_meta": "ExplVR_LitEndNoMeta.dcm",
    "sr": "test-SR.dcm",
}


@dataclass
class Inst:
    path: str
    study: str
    series: str
    sop: str

    def url(self, base: str) -> str:
        return f"{base}/dicomweb/studies/{self.study}/series/{self.series}/instances/{self.sop}"


def _fresh_copy(src: str, dest: Path) -> Inst:
    """`src` with fresh UIDs, written in its own transfer syntax (pydicom keeps it)."""
    ds = pydicom.dcmread(src, force=True)
    uids = generate_uid(), generate_uid(), generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = uids
    if "TransferSyntaxUID" in getattr(ds, "file_meta", {}):
        ds.file_meta.MediaStorageSOPInstanceUID = uids[2]
        ds.save_as(dest, enforce_file_format=False)
    else:  # no file meta: written the same way, without one
        ds.save_as(dest, enforce_file_format=False, implicit_vr=False, little_endian=True)
    return Inst(str(dest), *uids)


def _seg_35_bits(dest: Path) -> Inst:
    """liver.dcm's three 1-bit frames cut to 7 x 5 where each holds both values (OW)."""
    from pydicom.pixels import pack_bits

    ds = pydicom.dcmread(pydicom.data.get_testdata_file("liver.dcm", download=False))
    cut = ds.pixel_array[:, 144:151, 240:245]
    assert all(0 < k < 35 for k in cut.sum(axis=(1, 2)))
    ds.Rows, ds.Columns = 7, 5
    ds.PixelData = pack_bits(cut)
    ds["PixelData"].VR = "OW"
    ds.save_as(dest, enforce_file_format=True)
    return _fresh_copy(str(dest), dest)


@dataclass
class Site:
    url: str
    files: dict[str, Inst]
    catalog: str


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("wado_syntax")
    data = root / "data"
    data.mkdir()
    files = {}
    for key, name in SOURCES.items():
        src = pydicom.data.get_testdata_file(name, download=False)
        assert src, name
        files[key] = _fresh_copy(str(src), data / f"{key}.dcm")
    # RLE with Planar Configuration 1 (dcmtk keeps the big endian file's planes)
    rle_planar = root / "rle_planar_tmp.dcm"
    subprocess.run(
        ["dcmcrle", files["rgb_planar_big"].path, str(rle_planar)], check=True, capture_output=True
    )
    files["rle_planar"] = _fresh_copy(str(rle_planar), data / "rle_planar.dcm")
    rle_planar.unlink()
    # a big endian ECG (dcmtk): its Waveform Data (OW) is bulk data
    ecg_big = root / "ecg_big_tmp.dcm"
    ecg = str(pydicom.data.get_testdata_file("waveform_ecg.dcm", download=False))
    subprocess.run(["dcmconv", "+tb", ecg, str(ecg_big)], check=True, capture_output=True)
    files["ecg_big"] = _fresh_copy(str(ecg_big), data / "ecg_big.dcm")
    ecg_big.unlink()
    # a bit-packed SEG whose frames start inside a byte (7 x 5 = 35 bits a frame), cut
    # from liver.dcm's frames, Pixel Data as OW; and dcmtk's big endian copy of it
    # (OW: the 16-bit words byte-swapped, PS3.5 8.1.1 / 8.2)
    files["seg_le"] = _seg_35_bits(data / "seg_le.dcm")
    seg_big = root / "seg_big_tmp.dcm"
    subprocess.run(
        ["dcmconv", "+tb", files["seg_le"].path, str(seg_big)], check=True, capture_output=True
    )
    files["seg_big"] = _fresh_copy(str(seg_big), data / "seg_big.dcm")
    seg_big.unlink()
    # a syntax no installed codec decodes: a real JPEG 2000 file labelled Part 2 (lossless)
    ds = pydicom.dcmread(files["j2k_lossy"].path)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.92"
    part2 = root / "j2k_part2_tmp.dcm"
    ds.save_as(part2)
    files["no_codec"] = _fresh_copy(str(part2), data / "j2k_part2.dcm")
    part2.unlink()
    # a file that will vanish, and a two-instance series whose second file vanishes
    files["gone"] = _fresh_copy(files["mr"].path, data / "gone.dcm")
    kept = _fresh_copy(files["mr"].path, data / "series_a.dcm")
    lost = _fresh_copy(files["mr"].path, data / "series_b.dcm")
    for inst in (kept, lost):  # same study and series
        ds = pydicom.dcmread(inst.path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = kept.study, kept.series
        ds.save_as(inst.path)
        inst.study, inst.series = kept.study, kept.series
    files["series_a"], files["series_b"] = kept, lost
    catalog = str(root / "catalog")
    Catalog(catalog).catalog(str(data), workers=0)
    for key in ("gone", "series_b"):
        os.unlink(files[key].path)
    with running(create_app(catalog, token="", viewer=False)) as url:
        yield Site(url, files, catalog)


def _parts(r: httpx.Response) -> list[tuple[str, bytes]]:
    """(Content-Type, body) of each part of a multipart/related answer."""
    raw = f"Content-Type: {r.headers['content-type']}\r\n\r\n".encode() + r.content
    msg = email.parser.BytesParser().parsebytes(raw)
    assert msg.is_multipart(), r.headers["content-type"]
    return [
        (str(p.get("Content-Type")), p.get_payload(decode=True))  # type: ignore[misc]
        for p in msg.get_payload()  # type: ignore[union-attr]
    ]


def _original(key: str) -> pydicom.Dataset:
    src = pydicom.data.get_testdata_file(SOURCES[key], download=False)
    return pydicom.dcmread(src, force=True)


ACCEPT_DICOM = 'multipart/related; type="application/dicom"'


# ------------------------------------------------------------------------------ instances


@pytest.mark.parametrize("key", ["implicit", "big", "deflated", "rle", "jls", "no_meta"])
def test_instance_without_syntax_is_explicit_le(site: Site, key: str) -> None:
    """PS3.18 8.7.3.4: no transfer-syntax asked: Explicit VR LE (lossless data converted)."""
    inst = site.files[key]
    r = httpx.get(inst.url(site.url), headers={"Accept": ACCEPT_DICOM})
    assert r.status_code == 200, r.text
    [(ctype, body)] = _parts(r)
    assert ctype == f"application/dicom; transfer-syntax={EXPLICIT_LE}"
    got = pydicom.dcmread(io.BytesIO(body))
    assert got.file_meta.TransferSyntaxUID == EXPLICIT_LE
    assert body[128:132] == b"DICM"
    ref = pydicom.dcmread(inst.path, force=True)
    if "PixelData" in ref:
        assert np.array_equal(got.pixel_array, ref.pixel_array)
    for elem in ref:
        if elem.tag.element == 0 or elem.tag == 0x7FE00010:
            continue
        assert got[elem.tag].value == elem.value, elem
    # the same file through dicomweb-client (its default Accept)
    client = DICOMwebClient(url=f"{site.url}/dicomweb")
    ds = client.retrieve_instance(inst.study, inst.series, inst.sop)
    assert ds.file_meta.TransferSyntaxUID in (EXPLICIT_LE, ref.file_meta.get("TransferSyntaxUID"))
    assert ds.file_meta.TransferSyntaxUID not in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.2")


def test_lossy_instance_keeps_its_syntax(site: Site) -> None:
    inst = site.files["j2k_lossy"]
    r = httpx.get(inst.url(site.url), headers={"Accept": ACCEPT_DICOM})
    [(ctype, body)] = _parts(r)
    assert ctype == "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.91"
    assert body == Path(inst.path).read_bytes()
    # asked for explicitly: decoded
    r = httpx.get(
        inst.url(site.url), headers={"Accept": ACCEPT_DICOM + f"; transfer-syntax={EXPLICIT_LE}"}
    )
    [(ctype, body)] = _parts(r)
    assert ctype.endswith(EXPLICIT_LE)
    got = pydicom.dcmread(io.BytesIO(body))
    assert np.array_equal(got.pixel_array, pydicom.dcmread(inst.path).pixel_array)


def test_decoded_instance_says_what_it_holds(site: Site) -> None:
    """JPEG 2000 YBR_RCT decodes to RGB: the converted file says RGB, Planar Configuration 0."""
    for key, pi in (("rct", "RGB"), ("rle_planar", "RGB")):
        inst = site.files[key]
        r = httpx.get(inst.url(site.url), headers={"Accept": ACCEPT_DICOM})
        [(ctype, body)] = _parts(r)
        assert ctype.endswith(EXPLICIT_LE), key
        got = pydicom.dcmread(io.BytesIO(body))
        assert got.PhotometricInterpretation == pi and got.PlanarConfiguration == 0
        ref = pydicom.dcmread(inst.path)
        assert np.array_equal(got.pixel_array, ref.pixel_array), key


def test_star_is_stored_except_big_endian_and_implicit(site: Site) -> None:
    star = ACCEPT_DICOM + "; transfer-syntax=*"
    for key in ("big", "implicit"):
        r = httpx.get(site.files[key].url(site.url), headers={"Accept": star})
        [(ctype, body)] = _parts(r)
        assert ctype.endswith(EXPLICIT_LE), key
        assert pydicom.dcmread(io.BytesIO(body)).file_meta.TransferSyntaxUID == EXPLICIT_LE
    for key, ts in (("rle", "1.2.840.10008.1.2.5"), ("deflated", "1.2.840.10008.1.2.1.99")):
        inst = site.files[key]
        r = httpx.get(inst.url(site.url), headers={"Accept": star})
        [(ctype, body)] = _parts(r)
        assert ctype == f"application/dicom; transfer-syntax={ts}"
        assert body == Path(inst.path).read_bytes()


def test_big_endian_or_implicit_asked_for_is_406(site: Site) -> None:
    for ts in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.2"):
        r = httpx.get(
            site.files["big"].url(site.url),
            headers={"Accept": ACCEPT_DICOM + f"; transfer-syntax={ts}"},
        )
        assert r.status_code == 406, ts


# --------------------------------------------------------------------------------- frames


def _frames(site: Site, key: str, nums: str, accept: str) -> httpx.Response:
    return httpx.get(f"{site.files[key].url(site.url)}/frames/{nums}", headers={"Accept": accept})


OCTET = 'multipart/related; type="application/octet-stream"'


def test_big_endian_frames_are_sent_little_endian(site: Site) -> None:
    for accept in (OCTET, OCTET + "; transfer-syntax=*"):
        r = _frames(site, "big", "1", accept)
        [(ctype, body)] = _parts(r)
        assert ctype == f"application/octet-stream; transfer-syntax={EXPLICIT_LE}"
        assert body == _original("mr").pixel_array.astype("<i2").tobytes()
    # 8-bit data written as OW in big endian, odd frame length (27 bytes)
    [(ctype, body)] = _parts(_frames(site, "odd_big", "1", OCTET))
    assert ctype.endswith(EXPLICIT_LE)
    assert body == _original("odd").pixel_array.tobytes() and len(body) == 27
    # RGB with Planar Configuration 1: the frame keeps its planes, as the metadata says
    [(ctype, body)] = _parts(_frames(site, "rgb_planar_big", "1", OCTET))
    ref = _original("rgb_planar_big")
    assert ref.PlanarConfiguration == 1
    assert body == ref.pixel_array.transpose(2, 0, 1).tobytes()
    # implicit VR frames are labelled Explicit VR LE (same bytes)
    [(ctype, body)] = _parts(_frames(site, "implicit", "1", OCTET + "; transfer-syntax=*"))
    assert ctype.endswith(EXPLICIT_LE)


def test_decoded_frames_match_the_metadata_or_are_refused(site: Site) -> None:
    client = DICOMwebClient(url=f"{site.url}/dicomweb")
    # YBR_FULL_422 JPEG and JPEG 2000 YBR_RCT: a decoder gives YBR_FULL / RGB, which the
    # metadata does not say: refused, with the stored form named
    for key, stored in (("ybr422", "image/jpeg"), ("rct", "image/jp2")):
        inst = site.files[key]
        meta = client.retrieve_instance_metadata(inst.study, inst.series, inst.sop)
        assert meta["00280004"]["Value"][0] in ("YBR_FULL_422", "YBR_RCT")
        r = _frames(site, key, "1", OCTET + f"; transfer-syntax={EXPLICIT_LE}")
        assert r.status_code == 406 and stored in r.text and "metadata" in r.text, r.text
        # a client that also accepts the stored form gets it
        r = _frames(
            site,
            key,
            "1",
            f'{OCTET}; transfer-syntax={EXPLICIT_LE}, multipart/related; type="{stored}"; q=0.5',
        )
        [(ctype, body)] = _parts(r)
        assert ctype.startswith(stored)
        stored_ds = pydicom.dcmread(inst.path)
        assert body == next(pydicom.encaps.generate_frames(stored_ds.PixelData, number_of_frames=1))
    # RLE with Planar Configuration 1: decoded frames come in planes, as the metadata says
    inst = site.files["rle_planar"]
    meta = client.retrieve_instance_metadata(inst.study, inst.series, inst.sop)
    assert meta["00280006"]["Value"] == [1]
    [frame] = client.retrieve_instance_frames(
        inst.study,
        inst.series,
        inst.sop,
        frame_numbers=[1],
        media_types=(("application/octet-stream", EXPLICIT_LE),),
    )
    assert frame == pydicom.dcmread(inst.path).pixel_array.transpose(2, 0, 1).tobytes()


def test_deflated_instance_has_frames(site: Site) -> None:
    inst = site.files["deflated"]
    ref = pydicom.dcmread(inst.path).pixel_array
    client = DICOMwebClient(url=f"{site.url}/dicomweb")
    [frame] = client.retrieve_instance_frames(inst.study, inst.series, inst.sop, frame_numbers=[1])
    assert frame == ref.tobytes()
    r = httpx.get(f"{inst.url(site.url)}/bulkdata/7FE00010", headers={"Accept": OCTET})
    [(ctype, body)] = _parts(r)
    assert body == ref.tobytes() and ctype.endswith(EXPLICIT_LE)
    for path in ("rendered", "frames/1/rendered"):
        r = httpx.get(f"{inst.url(site.url)}/{path}", headers={"Accept": "image/png"})
        assert r.status_code == 200, (path, r.text)
        assert Image.open(io.BytesIO(r.content)).size == (ref.shape[1], ref.shape[0])


def test_frame_rendered(site: Site) -> None:
    inst = site.files["rle_2frame"]
    ref = pydicom.dcmread(inst.path).pixel_array
    url = inst.url(site.url)
    images = []
    for k in (1, 2):
        r = httpx.get(f"{url}/frames/{k}/rendered", headers={"Accept": "image/png"})
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        img = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
        assert np.array_equal(img, ref[k - 1])  # 8-bit RGB: the display pipeline keeps it
        images.append(r.content)
    assert images[0] != images[1]
    r = httpx.get(
        f"{url}/frames/1,2/rendered", headers={"Accept": 'multipart/related; type="image/png"'}
    )
    assert [body for _, body in _parts(r)] == images
    assert (
        httpx.get(f"{url}/frames/1,2/rendered", headers={"Accept": "image/png"}).status_code == 406
    )
    assert httpx.get(f"{url}/frames/3/rendered").status_code == 404
    client = DICOMwebClient(url=f"{site.url}/dicomweb")
    got = client.retrieve_instance_frames_rendered(
        inst.study, inst.series, inst.sop, frame_numbers=[2], media_types=("image/png",)
    )
    assert got == images[1]


# --------------------------------------------------------------------------------- errors


def test_vanished_file_is_410_before_any_byte(site: Site) -> None:
    gone = site.files["gone"]
    url = gone.url(site.url)
    with httpx.Client() as http:
        for path, accept in (
            ("", ACCEPT_DICOM),
            ("", "application/dicom"),
            ("/frames/1", OCTET),
            ("/rendered", "image/jpeg"),
            ("/frames/1/rendered", "image/jpeg"),
            ("/bulkdata/7FE00010", OCTET),
        ):
            r = http.get(url + path, headers={"Accept": accept})
            assert r.status_code == 410, (path, r.status_code, r.text[:200])
            assert "no longer exists" in r.text and "gone.dcm" in r.text
        # the connection stays usable
        assert http.get(f"{site.url}/dicomweb/studies").status_code == 200
        # a series whose second file vanished: 410, not a multipart body cut in the middle
        a = site.files["series_a"]
        r = http.get(
            f"{site.url}/dicomweb/studies/{a.study}/series/{a.series}",
            headers={"Accept": ACCEPT_DICOM},
        )
        assert r.status_code == 410 and "series_b.dcm" in r.text


def test_missing_codec_is_406(site: Site) -> None:
    inst = site.files["no_codec"]
    url = inst.url(site.url)
    r = httpx.get(f"{url}/frames/1", headers={"Accept": OCTET + f"; transfer-syntax={EXPLICIT_LE}"})
    assert r.status_code == 406 and "no decoder" in r.text, r.text
    r = httpx.get(url, headers={"Accept": ACCEPT_DICOM + f"; transfer-syntax={EXPLICIT_LE}"})
    assert r.status_code == 406 and "no decoder" in r.text
    r = httpx.get(f"{url}/rendered", headers={"Accept": "image/jpeg"})
    assert r.status_code == 406 and "no decoder" in r.text
    # as stored it is still served (no syntax asked for: what cannot be decoded goes as stored)
    r = httpx.get(url, headers={"Accept": ACCEPT_DICOM})
    [(ctype, body)] = _parts(r)
    assert ctype.endswith("1.2.840.10008.1.2.4.92") and body == Path(inst.path).read_bytes()
    r = httpx.get(f"{url}/frames/1", headers={"Accept": OCTET + "; transfer-syntax=*"})
    assert r.status_code == 200


@pytest.mark.parametrize("key", ["odd", "odd_big", "odd_jpeg"])
def test_odd_sized_rgb_renders(site: Site, key: str) -> None:
    """SC_rgb_small_odd*: 3x3 RGB, 27 bytes per frame (big endian: 8-bit OW swapped in pairs)."""
    inst = site.files[key]
    ref = pydicom.dcmread(inst.path).pixel_array
    with httpx.Client() as http:
        for path in ("rendered", "frames/1/rendered"):
            r = http.get(f"{inst.url(site.url)}/{path}", headers={"Accept": "image/png"})
            assert r.status_code == 200, (path, r.text)
            img = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
            if key == "odd_jpeg":  # pydicom and Pixels' JPEG decoders may differ by a level
                assert np.abs(img.astype(int) - ref.astype(int)).max() <= 2
            else:
                assert np.array_equal(img, ref)


def test_bulkdata_is_streamed_not_read_whole(tmp_path: Path) -> None:
    """A 48 MiB value (a private OB element added to a real file) goes out in chunks."""
    import hashlib
    import tracemalloc

    ds = _original("mr")
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = (generate_uid() for _ in "abc")
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    value = np.random.default_rng(7).integers(0, 256, 48 << 20, dtype=np.uint8).tobytes()
    block = ds.private_block(0x0009, "PIXELS TEST", create=True)
    block.add_new(0x10, "OB", value)
    (tmp_path / "data").mkdir()
    path = tmp_path / "data" / "big_private.dcm"
    ds.save_as(path, enforce_file_format=True)
    del block, ds
    catalog = str(tmp_path / "catalog")
    Catalog(catalog).catalog(str(tmp_path / "data"), workers=0)
    inst = pydicom.dcmread(path, stop_before_pixels=True)
    base = (
        f"/dicomweb/studies/{inst.StudyInstanceUID}/series/{inst.SeriesInstanceUID}"
        f"/instances/{inst.SOPInstanceUID}"
    )
    want = hashlib.sha256(value).hexdigest()
    del value
    with running(create_app(catalog, token="", viewer=False)) as url:
        meta = httpx.get(url + base + "/metadata").json()[0]
        uri = meta["00091010"]["BulkDataURI"]
        assert uri.endswith("/bulkdata/00091010")
        tracemalloc.start()
        try:
            h = hashlib.sha256()
            with httpx.stream("GET", uri, headers={"Accept": "application/octet-stream"}) as r:
                assert r.status_code == 200
                for chunk in r.iter_raw():
                    h.update(chunk)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert h.hexdigest() == want
        assert peak < 16 << 20, f"peak {peak >> 20} MiB while sending a 48 MiB value"
        # the file cut after cataloging: an error naming it before any byte, not a short body
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) - (40 << 20))
        r = httpx.get(uri, headers={"Accept": "application/octet-stream"})
        assert r.status_code == 500 and "shorter than the catalog says" in r.text
        assert "big_private.dcm" in r.text


def test_wado_uri_dicom_is_explicit_le(site: Site) -> None:
    """WADO-URI ``contentType=application/dicom``: Explicit VR LE unless transferSyntax says."""
    for key in ("implicit", "big", "rle"):
        inst = site.files[key]
        params = {
            "requestType": "WADO",
            "studyUID": inst.study,
            "seriesUID": inst.series,
            "objectUID": inst.sop,
            "contentType": "application/dicom",
        }
        r = httpx.get(f"{site.url}/wado", params=params)
        assert r.status_code == 200, r.text
        got = pydicom.dcmread(io.BytesIO(r.content))
        assert got.file_meta.TransferSyntaxUID == EXPLICIT_LE
        assert np.array_equal(got.pixel_array, pydicom.dcmread(inst.path).pixel_array)
        r = httpx.get(f"{site.url}/wado", params={**params, "transferSyntax": "*"})
        stored = pydicom.dcmread(inst.path).file_meta.TransferSyntaxUID
        if key == "rle":
            assert r.content == Path(inst.path).read_bytes()
        else:
            assert pydicom.dcmread(io.BytesIO(r.content)).file_meta.TransferSyntaxUID == EXPLICIT_LE
        r = httpx.get(f"{site.url}/wado", params={**params, "transferSyntax": stored})
        assert r.status_code == (200 if key == "rle" else 406), key


def test_bulkdata_of_big_endian_file_is_little_endian(site: Site) -> None:
    """Waveform Data (OW) of a big endian ECG comes as the little endian file's bytes."""
    inst = site.files["ecg_big"]
    assert pydicom.dcmread(inst.path).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.2"
    client = DICOMwebClient(url=f"{site.url}/dicomweb")
    meta = client.retrieve_instance_metadata(inst.study, inst.series, inst.sop)
    ref = pydicom.dcmread(pydicom.data.get_testdata_file("waveform_ecg.dcm", download=False))
    for k, item in enumerate(meta["54000100"]["Value"]):
        uri = item["54001010"]["BulkDataURI"]
        [got] = client.retrieve_bulkdata(uri)
        assert got == ref.WaveformSequence[k].WaveformData, k


def test_bit_packed_frames_inside_a_byte_little_and_big_endian(site: Site) -> None:
    """Each frame of the 35-bit SEG, from the little and the big endian file, as pydicom's."""
    ref = pydicom.dcmread(site.files["seg_le"].path).pixel_array
    want = [np.packbits(f.ravel(), bitorder="little").tobytes() for f in ref]  # 5 bytes each
    big = pydicom.dcmread(site.files["seg_big"].path)
    assert big.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.2"
    assert big.PixelData != pydicom.dcmread(site.files["seg_le"].path).PixelData  # swapped
    for key in ("seg_le", "seg_big"):
        for accept in (OCTET, OCTET + "; transfer-syntax=*", "application/octet-stream"):
            for n in (1, 2, 3):
                r = _frames(site, key, str(n), accept)
                assert r.status_code == 200, (key, accept, r.text)
                body = r.content if accept == "application/octet-stream" else _parts(r)[0][1]
                assert body == want[n - 1], (key, accept, n)
        parts = _parts(_frames(site, key, "3,1,2", OCTET))
        assert [b for _, b in parts] == [want[2], want[0], want[1]], key
        assert all(c.endswith(EXPLICIT_LE) for c, _ in parts)
    # rendered frames (the display pipeline reads frames through the row's index)
    for n in (1, 2, 3):
        png = [_frames(site, k, f"{n}/rendered", "image/png") for k in ("seg_le", "seg_big")]
        assert all(r.status_code == 200 for r in png), [r.text for r in png]
        pixels = [np.asarray(Image.open(io.BytesIO(r.content))) for r in png]
        assert np.array_equal(pixels[0], pixels[1]), n
        assert np.array_equal(pixels[0] > 0, ref[n - 1] > 0), n
