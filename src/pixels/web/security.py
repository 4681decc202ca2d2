"""The server's guards: bearer token, Host header check, binding rules, log redaction.

- :class:`TokenAuth`: ``Authorization: Bearer <token>`` (or the cookie a page opened
  with ``?token=`` sets) on ``/dicomweb``, ``/monailabel`` and ``/wado``.
- :class:`HostCheck`: a request whose ``Host`` header is not an allowed host name
  gets 400. Without it, any web page the user opens can read the catalog through
  DNS rebinding (a name of the attacker's that resolves to 127.0.0.1 makes the
  browser send the page's requests to the local server as same-origin). Allowed
  by default: the loopback names (:data:`LOOPBACK_HOSTS`), and an IP address that is
  the one the request came in on (a server on ``0.0.0.0`` reached at this machine's
  address: a browser sends an address as ``Host`` only when it was given that
  address, never through a name, so rebinding cannot use it).
- :func:`check_binding`: serving on an address other than loopback without a
  token is refused unless asked for explicitly.
- :class:`RedactTokens`: a logging filter that hides ``token=`` query values
  (the viewer's ``?token=``) in uvicorn's access log.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
import socket
from collections.abc import Iterable
from urllib.parse import parse_qs, quote, unquote

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pixels.errors import PixelsError
from pixels.web.state import MONAILABEL, PREFIX, WADO_URI

__all__ = [
    "LOOPBACK_HOSTS",
    "TOKEN_COOKIE",
    "HostCheck",
    "RedactTokens",
    "TokenAuth",
    "check_binding",
    "host_names_of",
    "is_loopback",
    "is_wildcard",
]

#: Host names always allowed: the loopback ones.
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


#: Cookie set on a page opened with the right ``?token=``: the viewers' own requests
#: (MONAI Label's panel sends no Authorization header) then carry the token.
TOKEN_COOKIE = "pixels_token"


def _cookie(headers: dict[bytes, bytes], name: str) -> str | None:
    for item in headers.get(b"cookie", b"").decode("latin-1").split(";"):
        key, _, value = item.strip().partition("=")
        if key == name:
            return unquote(value)
    return None


class TokenAuth:
    """Require the token under ``/dicomweb``, ``/monailabel`` and on ``/wado``.

    The token comes as ``Authorization: Bearer <token>``, or as the cookie
    :data:`TOKEN_COOKIE` (``HttpOnly; SameSite=Strict``: never sent by another
    site's page), which any other page opened with ``?token=<token>`` sets.
    """

    def __init__(self, app: ASGIApp, token: str | None):
        self.app = app
        self.token = token

    def _valid(self, value: str | None) -> bool:
        return (
            bool(self.token)
            and value is not None
            and hmac.compare_digest(value.strip().encode(), str(self.token).encode())
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        guarded = path.startswith(PREFIX) or path in (WADO_URI, MONAILABEL)
        guarded = guarded or path.startswith((WADO_URI + "/", MONAILABEL + "/"))
        if self.token and path and not guarded:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            if any(self._valid(v) for v in query.get("token", [])):
                value = quote(str(self.token), safe="")
                cookie = f"{TOKEN_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict"

                async def send_cookie(message: Message) -> None:
                    if message["type"] == "http.response.start":
                        headers = list(message.get("headers") or [])
                        headers.append((b"set-cookie", cookie.encode("latin-1")))
                        message = {**message, "headers": headers}
                    await send(message)

                await self.app(scope, receive, send_cookie)
                return
        if self.token and guarded:
            headers = dict(scope.get("headers") or [])
            got = headers.get(b"authorization", b"").decode("latin-1")
            scheme, _, value = got.partition(" ")
            bearer = scheme.lower() == "bearer" and self._valid(value)
            if not bearer and not self._valid(_cookie(headers, TOKEN_COOKIE)):
                resp = PlainTextResponse(
                    "missing or wrong bearer token", 401, headers={"WWW-Authenticate": "Bearer"}
                )
                await resp(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _host_name(header: str) -> str:
    """The host name of a ``Host`` header value: no port, no brackets, lower case."""
    value = header.strip().lower()
    if value.startswith("["):  # [::1]:8042
        return value[1:].partition("]")[0]
    if value.count(":") == 1:
        value = value.partition(":")[0]
    return value.rstrip(".")


def _matches(name: str, pattern: str) -> bool:
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return name.endswith(pattern[1:]) and len(name) > len(pattern) - 1
    return name == pattern


class HostCheck:
    """Answer 400 to a request whose ``Host`` is not one of ``allowed`` (see the module).

    ``allowed`` holds host names or IP addresses (no port), ``*.example.org``
    patterns, or ``*`` (any host: no check). A request without a ``Host`` header
    (HTTP/1.0; browsers always send one) passes.
    """

    def __init__(self, app: ASGIApp, allowed: Iterable[str]):
        self.app = app
        self.allowed = frozenset(_host_name(a) if a != "*" else a for a in allowed)

    def allows(self, header: str) -> bool:
        """Whether a ``Host`` header value names an allowed host."""
        name = _host_name(header)
        return any(_matches(name, p) for p in self.allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            for key, value in scope.get("headers") or []:
                if key == b"host":
                    header = value.decode("latin-1")
                    if not self.allows(header) and not _came_in_on(header, scope):
                        resp = PlainTextResponse(
                            f"Host {value.decode('latin-1')[:100]!r} is not served here "
                            "(allowed hosts: pixels serve --allowed-host)",
                            400,
                        )
                        await resp(scope, receive, send)
                        return
                    break
        await self.app(scope, receive, send)


def _came_in_on(header: str, scope: Scope) -> bool:
    """Whether ``header`` is an IP address, the one the request came in on (the ASGI
    ``server`` address: the connection's local end)."""
    server = scope.get("server")
    if not server:
        return False
    try:
        named = ipaddress.ip_address(_host_name(header))
        local = ipaddress.ip_address(str(server[0]).partition("%")[0])
    except ValueError:
        return False
    return named == local and not local.is_unspecified


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``)."""
    name = _host_name(host) if not host.startswith("[") else host.strip("[]")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    """True for the addresses that bind every address (``0.0.0.0``, ``::``, ``""``)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return host == ""


def host_names_of(bind: str) -> set[str]:
    """Names a client may use to reach a server bound to ``bind``.

    A specific address is its own name; a wildcard address (``0.0.0.0``, ``::``)
    adds this machine's host name, fully qualified name and their addresses.
    """
    bind = bind.strip("[]")
    if not is_wildcard(bind):
        return {bind.lower()}
    names = {socket.gethostname().lower(), socket.getfqdn().lower()}
    for name in list(names):
        try:
            for info in socket.getaddrinfo(name, None):
                names.add(str(info[4][0]).lower())
        except OSError:
            continue
    return {n for n in names if n}


def check_binding(host: str, token: str | None, allow_unauthenticated: bool) -> None:
    """Refuse to serve on an address other than loopback without a token.

    Raises
    ------
    PixelsError
        ``host`` is not loopback, no token is set and ``allow_unauthenticated``
        is false.
    """
    if token or allow_unauthenticated or is_loopback(host):
        return
    raise PixelsError(
        f"refusing to serve on {host} without a token: anyone who can reach it could read "
        "the catalog. Set --token (or PIXELS_TOKEN), or pass --allow-unauthenticated."
    )


_TOKEN_QUERY = re.compile(r"([?&](?:access_)?token=)[^&\s#\"]*", re.IGNORECASE)


class RedactTokens(logging.Filter):
    """Replace ``token=...`` query values in log records by ``token=[redacted]``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(
                _TOKEN_QUERY.sub(r"\1[redacted]", a) if isinstance(a, str) else a
                for a in record.args
            )
        if isinstance(record.msg, str) and "token=" in record.msg.lower():
            record.msg = _TOKEN_QUERY.sub(r"\1[redacted]", record.msg)
        return True
