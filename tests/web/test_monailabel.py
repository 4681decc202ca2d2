"""The MONAI Label API of the server (/monailabel/), over real HTTP, as its clients call it.

The catalog holds a real CT series (pydicom's dicomdirtests 98892001/CT5N: five slices whose
file order runs against the slice normal) and a real MR file. Requests are shaped as the
MONAI Label OHIF panel (monailabel 0.8.5's build) sends them: ``info/``, ``train/?check_if_running``,
``infer/<model>?image=<series>&output=image`` with a multipart form field ``params``, and
``datastore/label`` with the form fields ``params`` and ``label``.
"""

from __future__ import annotations

import json
import shutil
import urllib.parse
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest

pytest.importorskip("scipy", reason="ct-tissue needs the ml extra")
pytest.importorskip("highdicom", reason="SEG writing needs the ml extra")

from corpus import pydicom_folder, sample_file
from pixels import Catalog
from pixels.ml.models import get_model
from pixels.ml.volume import read_volume, select_series
from pixels.web import create_app, monailabel_ohif
from web.conftest import running

TOKEN = "monai-token"
#: models load lazily (scipy, highdicom) on a first request: a generous read timeout
http = httpx.Client(timeout=300)
# what the panel adds to every infer's params (MonaiLabelClient.infer in the 0.8.5 build)
PANEL_PARAMS = {
    "result_extension": ".nrrd",
    "result_dtype": "uint8",
    "result_compress": False,
    "restore_label_idx": False,
}


def _catalog(root: Path) -> tuple[str, str, str, list[Path]]:
    data = root / "data"
    shutil.copytree(pydicom_folder() / "dicomdirtests" / "98892001" / "CT5N", data / "ct")
    (data / "mr").mkdir()
    shutil.copy(sample_file("MR_small.dcm"), data / "mr" / "mr.dcm")
    cat = Catalog(str(root / "catalog"))
    assert cat.catalog(str(data), workers=0).errors == 0
    ct = sorted((data / "ct").iterdir())
    mr = pydicom.dcmread(data / "mr" / "mr.dcm").SeriesInstanceUID
    return str(root / "catalog"), pydicom.dcmread(ct[0]).SeriesInstanceUID, mr, ct


@pytest.fixture(scope="module")
def ml_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str, list]]:
    catalog, ct, mr, files = _catalog(tmp_path_factory.mktemp("monailabel"))
    with running(create_app(catalog, viewer=False)) as url:
        yield url, ct, mr, files


def _form(params: dict, files: dict[str, tuple[str, bytes]] | None = None) -> dict:
    """The multipart form the panel's axios sends: a 'params' field holding JSON, then files."""
    out: dict = {"params": (None, json.dumps(params))}
    for name, (filename, data) in (files or {}).items():
        out[name] = (filename, data, "application/octet-stream")
    return out


def _expected(catalog: str, series: str) -> tuple[np.ndarray, object]:
    found = select_series(Catalog(catalog), f"SeriesInstanceUID = '{series}'")
    vol = read_volume(found.series[0])
    model = get_model("ct-tissue")
    return np.asarray(model(vol.array, vol.plan.spacing)).astype(np.uint8), vol


def _split_nrrd(data: bytes) -> tuple[dict[str, str], bytes]:
    head, body = data.split(b"\n\n", 1)
    lines = head.decode("ascii").split("\n")
    assert lines[0] == "NRRD0004"
    fields = dict(line.split(": ", 1) for line in lines[1:] if not line.startswith("#"))
    return fields, body


def _vec(text: str) -> np.ndarray:
    return np.asarray([float(v) for v in text.strip("()").split(",")])


def test_info_lists_the_registry_models(ml_server: tuple) -> None:
    url = ml_server[0]
    r = http.get(f"{url}/monailabel/info/")
    assert r.status_code == 200
    info = r.json()
    model = get_model("ct-tissue")
    want = {s.name: s.label for s in model.segments if not s.includes}
    assert info["models"]["ct-tissue"]["type"] == "segmentation"
    assert info["models"]["ct-tissue"]["labels"] == want
    assert info["models"]["ct-tissue"]["dimension"] == 3
    assert set(want) <= set(info["labels"])
    # the panel's connect also asks whether training runs
    r = http.get(f"{url}/monailabel/train/", params={"check_if_running": "true"})
    assert r.status_code == 200 and r.json()["status"] != "RUNNING"


def test_infer_answers_the_ct_tissue_labels_as_nrrd(ml_server: tuple) -> None:
    url, ct, _, files = ml_server
    catalog = str(Path(files[0]).parents[2] / "catalog")
    r = http.post(
        f"{url}/monailabel/infer/ct-tissue",
        params={"image": ct, "output": "image"},
        files=_form(PANEL_PARAMS),
    )
    assert r.status_code == 200, r.text
    fields, body = _split_nrrd(r.content)
    labels, _ = _expected(catalog, ct)
    x, y, z = labels.shape
    assert (fields["type"], fields["dimension"], fields["encoding"]) == ("uint8", "3", "raw")
    assert fields["sizes"] == f"{x} {y} {z}"
    assert fields["space"] == "left-posterior-superior"
    # voxels: columns fastest, then rows, then slices (what the panel copies into its volume)
    got = np.frombuffer(body, np.uint8).reshape(z, y, x).transpose(2, 1, 0)
    np.testing.assert_array_equal(got, labels)
    assert len(np.unique(labels)) > 2  # the series really has several tissues
    # geometry from the files themselves: slice 0 is the one lowest along row x column
    dss = [pydicom.dcmread(f) for f in files]
    iop = np.asarray(dss[0].ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    ipps = [np.asarray(d.ImagePositionPatient, float) for d in dss]
    first = ipps[int(np.argmin([p @ normal for p in ipps]))]
    np.testing.assert_allclose(_vec(fields["space origin"]), first, atol=1e-4)
    dirs = fields["space directions"].split(" ")
    row_sp, col_sp = (float(v) for v in dss[0].PixelSpacing)
    np.testing.assert_allclose(_vec(dirs[0]), iop[:3] * col_sp, atol=1e-5)
    np.testing.assert_allclose(_vec(dirs[1]), iop[3:] * row_sp, atol=1e-5)
    assert _vec(dirs[2]) @ normal > 0
    # the first slice's voxels are the first file along the normal: its pixel rows/columns
    assert got[:, :, 0].shape == (dss[0].Columns, dss[0].Rows)


def test_infer_output_all_and_json(ml_server: tuple) -> None:
    url, ct, _, _ = ml_server
    r = http.post(
        f"{url}/monailabel/infer/ct-tissue",
        params={"image": ct, "output": "all"},
        files=_form(PANEL_PARAMS),
    )
    assert r.status_code == 200, r.text
    ctype = r.headers["content-type"]
    assert ctype.startswith("multipart/form-data; boundary=")
    boundary = ctype.split("boundary=")[1].encode()
    parts = r.content.split(b"--" + boundary)
    assert parts[-1].strip() == b"--"
    head_p, body_p = parts[1].split(b"\r\n\r\n", 1)
    assert b'name="params"' in head_p
    meta = json.loads(body_p[:-2])
    model = get_model("ct-tissue")
    assert meta["label_names"] == {s.name: s.label for s in model.segments if not s.includes}
    head_i, body_i = parts[2].split(b"\r\n\r\n", 1)
    assert b'name="image"' in head_i
    image = http.post(
        f"{url}/monailabel/infer/ct-tissue",
        params={"image": ct, "output": "image"},
        files=_form(PANEL_PARAMS),
    )
    assert body_i[:-2] == image.content
    r = http.post(
        f"{url}/monailabel/infer/ct-tissue",
        params={"image": ct, "output": "json"},
        files=_form(PANEL_PARAMS),
    )
    assert r.json()["label_names"] == meta["label_names"]


def test_bad_input_gets_a_clear_4xx(ml_server: tuple) -> None:
    url, ct, mr, _ = ml_server
    post = f"{url}/monailabel/infer/"
    r = http.post(post + "no-such-model", params={"image": ct}, files=_form({}))
    assert r.status_code == 404 and "unknown model 'no-such-model'" in r.text
    # the names info/ answers, region-grow included (was: "known: ct-tissue, bundle:PATH")
    assert "known: ct-tissue, region-grow" in r.text and "bundle:" not in r.text
    r = http.post(post + "ct-tissue", params={"image": "1.2.3.4.5"}, files=_form({}))
    assert r.status_code == 404 and "no image series 1.2.3.4.5" in r.text
    r = http.post(post + "ct-tissue", params={"image": mr}, files=_form({}))
    assert r.status_code == 422 and mr in r.text and "CT" in r.text
    r = http.post(post + "ct-tissue", params={"image": ct}, files={"params": (None, "{not json")})
    assert r.status_code == 400 and "'params' is not JSON" in r.text
    r = http.post(post + "ct-tissue", params={"image": ct}, files=_form({"foreground": [[1, 2]]}))
    assert r.status_code == 400 and "params.foreground" in r.text
    r = http.post(post + "ct-tissue", params={"image": ct, "output": "png"}, files=_form({}))
    assert r.status_code == 400 and "output='png'" in r.text
    r = http.put(f"{url}/monailabel/datastore/label", params={"image": ct}, files=_form({}))
    assert r.status_code == 400 and "'label'" in r.text
    r = http.put(
        f"{url}/monailabel/datastore/label",
        params={"image": ct},
        files=_form({}, {"label": ("label.bin", b"\x01\x02\x03")}),
    )
    assert r.status_code == 400 and "raw uint8 voxels (3 bytes)" in r.text
    assert http.get(f"{url}/monailabel/info/").status_code == 200  # still up


def test_token_guards_every_monailabel_route(tmp_path: Path) -> None:
    catalog, ct, _, _ = _catalog(tmp_path)
    with running(create_app(catalog, token=TOKEN)) as url:
        calls = [
            ("GET", "/monailabel/info/", {}),
            ("GET", "/monailabel/train/?check_if_running=true", {}),
            ("GET", "/monailabel/datastore/?output=stats", {}),
            ("POST", f"/monailabel/infer/ct-tissue?image={ct}", {"files": _form({})}),
            ("PUT", f"/monailabel/datastore/label?image={ct}", {"files": _form({})}),
        ]
        for method, path, kw in calls:
            r = http.request(method, url + path, **kw)
            assert r.status_code == 401, (path, r.status_code)
        good = {"Authorization": f"Bearer {TOKEN}"}
        assert http.get(url + "/monailabel/info/", headers=good).status_code == 200
        # a page opened with the right ?token= sets the cookie the viewers' requests carry
        assert "set-cookie" not in http.get(url + "/?token=wrong").headers
        page = http.get(url + f"/?token={TOKEN}")
        cookie = page.headers["set-cookie"]
        assert cookie == f"pixels_token={TOKEN}; Path=/; HttpOnly; SameSite=Strict"
        jar = {"Cookie": cookie.split(";")[0]}
        for method, path, kw in calls[:3]:
            r = http.request(method, url + path, headers=jar, **kw)
            assert r.status_code == 200, (path, r.status_code, r.text)
        assert http.get(url + "/dicomweb/studies", headers=jar).status_code == 200
        bad = {"Cookie": "pixels_token=wrong"}
        assert http.get(url + "/monailabel/info/", headers=bad).status_code == 401
        assert http.get(url + "/dicomweb/studies", headers=bad).status_code == 401


def test_put_label_becomes_a_cataloged_seg(tmp_path: Path) -> None:
    catalog, ct, _, files = _catalog(tmp_path)
    labels, vol = _expected(catalog, ct)
    study = pydicom.dcmread(files[0]).StudyInstanceUID
    with running(create_app(catalog, viewer=False)) as url:
        stats = http.get(f"{url}/monailabel/datastore/", params={"output": "stats"}).json()
        assert (stats["total"], stats["completed"]) == (2, 0)
        nrrd_bytes = http.post(
            f"{url}/monailabel/infer/ct-tissue",
            params={"image": ct, "output": "image"},
            files=_form(PANEL_PARAMS),
        ).content
        model = get_model("ct-tissue")
        info = [{"name": s.name, "idx": s.label} for s in model.segments if not s.includes]
        r = http.put(
            f"{url}/monailabel/datastore/label",
            params={"image": ct},
            files=_form({"label_info": info}, {"label": ("label.nrrd", nrrd_bytes)}),
        )
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["image"] == ct
        series = http.get(
            f"{url}/dicomweb/studies/{study}/series", params={"Modality": "SEG"}
        ).json()
        assert [s["0020000E"]["Value"][0] for s in series] == [answer["label"]]
        got = http.get(f"{url}/monailabel/datastore/", params={"output": "all"}).json()
        assert got["objects"][ct]["labels"]["final"]["info"]["SeriesInstanceUID"] == answer["label"]
        stats = http.get(f"{url}/monailabel/datastore/", params={"output": "stats"}).json()
        assert (stats["total"], stats["completed"]) == (2, 1)
    path = Catalog(catalog).sql(
        "SELECT path FROM object_catalog WHERE SeriesInstanceUID = ?", [answer["label"]]
    )["path"][0]
    import highdicom as hd

    seg = hd.seg.segread(path)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == ct
    names = {d.SegmentLabel: d.SegmentNumber for d in seg.SegmentSequence}
    present = {int(v) for v in np.unique(labels)} - {0}
    want_names = {s.name for s in model.segments if s.label in present and not s.includes}
    assert set(names) == want_names
    # each segment's mask equals the submitted voxels of its label
    by_name = {s.name: s.label for s in model.segments if not s.includes}
    sops = [vol.rows[s.row]["SOPInstanceUID"] for s in vol.plan.slices]
    for name, number in names.items():
        frames = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=sops, segment_numbers=[number]
        )[..., 0]
        np.testing.assert_array_equal(
            frames.astype(bool), (labels == by_name[name]).transpose(2, 1, 0)
        )


needs_build = pytest.mark.skipif(
    monailabel_ohif.installed_version() is None,
    reason="MONAI Label OHIF not installed: python -m pixels.web.monailabel_ohif install",
)


@needs_build
def test_monailabel_viewer_is_served_under_ohif(ml_server: tuple, tmp_path: Path) -> None:
    files = ml_server[3]
    catalog = str(Path(files[0]).parents[2] / "catalog")
    study = pydicom.dcmread(files[0]).StudyInstanceUID
    with running(create_app(catalog)) as url:
        page = http.get(url + monailabel_ohif.viewer_url(study))
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert 'src="/ohif/app-config.js"' in page.text  # the build's own index.html
        # the panel's server: this server's MONAI Label API (escape()d, as the panel reads it)
        cookie, expired = page.headers.get_list("set-cookie")
        name, _, rest = cookie.partition("=")
        value = rest.split(";")[0]
        assert name == monailabel_ohif.COOKIE and '"' not in value
        assert urllib.parse.unquote(value) == url + "/monailabel/"
        # the path the panel's own write gets (the page's folder), so this one replaces it
        assert "; Path=/ohif;" in cookie
        assert expired == f"{monailabel_ohif.COOKIE}=; Path=/; Max-Age=0; SameSite=Strict"
        config = http.get(url + "/ohif/app-config.js")
        assert config.status_code == 200
        body = json.loads(config.text.split("window.config = ", 1)[1].split(";\n", 1)[0])
        assert body["routerBasename"] == "/ohif/"
        # MONAI Label's mode, wrapped: OHIF's segmentation panel (Export DICOM SEG) beside it
        assert f"id: {json.dumps(monailabel_ohif.MODE)}" in config.text
        assert json.dumps(monailabel_ohif.SEGMENTATION_PANEL) in config.text
        source = body["dataSources"][0]["configuration"]
        assert (source["qidoRoot"], source["wadoRoot"]) == ("/dicomweb", "/dicomweb")
        assert source["dicomUploadEnabled"] is True
        # an asset of the build (the MONAI Label panel's bundle) comes back byte for byte
        dist = monailabel_ohif.dist_dir()
        panel = next(
            p for p in dist.glob("*.bundle.*.js") if b"MONAILABEL_SERVER_URL" in p.read_bytes()
        )
        got = http.get(f"{url}/ohif/{panel.name}")
        assert got.status_code == 200 and got.content == panel.read_bytes()
        assert got.headers["content-type"].startswith("text/javascript")
        assert http.get(f"{url}/ohif/no-such.bundle.js").status_code == 404
        # the stock viewer still answers / with its own config
        stock = http.get(url + "/app-config.js")
        assert (
            json.loads(stock.text.split("window.config = ", 1)[1].split(";\n", 1)[0])[
                "routerBasename"
            ]
            == "/"
        )


def test_install_extracts_the_build_from_the_wheel_once(tmp_path: Path) -> None:
    """A wheel laid out as monailabel's: the OHIF folder is kept (no source maps), the rest is not."""
    wheel = tmp_path / "monailabel-0.8.5-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("monailabel/endpoints/static/ohif/index.html", "<html>ohif</html>")
        zf.writestr("monailabel/endpoints/static/ohif/app.bundle.js", "js")
        zf.writestr("monailabel/endpoints/static/ohif/app.bundle.js.map", "map")
        zf.writestr("monailabel/endpoints/static/ohif/assets/logo.svg", "<svg/>")
        zf.writestr("monailabel/app.py", "python")
        zf.writestr("monailabel/client/client.py", "import requests")
    root = tmp_path / "cache"
    dist = monailabel_ohif.install(root, wheel=wheel, quiet=True)
    kept = sorted(str(p.relative_to(dist)) for p in dist.rglob("*") if p.is_file())
    assert kept == [
        f"{monailabel_ohif.CLIENT_DIR}/client.py",
        monailabel_ohif.MARKER,
        "app.bundle.js",
        "assets/logo.svg",
        "index.html",
    ]
    assert monailabel_ohif.installed_version(root) == monailabel_ohif.MONAILABEL_VERSION
    wheel.unlink()  # a second call neither downloads nor reads a wheel: the marker says it is there
    assert monailabel_ohif.install(root, quiet=True) == dist


def _grow(url: str, ct: str, params: dict) -> np.ndarray:
    r = http.post(
        f"{url}/monailabel/infer/region-grow",
        params={"image": ct, "output": "image"},
        files=_form({**PANEL_PARAMS, **params}),
    )
    assert r.status_code == 200, r.text
    fields, body = _split_nrrd(r.content)
    x, y, z = (int(v) for v in fields["sizes"].split())
    return np.frombuffer(body, np.uint8).reshape(z, y, x).transpose(2, 1, 0)


def test_clicks_grow_a_region_and_background_clicks_cut_it(ml_server: tuple) -> None:
    """The deepgrow-type model: foreground points grow a region, background points shrink it."""
    from scipy import ndimage

    url, ct, _, files = ml_server
    catalog = str(Path(files[0]).parents[2] / "catalog")
    info = http.get(f"{url}/monailabel/info/").json()
    assert info["models"]["region-grow"]["type"] == "deepgrow"
    assert info["models"]["region-grow"]["labels"] == {"region": 1}
    _, vol = _expected(catalog, ct)
    hu = vol.array
    x, y, z = hu.shape
    seed = [x // 2, y // 2, z // 2]
    region = _grow(url, ct, {"foreground": [seed], "background": []})
    assert region.shape == hu.shape and region[tuple(seed)] == 1
    inside = hu[region == 1]
    value = hu[tuple(seed)]
    assert inside.min() >= value - 100 and inside.max() <= value + 100  # the HU tolerance
    _, n = ndimage.label(region)
    assert n == 1  # one connected region, around the click
    # every voxel within tolerance and touching the region is in it (grown to the end)
    window = (hu >= value - 100) & (hu <= value + 100)
    assert not (ndimage.binary_dilation(region.astype(bool)) & window & (region == 0)).any()
    # a background click at the far end of the region cuts it: a strict subset, without it
    far = np.argwhere(region == 1)
    bg = far[np.argmax(((far - seed) ** 2).sum(axis=1))].tolist()
    cut = _grow(url, ct, {"foreground": [seed], "background": [bg]})
    assert cut[tuple(bg)] == 0 and cut[tuple(seed)] == 1
    assert cut.sum() < region.sum() and not (cut & ~region.astype(bool)).any()
    # malformed or outside points: 400 naming them
    r = http.post(
        f"{url}/monailabel/infer/region-grow",
        params={"image": ct},
        files=_form({"foreground": [[x + 5, 0, 0]]}),
    )
    assert r.status_code == 400 and "outside the volume" in r.text
    r = http.post(
        f"{url}/monailabel/infer/region-grow", params={"image": ct}, files=_form({"foreground": []})
    )
    assert r.status_code == 400 and "no foreground point" in r.text


def _raw_post(url: str, query: str, params: dict, accept_encoding: str | None) -> tuple:
    """A POST from http.client, which neither adds an Accept-Encoding (unless given) nor
    decodes the answer: (status, headers with lower-case names, body as sent)."""
    import http.client

    boundary = "pixels-test-boundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="params"\r\n\r\n'
        f"{json.dumps(params)}\r\n--{boundary}--\r\n"
    ).encode()
    parsed = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=300)
    try:
        conn.putrequest("POST", f"{query}", skip_accept_encoding=True)
        conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
        conn.putheader("Content-Length", str(len(body)))
        if accept_encoding is not None:
            conn.putheader("Accept-Encoding", accept_encoding)
        conn.endheaders(body)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def test_click_answers_are_gzip_to_clients_that_accept_it(ml_server: tuple) -> None:
    """A region-grow answer to a client sending Accept-Encoding: gzip is one gzip member
    that inflates to the very NRRD a client without the header gets; an unchanged answer
    is compressed once; ``output=all`` is compressed whole, its image part the same NRRD."""
    import zlib

    from pixels.web import monailabel

    url, ct, _, files = ml_server
    catalog = str(Path(files[0]).parents[2] / "catalog")
    x, y, z = _expected(catalog, ct)[1].array.shape
    click = {**PANEL_PARAMS, "foreground": [[x // 2, y // 2, z // 2]], "background": []}
    query = f"/monailabel/infer/region-grow?image={ct}&output=image"
    status, headers, plain = _raw_post(url, query, click, None)
    assert status == 200 and "content-encoding" not in headers, headers
    assert plain.startswith(b"NRRD0004") and headers["vary"] == "Accept-Encoding"
    assert len(plain) > x * y * z  # the raw voxels
    for accept in ("identity", "gzip;q=0, identity", "br"):
        status, headers, body = _raw_post(url, query, click, accept)
        assert (status, headers.get("content-encoding"), body) == (200, None, plain), accept
    status, headers, packed = _raw_post(url, query, click, "gzip, deflate, br, zstd")
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert int(headers["content-length"]) == len(packed) and len(packed) * 2 < len(plain)
    one = zlib.decompressobj(16 + zlib.MAX_WBITS)  # one member, as httpx and browsers read it
    assert one.decompress(packed) == plain and one.eof and one.unused_data == b""
    cached = [a for _, _, a in monailabel._ENCODED if a.nrrd == plain]
    assert len(cached) == 1
    deflated = cached[0].deflated()
    # the same click again: the same answer, its compressed bytes reused
    status, headers, again = _raw_post(url, query, click, "*")
    assert (status, headers["content-encoding"], again) == (200, "gzip", packed)
    assert [a.deflated() for _, _, a in monailabel._ENCODED if a.nrrd == plain] == [deflated]
    assert cached[0].deflated() is deflated
    # output=all: the whole multipart is compressed; its image part is the same NRRD
    query_all = f"/monailabel/infer/region-grow?image={ct}&output=all"
    status, headers, packed_all = _raw_post(url, query_all, click, "gzip")
    assert status == 200 and headers["content-encoding"] == "gzip"
    whole = zlib.decompressobj(16 + zlib.MAX_WBITS)
    multipart = whole.decompress(packed_all)
    assert whole.eof and whole.unused_data == b""
    boundary = headers["content-type"].split("boundary=")[1].encode()
    parts = multipart.split(b"--" + boundary)
    assert json.loads(parts[1].split(b"\r\n\r\n", 1)[1][:-2])["label_names"] == {"region": 1}
    assert parts[2].split(b"\r\n\r\n", 1)[1][:-2] == plain and parts[3] == b"--\r\n"


def _wheel_client() -> object:
    """``monailabel.client.MONAILabelClient`` from the installed wheel's files (needs only requests)."""
    import importlib.util

    path = monailabel_ohif.dist_dir() / monailabel_ohif.CLIENT_DIR / "client.py"
    if not path.is_file():
        pytest.fail(f"{path} missing: python -m pixels.web.monailabel_ohif install --force")
    spec = importlib.util.spec_from_file_location("monailabel_wheel_client", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # it imports cgi
        spec.loader.exec_module(module)
    return module.MONAILabelClient


@needs_build
def test_monailabel_python_client_against_pixels(tmp_path: Path) -> None:
    """MONAI Label's own client (0.8.5, from the wheel): info, infer, save_label, datastore."""
    catalog, ct, _, files = _catalog(tmp_path)
    labels, _ = _expected(catalog, ct)
    client_class = _wheel_client()
    with running(create_app(catalog, viewer=False)) as url:
        client = client_class(url + "/monailabel/", tmpdir=str(tmp_path / "client"))  # type: ignore[operator]
        (tmp_path / "client").mkdir()
        info = client.info()
        assert info["models"]["ct-tissue"]["type"] == "segmentation"
        image_out, params = client.infer("ct-tissue", ct, {})
        assert params["label_names"] == info["models"]["ct-tissue"]["labels"]
        _, body = _split_nrrd(Path(image_out).read_bytes())
        x, y, z = labels.shape
        got = np.frombuffer(body, np.uint8).reshape(z, y, x).transpose(2, 1, 0)
        np.testing.assert_array_equal(got, labels)
        answer = client.save_label(ct, image_out, params={"label_names": params["label_names"]})
        assert answer["image"] == ct
        store = client.datastore()
        assert (
            store["objects"][ct]["labels"]["final"]["info"]["SeriesInstanceUID"] == answer["label"]
        )
    assert Path(files[0]).exists()


#: create_app, a QIDO search, then info/, in a fresh interpreter: which modules and threads
#: each step brought (the test process may have imported torch for other tests)
_LAZY = """
import json, socket, sys, threading, time
import httpx, uvicorn
from pixels.web import create_app

heavy = ("torch", "monai")
app = create_app(sys.argv[1], viewer=False, token="")
out = {"threads_at_start": sorted(t.name for t in threading.enumerate())}
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
threading.Thread(target=server.run, daemon=True).start()
while not server.started:
    time.sleep(0.02)
with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300) as client:
    r = client.get("/dicomweb/studies")
    out["qido"] = [r.status_code, len(r.json())]
    out["after_qido"] = sorted(m for m in heavy if m in sys.modules)
    r = client.get("/monailabel/info/")
    out["info"] = [r.status_code, sorted(r.json()["models"])]
    out["after_info"] = sorted(m for m in heavy if m in sys.modules)
server.should_exit = True
print(json.dumps(out))
"""


def test_models_load_on_the_first_monailabel_request_without_torch(tmp_path: Path) -> None:
    """Nothing loads models at start-up (their torch/MONAI import held the GIL for 10.7 s of
    CPU under the first searches), and info/ lists the registry's models without importing
    torch or MONAI (only bundles need them, and info/ lists none)."""
    import subprocess
    import sys

    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(sample_file("MR_small.dcm"), data / "mr.dcm")
    catalog = tmp_path / "catalog"
    assert Catalog(str(catalog)).catalog(str(data), workers=0).errors == 0
    run = subprocess.run(
        [sys.executable, "-c", _LAZY, str(catalog)], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert not any("monailabel" in t for t in out["threads_at_start"]), out
    assert out["qido"] == [200, 1]
    assert out["after_qido"] == []
    assert out["info"] == [200, ["ct-tissue", "region-grow"]]
    assert out["after_info"] == []


def test_nrrd_errors_are_pixels_errors(ml_server: tuple) -> None:
    """A cut NRRD of a real infer answer is an error of Pixels naming the sizes."""
    from pixels.errors import NrrdError, PixelsError
    from pixels.web import nrrd

    url, ct = ml_server[0], ml_server[1]
    assert http.get(f"{url}/monailabel/info/").status_code == 200
    # a cut NRRD of a real answer: an error of Pixels (and a ValueError) naming the sizes
    body = http.post(
        f"{url}/monailabel/infer/ct-tissue",
        params={"image": ct, "output": "image"},
        files=_form(PANEL_PARAMS),
    ).content
    with pytest.raises(NrrdError, match="sizes") as err:
        nrrd.decode(body[:-10])
    assert isinstance(err.value, PixelsError) and isinstance(err.value, ValueError)
