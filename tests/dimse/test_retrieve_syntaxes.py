"""C-GET and C-MOVE to peers that take a class only uncompressed (getscu's and storescp's
defaults, and many modalities and viewers): each instance stored compressed or big
endian arrives converted to little endian with the same pixels, not as a failed
sub-operation (0xA702: no context for its stored syntax)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from dimse.conftest import DCMTK, dcmtk, free_port
from pixels import Catalog
from pixels.dimse.config import ServerConfig
from pixels.dimse.scu import Client
from pixels.dimse.server import DimseServer

#: pydicom's JPEG 2000 SC, its JPEG-LS lossless MR, and CT_small made big endian by dcmtk
NAMES = ("JPEG2000.dcm", "MR_small_jpeg_ls_lossless.dcm")
UNCOMPRESSED_LE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}


@pytest.fixture(scope="module")
def originals(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """SOPInstanceUID -> the original file (each its own study)."""
    root = tmp_path_factory.mktemp("retrieve-syntaxes-files")
    out = {}
    for name in NAMES:
        path = get_testdata_file(name, download=False)
        assert path, name
        out[str(pydicom.dcmread(path).SOPInstanceUID)] = str(path)
    big = str(root / "ct_big_endian.dcm")
    res = dcmtk("dcmconv", "+tb", str(get_testdata_file("CT_small.dcm")), big)
    assert res.returncode == 0, res.stderr
    assert pydicom.dcmread(big).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.2"
    out[str(pydicom.dcmread(big).SOPInstanceUID)] = big
    return out


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, originals: dict[str, str]
) -> Iterator[DimseServer]:
    catalog = str(tmp_path_factory.mktemp("retrieve-syntaxes") / "catalog")
    for path in originals.values():
        Catalog(catalog).catalog(path, workers=0)
    config = ServerConfig(port=0, timeout=10, destinations={})
    with DimseServer(catalog, config) as scp:
        yield scp


def _check(received: Path, originals: dict[str, str]) -> None:
    """Every original arrived once, uncompressed little endian, with its pixels."""
    got = {}
    for name in os.listdir(received):
        ds = pydicom.dcmread(received / name)
        got[str(ds.SOPInstanceUID)] = ds
    assert sorted(got) == sorted(originals)
    for sop, ds in got.items():
        original = pydicom.dcmread(originals[sop])
        assert ds.file_meta.TransferSyntaxUID in UNCOMPRESSED_LE, sop
        assert ds.SOPClassUID == original.SOPClassUID
        assert (ds.Rows, ds.Columns, ds.BitsAllocated) == (
            original.Rows,
            original.Columns,
            original.BitsAllocated,
        )
        assert np.array_equal(ds.pixel_array, original.pixel_array), sop


def _studies(originals: dict[str, str]) -> list[str]:
    return sorted({str(pydicom.dcmread(p).StudyInstanceUID) for p in originals.values()})


def test_getscu_with_uncompressed_contexts_gets_every_syntax(
    server: DimseServer, originals: dict[str, str], tmp_path: Path
) -> None:
    for study in _studies(originals):
        # getscu proposes the storage classes in uncompressed syntaxes only (its default)
        res = dcmtk("getscu", "-v", "-S", "-aec", "PIXELS", "-od", str(tmp_path),
                    "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
                    "127.0.0.1", str(server.port))  # fmt: skip
        text = res.stdout + res.stderr
        assert res.returncode == 0, text
        assert "Number of Failed Suboperations    : 0" in text, text
    _check(tmp_path, originals)


@contextlib.contextmanager
def _plain_storescp(out: Path) -> Iterator[int]:
    """dcmtk's storescp with its defaults (storage classes uncompressed only) as ``PLAIN``
    writing into ``out``; its port."""
    port = free_port()
    storescp = subprocess.Popen(
        [os.path.join(DCMTK, "storescp"), "-aet", "PLAIN", "-od", str(out), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while dcmtk("echoscu", "-aec", "PLAIN", "127.0.0.1", str(port)).returncode != 0:
            assert time.monotonic() < deadline, "storescp did not start"
            time.sleep(0.1)
        yield port
    finally:
        storescp.terminate()
        storescp.wait(10)


def test_movescu_to_a_storescp_taking_uncompressed_only(
    server: DimseServer, originals: dict[str, str], tmp_path: Path
) -> None:
    with _plain_storescp(tmp_path) as port:
        server.config.destinations["PLAIN"] = ("127.0.0.1", port)  # type: ignore[index]
        for study in _studies(originals):
            res = dcmtk("movescu", "-v", "-S", "-aec", "PIXELS", "-aem", "PLAIN",
                        "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
                        "127.0.0.1", str(server.port))  # fmt: skip
            text = res.stdout + res.stderr
            assert res.returncode == 0, text
            assert "Received Final Move Response (Success)" in text, text
    _check(tmp_path, originals)


def test_pixels_store_to_a_storescp_taking_uncompressed_only(
    originals: dict[str, str], tmp_path: Path
) -> None:
    with _plain_storescp(tmp_path) as port:
        sent = Client(f"PLAIN@127.0.0.1:{port}", timeout=10).store(list(originals.values()))
    assert [status for _, status in sent] == [0, 0, 0]
    _check(tmp_path, originals)
