"""What the two viewer builds share: installing a static build, serving its files.

Pixels serves two prebuilt OHIF builds, the stock viewer at ``/``
(:mod:`pixels.web.ohif`, from npm) and MONAI Label's at ``/ohif/``
(:mod:`pixels.web.monailabel_ohif`, from the ``monailabel`` wheel). Both are a
``dist/`` folder in a cache folder with a version marker, replaced whole by an
install, and served as a single-page app. This module holds that common part:

- :func:`installed_version` reads the marker of a complete install;
- :func:`staged_install` stages a new ``dist/`` in a temporary folder beside the
  old one and swaps it in only once complete (``index.html`` and the marker);
- :func:`static_file` answers a request path from ``dist/`` (a file, a 404 for a
  missing asset, or None: a client-side route, to be answered with the page);
  :func:`index_page` is that page; :data:`MIME` the media types;
- :func:`cli` is the ``install`` / ``path`` command line of each module.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from starlette.responses import FileResponse, PlainTextResponse, Response

__all__ = ["MIME", "cli", "index_page", "installed_version", "staged_install", "static_file"]

MIME = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".wasm": "application/wasm",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".ico": "image/x-icon",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".txt": "text/plain; charset=utf-8",
    ".xml": "application/xml",
    ".webmanifest": "application/manifest+json",
}


def installed_version(dist: Path, marker: str) -> str | None:
    """The version in ``dist/marker``, or None when the build is not (completely) installed."""
    try:
        version = (dist / marker).read_text().strip()
    except OSError:
        return None
    return version if (dist / "index.html").is_file() else None


def staged_install(
    root: Path, dist: Path, marker: str, version: str, fill: Callable[[Path], tuple[int, str]]
) -> int:
    """Build a new ``dist/`` with ``fill`` and swap it in whole; the count of files.

    ``fill(tmp)`` works in a temporary folder inside ``root`` (removed afterwards),
    writes the build's files under ``tmp / "dist"`` and returns how many it wrote
    and what it took them from (named in the error when there is no ``index.html``).
    The marker holds ``version``; the old ``dist/`` goes only once the new one is
    complete.
    """
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".install-") as tmp:
        staged = Path(tmp) / "dist"
        count, source = fill(Path(tmp))
        if not (staged / "index.html").is_file():
            raise RuntimeError(f"{source} has no index.html")
        (staged / marker).write_text(version + "\n")
        if dist.exists():
            dist.rename(Path(tmp) / "old")
        staged.rename(dist)
    return count


def static_file(dist: Path, rel: str, hidden: Callable[[str], bool]) -> Response | None:
    """The file ``rel`` of ``dist`` (resolved inside it), a 404 for a missing asset, or None.

    None means a page: a client-side route of the single-page app, answered with
    :func:`index_page`. ``hidden(rel)``: paths never served as files (the marker).
    """
    if not rel or hidden(rel):
        return None
    target = (dist / rel).resolve()
    if target.is_relative_to(dist) and target.is_file():
        return FileResponse(
            target, media_type=MIME.get(target.suffix.lower(), "application/octet-stream")
        )
    if "." in PurePosixPath(rel).name and not rel.endswith(".html"):
        return PlainTextResponse("not found", 404)  # a missing asset, not a page
    return None


def index_page(dist: Path) -> FileResponse:
    """``dist/index.html``, not cached (it names the generated ``app-config.js``)."""
    return FileResponse(
        dist / "index.html", media_type=MIME[".html"], headers={"Cache-Control": "no-cache"}
    )


def cli(
    argv: Sequence[str] | None,
    *,
    prog: str,
    description: str | None,
    install_help: str,
    install: Callable[..., Any],
    dist_dir: Callable[[Path | None], Path],
    installed: Callable[[Path | None], str | None],
    errors: tuple[type[BaseException], ...] = (RuntimeError,),
    wheel_option: bool = False,
) -> int:
    """``prog install [--dir DIR] [--force] [-q]`` and ``prog path [--dir DIR]``: the exit status."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_install = sub.add_parser("install", help=install_help)
    p_install.add_argument("--dir", type=Path, default=None, help="install folder")
    if wheel_option:
        p_install.add_argument("--wheel", type=Path, default=None, help="a downloaded wheel")
    p_install.add_argument("--force", action="store_true", help="install again")
    p_install.add_argument("--quiet", "-q", action="store_true")
    p_path = sub.add_parser("path", help="print the dist/ folder and the installed version")
    p_path.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.cmd == "install":
        extra = {"wheel": args.wheel} if wheel_option else {}
        try:
            install(args.dir, force=args.force, quiet=args.quiet, **extra)
        except errors as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0
    print(dist_dir(args.dir), installed(args.dir) or "(not installed)")
    return 0
