"""MONAI Label's viewer at /ohif/ in a real browser: the panel connects to Pixels, paints
ct-tissue and region-grow results, and its segmentation is exported as a cataloged DICOM SEG.

Debian's chromium driven by Playwright over a real server on loopback and a catalog of a
real CT (pydicom's CT_small, 8 slices moved along its normal). Needs MONAI Label's OHIF
build (``python -m pixels.web.monailabel_ohif install``, done by scripts/setup.sh).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pydicom
import pytest

pytest.importorskip("scipy", reason="ct-tissue needs the ml extra")

from ml.series import ct_series
from pixels import Catalog
from pixels.ml.volume import read_volume, select_series
from pixels.web import create_app, monailabel_ohif, nrrd
from web.browser import chromium, coloured_share, open_page, viewport_box, wait_in_log
from web.conftest import running

needs_build = pytest.mark.skipif(
    monailabel_ohif.installed_version() is None,
    reason="MONAI Label OHIF not installed: python -m pixels.web.monailabel_ohif install",
)
pytestmark = [pytest.mark.browser, needs_build]
TOKEN = "viewer-token"


@pytest.fixture(scope="module")
def ct_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    root = tmp_path_factory.mktemp("monailabel-viewer")
    files = ct_series(root / "data", 8)
    # Instance Numbers falling along the normal, as a head-first CT's (the export test runs
    # on both orders: ordered_study).
    for k, path in enumerate(files):
        ds = pydicom.dcmread(path)
        ds.InstanceNumber = len(files) - k
        ds.save_as(path)
    catalog = str(root / "catalog")
    assert Catalog(catalog).catalog(str(root / "data"), workers=0).errors == 0
    ds = pydicom.dcmread(files[0])
    return catalog, ds.StudyInstanceUID, ds.SeriesInstanceUID


@pytest.fixture(scope="module", params=["rising", "falling"])
def ordered_study(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, str, str]:
    """A CT series whose Instance Numbers rise (or fall) along the slice normal, each slice
    cut by air from a column that moves with its position: ct-tissue's masks differ slice
    by slice, so a SEG written reversed in z (or shuffled) cannot match what was shown."""
    root = tmp_path_factory.mktemp(f"monailabel-{request.param}")
    files = ct_series(root / "data", 8)
    for k, path in enumerate(files):
        ds = pydicom.dcmread(path)
        ds.InstanceNumber = k + 1 if request.param == "rising" else len(files) - k
        pixels = ds.pixel_array.copy()
        air = round((-1000 - float(ds.RescaleIntercept)) / float(ds.RescaleSlope))
        pixels[:, pixels.shape[1] - 10 - 7 * k :] = air
        ds.PixelData = pixels.tobytes()
        ds.save_as(path)
    catalog = str(root / "catalog")
    assert Catalog(catalog).catalog(str(root / "data"), workers=0).errors == 0
    ds = pydicom.dcmread(files[0])
    return catalog, ds.StudyInstanceUID, ds.SeriesInstanceUID


@pytest.fixture
def browser() -> Iterator[object]:
    """A fresh Chromium profile per test (the test of two servers shares one on purpose)."""
    with chromium(1400, 900) as ctx:
        yield ctx


def _connect(page: Any, log: list[str], url: str, study: str, query: str = "") -> None:
    """Open ``study`` in MONAI Label's viewer and press the panel's refresh (connect)."""
    page.goto(url + monailabel_ohif.viewer_url(study) + query, wait_until="domcontentloaded")
    field = page.locator("#monailabelServerURL")
    field.wait_for(timeout=90_000)
    assert field.input_value() == url + "/monailabel/"  # from the server's cookie
    wait_in_log(page, log, "displaySetsToAllImages", 90)
    if page.locator("text=Confirm and Hide").count():
        page.click("text=Confirm and Hide")
    page.click(".monaiLabelPanel .settingsTable button.actionButton")  # refresh
    wait_in_log(page, log, f"RESPONSE 200 {url}/monailabel/info/", 120)


def _run_ct_tissue(page: Any, log: list[str], url: str, series: str) -> bytes:
    """Auto-Segmentation with ct-tissue; returns the NRRD the panel painted."""
    page.click("label.tab-label:has-text('Auto-Segmentation')")
    assert "ct-tissue" in page.locator("select.selectBox").first.inner_text()
    with page.expect_response(
        lambda r: "/monailabel/infer/ct-tissue" in r.url, timeout=120_000
    ) as r:
        page.click("button[title='Run Segmentation']")
    assert r.value.status == 200 and f"image={series}" in r.value.url
    assert r.value.headers.get("content-encoding") == "gzip"  # the browser inflates it
    wait_in_log(page, log, "updated the segmentation's scalar data", 30)
    page.wait_for_timeout(2000)
    return r.value.body()  # type: ignore[no-any-return]


def test_panel_connects_and_paints_ct_tissue(
    ct_study: tuple[str, str, str], browser: object, tmp_path: Path
) -> None:
    catalog, study, series = ct_study
    log: list[str] = []
    with running(create_app(catalog)) as url:
        page = open_page(browser, log, responses=True)
        try:
            _connect(page, log, url, study)
            box = viewport_box(page)
            page.wait_for_timeout(1000)
            before = coloured_share(page.screenshot(), box)
            _run_ct_tissue(page, log, url, series)
            shot = page.screenshot()
            (tmp_path / "monailabel-ct-tissue.png").write_bytes(shot)
            after = coloured_share(shot, box)
            print(f"coloured share of the axial viewport: {before:.3f} before, {after:.3f} after")
            # before: only the viewport's own labels (orientation, date) are coloured
            assert before < 0.05, f"the CT alone is grey: {before:.3f} coloured"
            assert after > 0.3, f"no overlay: {after:.3f} of the axial image coloured"
            text = page.inner_text("body")
            for name in ("Air", "Bone", "Fat", "Lung", "Soft tissue"):
                assert name in text
            assert not [m for m in log if m.startswith("pageerror")]
        finally:
            page.close()


def _run_points(page: Any, log: list[str], url: str, series: str) -> dict[str, Any]:
    """Run the Point Prompts model; returns the params the panel sent and the voxels it got."""
    run = "div.tab:has(label.tab-label:has-text('Point Prompts')) button:has-text('Run')"
    with page.expect_response(
        lambda r: "/monailabel/infer/region-grow" in r.url, timeout=120_000
    ) as r:
        page.click(run)
    body = r.value.request.post_data_buffer
    params = body.split(b'name="params"\r\n\r\n', 1)[1].split(b"\r\n--", 1)[0]
    assert r.value.status == 200, (r.value.text(), params)
    assert f"image={series}" in r.value.url and r.value.headers.get("content-encoding") == "gzip"
    wait_in_log(page, log, "updated the segmentation's scalar data", 30)
    page.wait_for_timeout(2000)
    return {"params": json.loads(params), "labels": nrrd.decode(r.value.body()).array}


def test_foreground_clicks_grow_a_region_background_clicks_shrink_it(
    ct_study: tuple[str, str, str], browser: object, tmp_path: Path
) -> None:
    """Point Prompts: pick region-grow's label, click the CT, Run: a region appears; then a
    background click (label 'background', back to 'region', Run) shrinks it."""
    catalog, study, series = ct_study
    log: list[str] = []
    with running(create_app(catalog)) as url:
        page = open_page(browser, log, responses=True)
        try:
            _connect(page, log, url, study)
            page.click("label.tab-label:has-text('Point Prompts')")
            page.wait_for_timeout(1000)
            page.click("tr.clickable-row:has-text('region')")
            page.wait_for_timeout(1000)
            box = viewport_box(page)
            before = coloured_share(page.screenshot(), box)
            # the soft tissue below the vertebra (the image is centred in the viewport)
            page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.56)
            page.wait_for_timeout(1000)
            grown = _run_points(page, log, url, series)
            shot = page.screenshot()
            (tmp_path / "monailabel-region.png").write_bytes(shot)
            region = coloured_share(shot, box)
            assert len(grown["params"]["foreground"]) == 1 and not grown["params"]["background"]
            print(f"coloured share of the axial viewport: {before:.3f} before, {region:.3f} grown")
            assert before < 0.05 and region > 0.15, (before, region)
            # a background click in the lower part of the region, then back to 'region' and Run
            page.click("tr.clickable-row:has-text('background')")
            page.wait_for_timeout(500)
            page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.6)
            page.wait_for_timeout(500)
            page.click("tr.clickable-row:has-text('region')")
            page.wait_for_timeout(500)
            cut = _run_points(page, log, url, series)
            shot = page.screenshot()
            (tmp_path / "monailabel-region-cut.png").write_bytes(shot)
            shrunk = coloured_share(shot, box)
            assert len(cut["params"]["background"]) == 1, cut["params"]
            assert cut["params"]["foreground"] == grown["params"]["foreground"]
            n_grown, n_cut = int(grown["labels"].sum()), int(cut["labels"].sum())
            print(
                f"region: {n_grown} voxels, {n_cut} after the background click; "
                f"coloured share {region:.3f} -> {shrunk:.3f}"
            )
            assert 0 < n_cut < n_grown
            assert not (cut["labels"] & ~grown["labels"]).any()  # only removed voxels
            # what is shown shrinks too: the cut part is no longer painted
            assert shrunk < region - 0.03, (region, shrunk)
        finally:
            page.close()


def _export_seg(page: Any, log: list[str], url: str) -> None:
    """OHIF's segmentation panel: ... -> Export & Download -> Export DICOM SEG -> Save."""
    page.click("[data-cy=panelSegmentation-btn]")
    page.wait_for_timeout(1500)
    menu = page.locator("button[aria-haspopup=menu]")
    select = page.locator("text=Segmentations").last.bounding_box()
    assert select
    # the menu button on the row of the segmentation's selector
    found = [
        i
        for i in range(menu.count())
        if (b := menu.nth(i).bounding_box())
        and abs(b["y"] + b["height"] / 2 - select["y"] - select["height"] / 2) < 12
    ]
    assert found, "no menu button beside the segmentation selector"
    menu.nth(found[0]).click()
    page.get_by_role("menuitem", name="Export & Download").focus()
    page.keyboard.press("ArrowRight")  # the submenu (a pointer hover races its animation)
    page.wait_for_timeout(500)
    page.get_by_role("menuitem", name="Export DICOM SEG").focus()
    page.keyboard.press("Enter")
    page.get_by_text("Enter the report name").wait_for(timeout=10_000)
    name = page.locator(".DraggableItem input[type=text]")
    name.click()
    page.keyboard.type("Pixels tissue")
    assert name.input_value() == "Pixels tissue"
    with page.expect_response(
        lambda r: r.url == f"{url}/dicomweb/studies" and r.request.method == "POST",
        timeout=60_000,
    ) as stow:
        page.click("button:has-text('Save')")
    assert stow.value.status == 200, stow.value.text()
    wait_in_log(page, log, "pixels: DICOM SEG stored", 30)


def test_export_dicom_seg_lands_in_the_catalog_as_shown(
    ordered_study: tuple[str, str, str], browser: object, tmp_path: Path
) -> None:
    """ct-tissue's overlay exported from the viewer: a SEG through STOW, cataloged at once,
    found by QIDO, read by pydicom and highdicom, referencing the CT, each segment's mask
    equal to the voxels the panel painted on each CT slice, whichever way the series'
    Instance Numbers run along the slice normal."""
    import highdicom as hd

    catalog, study, series = ordered_study
    log: list[str] = []
    with running(create_app(catalog)) as url:
        page = open_page(browser, log, responses=True)
        try:
            _connect(page, log, url, study)
            shown = nrrd.decode(_run_ct_tissue(page, log, url, series)).array
            _export_seg(page, log, url)
            page.screenshot(path=str(tmp_path / "monailabel-export.png"))
        finally:
            page.close()
        found = httpx.get(
            f"{url}/dicomweb/studies/{study}/series", params={"Modality": "SEG"}
        ).json()
        assert len(found) == 1
        seg_series = found[0]["0020000E"]["Value"][0]
        names = httpx.get(f"{url}/monailabel/info/").json()["models"]["ct-tissue"]["labels"]
    rows = Catalog(catalog).sql(
        "SELECT path, Modality, error FROM object_catalog WHERE SeriesInstanceUID = ?",
        params=[seg_series],
    )
    assert list(rows["Modality"]) == ["SEG"] and rows["error"].isna().all()
    path = rows["path"][0]
    ds = pydicom.dcmread(path)
    assert ds.SeriesDescription == "Pixels tissue"
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == series
    seg = hd.seg.segread(path)
    vol = read_volume(select_series(Catalog(catalog), f"SeriesInstanceUID = '{series}'").series[0])
    sops = [vol.rows[s.row]["SOPInstanceUID"] for s in vol.plan.slices]
    assert shown.shape == vol.array.shape
    assert not np.array_equal(shown, shown[..., ::-1]), "a z-flip would go unseen"
    # each frame lies where its source CT slice lies (OHIF leaves SpatialLocationsPreserved out)
    ipp = {r["SOPInstanceUID"]: r for r in vol.rows}
    for frame in ds.PerFrameFunctionalGroupsSequence:
        source = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        meta = json.loads(ipp[source]["meta"])
        want_ipp = [float(v) for v in meta["00200032"]["Value"]]
        got_ipp = [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]
        np.testing.assert_allclose(got_ipp, want_ipp, atol=1e-3)
    checked = 0
    for desc in seg.SegmentSequence:
        value = names.get(desc.SegmentLabel)
        want = (shown == value) if value else np.zeros(shown.shape, bool)
        got = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=sops,
            segment_numbers=[desc.SegmentNumber],
            ignore_spatial_locations=True,  # checked below: OHIF does not say it
        )[..., 0]
        np.testing.assert_array_equal(got.astype(bool), want.transpose(2, 1, 0), desc.SegmentLabel)
        checked += int(want.any())
    assert checked == len(set(np.unique(shown)) - {0}) >= 3
    # the catalog reached by the next reader sees it too (a new Catalog, a new query)
    assert seg_series in set(
        Catalog(catalog).sql("SELECT SeriesInstanceUID FROM object_catalog")["SeriesInstanceUID"]
    )


def test_with_a_token_the_panel_and_the_viewer_work(
    ct_study: tuple[str, str, str], browser: object, tmp_path: Path
) -> None:
    """``pixels serve --token``: the viewer opened with ``?token=`` gets the cookie that
    both its DICOMweb requests and the panel's MONAI Label requests (no header) carry."""
    catalog, study, series = ct_study
    log: list[str] = []
    with running(create_app(catalog, token=TOKEN)) as url:
        assert httpx.get(f"{url}/monailabel/info/").status_code == 401
        page = open_page(browser, log, responses=True)
        try:
            _connect(page, log, url, study, f"&token={TOKEN}")
            box = viewport_box(page)
            _run_ct_tissue(page, log, url, series)
            shot = page.screenshot()
            (tmp_path / "monailabel-token.png").write_bytes(shot)
            assert coloured_share(shot, box) > 0.3
            assert not [line for line in log if line.startswith("RESPONSE 401")]
        finally:
            page.close()


def test_two_servers_on_one_host_each_panel_reaches_its_own(
    ct_study: tuple[str, str, str], browser: object
) -> None:
    """One browser profile, two servers (cookies ignore ports): the panel of the second
    server's viewer shows and connects to the second server, not the first one it saw."""
    catalog, study, _ = ct_study
    log: list[str] = []
    with running(create_app(catalog)) as first, running(create_app(catalog)) as second:
        for url in (first, second, first):
            page = open_page(browser, log, responses=True)
            try:
                _connect(page, log, url, study)  # asserts the panel's field holds url
            finally:
                page.close()


@pytest.mark.parametrize("study_list", ["/", monailabel_ohif.BASE])
def test_the_study_list_opens_a_study_in_the_monai_label_viewer(
    ct_study: tuple[str, str, str], browser: object, study_list: str
) -> None:
    """The stock viewer's study list at / and the build's at /ohif/: expand the CT study,
    press its MONAI Label button: the study opens in MONAI Label's mode at /ohif/, the
    panel pointing at this server."""
    catalog, study, _ = ct_study
    log: list[str] = []
    with running(create_app(catalog)) as url:
        page = open_page(browser, log, responses=True)
        try:
            page.goto(url + study_list, wait_until="domcontentloaded")
            if study_list == "/":  # OHIF 3.13's list
                row = page.locator("tbody > tr[aria-selected]").first
            else:  # OHIF 3.10's
                row = page.locator(f"tr[data-cy='{study}']")
            row.wait_for(timeout=120_000)
            row.click()
            button = page.get_by_text("MONAI Label", exact=True).first  # a mode's button
            button.wait_for(timeout=90_000)
            button.click()
            page.wait_for_url(f"**/ohif/monai-label?StudyInstanceUIDs={study}*", timeout=120_000)
            assert not page.evaluate("window.__pixelsMonaiLabelOpening === true"), (
                "the redirect page is still current"
            )
            field = page.locator("#monailabelServerURL")
            field.wait_for(timeout=90_000)
            assert field.input_value() == url + "/monailabel/"
            wait_in_log(page, log, "displaySetsToAllImages", 90)
        finally:
            page.close()
