"""The server keeps an idle connection open longer than clients keep theirs.

A server that closes an idle keep-alive connection first races with the client's
next request on it (httpx keeps idle connections 5 s, as long as uvicorn's default):
a request sent as the server closes gets a connection reset, and a STOW-RS POST is
not retried by clients. Under a load of 100 STOW-RS requests per second this lost
requests with ``httpx.ReadError``.
"""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

from corpus import sample_file
from pixels import Catalog
from pixels.web import create_app
from pixels.web.app import KEEP_ALIVE_S, server_config
from web.conftest import running


def _get(sock: socket.socket, port: int) -> bytes:
    """One ``GET /dicomweb/studies`` on ``sock``; the answer's status line (b"": closed)."""
    sock.sendall(
        f"GET /dicomweb/studies HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode("ascii")
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(65536)
        if not chunk:
            return b""
        head += chunk
    header, _, body = head.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in header.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed in the middle of an answer"
        body += chunk
    return header.split(b"\r\n", 1)[0]


def test_an_idle_connection_outlives_a_clients_keep_alive(tmp_path: Path) -> None:
    assert KEEP_ALIVE_S > 60
    data = tmp_path / "in"
    data.mkdir()
    shutil.copyfile(sample_file("CT_small.dcm"), data / "ct.dcm")
    Catalog(str(tmp_path / "catalog")).catalog(str(data), workers=0)
    app = create_app(str(tmp_path / "catalog"), token="", storage_root=str(tmp_path / "stow"))
    with running(app, lambda port: server_config(app, "127.0.0.1", port, "warning")) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            assert _get(sock, port) == b"HTTP/1.1 200 OK"
            time.sleep(6)  # idle longer than httpx's (and uvicorn's default) 5 s
            assert _get(sock, port) == b"HTTP/1.1 200 OK"


def test_settle_gc_leaves_what_the_server_holds_at_start_out_of_collections() -> None:
    """``serve`` freezes the objects alive when it starts listening: a full collection
    then traverses only what requests made since (a 200 ms pause at 10M before)."""
    import gc

    from pixels.web.app import settle_gc

    assert gc.get_freeze_count() == 0
    held = {"a start-up object": [1, 2, 3]}
    try:
        settle_gc()
        assert gc.get_freeze_count() > 0
        assert not any(o is held for o in gc.get_objects())  # frozen: not tracked for collection
    finally:
        gc.unfreeze()
    assert any(o is held for o in gc.get_objects())
