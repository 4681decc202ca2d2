"""Debian's chromium driven by Playwright: what every browser test of the web package shares.

The browser (:func:`chromium`), pages that log their console (:func:`open_page`), waits on
the log or on an image in a viewport, and the pixels of screenshots.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator[object]:
    """A headless Chromium with a fresh profile (removed afterwards): a Playwright context."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: apt-get install chromium (scripts/setup.sh does)")
    from playwright.sync_api import sync_playwright

    profile = Path(tempfile.mkdtemp(prefix="pixels-chromium-"))
    try:
        with sync_playwright() as pw:
            ctx = pw.chromium.launch_persistent_context(
                str(profile),
                executable_path=CHROMIUM,
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": width, "height": height},
            )
            try:
                yield ctx
            finally:
                ctx.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


# ---------------------------------------------------------------- pages and what they show


def open_page(browser: Any, log: list[str], *, responses: bool = False) -> Any:
    """A new page whose console lines and page errors (and, asked, responses) go to ``log``."""
    page = browser.new_page()
    page.on("console", lambda m: log.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: log.append(f"pageerror: {e}"))
    if responses:
        page.on("response", lambda r: log.append(f"RESPONSE {r.status} {r.url}"))
    return page


def wait_in_log(page: Any, log: list[str], what: str, seconds: float) -> None:
    """Wait until a line of ``log`` contains ``what``; fail with the console's last lines."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if any(what in line for line in log):
            return
        page.wait_for_timeout(500)
    raise AssertionError(f"no {what!r} after {seconds} s; console: {log[-30:]}")


def canvas_stats(page: Any) -> list[dict[str, float]]:
    """Size and pixel spread of every viewport canvas (cornerstone's 2D canvas)."""
    return page.evaluate(  # type: ignore[no-any-return]
        """() => Array.from(document.querySelectorAll('canvas.cornerstone-canvas')).map(c => {
            const out = {w: c.width, h: c.height, std: 0};
            if (!c.width || !c.height) return out;
            let ctx = null;
            try { ctx = c.getContext('2d', {willReadFrequently: true}); } catch (e) {}
            if (!ctx) return out;
            const d = ctx.getImageData(0, 0, c.width, c.height).data;
            let n = 0, s = 0, s2 = 0;
            for (let i = 0; i < d.length; i += 16) {
                const v = (d[i] + d[i + 1] + d[i + 2]) / 3; n++; s += v; s2 += v * v;
            }
            const m = s / n; out.std = Math.sqrt(Math.max(0, s2 / n - m * m));
            return out;
        })"""
    )


def wait_for_image(
    page: Any,
    log: list[str],
    *,
    seconds: float = 90,
    what: str = "image",
    screenshot: Path | None = None,
) -> list[dict[str, float]]:
    """Wait until a viewport canvas (64+ px wide) shows an image (pixel spread above 5).

    Returns the canvases' :func:`canvas_stats`; ``screenshot`` is written either way
    (kept for a look after a failure). Fails naming ``what``, the canvases, the console.
    """
    deadline = time.monotonic() + seconds
    stats: list[dict[str, float]] = []
    while time.monotonic() < deadline:
        stats = canvas_stats(page)
        if any(s["w"] >= 64 and s["std"] > 5 for s in stats):
            break
        page.wait_for_timeout(1000)
    if screenshot is not None:
        page.screenshot(path=str(screenshot))
    assert any(s["w"] >= 64 and s["std"] > 5 for s in stats), (
        f"no {what} after {seconds:.0f} s: {stats}; console: {log[-30:]}"
    )
    return stats


def viewport_box(page: Any) -> dict[str, float]:
    """The first viewport canvas' box on the page (CSS px); fails if there is none."""
    box = page.locator("canvas.cornerstone-canvas").first.bounding_box()
    assert box and box["width"] > 100, f"no viewport canvas: {box}"
    return box  # type: ignore[no-any-return]


def rgb(png: bytes) -> np.ndarray:
    """A PNG screenshot as ``(rows, cols, 3)`` int16 pixels (differences do not wrap)."""
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), np.int16)


def coloured_share(png: bytes, box: dict[str, float]) -> float:
    """Share of the image pixels in ``box`` (CSS px, 2 px in from each side) that are
    coloured, not grey (a CT is grey); the black margin around the image is left out."""
    a = rgb(png)[
        int(box["y"]) + 2 : int(box["y"] + box["height"]) - 2,
        int(box["x"]) + 2 : int(box["x"] + box["width"]) - 2,
    ]
    spread = a.max(axis=2) - a.min(axis=2)
    image = a.max(axis=2) > 8  # inside the image, not the black margin
    return float((spread[image] > 40).mean()) if image.any() else 0.0
