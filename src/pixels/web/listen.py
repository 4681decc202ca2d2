"""Listening sockets for the DICOMweb server, bound before it runs.

:func:`bind` binds ``host:port`` itself (uvicorn is handed the sockets): with port 0
the system picks a free port, and the caller knows which before the server runs
(``pixels serve --port 0`` prints it and writes it to ``--port-file``). Nothing picks a
port, closes it and binds it again later, so no other process can take it in between.
"""

from __future__ import annotations

import errno
import socket

from pixels.errors import PixelsError

__all__ = ["BACKLOG", "bind", "bound_port", "why_not"]

#: Connections the kernel queues before the server accepts them (uvicorn's default).
BACKLOG = 2048


def _addresses(host: str, port: int) -> list[tuple[int, tuple[object, ...]]]:
    """The (family, address) pairs ``host`` names, each once, in the resolver's order."""
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as e:
        raise PixelsError(f"cannot listen on {host}:{port}: {e.strerror}") from e
    out: list[tuple[int, tuple[object, ...]]] = []
    for family, _, _, _, addr in infos:
        if (family, addr) not in out:
            out.append((family, tuple(addr)))
    return out


def _bind_all(addresses: list[tuple[int, tuple[object, ...]]], port: int) -> list[socket.socket]:
    """Listening sockets of every address on ``port`` (0: the port the first one got)."""
    socks: list[socket.socket] = []
    try:
        for family, addr in addresses:
            sock = socket.socket(family, socket.SOCK_STREAM)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # ``::`` and ``0.0.0.0`` both: one socket each
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((addr[0], port, *addr[2:]))
            port = sock.getsockname()[1]
            sock.listen(BACKLOG)
            sock.set_inheritable(True)
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


def bind(host: str, port: int) -> list[socket.socket]:
    """Listening TCP sockets on every address ``host`` names, all on one port.

    ``port`` 0 takes a free port (:func:`bound_port` says which); when ``host`` names
    several addresses (``localhost``: ``127.0.0.1`` and ``::1``), the port the first got
    is bound on the others too (another port is tried when one of them has it taken).

    Raises
    ------
    PixelsError
        ``host`` cannot be resolved, or ``host:port`` cannot be bound (in use, not an
        address of this machine, a privileged port); the message names both.

    Examples
    --------
    >>> socks = bind("127.0.0.1", 0); bound_port(socks) > 0
    True
    >>> for s in socks: s.close()
    """
    addresses = _addresses(host, port)
    for _ in range(8):
        try:
            return _bind_all(addresses, port)
        except OSError as e:
            if port == 0 and len(addresses) > 1 and e.errno == errno.EADDRINUSE:
                continue  # the first address's free port is taken on another one
            raise PixelsError(f"cannot listen on {host}:{port}: {why_not(e)}") from e
    raise PixelsError(f"cannot listen on {host}:{port}: no port free on all its addresses")


def why_not(error: OSError) -> str:
    """Why a port could not be bound, and for one in use what to do (a server's message)."""
    why = error.strerror or str(error)
    if error.errno == errno.EADDRINUSE:
        why += " (another process listens there: stop it, or choose another port; 0: a free one)"
    return why


def bound_port(sockets: list[socket.socket]) -> int:
    """The port :func:`bind`'s sockets listen on."""
    return int(sockets[0].getsockname()[1])
