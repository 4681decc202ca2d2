"""A DIMSE SCP in process (ephemeral port) over a catalog of real files, and dcmtk's tools."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.filereader import read_preamble
from pydicom.uid import generate_uid

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
    # timeout: not short (a client idle between its messages on a loaded machine must not be
    # aborted: the guarded SCP of test_dimse_security learnt it at 1 s)
    config = ServerConfig(port=0, commit_seconds=5, destinations=destinations, timeout=30)
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


def dataset_of(path: str) -> pydicom.Dataset:
    """A file's data set without its trailing padding (dcmqrscp and Orthanc store files
    without it); the file meta group is not part of a data set's equality."""
    ds = pydicom.dcmread(path)
    if 0xFFFCFFFC in ds:
        del ds[0xFFFCFFFC]
    return ds


def mount_tmpfs(folder: Path, options: str) -> None:
    """Make ``folder`` and mount a tmpfs of ``options`` (``size=256k``) on it (the caller
    unmounts it); the test is skipped where that needs root or cannot be done."""
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)])
    if res.returncode != 0:
        pytest.skip("no tmpfs can be mounted here")


def big_mr(path: str, frames: int) -> str:
    """A multi-frame MR of ``frames`` 512x512 frames (pydicom's emri_small tiled), new UIDs;
    its SOP Instance UID."""
    ds = pydicom.dcmread(sample("multiframe"))
    tiled = np.tile(ds.pixel_array, (1, 8, 8))
    ds.Rows, ds.Columns, ds.NumberOfFrames = 512, 512, frames
    ds.PixelData = np.concatenate([tiled] * (frames // len(tiled) + 1))[:frames].tobytes()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(path)
    return str(ds.SOPInstanceUID)


@contextlib.contextmanager
def dcmqrscp(
    root: Path, port: int, *files: str, hosts: str = ""
) -> Iterator[subprocess.Popen[bytes]]:
    """dcmtk's dcmqrscp as AE ``ARCHIVE`` on ``port`` over a database in ``root/db``,
    given ``files``; ``hosts``: its HostTable lines (move destinations). It serves each
    association in a child process of its own."""
    (root / "db").mkdir(exist_ok=True)
    (root / "qr.cfg").write_text(
        f"NetworkTCPPort = {port}\nMaxPDUSize = 16384\nMaxAssociations = 16\n"
        f"HostTable BEGIN\n{hosts}HostTable END\nVendorTable BEGIN\nVendorTable END\n"
        f"AETable BEGIN\nARCHIVE {root / 'db'} RW (200, 1024mb) ANY\nAETable END\n"
    )
    argv = [os.path.join(DCMTK, "dcmqrscp"), "-c", str(root / "qr.cfg")]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while dcmtk("echoscu", "-aec", "ARCHIVE", "127.0.0.1", str(port)).returncode != 0:
            assert proc.poll() is None, "dcmqrscp did not start"
            assert time.monotonic() < deadline, "dcmqrscp did not start"
            time.sleep(0.1)
        if files:
            res = dcmtk("storescu", "-aec", "ARCHIVE", "127.0.0.1", str(port), *files, timeout=120)
            assert res.returncode == 0, res.stderr
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)
