"""The OHIF viewer served at ``/``: static serving, app-config.js, and a real browser.

The browser tests drive Debian's chromium (``/usr/bin/chromium``) with Playwright
over a real server on loopback and a catalog of real CT slices; they need the
viewer installed (``python -m pixels.web.ohif install``, done by scripts/setup.sh).
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image, ImageStat
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from pixels import Catalog
from pixels.web import create_app, ohif
from web.browser import chromium, open_page, wait_for_image
from web.conftest import TOKEN, running

PATIENT = "Viewer^Pixels"
DESCRIPTION = "Pixels viewer test"
SLICES = 6

needs_viewer = pytest.mark.skipif(
    ohif.installed_version() is None, reason="OHIF not installed: python -m pixels.web.ohif install"
)


# ---------------------------------------------------------------- serving (no browser)


def test_app_config_points_at_same_origin_dicomweb() -> None:
    config = ohif.app_config("/dicomweb")
    (source,) = config["dataSources"]
    assert source["namespace"] == "@ohif/extension-default.dataSourcesModule.dicomweb"
    c = source["configuration"]
    assert c["qidoRoot"] == c["wadoRoot"] == c["wadoUriRoot"] == "/dicomweb"
    assert c["imageRendering"] == c["thumbnailRendering"] == "wadors"
    assert c["supportsStow"] is True and c["dicomUploadEnabled"] is True
    assert c["bulkDataURI"] == {"enabled": True}
    js = ohif.app_config_js("/dicomweb")
    assert js.startswith("/*") and "window.config = " in js
    assert json.loads(js.split("window.config = ", 1)[1].split(";\n", 1)[0]) == config
    assert "routeName: 'monai-label'" in js  # the study list's MONAI Label button


def test_missing_viewer_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, corpus: tuple[str, dict[str, str]]
) -> None:
    monkeypatch.setenv("PIXELS_OHIF_DIR", str(tmp_path / "nothing-here"))
    with running(create_app(corpus[0], token="")) as url, httpx.Client(base_url=url) as client:
        r = client.get("/")
        assert r.status_code == 200
        assert "python -m pixels.web.ohif install" in r.text
        assert client.get("/viewer").status_code == 404
        assert client.get("/dicomweb/nope").status_code == 404
        assert client.get("/dicomweb/studies").status_code == 200


def test_install_is_idempotent_and_prunes(tmp_path: Path) -> None:
    """A fake npm (a tarball like the real one) shows what install keeps and skips."""
    import tarfile

    pkg = tmp_path / "src" / "package" / "dist"
    (pkg / "ort").mkdir(parents=True)
    (pkg / "index.html").write_text("<html></html>")
    (pkg / "app.js").write_text("x")
    (pkg / "app.js.map").write_text("{}")
    (pkg / "ort" / "ort.wasm").write_bytes(b"\0asm")
    tgz = tmp_path / "ohif-app.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(tmp_path / "src" / "package", arcname="package")
    log = tmp_path / "calls"
    npm = tmp_path / "npm"
    npm.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {log}\n'
        'while [ "$1" != "--pack-destination" ]; do shift; done\n'
        f'cp {tgz} "$2/ohif-app.tgz"\n'
    )
    npm.chmod(0o755)
    root = tmp_path / "cache"
    dist = ohif.install(root, npm=str(npm), quiet=True)
    assert sorted(p.name for p in dist.iterdir()) == [ohif.MARKER, "app.js", "index.html"]
    assert ohif.installed_version(root) == ohif.OHIF_VERSION
    ohif.install(root, npm=str(npm), quiet=True)  # skipped: the marker says it is there
    calls = log.read_text().splitlines()
    assert len(calls) == 1 and f"@ohif/app@{ohif.OHIF_VERSION}" in calls[0]
    ohif.install(root, npm=str(npm), quiet=True, force=True)
    assert len(log.read_text().splitlines()) == 2
    assert [p.name for p in root.iterdir()] == ["dist"]  # no temporary folder left


@needs_viewer
def test_static_files_and_spa_fallback(corpus: tuple[str, dict[str, str]]) -> None:
    dist = ohif.dist_dir()
    wasm = next(dist.glob("*.wasm"))
    app = create_app(corpus[0], token=TOKEN)
    with running(app) as url, httpx.Client(base_url=url) as client:
        index = client.get("/")
        assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
        assert 'src="/app-config.js"' in index.text
        for path in ("/viewer", "/segmentation", "/viewer/dicomweb"):
            r = client.get(path, params={"StudyInstanceUIDs": "1.2.3"})
            assert r.status_code == 200 and r.text == index.text
        cfg = client.get("/app-config.js")  # generated, not the package's own
        assert cfg.headers["content-type"].startswith("text/javascript")
        assert "Pixels" in cfg.text and "cloudfront" not in cfg.text
        r = client.get("/" + wasm.name)
        assert r.status_code == 200 and r.headers["content-type"] == "application/wasm"
        assert r.content == wasm.read_bytes()
        js = next(dist.glob("app.bundle.*.js")).name
        assert client.get("/" + js).headers["content-type"].startswith("text/javascript")
        assert client.get("/missing.bundle.js").status_code == 404
        for sneaky in ("/%2e%2e/%2e%2e/%2e%2e/pyproject.toml", "/..%2f..%2f..%2fpyproject.toml"):
            r = client.get(sneaky)
            assert "[project]" not in r.text and r.status_code in (200, 404)
        assert client.get("/" + ohif.MARKER).text == index.text
        # static files are public; DICOMweb needs the token
        assert client.get("/dicomweb/studies").status_code == 401
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert client.get("/dicomweb/studies", headers=auth).status_code == 200


# ---------------------------------------------------------------- the browser


def _ct_series(folder: Path) -> str:
    """Write SLICES copies of pydicom's CT_small as one new study; returns its UID."""
    src = get_testdata_file("CT_small.dcm", download=False)
    assert src
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    folder.mkdir(parents=True)
    for i in range(SLICES):
        ds = pydicom.dcmread(src)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.FrameOfReferenceUID = frame
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.PatientName, ds.PatientID = PATIENT, "PXV-001"
        ds.StudyDescription, ds.SeriesDescription = DESCRIPTION, "CT slices"
        ds.StudyID, ds.AccessionNumber = "1", "PXV1"
        ds.InstanceNumber = i + 1
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y, z + 5.0 * i]
        ds.SliceLocation = z + 5.0 * i
        ds.SliceThickness = 5.0
        ds.save_as(folder / f"slice{i:02d}.dcm", enforce_file_format=True)
    return study


def serve_ct(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[tuple[str, str, str]]:
    """A server over a catalog of its own of :func:`_ct_series`: ``(url, study, catalog)``."""
    root = tmp_path_factory.mktemp(name)
    study = _ct_series(root / "data")
    catalog = str(root / "catalog")
    Catalog(catalog).catalog(str(root / "data"), workers=0)
    with running(create_app(catalog, token="")) as url:
        yield url, study, catalog


@pytest.fixture(scope="module")
def ct_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    yield from serve_ct(tmp_path_factory, "viewer")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with chromium() as ctx:
        yield ctx


@pytest.mark.browser
@needs_viewer
def test_study_list_shows_the_study(ct_server: tuple[str, str, str], browser: object) -> None:
    url, _study, _ = ct_server
    log: list[str] = []
    page = open_page(browser, log)
    try:
        page.goto(url + "/", wait_until="domcontentloaded")
        deadline = time.monotonic() + 60
        text = ""
        while time.monotonic() < deadline:
            text = page.inner_text("body")
            if DESCRIPTION in text:
                break
            page.wait_for_timeout(500)
        assert DESCRIPTION in text, f"study list: {text[:500]!r}; console: {log[-20:]}"
        assert "Viewer, Pixels" in text  # the patient name, as OHIF formats it
    finally:
        page.close()


@pytest.fixture(scope="module")
def everything_server(
    everything_catalog: tuple[str, dict[str, set[str]]],
) -> Iterator[tuple[str, dict[str, set[str]]]]:
    catalog, studies = everything_catalog
    with running(create_app(catalog, token="")) as url:
        yield url, studies


@pytest.mark.browser
@needs_viewer
def test_study_list_lists_every_study_of_every_real_file(
    everything_server: tuple[str, dict[str, set[str]]], browser: object
) -> None:
    """OHIF's study list over every real test file: all studies, their instances, no error.

    The catalog holds studies none of whose instances has a Modality, studies without
    (or with empty) patient and study attributes, and values that are not what their
    VR says: the study list must read every QIDO answer.
    """
    url, studies = everything_server
    # one page: OHIF asks QIDO for 101 studies and shows up to resultsPerPage of them
    assert 60 <= len(studies) <= 100
    log: list[str] = []
    page = open_page(browser, log)
    counter = re.compile(r"\b1-(\d+) of (\d+)\b")
    try:
        page.goto(url + "/?resultsPerPage=100", wait_until="domcontentloaded")
        deadline = time.monotonic() + 60
        text = ""
        while time.monotonic() < deadline:
            text = page.inner_text("body")
            if counter.search(text) or "Connection Error" in text:
                break
            page.wait_for_timeout(500)
        errors = [m for m in log if m.startswith(("pageerror", "error"))]
        assert "Connection Error" not in text, f"{text[:600]!r}; {errors}"
        found = counter.search(text)
        assert found, f"no study count in {text[:600]!r}; console: {log[-20:]}"
        assert found.groups() == (str(len(studies)), str(len(studies)))
        cells = page.evaluate(
            """() => Array.from(document.querySelectorAll('tbody > tr[aria-selected]'))
                .map(tr => Array.from(tr.querySelectorAll('td')).map(td => td.innerText))"""
        )
        assert len(cells) == len(studies)
        # the fifth column: each study's instance count, as pydicom counts them
        shown = sorted(int(row[4]) for row in cells)
        assert shown == sorted(len(sops) for sops in studies.values())
        assert errors == [], errors
    finally:
        page.close()


@pytest.mark.browser
@needs_viewer
def test_viewer_renders_the_ct(
    ct_server: tuple[str, str, str], browser: object, tmp_path: Path
) -> None:
    url, study, _ = ct_server
    log: list[str] = []
    page = open_page(browser, log)
    try:
        page.goto(f"{url}/viewer?StudyInstanceUIDs={study}", wait_until="domcontentloaded")
        shot = tmp_path / "viewer.png"
        wait_for_image(page, log, what="non-blank canvas", screenshot=shot)
        # the screenshot (kept under tmp_path) shows an image too, not a blank page
        img = Image.open(io.BytesIO(shot.read_bytes())).convert("L")
        assert ImageStat.Stat(img).stddev[0] > 5
        print(f"screenshot: {shot}")
    finally:
        page.close()


@pytest.mark.browser
@needs_viewer
def test_viewer_with_token_in_url(
    ct_server: tuple[str, str, str], browser: object, tmp_path: Path
) -> None:
    """With a token set, OHIF's own ``?token=`` on a viewer URL authenticates DICOMweb."""
    _url, study, catalog = ct_server
    log: list[str] = []
    with running(create_app(catalog, token=TOKEN)) as url:
        assert httpx.get(f"{url}/dicomweb/studies").status_code == 401
        page = open_page(browser, log)
        try:
            page.goto(
                f"{url}/viewer?StudyInstanceUIDs={study}&token={TOKEN}",
                wait_until="domcontentloaded",
            )
            shot = tmp_path / "viewer-token.png"
            wait_for_image(page, log, what="image with ?token=", screenshot=shot)
            assert "token=" not in page.url  # OHIF removes it from the address bar
        finally:
            page.close()


def _seg_for(catalog_url: str, study: str) -> tuple[bytes, str]:
    """A highdicom SEG over the study's CT slices (a disc on each), as Part 10 bytes."""
    import highdicom as hd
    from dicomweb_client.api import DICOMwebClient

    client = DICOMwebClient(url=catalog_url)
    sources = client.retrieve_study(study)
    sources.sort(key=lambda d: int(d.InstanceNumber))
    rows, cols = int(sources[0].Rows), int(sources[0].Columns)
    yy, xx = np.mgrid[:rows, :cols]
    disc = (yy - rows / 2) ** 2 + (xx - cols / 2) ** 2 < (rows / 5) ** 2
    mask = np.stack([disc] * len(sources)).astype(np.uint8)
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=mask,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[
            hd.seg.SegmentDescription(
                segment_number=1,
                segment_label="disc",
                segmented_property_category=hd.sr.CodedConcept(
                    "91723000", "SCT", "Anatomical Structure"
                ),
                segmented_property_type=hd.sr.CodedConcept("39607008", "SCT", "Lung"),
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
            )
        ],
        series_instance_uid=generate_uid(),
        series_number=99,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="Pixels tests",
        manufacturer_model_name="test_viewer",
        software_versions="0",
        device_serial_number="1",
    )
    buf = io.BytesIO()
    seg.save_as(buf)
    return buf.getvalue(), str(seg.SeriesInstanceUID)


@pytest.mark.browser
@needs_viewer
def test_saved_segmentation_appears_in_catalog_and_viewer(
    ct_server: tuple[str, str, str], browser: object, tmp_path: Path
) -> None:
    url, study, catalog = ct_server
    dicomweb = url + "/dicomweb"
    part10, seg_series = _seg_for(dicomweb, study)
    before = httpx.get(f"{dicomweb}/studies/{study}/series").json()
    # STOW-RS as OHIF's store.dicom sends it: multipart/related, type application/dicom
    boundary = "pixelsviewertest"
    body = (
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + part10
        + f"\r\n--{boundary}--\r\n".encode()
    )
    r = httpx.post(
        f"{dicomweb}/studies",
        content=body,
        headers={
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            "Accept": "application/dicom+json",
        },
    )
    assert r.status_code == 200, r.text
    after = httpx.get(f"{dicomweb}/studies/{study}/series").json()
    assert len(after) == len(before) + 1
    found = httpx.get(f"{dicomweb}/studies/{study}/series", params={"Modality": "SEG"}).json()
    assert [s["0020000E"]["Value"][0] for s in found] == [seg_series]
    rows = Catalog(catalog).sql(
        "SELECT Modality, path FROM object_catalog WHERE SeriesInstanceUID = ?", params=[seg_series]
    )
    assert list(rows["Modality"]) == ["SEG"]  # a new row in the catalog table itself
    # the viewer's study list counts the new series' instance too
    log: list[str] = []
    page = open_page(browser, log)
    try:
        page.goto(url + "/", wait_until="domcontentloaded")
        page.wait_for_function(
            f"document.body.innerText.includes({json.dumps(DESCRIPTION)})", timeout=60_000
        )
        # ModalitiesInStudy and the instance count come from QIDO over the new row
        # (the order of ModalitiesInStudy is not fixed by the standard)
        row = re.compile(rf"(CT\\SEG|SEG\\CT)\s+{DESCRIPTION}\s+{SLICES + 1}\b")
        deadline = time.monotonic() + 30
        text = page.inner_text("body")
        while not row.search(text) and time.monotonic() < deadline:
            page.wait_for_timeout(500)
            text = page.inner_text("body")
        assert row.search(text), f"study list without the SEG: {text[:800]!r}; {log[-20:]}"
    finally:
        page.close()
