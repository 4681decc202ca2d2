"""A DIMSE SCP in process (ephemeral port) over a catalog of real files, and dcmtk's tools."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.filereader import read_preamble

from pixels import Catalog
from pixels.dimse.config import ServerConfig
from pixels.dimse.server import DimseServer

#: dcmtk's tools by full path: pynetdicom installs apps of the same names into the venv.
DCMTK = "/usr/bin"
FILES = {
    "ct": "CT_small.dcm",
    "mr": "MR_small.dcm",
    "j2k": "JPEG2000.dcm",
    "multiframe": "emri_small.dcm",
    "deflated": "image_dfl.dcm",
}


def dcmtk(tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a dcmtk tool; its result (stdout and stderr as text)."""
    return subprocess.run(
        [os.path.join(DCMTK, tool), *args], capture_output=True, text=True, timeout=timeout
    )


_GIVEN: set[int] = set()


def free_port() -> int:
    """A port free now and not given before in this run (the kernel may hand the same
    ephemeral port to two binds in a row once the first socket is closed: two servers of
    one test would then fight for it)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


@dataclass
class Scp:
    server: DimseServer
    catalog: str
    root: str
    #: C-MOVE destinations (AE -> host, port); tests add theirs
    destinations: dict[str, tuple[str, int]]

    @property
    def port(self) -> str:
        return str(self.server.port)


def sample(key: str) -> str:
    path = get_testdata_file(FILES[key], download=False)
    assert path, FILES[key]
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Copies of the real test files (their own folder: cataloging them lists nothing else)."""
    root = tmp_path_factory.mktemp("dimse-files")
    out = {}
    for key in FILES:
        dst = root / FILES[key]
        shutil.copyfile(sample(key), dst)
        out[key] = str(dst)
    return out


@pytest.fixture(scope="module")
def scp(tmp_path_factory: pytest.TempPathFactory, files: dict[str, str]) -> Iterator[Scp]:
    """An SCP over a catalog of CT_small and MR_small, moving to ``STORESCP`` when asked."""
    root = str(tmp_path_factory.mktemp("dimse-scp"))
    catalog = os.path.join(root, "catalog")
    for key in ("ct", "mr"):
        Catalog(catalog).catalog(files[key], workers=0)
    destinations: dict[str, tuple[str, int]] = {}
    config = ServerConfig(port=0, commit_seconds=5, destinations=destinations, timeout=5)
    server = DimseServer(catalog, config).start()
    try:
        yield Scp(server, catalog, root, destinations)
    finally:
        server.stop()


def dataset_bytes(path: str) -> bytes:
    """A file's bytes after its file meta group (inflated, for a deflated one: a sender
    deflates again as it likes)."""
    with open(path, "rb") as fh:
        read_preamble(fh, False)
        meta = pydicom.filereader._read_file_meta_info(fh)
        data = fh.read()
    if meta.TransferSyntaxUID == "1.2.840.10008.1.2.1.99":
        return zlib.decompress(data, -15)
    return data
