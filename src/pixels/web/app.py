"""The DICOMweb server's application: routes, authentication, error answers.

:func:`create_app` returns a Starlette app serving, under ``/dicomweb``,
QIDO-RS (:mod:`pixels.web.qido`), WADO-RS (:mod:`pixels.web.wado`) and STOW-RS
(:mod:`pixels.web.stow`) over one catalog table. :func:`serve` runs it with
uvicorn, bound to loopback unless told otherwise.

Every request reads the table's current version: rows added by ``pixels catalog``
or STOW-RS are visible to the next request.

This module only assembles the app: the state and helpers handlers share live in
:mod:`pixels.web.state`.
"""

from __future__ import annotations

import gc
import logging
import socket
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from pixels.web import errors, monailabel, monailabel_ohif, ohif, qido, stow, wado, wado_uri
from pixels.web.listen import bind
from pixels.web.security import (
    LOOPBACK_HOSTS,
    HostCheck,
    RedactTokens,
    TokenAuth,
    check_binding,
    host_names_of,
)
from pixels.web.state import DEFAULT_MAX_UPLOAD, PREFIX, WADO_URI, WebState

__all__ = ["KEEP_ALIVE_S", "create_app", "serve", "server_config", "settle_gc"]

#: Seconds an idle keep-alive connection is kept open (uvicorn's default: 5). A server
#: that closes an idle connection first races with the client's next request on it:
#: httpx keeps idle connections 5 s, browsers a minute or more, and a client that is
#: slow to read an answer (a loaded machine) sends its next request later still; a
#: request sent as the server closes gets a connection reset, and a POST (STOW-RS) is
#: not retried by clients (the ``httpx.ReadError`` of the 100 STOW/s bench).
KEEP_ALIVE_S = 75


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
    allowed_hosts: Iterable[str] | None = None,
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
    allowed_hosts : iterable of str, optional
        Host names (or ``*.domain`` patterns, or ``*`` for any) accepted in the
        ``Host`` header, besides the loopback names and ``public_url``'s host; other
        requests get 400 (:class:`~pixels.web.security.HostCheck`: DNS rebinding).

    Examples
    --------
    >>> app = create_app("./catalog")                         # doctest: +SKIP
    >>> import uvicorn; uvicorn.run(app, host="127.0.0.1")    # doctest: +SKIP
    """
    state = WebState(
        catalog_path,
        storage_root=storage_root,
        token=token,
        max_upload=max_upload,
        public_url=public_url,
    )
    hosts = set(LOOPBACK_HOSTS) | set(allowed_hosts or ())
    if public_url:
        hosts.add(urlsplit(public_url).hostname or "*")
    stow.clean_stale_spools(state.storage_root)  # what a killed server left
    # no model is loaded here: the first MONAI Label request loads them (~0.1 s, no
    # torch), so nothing holds the GIL under the first DICOMweb answers
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
            f"{p}/studies/{s}/series/{se}/instances/{i}/frames/{{frames}}/rendered",
            wado.frame_rendered,
            methods=["GET"],
        ),
        Route(
            f"{p}/studies/{s}/series/{se}/instances/{i}/bulkdata/{{tagpath:path}}",
            wado.bulkdata,
            methods=["GET"],
        ),
        Route(WADO_URI, wado_uri.wado_uri, methods=["GET"]),
        *monailabel.routes(),  # MONAI Label API: the viewer's panel and its clients
    ]
    if viewer:  # MONAI Label's OHIF build under /ohif/ (before the stock viewer's fallback)
        routes += monailabel_ohif.routes(p)
    # last: the viewer's files, app-config.js and its single-page fallback
    routes += ohif.routes(p, viewer=viewer)
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(errors.ErrorAnswers),
            Middleware(HostCheck, allowed=hosts),
            Middleware(TokenAuth, token=state.token),
        ],
        exception_handlers={HTTPException: _http_error, **errors.HANDLERS},
    )
    app.state.pixels = state
    return app


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
    allowed_hosts: Iterable[str] | None = None,
    allow_unauthenticated: bool = False,
    on_start: Callable[[WebState], Callable[[], Any]] | None = None,
    sockets: Sequence[socket.socket] | None = None,
    on_listening: Callable[[], Any] | None = None,
) -> None:
    """Serve the catalog over DICOMweb with uvicorn (blocks until stopped).

    ``on_start`` is called with the server's state before it listens (``pixels serve
    --dimse-port`` starts the DIMSE SCP on it); what it returns is called once the
    server has stopped. ``on_listening`` is called once the server answers requests
    (``pixels serve --port-file`` writes the file then).

    ``sockets``: listening sockets to serve on (:func:`pixels.web.listen.bind`; then
    ``host`` and ``port`` only name them); default: ``host:port`` bound here, port 0 a
    free port. They are closed when the server stops.

    The ``Host`` header may name a loopback name, the address bound (a wildcard
    address: this machine's names), ``public_url``'s host or ``allowed_hosts``.
    A ``token=`` in a logged URL (the viewer's) is logged as ``token=[redacted]``.

    Raises
    ------
    PixelsError
        ``host`` is not loopback, there is no token (argument or env
        ``PIXELS_TOKEN``) and ``allow_unauthenticated`` is false; ``host:port`` cannot
        be bound.
    """
    app = create_app(
        catalog_path,
        storage_root=storage_root,
        token=token,
        max_upload=max_upload,
        public_url=public_url,
        viewer=viewer,
        allowed_hosts=[*host_names_of(host), *(allowed_hosts or ())],
    )
    check_binding(host, app.state.pixels.token, allow_unauthenticated)
    config = server_config(app, host, port, log_level)  # configures logging
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactTokens) for f in access.filters):
        access.addFilter(RedactTokens())
    listening = list(sockets) if sockets is not None else bind(host, port)
    try:
        stop = on_start(app.state.pixels) if on_start is not None else None
        settle_gc()
        try:
            _server(config, on_listening).run(sockets=listening)
        finally:
            if stop is not None:
                stop()
    finally:
        for sock in listening:
            sock.close()


def _server(config: Any, on_listening: Callable[[], Any] | None) -> Any:
    """A ``uvicorn.Server`` of ``config`` calling ``on_listening`` once it has started
    (its sockets served by the event loop); an error in it stops the server."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if on_listening is not None and self.started and not self.should_exit:
                on_listening()

    return Server(config)


def settle_gc() -> None:
    """Collect once, then leave what the server holds at start out of later collections
    (``gc.freeze``): a full collection traversed every object imported (pydicom's
    dictionaries, the web stack): pauses of up to 205 ms under load at 10M instances,
    5 ms with them frozen. Called by :func:`serve` just before it listens."""
    gc.collect()
    gc.freeze()


def server_config(app: Starlette, host: str, port: int, log_level: str = "info") -> Any:
    """The ``uvicorn.Config`` :func:`serve` runs ``app`` with (idle connections kept
    :data:`KEEP_ALIVE_S` seconds)."""
    import uvicorn

    return uvicorn.Config(
        app, host=host, port=port, log_level=log_level, timeout_keep_alive=KEEP_ALIVE_S
    )
