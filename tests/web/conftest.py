"""A real DICOMweb server (uvicorn on loopback) over a catalog of real files."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import uvicorn
from pydicom.data import get_testdata_file

from pixels import Catalog
from pixels.web import create_app
from web import everything

FILES = {
    "ct": "CT_small.dcm",
    "mr": "MR_small.dcm",
    "j2k": "JPEG2000.dcm",
    "emri": "emri_small.dcm",
    "color": "color3d_jpeg_baseline.dcm",
    "sr": "test-SR.dcm",
}
TOKEN = "s3cret-token"


@dataclass
class Server:
    url: str
    files: dict[str, str]
    catalog: str
    storage: str


@contextmanager
def running(app: object, config: Callable[[int], uvicorn.Config] | None = None) -> Iterator[str]:
    """``app`` served by uvicorn in a thread on a free loopback port; its URL.

    The socket is bound here and handed to uvicorn (``Server.run(sockets=...)``): a port
    chosen free and bound later can be taken in between by a client's connection.
    ``config``: the ``uvicorn.Config`` for a port (default: ``app``, warnings only).
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    cfg = (
        config(port)
        if config is not None
        else uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")  # type: ignore[arg-type]
    )
    server = uvicorn.Server(cfg)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    try:
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    root = tmp_path_factory.mktemp("web")
    data = root / "data"
    data.mkdir()
    files = {}
    for key, name in FILES.items():
        src = get_testdata_file(name, download=False)
        assert src, name
        dst = data / name
        shutil.copyfile(src, dst)
        files[key] = str(dst)
    # the same file cataloged twice, at two paths: QIDO must list it once
    (data / "copy").mkdir()
    shutil.copyfile(files["ct"], data / "copy" / "CT_again.dcm")
    # a file that is not DICOM: an error row QIDO must ignore
    (data / "notes.dcm").write_bytes(b"not a dicom file at all" * 10)
    catalog = str(root / "catalog")
    Catalog(catalog).catalog(str(data), workers=0, thumbnails=True)
    return catalog, files


@pytest.fixture(scope="session")
def server(corpus: tuple[str, dict[str, str]]) -> Iterator[Server]:
    catalog, files = corpus
    storage = os.path.join(os.path.dirname(catalog), "stow")
    with running(create_app(catalog, token="")) as url:
        yield Server(url, files, catalog, storage)


@pytest.fixture(scope="session")
def secured(corpus: tuple[str, dict[str, str]]) -> Iterator[str]:
    with running(create_app(corpus[0], token=TOKEN)) as url:
        yield url


@pytest.fixture(scope="session")
def everything_catalog(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[str, dict[str, set[str]]]:
    """Every real test file cataloged (:mod:`web.everything`), and its studies' SOP UIDs."""
    return everything.build(tmp_path_factory.mktemp("everything"))
