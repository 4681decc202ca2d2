"""The stock OHIF at ``/`` shows a ``pixels segment`` SEG over its CT, each frame on its slice.

Debian's chromium driven by Playwright over a real server on loopback. The catalog holds
a real CT (pydicom's CT_small, 8 slices moved along its normal, each cut by air from a
column that moves with its position, so ct-tissue's body differs slice by slice) and the
DICOM SEG that :func:`pixels.ml.segment.run_segment` wrote for it (binary and label map).
The test opens the study, loads the SEG display set from the study browser and checks the
pixels of screenshots: the overlay covers the body on the first and the last slice (a SEG
shown reversed in z would leave the body's cut-off part bare on one of them).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image

pytest.importorskip("scipy", reason="ct-tissue needs the ml extra")

from ml.series import ct_series
from pixels import Catalog
from pixels.ml.segment import run_segment
from pixels.web import create_app, ohif
from web.browser import chromium, open_page, rgb, viewport_box
from web.conftest import running

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        ohif.installed_version() is None,
        reason="OHIF not installed: python -m pixels.web.ohif install",
    ),
]
SLICES = 8


def _cut_series(data: Path) -> list[Path]:
    """CT_small moved along its normal; slice k is air from column 118 - 7k on."""
    files = ct_series(data, SLICES)
    for k, path in enumerate(files):
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array.copy()
        air = round((-1000 - float(ds.RescaleIntercept)) / float(ds.RescaleSlope))
        pixels[:, pixels.shape[1] - 10 - 7 * k :] = air
        ds.PixelData = pixels.tobytes()
        ds.save_as(path)
    return files


@pytest.fixture(scope="module", params=["binary", "labelmap"])
def segmented(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, str, str]:
    """(catalog, study, SEG series) of the cut CT segmented by ``pixels segment``."""
    root = tmp_path_factory.mktemp(f"viewer-seg-{request.param}")
    files = _cut_series(root / "data")
    catalog = Catalog(str(root / "catalog"))
    assert catalog.catalog(str(root / "data"), workers=0).errors == 0
    stats = run_segment(catalog, "ct-tissue", workers=0, labelmap=request.param == "labelmap")
    assert (stats.segmented, stats.errors) == (1, 0)
    (result,) = stats.results
    assert result.path
    seg = pydicom.dcmread(result.path)
    return str(root / "catalog"), pydicom.dcmread(files[0]).StudyInstanceUID, seg.SeriesInstanceUID


@pytest.fixture
def browser() -> Iterator[object]:
    # a small viewport: with software WebGL the time of a frame grows with its pixels
    with chromium(960, 640) as ctx:
        yield ctx


def _screenshot(cdp: Any) -> np.ndarray:
    """The page as RGB pixels, through CDP (Playwright's own screenshot waits for
    animation frames, which come seconds apart while the SEG viewport renders)."""
    return rgb(base64.b64decode(cdp.send("Page.captureScreenshot", {"format": "png"})["data"]))


_FRAMES = """() => new Promise((done) => {
  let n = 0;
  const t0 = performance.now();
  const tick = () => (++n, performance.now() - t0 < 500 ? requestAnimationFrame(tick) : done(n));
  requestAnimationFrame(tick);
})"""


def _idle(page: Any, cdp: Any, what: str, log: list[str]) -> np.ndarray:
    """A screenshot once the page has nothing left to render: animation frames come at
    the display's rate again (each render of the SEG viewport with software WebGL, as
    in these tests, blocks them for seconds, and loading a SEG renders many times)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if page.evaluate(_FRAMES) >= 10:
            return _screenshot(cdp)
    raise AssertionError(f"{what}: the viewer never stopped rendering; {log[-20:]}")


def _box(page: Any) -> tuple[slice, slice]:
    box = viewport_box(page)
    return (
        slice(int(box["y"]) + 2, int(box["y"] + box["height"]) - 2),
        slice(int(box["x"]) + 2, int(box["x"] + box["width"]) - 30),  # not the scrollbar
    )


def _right_edge(mask: np.ndarray) -> float:
    """Median over the middle third of the rows of the last column where ``mask`` is set."""
    rows = mask[mask.shape[0] // 3 : 2 * mask.shape[0] // 3]
    last = rows.shape[1] - 1 - np.argmax(rows[:, ::-1], axis=1)
    return float(np.median(last[rows.any(axis=1)]))


def _overlay(ct: np.ndarray, shown: np.ndarray) -> dict[str, float]:
    """Where the overlay in ``shown`` lies on the CT alone (``ct``, the same view): the
    right edge of the body (not black in the CT: the air cut is black) and of the painted
    pixels, and the share of the body's pixels painted."""
    body = ct.max(axis=2) > 40
    painted = np.abs(shown - ct).max(axis=2) > 30
    return {
        "body_edge": _right_edge(body),
        "painted_edge": _right_edge(painted),
        "covered": float(painted[body].mean()),
    }


def test_stock_viewer_shows_a_pixels_seg_over_its_ct(
    segmented: tuple[str, str, str], browser: Any, tmp_path: Path
) -> None:
    catalog, study, seg_series = segmented
    log: list[str] = []
    with running(create_app(catalog)) as url:
        found_seg = httpx.get(
            f"{url}/dicomweb/studies/{study}/series", params={"Modality": "SEG"}
        ).json()
        assert [s["0020000E"]["Value"][0] for s in found_seg] == [seg_series]
        page = open_page(browser, log)
        try:
            page.goto(f"{url}/viewer?StudyInstanceUIDs={study}", wait_until="domcontentloaded")
            thumb = page.locator("[data-cy=study-browser-thumbnail-no-image]")
            thumb.wait_for(timeout=120_000)
            assert "ct-tissue segmentation" in thumb.inner_text()
            page.wait_for_function(
                f"document.body.innerText.includes('/{SLICES})')", timeout=90_000
            )
            for text in ("Skip all", "Confirm and hide"):  # the tour, the banner
                if page.get_by_text(text).count():
                    page.get_by_text(text).first.click()
            cdp = page.context.new_cdp_session(page)
            view = _box(page)
            ends = (("Home", 1), ("End", SLICES))  # the first and the last slice

            def show(key: str, slice_no: int, what: str) -> np.ndarray:
                page.keyboard.press(key)  # OHIF's hotkeys: first / last image
                page.wait_for_function(
                    f"document.body.innerText.includes('({slice_no}/{SLICES})')",
                    timeout=120_000,
                )
                shot = _idle(page, cdp, what, log)
                Image.fromarray(shot.astype(np.uint8)).save(tmp_path / f"{what}.png")
                return shot[view]

            ct = {n: show(key, n, f"ct-{n}") for key, n in ends}
            thumb.dblclick()
            page.get_by_role("button", name="Yes").click(timeout=90_000)  # open the SEG
            shown = {n: show(key, n, f"seg-{n}") for key, n in ends}
            found = {n: _overlay(ct[n], shown[n]) for n in ct}
            print(f"per slice: {found}")
            width = ct[1].shape[1]
            # the cut moves 49 of the image's 128 columns from one end to the other
            assert abs(found[1]["body_edge"] - found[SLICES]["body_edge"]) > width / 6, found
            for n, f in found.items():
                assert f["covered"] > 0.8, (n, found)
                # the overlay ends where the body ends, on each slice (a SEG shown
                # reversed in z would end where the other end's body does)
                assert abs(f["painted_edge"] - f["body_edge"]) < width / 40, (n, found)
            assert not [m for m in log if m.startswith("pageerror")], log[-20:]
        finally:
            page.close()
