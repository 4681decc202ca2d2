"""The DICOMweb server's application: routes, state, authentication.

:func:`create_app` returns a Starlette app serving, under ``/dicomweb``,
QIDO-RS (:mod:`pixels.web.qido`), WADO-RS (:mod:`pixels.web.wado`) and STOW-RS
(:mod:`pixels.web.stow`) over one catalog table. :func:`serve` runs it with
uvicorn, bound to loopback unless told otherwise.

Every request reads the table's current version: rows added by ``pixels catalog``
or STOW-RS are visible to the next request.
"""

from __future__ import annotations

import hmac
import os
import re
import threading

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from pixels.catalog import Catalog

__all__ = ["DEFAULT_MAX_UPLOAD", "PREFIX", "WebState", "create_app", "serve"]

#: Root of the DICOMweb service.
PREFIX = "/dicomweb"
#: The WADO-URI endpoint (PS3.18 9).
WADO_URI = "/wado"
#: Default limit on one STOW-RS request body (bytes).
DEFAULT_MAX_UPLOAD = 2 * 1024**3

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def is_uid(value: str) -> bool:
    """True for a syntactically valid UID: digits and dots, at most 64 characters."""
    return 0 < len(value) <= 64 and _UID.match(value) is not None


def check_uid(value: str, what: str = "UID") -> str:
    """Return ``value`` or raise HTTP 400 when it is not a UID."""
    if not is_uid(value):
        raise HTTPException(
            400, f"{what} {value[:80]!r} is not a valid UID (digits and dots, <= 64)"
        )
    return value


class WebState:
    """What every request needs: the catalog, where STOW writes, the limits.

    Parameters
    ----------
    catalog_path : str
        The catalog table (folder or URL).
    storage_root : str, optional
        Where STOW-RS writes files (default: ``stow`` next to the table folder).
    token : str, optional
        Bearer token required on every request (default: env ``PIXELS_TOKEN``).
    max_upload : int
        Largest accepted STOW-RS body, in bytes.
    public_url : str, optional
        The server's external base URL (behind a proxy), used in RetrieveURL and
        BulkDataURI; default: from the request.
    """

    def __init__(
        self,
        catalog_path: str,
        *,
        storage_root: str | None = None,
        token: str | None = None,
        max_upload: int = DEFAULT_MAX_UPLOAD,
        public_url: str | None = None,
    ):
        self.public_url = public_url
        self.catalog = Catalog(catalog_path)
        self.table = self.catalog.table
        if storage_root is None:
            local = os.path.abspath(catalog_path.removeprefix("file://"))
            storage_root = os.path.join(os.path.dirname(local.rstrip(os.sep)), "stow")
        self.storage_root = os.path.abspath(storage_root)
        self.token = token if token is not None else (os.environ.get("PIXELS_TOKEN") or None)
        self.max_upload = max_upload
        self._table_lock = threading.Lock()
        #: Serialises STOW-RS writes and catalog commits of this process.
        self.write_lock = threading.Lock()


def base_url(request: Request) -> str:
    """``scheme://host[:port][root_path]`` of the request, without a trailing slash.

    ``public_url`` given to :func:`create_app` wins (a server behind a proxy). A
    ``Host`` header without a port (dicomweb-client sends one) gets the port the
    server listens on, when that is not the scheme's default.
    """
    public = state_of(request).public_url
    if public:
        return public.rstrip("/")
    url = request.base_url
    server = request.scope.get("server")
    if url.port is None and server and server[1]:
        default = 443 if url.scheme == "https" else 80
        if int(server[1]) != default:
            url = url.replace(port=int(server[1]))
    return str(url).rstrip("/")


class _TokenAuth:
    """Require ``Authorization: Bearer <token>`` under ``/dicomweb`` and on ``/wado``."""

    def __init__(self, app: ASGIApp, token: str | None):
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if self.token and (
            path.startswith(PREFIX) or path == WADO_URI or path.startswith(WADO_URI + "/")
        ):
            headers = dict(scope.get("headers") or [])
            got = headers.get(b"authorization", b"").decode("latin-1")
            scheme, _, value = got.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                value.strip().encode(), self.token.encode()
            ):
                resp = PlainTextResponse(
                    "missing or wrong bearer token", 401, headers={"WWW-Authenticate": "Bearer"}
                )
                await resp(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return PlainTextResponse(str(exc.detail), exc.status_code, headers=exc.headers)


def create_app(
    catalog_path: str,
    *,
    storage_root: str | None = None,
    token: str | None = None,
    max_upload: int = DEFAULT_MAX_UPLOAD,
    public_url: str | None = None,
    viewer: bool = True,
) -> Starlette:
    """Return the DICOMweb application over a catalog table.

    WADO-URI (:mod:`pixels.web.wado_uri`) is served at ``/wado``.

    Parameters
    ----------
    catalog_path : str
        The catalog table.
    storage_root : str, optional
        Where STOW-RS stores files (default: a folder ``stow`` next to the table).
    token : str, optional
        Bearer token for every ``/dicomweb`` request (default: env ``PIXELS_TOKEN``;
        none: no authentication).
    max_upload : int
        Largest STOW-RS request body in bytes (413 above it).
    public_url : str, optional
        External base URL (``https://pacs.example.org``) when behind a proxy.
    viewer : bool
        Serve the OHIF viewer at ``/`` (:mod:`pixels.web.ohif`) when it is installed
        (else ``/`` says how to install it). Its static files need no token.

    Examples
    --------
    >>> app = create_app("./catalog")                         # doctest: +SKIP
    >>> import uvicorn; uvicorn.run(app, host="127.0.0.1")    # doctest: +SKIP
    """
    from pixels.web import ohif, qido, stow, wado, wado_uri

    state = WebState(
        catalog_path,
        storage_root=storage_root,
        token=token,
        max_upload=max_upload,
        public_url=public_url,
    )
    p = PREFIX
    s, se, i = "{study}", "{series}", "{instance}"
    routes = [
        Route(f"{p}/studies", qido.search, methods=["GET"], name="qido_studies"),
        Route(f"{p}/studies", stow.store, methods=["POST"]),
        Route(f"{p}/series", qido.search, methods=["GET"]),
        Route(f"{p}/instances", qido.search, methods=["GET"]),
        Route(f"{p}/studies/{s}", wado.retrieve, methods=["GET"]),
        Route(f"{p}/studies/{s}", stow.store, methods=["POST"]),
        Route(f"{p}/studies/{s}/series", qido.search, methods=["GET"]),
        Route(f"{p}/studies/{s}/instances", qido.search, methods=["GET"]),
        Route(f"{p}/studies/{s}/metadata", wado.metadata, methods=["GET"]),
        Route(f"{p}/studies/{s}/thumbnail", wado.thumbnail, methods=["GET"]),
        Route(f"{p}/studies/{s}/rendered", wado.rendered, methods=["GET"]),
        Route(f"{p}/studies/{s}/series/{se}", wado.retrieve, methods=["GET"]),
        Route(f"{p}/studies/{s}/series/{se}/instances", qido.search, methods=["GET"]),
        Route(f"{p}/studies/{s}/series/{se}/metadata", wado.metadata, methods=["GET"]),
        Route(f"{p}/studies/{s}/series/{se}/thumbnail", wado.thumbnail, methods=["GET"]),
        Route(f"{p}/studies/{s}/series/{se}/rendered", wado.rendered, methods=["GET"]),
        Route(f"{p}/studies/{s}/series/{se}/instances/{i}", wado.retrieve, methods=["GET"]),
        Route(
            f"{p}/studies/{s}/series/{se}/instances/{i}/metadata", wado.metadata, methods=["GET"]
        ),
        Route(
            f"{p}/studies/{s}/series/{se}/instances/{i}/thumbnail", wado.thumbnail, methods=["GET"]
        ),
        Route(
            f"{p}/studies/{s}/series/{se}/instances/{i}/rendered", wado.rendered, methods=["GET"]
        ),
        Route(
            f"{p}/studies/{s}/series/{se}/instances/{i}/frames/{{frames}}",
            wado.frames,
            methods=["GET"],
        ),
        Route(
            f"{p}/studies/{s}/series/{se}/instances/{i}/bulkdata/{{tagpath:path}}",
            wado.bulkdata,
            methods=["GET"],
        ),
        Route(WADO_URI, wado_uri.wado_uri, methods=["GET"]),
    ]
    # last: the viewer's files, app-config.js and its single-page fallback
    routes += ohif.routes(p, viewer=viewer)
    app = Starlette(
        routes=routes,
        middleware=[Middleware(_TokenAuth, token=state.token)],
        exception_handlers={HTTPException: _http_error},
    )
    app.state.pixels = state
    return app


def state_of(request: Request) -> WebState:
    """The :class:`WebState` of the app serving ``request``."""
    st: WebState = request.app.state.pixels
    return st


def serve(
    catalog_path: str,
    host: str = "127.0.0.1",
    port: int = 8042,
    *,
    storage_root: str | None = None,
    token: str | None = None,
    max_upload: int = DEFAULT_MAX_UPLOAD,
    public_url: str | None = None,
    log_level: str = "info",
    viewer: bool = True,
) -> None:
    """Serve the catalog over DICOMweb with uvicorn (blocks until stopped)."""
    import uvicorn

    app = create_app(
        catalog_path,
        storage_root=storage_root,
        token=token,
        max_upload=max_upload,
        public_url=public_url,
        viewer=viewer,
    )
    uvicorn.run(app, host=host, port=port, log_level=log_level)
