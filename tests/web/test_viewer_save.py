"""Annotations saved from the OHIF UI itself come back as DICOM in the catalog.

A real Chromium drives OHIF 3.13.2 against a real Pixels server on loopback: the
segmentation mode paints a label map with the Brush and exports it as DICOM SEG
(STOW-RS from the browser); the stored object must show up in QIDO and as a new
row of the catalog table, and read back with pydicom.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pydicom
import pytest

from pixels import Catalog
from web import test_viewer
from web.browser import open_page, viewport_box, wait_for_image
from web.test_viewer import needs_viewer, serve_ct

SEG_CLASSES = {"1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7"}
REPORT = "Pixels UI seg"

browser = test_viewer.browser  # the same headless Chromium fixture


@pytest.fixture(scope="module")
def ct_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """A server of its own: these tests add series to its catalog."""
    yield from serve_ct(tmp_path_factory, "viewer-save")


def _series(dicomweb: str, study: str, modality: str) -> list[dict]:
    r = httpx.get(f"{dicomweb}/studies/{study}/series", params={"Modality": modality})
    assert r.status_code in (200, 204), r.text
    return r.json() if r.status_code == 200 and r.content else []


def _stored(page, dicomweb: str, study: str, modality: str) -> list[dict]:  # type: ignore[no-untyped-def]
    """The study's series of ``modality`` as soon as QIDO finds one (60 s at most)."""
    deadline = time.monotonic() + 60
    found: list[dict] = []
    while not found and time.monotonic() < deadline:
        page.wait_for_timeout(1000)
        found = _series(dicomweb, study, modality)
    return found


def _dismiss_banners(page) -> None:  # type: ignore[no-untyped-def]
    """The "investigational use" banner, and the onboarding tour whenever it shows."""
    page.add_locator_handler(page.get_by_role("button", name="Skip all"), lambda b: b.click())
    hide = page.locator('[data-cy="confirm-and-hide-button"]')
    if hide.count():
        hide.first.click()


@pytest.mark.browser
@needs_viewer
def test_segmentation_saved_from_ohif_lands_in_catalog(
    ct_server: tuple[str, str, str], browser: object, tmp_path: Path
) -> None:
    url, study, catalog = ct_server
    dicomweb = url + "/dicomweb"
    assert _series(dicomweb, study, "SEG") == []
    ct_series = _series(dicomweb, study, "CT")[0]["0020000E"]["Value"][0]
    log: list[str] = []
    page = open_page(browser, log)
    try:
        page.goto(f"{url}/segmentation?StudyInstanceUIDs={study}", wait_until="domcontentloaded")
        wait_for_image(page, log)
        _dismiss_banners(page)
        page.locator('[data-cy="addSegmentation"]').click()
        page.locator('[data-cy="segmentation-select-Labelmap"]').wait_for(timeout=30_000)
        page.locator('[data-cy="Brush-btn"]').click()
        page.locator('[data-cy="brush-radius"]').wait_for(timeout=10_000)
        box = viewport_box(page)
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(cx - 40, cy)
        page.mouse.down()
        for i in range(20):
            page.mouse.move(cx - 40 + 4 * i, cy + i, steps=2)
        page.mouse.up()
        page.wait_for_timeout(1000)
        page.screenshot(path=str(tmp_path / "painted.png"))
        shown = re.search(r"I:\s*(\d+)\s*\(\d+/\d+\)", page.inner_text("body"))
        assert shown, "no instance number in the viewport"
        painted_on = int(shown.group(1))  # the Instance Number of the slice painted

        page.locator('[data-cy="segmentation-collapsed-more-btn-Labelmap"]').click()
        page.get_by_text("Export", exact=True).hover()
        page.get_by_text("DICOM SEG", exact=True).click()
        dialog = page.get_by_text("Store Segmentation", exact=True)
        dialog.wait_for(timeout=10_000)
        page.get_by_placeholder("Report name").fill(REPORT)
        page.screenshot(path=str(tmp_path / "store-dialog.png"))
        page.get_by_role("button", name="Save", exact=True).click()

        found = _stored(page, dicomweb, study, "SEG")
        page.screenshot(path=str(tmp_path / "saved.png"))
        errors = [m for m in log if m.startswith(("error", "pageerror"))]
        assert len(found) == 1, f"no SEG series after 60 s; console errors: {errors[-20:]}"
        seg_series = found[0]["0020000E"]["Value"][0]
        rows = Catalog(catalog).sql(
            "SELECT Modality, SOPClassUID, path FROM object_catalog WHERE SeriesInstanceUID = ?",
            params=[seg_series],
        )
        assert list(rows["Modality"]) == ["SEG"]
        assert rows["SOPClassUID"][0] in SEG_CLASSES
        ds = pydicom.dcmread(rows["path"][0])
        assert ds.Modality == "SEG" and ds.StudyInstanceUID == study
        assert ds.SeriesDescription == REPORT
        refs = [r.SeriesInstanceUID for r in ds.ReferencedSeriesSequence]
        assert refs == [ct_series]
        assert len(ds.PixelData) > 0 and ds.pixel_array.any()  # the brush stroke
        # the stroke lies on the slice it was painted on (its SOP and position)
        cts = [
            pydicom.dcmread(p)
            for p in Catalog(catalog).sql("SELECT path FROM object_catalog WHERE Modality = 'CT'")[
                "path"
            ]
        ]
        (slice_ds,) = [c for c in cts if int(c.InstanceNumber) == painted_on]
        frames = ds.pixel_array.reshape(-1, int(ds.Rows), int(ds.Columns))
        groups = ds.PerFrameFunctionalGroupsSequence
        stroke = [g for g, f in zip(groups, frames, strict=True) if f.any()]
        assert stroke
        for g in stroke:
            source = g.DerivationImageSequence[0].SourceImageSequence[0]
            assert source.ReferencedSOPInstanceUID == slice_ds.SOPInstanceUID
            got = [float(v) for v in g.PlanePositionSequence[0].ImagePositionPatient]
            assert got == pytest.approx([float(v) for v in slice_ds.ImagePositionPatient], abs=1e-4)
    finally:
        page.close()


@pytest.mark.browser
@needs_viewer
def test_length_measurement_saved_from_ohif_as_sr(
    ct_server: tuple[str, str, str], browser: object, tmp_path: Path
) -> None:
    url, study, catalog = ct_server
    dicomweb = url + "/dicomweb"
    assert _series(dicomweb, study, "SR") == []
    log: list[str] = []
    page = open_page(browser, log)
    try:
        page.goto(f"{url}/viewer?StudyInstanceUIDs={study}", wait_until="domcontentloaded")
        wait_for_image(page, log)
        _dismiss_banners(page)
        page.locator('[data-cy="MeasurementTools-split-button-primary"]').click()
        box = viewport_box(page)
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(cx - 80, cy)
        page.mouse.down()
        page.mouse.move(cx + 80, cy + 40, steps=15)
        page.mouse.up()
        page.get_by_text("Track measurements for this series?").wait_for(timeout=15_000)
        page.get_by_role("button", name="Yes", exact=True).click()
        page.locator('[data-cy="trackedMeasurements-btn"]').click()
        page.get_by_text(re.compile(r"\d+(\.\d+)? mm")).first.wait_for(timeout=15_000)
        page.screenshot(path=str(tmp_path / "measured.png"))
        page.get_by_text("Create SR", exact=True).click()
        page.get_by_text("Create Report", exact=True).wait_for(timeout=10_000)
        page.get_by_placeholder("Report name").fill("Pixels UI length")
        page.get_by_role("button", name="Save", exact=True).click()

        found = _stored(page, dicomweb, study, "SR")
        page.screenshot(path=str(tmp_path / "saved-sr.png"))
        errors = [m for m in log if m.startswith(("error", "pageerror"))]
        assert len(found) == 1, f"no SR series after 60 s; console errors: {errors[-20:]}"
        rows = Catalog(catalog).sql(
            "SELECT Modality, path FROM object_catalog WHERE SeriesInstanceUID = ?",
            params=[found[0]["0020000E"]["Value"][0]],
        )
        assert list(rows["Modality"]) == ["SR"]
        ds = pydicom.dcmread(rows["path"][0])
        assert ds.Modality == "SR" and ds.StudyInstanceUID == study
        assert ds.SeriesDescription == "Pixels UI length"
        # the length itself is in the report's content tree, in mm
        assert "mm" in str(ds.ContentSequence)
    finally:
        page.close()
