"""MONAI Label's OHIF build (OHIF 3.10 with the MONAI Label panel), served at ``/ohif/``.

The ``monailabel`` wheel on PyPI ships the build as static files under
``monailabel/endpoints/static/ohif/`` (made with ``PUBLIC_URL=/ohif/``: its
pages and assets live under ``/ohif/``). :func:`install` downloads the pinned
wheel with ``pip download --no-deps`` (monailabel itself is never installed: it
cannot share an environment with pydicom 3), extracts that folder without source
maps (and, in a folder not served, its Python client ``monailabel/client``) into a
cache folder next to the stock viewer's, and records the version in
a marker, so a second call does nothing.

:func:`routes` serves it as a single-page app with a generated
``/ohif/app-config.js`` (the stock viewer's data source: this server's
``/dicomweb``, STOW on, ``routerBasename: '/ohif/'``), and sets the cookie
``MONAILABEL_SERVER_URL`` (where the panel looks for its server) to this server's
``/monailabel/`` (:mod:`pixels.web.monailabel`) on every page. A study opens in
it at ``/ohif/monai-label?StudyInstanceUIDs=<uid>`` (:func:`viewer_url`); the
build's study list at ``/ohif/`` lists the catalog's studies with a button for
that mode.

Command line::

    python -m pixels.web.monailabel_ohif install [--dir DIR] [--force]
    python -m pixels.web.monailabel_ohif path
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from pixels.web import ohif, static
from pixels.web.state import MONAILABEL, base_url

__all__ = [
    "BASE",
    "MONAILABEL_VERSION",
    "app_config",
    "app_config_js",
    "default_dir",
    "dist_dir",
    "install",
    "installed_version",
    "routes",
    "viewer_url",
]

#: The pinned ``monailabel`` wheel whose OHIF build is served.
MONAILABEL_VERSION = "0.8.5"
#: Where the build is served (its ``PUBLIC_URL``: fixed at build time).
BASE = "/ohif/"
MEMBER_PREFIX = "monailabel/endpoints/static/ohif/"
MARKER = ".pixels-monailabel-ohif-version"
CLIENT_PREFIX = "monailabel/client/"
#: Where the wheel's ``monailabel/client/*.py`` are kept (not served: a dot folder).
CLIENT_DIR = ".monailabel-client"
COOKIE = "MONAILABEL_SERVER_URL"
#: The cookie's path: the folder of the build's pages, where the panel writes it too.
COOKIE_PATH = BASE.rstrip("/")


def default_dir() -> Path:
    """Install folder: env ``PIXELS_MONAILABEL_OHIF_DIR``, else ``monailabel-ohif`` beside the stock viewer's."""
    env = os.environ.get("PIXELS_MONAILABEL_OHIF_DIR")
    if env:
        return Path(env).expanduser().resolve()
    return ohif.default_dir().parent / "monailabel-ohif"


def dist_dir(root: Path | None = None) -> Path:
    """The installed static files (the folder may not exist)."""
    return (root or default_dir()) / "dist"


def installed_version(root: Path | None = None) -> str | None:
    """The installed build's monailabel version, or None when it is not (completely) installed."""
    return static.installed_version(dist_dir(root), MARKER)


def _keep(name: str) -> str | None:
    """The path under ``dist/`` of a wheel member worth extracting, else None."""
    if not name.startswith(MEMBER_PREFIX) or name.endswith("/"):
        return None
    rel = PurePosixPath(name[len(MEMBER_PREFIX) :])
    if any(p in ("..", "") for p in rel.parts) or rel.name.endswith(".map"):
        return None
    return str(rel)


def install(
    root: Path | None = None,
    *,
    version: str = MONAILABEL_VERSION,
    force: bool = False,
    wheel: Path | None = None,
    quiet: bool = False,
) -> Path:
    """Download ``monailabel==version`` (no dependencies) and extract its OHIF build.

    Does nothing when that version is installed (unless ``force``). ``wheel``: use
    this wheel file instead of downloading one. The new ``dist/`` replaces the old
    one only once complete. Returns the ``dist/`` folder.
    """
    root = root or default_dir()
    dist = dist_dir(root)
    complete = (dist / CLIENT_DIR / "client.py").is_file()  # older installs lack it
    if not force and complete and installed_version(root) == version:
        if not quiet:
            print(f"MONAI Label OHIF {version} already installed in {dist}", file=sys.stderr)
        return dist

    def fill(tmp: Path) -> tuple[int, str]:
        source = wheel
        if source is None:
            proc = subprocess.run(
                [
                    *(sys.executable, "-m", "pip", "download", "--no-deps", "--quiet"),
                    *("--dest", str(tmp), f"monailabel=={version}"),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            found = sorted(tmp.glob("monailabel-*.whl"))
            if proc.returncode != 0 or len(found) != 1:
                raise RuntimeError(
                    f"pip download monailabel=={version} failed: {proc.stderr.strip()[-500:]}"
                )
            source = found[0]
        staged = tmp / "dist"
        count = 0
        with zipfile.ZipFile(source) as zf:
            for info in zf.infolist():
                rel = _keep(info.filename)
                if rel is None:
                    continue
                dst = staged / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(dst, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                count += 1
            for info in zf.infolist():  # its Python client (requests only), for tests
                if info.filename.startswith(CLIENT_PREFIX) and info.filename.endswith(".py"):
                    dst = staged / CLIENT_DIR / info.filename[len(CLIENT_PREFIX) :]
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    dst.write_bytes(zf.read(info))
        return count, f"{source.name} ({MEMBER_PREFIX})"

    count = static.staged_install(root, dist, MARKER, version, fill)
    if not quiet:
        print(f"MONAI Label OHIF {version} installed in {dist} ({count} files)", file=sys.stderr)
    return dist


def app_config(dicomweb_root: str = "/dicomweb") -> dict[str, object]:
    """``window.config`` of the build: the stock viewer's, under ``/ohif/``."""
    config = ohif.app_config(dicomweb_root)
    config["routerBasename"] = BASE
    config["useSharedArrayBuffer"] = "FALSE"  # as the wheel's own config: no COOP/COEP headers
    return config


#: The segmentation panel added beside MONAI Label's (its menu's "Export DICOM SEG" STOWs a SEG).
SEGMENTATION_PANEL = "@ohif/extension-cornerstone.panelModule.panelSegmentation"
#: The build's own MONAI Label mode, wrapped by :data:`_MODE_JS`.
MODE = "@ohif/mode-monai-label"

# MONAI Label's mode (0.8.5) shows only the MONAI Label panel: its results cannot be
# saved (the panel never calls datastore/label). The generated config lists a mode of
# the same id first (OHIF keeps the first mode of an id), made by the build's own
# factory, with OHIF's segmentation panel added on the right: its "Export DICOM SEG"
# runs OHIF's storeSegmentation, a STOW-RS to this server's /dicomweb.
#
# That export put frames on the wrong slices. OHIF 3.10's generateSegmentation hands
# the labelmap's slices to dcmjs in the order of the segmentation's imageIds, which
# createLabelmapForDisplaySet copies from the display set (instance order: Instance
# Number); dcmjs (ImageNormalizer.convertToMultiframe) sorts the source images by
# position along the slice normal, last first, and gives labelmap slice i the
# position and SOP Instance UID of sorted image i. The SEG was right only when the
# Instance Numbers fell along the normal: reversed in z when they rose, shuffled when
# shuffled. What is shown is right either way (the labelmap volume is sorted by
# position). So the segmentation service makes labelmaps with their imageIds in
# dcmjs' order (each labelmap image still references its own CT image, so the
# viewports, which pair them by reference, are unaffected).
_SLICE_ORDER_JS = """
const pixelsSliceOrder = (displaySet) => {
  const ids = displaySet && displaySet.imageIds;
  const meta = window.cornerstone && window.cornerstone.metaData;
  if (!ids || ids.length < 2 || !meta || displaySet.isDynamicVolume) {
    return displaySet;
  }
  const instances = ids.map((id) => meta.get('instance', id) || {});
  const iop = (instances[0].ImageOrientationPatient || []).map(Number);
  const sops = new Set(instances.map((i) => i.SOPInstanceUID));
  if (iop.length !== 6 || sops.size !== ids.length
      || instances.some((i) => !i.ImagePositionPatient)) {
    return displaySet;  // multi-frame or incomplete: left as it is
  }
  const normal = [
    iop[1] * iop[5] - iop[2] * iop[4],
    iop[2] * iop[3] - iop[0] * iop[5],
    iop[0] * iop[4] - iop[1] * iop[3],
  ];
  const along = (i) => instances[i].ImagePositionPatient
    .map(Number).reduce((sum, v, axis) => sum + v * normal[axis], 0);
  const order = ids.map((_, i) => [along(i), i]);
  order.sort((a, b) => b[0] - a[0] || a[1] - b[1]);  // as dcmjs: last along the normal first
  if (order.every(([, i], k) => i === k)) {
    return displaySet;
  }
  const imageIds = order.map(([, i]) => ids[i]);
  return Object.create(displaySet, { imageIds: { value: imageIds, enumerable: true } });
};
"""

_MODE_JS = """
window.config.modes = [{
  id: %(mode)s,
  modeFactory: async (args) => {
    const [base] = await args.loadModules([%(mode)s]);
    const mode = await base.modeFactory(args);
    mode.routes = mode.routes.map((route) => ({
      ...route,
      layoutTemplate: (props) => {
        const layout = route.layoutTemplate(props);
        const panels = layout.props.rightPanels || [];
        if (!panels.includes(%(panel)s)) {
          layout.props.rightPanels = [...panels, %(panel)s];
        }
        return layout;
      },
    }));
    const enter = mode.onModeEnter;
    mode.onModeEnter = (context) => {
      const result = enter ? enter(context) : undefined;
      // OHIF 3.10 has two commands 'storeSegmentation': CORNERSTONE's (finds the data
      // source) and SEGMENTATION's (needs one passed). A command run without a context
      // comes from the last context created, SEGMENTATION here, so the panel's Export
      // failed ("reading 'store'"): give SEGMENTATION's the active data source.
      const { commandsManager, extensionManager, servicesManager } = context;
      const segmentations = servicesManager.services.segmentationService;
      if (segmentations && !segmentations.createLabelmapForDisplaySet.pixels) {
        const create = segmentations.createLabelmapForDisplaySet.bind(segmentations);
        const ordered = (displaySet, options) => create(pixelsSliceOrder(displaySet), options);
        ordered.pixels = true;
        segmentations.createLabelmapForDisplaySet = ordered;
      }
      const def = (commandsManager.getContext('SEGMENTATION') || {}).storeSegmentation;
      if (def && !def.pixels) {
        const store = def.commandFn;
        def.pixels = true;
        def.commandFn = async (options) => {
          const dataSource = options.dataSource || extensionManager.getActiveDataSource()[0];
          const notify = servicesManager.services.uiNotificationService;
          try {
            const stored = await store({ ...options, dataSource });
            if (stored) {
              notify.show({ title: 'Export DICOM SEG', type: 'success',
                message: 'Saved: ' + (stored.SeriesDescription || 'segmentation') });
              console.log('pixels: DICOM SEG stored', stored.SeriesInstanceUID);
            }
            return stored;
          } catch (error) {
            notify.show({ title: 'Export DICOM SEG', type: 'error', message: String(error) });
            console.error('pixels: DICOM SEG not stored', error);
          }
        };
      }
      return result;
    };
    return mode;
  },
}];
"""


def app_config_js(dicomweb_root: str = "/dicomweb") -> str:
    """The build's ``app-config.js``: :func:`app_config`, then the MONAI Label mode wrapped
    so that OHIF's segmentation panel (Export DICOM SEG) sits beside MONAI Label's."""
    body = json.dumps(app_config(dicomweb_root), indent=2)
    mode = _MODE_JS % {
        "mode": json.dumps(MODE),
        "panel": json.dumps(SEGMENTATION_PANEL),
    }
    return (
        "/* generated by Pixels (pixels.web.monailabel_ohif) */\nwindow.config = "
        + body
        + ";\n"
        + _SLICE_ORDER_JS
        + mode
    )


def viewer_url(study_uid: str) -> str:
    """The path opening ``study_uid`` in MONAI Label's viewer mode."""
    return f"{BASE}monai-label?" + urlencode({"StudyInstanceUIDs": study_uid})


_MISSING = (
    "MONAI Label's OHIF build is not installed. Install it and restart the server:\n"
    "    python -m pixels.web.monailabel_ohif install\n"
)


def _hidden(rel: str) -> bool:
    """Files of the install never served: the marker and the kept Python client."""
    return rel == MARKER or rel.startswith(CLIENT_DIR)


def routes(dicomweb_prefix: str, root: Path | None = None) -> list[Route]:
    """Routes of the build under ``/ohif/`` (its study list opens studies in the MONAI Label mode).

    They must come before the stock viewer's catch-all route.
    """
    dist = dist_dir(root).resolve()
    config = app_config_js(dicomweb_prefix)

    async def app_config_route(request: Request) -> Response:
        return Response(
            config, media_type=static.MIME[".js"], headers={"Cache-Control": "no-cache"}
        )

    async def page(request: Request) -> Response:
        if not (dist / "index.html").is_file():
            return PlainTextResponse(_MISSING, 404)
        rel = request.path_params.get("path", "")
        found = static.static_file(dist, rel, _hidden)
        if found is not None:
            return found
        resp = static.index_page(dist)
        server = base_url(request) + MONAILABEL + "/"
        # the panel reads the cookie with JavaScript's unescape(): write it escape()d
        # (Set-Cookie written by hand: http.cookies would put it in double quotes)
        value = quote(server, safe="/@*_+-.")
        # Path=/ohif: the path the panel's own document.cookie write gets (its page's
        # folder), so this one replaces it. A cookie ignores the port: with Path=/ the
        # panel's /ohif one (more specific, read first) kept another server's URL when
        # two servers ran on one host; the old Path=/ one is expired.
        resp.headers.append("set-cookie", f"{COOKIE}={value}; Path={COOKIE_PATH}; SameSite=Strict")
        resp.headers.append("set-cookie", f"{COOKIE}=; Path=/; Max-Age=0; SameSite=Strict")
        return resp

    return [
        Route(f"{BASE}app-config.js", app_config_route, methods=["GET", "HEAD"]),
        Route(BASE.rstrip("/"), page, methods=["GET", "HEAD"]),
        Route(BASE + "{path:path}", page, methods=["GET", "HEAD"]),
    ]


def main(argv: list[str] | None = None) -> int:
    return static.cli(
        argv,
        prog="python -m pixels.web.monailabel_ohif",
        description=__doc__,
        install_help=f"fetch monailabel=={MONAILABEL_VERSION}'s OHIF",
        install=install,
        dist_dir=dist_dir,
        installed=installed_version,
        errors=(RuntimeError, OSError, zipfile.BadZipFile),
        wheel_option=True,
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
