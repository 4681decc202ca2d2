"""MONAI Label's viewer at /ohif/ in a real browser: the panel connects to Pixels and paints ct-tissue.

Debian's chromium driven by Playwright over a real server on loopback and a catalog of a
real CT (pydicom's CT_small, 8 slices moved along its normal). Needs MONAI Label's OHIF
build (``python -m pixels.web.monailabel_ohif install``, done by scripts/setup.sh).
"""

from __future__ import annotations

import io
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

pytest.importorskip("scipy", reason="ct-tissue needs the ml extra")

from ml.series import ct_series
from pixels import Catalog
from pixels.web import create_app, monailabel_ohif
from web.conftest import running
from web.test_viewer import CHROMIUM, CHROMIUM_ARGS

needs_build = pytest.mark.skipif(
    monailabel_ohif.installed_version() is None,
    reason="MONAI Label OHIF not installed: python -m pixels.web.monailabel_ohif install",
)


@pytest.fixture(scope="module")
def ct_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    root = tmp_path_factory.mktemp("monailabel-viewer")
    files = ct_series(root / "data", 8)
    catalog = str(root / "catalog")
    assert Catalog(catalog).catalog(str(root / "data"), workers=0).errors == 0
    ds = pydicom.dcmread(files[0])
    return catalog, ds.StudyInstanceUID, ds.SeriesInstanceUID


@pytest.fixture
def browser() -> Iterator[object]:
    """A fresh Chromium profile per test: the panel keeps state between pages of one profile
    (the second test's refresh never reached its own server when the profile was shared)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: apt-get install chromium (scripts/setup.sh does)")
    from playwright.sync_api import sync_playwright

    profile = Path(tempfile.mkdtemp(prefix="pixels-chromium-"))
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 900},
        )
        try:
            yield ctx
        finally:
            ctx.close()
            shutil.rmtree(profile, ignore_errors=True)


def _chromatic(png: bytes, box: dict[str, float]) -> float:
    """Share of pixels in ``box`` (CSS px) that are coloured, not grey (the CT is grey)."""
    img = Image.open(io.BytesIO(png)).convert("RGB")
    crop = img.crop(
        (
            int(box["x"]) + 2,
            int(box["y"]) + 2,
            int(box["x"] + box["width"]) - 2,
            int(box["y"] + box["height"]) - 2,
        )
    )
    a = np.asarray(crop, np.int16)
    spread = a.max(axis=2) - a.min(axis=2)
    image = a.max(axis=2) > 8  # inside the image, not the black margin
    return float((spread[image] > 40).mean()) if image.any() else 0.0


def _wait(page, log: list[str], what: str, seconds: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if any(what in line for line in log):
            return
        page.wait_for_timeout(500)
    raise AssertionError(f"no {what!r} after {seconds} s; console: {log[-30:]}")


@pytest.mark.browser
@needs_build
def test_panel_connects_and_paints_ct_tissue(
    ct_study: tuple[str, str, str], browser: object, tmp_path: Path
) -> None:
    catalog, study, series = ct_study
    log: list[str] = []
    with running(create_app(catalog)) as url:
        page = browser.new_page()  # type: ignore[attr-defined]
        page.on("console", lambda m: log.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: log.append(f"pageerror: {e}"))
        page.on("response", lambda r: log.append(f"RESPONSE {r.status} {r.url}"))
        try:
            page.goto(url + monailabel_ohif.viewer_url(study), wait_until="domcontentloaded")
            field = page.locator("#monailabelServerURL")
            field.wait_for(timeout=90_000)
            assert field.input_value() == url + "/monailabel/"  # from the server's cookie
            _wait(page, log, "displaySetsToAllImages", 90)
            if page.locator("text=Confirm and Hide").count():
                page.click("text=Confirm and Hide")
            page.click(".monaiLabelPanel .settingsTable button.actionButton")  # refresh
            _wait(page, log, f"RESPONSE 200 {url}/monailabel/info/", 120)
            page.click("label.tab-label:has-text('Auto-Segmentation')")
            models = page.locator("select.selectBox").first.inner_text()
            assert "ct-tissue" in models
            canvas = page.locator("canvas.cornerstone-canvas").first
            box = canvas.bounding_box()
            assert box and box["width"] > 100
            page.wait_for_timeout(1000)
            before = _chromatic(page.screenshot(), box)
            page.click("button[title='Run Segmentation']")
            _wait(page, log, f"RESPONSE 200 {url}/monailabel/infer/ct-tissue?image={series}", 120)
            _wait(page, log, "updated the segmentation's scalar data", 30)
            page.wait_for_timeout(2000)
            shot = page.screenshot()
            (tmp_path / "monailabel-ct-tissue.png").write_bytes(shot)
            after = _chromatic(shot, box)
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


@pytest.mark.browser
@needs_build
def test_a_foreground_click_grows_a_region(
    ct_study: tuple[str, str, str], browser: object, tmp_path: Path
) -> None:
    """Point Prompts: pick the region-grow model's label, click in the CT, Run: a region appears."""
    catalog, study, series = ct_study
    log: list[str] = []
    with running(create_app(catalog)) as url:
        page = browser.new_page()  # type: ignore[attr-defined]
        page.on("console", lambda m: log.append(f"{m.type}: {m.text}"))
        page.on("response", lambda r: log.append(f"RESPONSE {r.status} {r.url}"))
        try:
            page.goto(url + monailabel_ohif.viewer_url(study), wait_until="domcontentloaded")
            page.locator("#monailabelServerURL").wait_for(timeout=90_000)
            _wait(page, log, "displaySetsToAllImages", 90)
            if page.locator("text=Confirm and Hide").count():
                page.click("text=Confirm and Hide")
            page.click(".monaiLabelPanel .settingsTable button.actionButton")
            _wait(page, log, f"RESPONSE 200 {url}/monailabel/info/", 120)
            page.click("label.tab-label:has-text('Point Prompts')")
            page.wait_for_timeout(1000)
            page.click("tr.clickable-row:has-text('region')")
            page.wait_for_timeout(1000)
            box = page.locator("canvas.cornerstone-canvas").first.bounding_box()
            assert box and box["width"] > 100
            before = _chromatic(page.screenshot(), box)
            # the soft tissue below the vertebra (the image is centred in the viewport)
            page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.56)
            page.wait_for_timeout(1000)
            page.click(
                "div.tab:has(label.tab-label:has-text('Point Prompts')) button:has-text('Run')"
            )
            _wait(page, log, f"RESPONSE 200 {url}/monailabel/infer/region-grow?image={series}", 120)
            _wait(page, log, "updated the segmentation's scalar data", 30)
            page.wait_for_timeout(2000)
            shot = page.screenshot()
            (tmp_path / "monailabel-region.png").write_bytes(shot)
            after = _chromatic(shot, box)
            print(f"coloured share of the axial viewport: {before:.3f} before, {after:.3f} after")
            assert before < 0.05 and after > 0.15, (before, after)
        finally:
            page.close()
