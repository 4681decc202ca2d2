"""``pixels serve --dimse-port``: DICOMweb and DIMSE in one process over one catalog."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import pydicom
import pytest

from dimse.conftest import dcmtk, free_port, sample
from pixels import Catalog
from pixels.dimse.config import DimseError
from pixels.dimse.scu import Client


def test_serve_answers_dicomweb_and_dimse_from_one_catalog(
    tmp_path: pytest.TempPathFactory,
) -> None:
    catalog = os.path.join(str(tmp_path), "catalog")
    Catalog(catalog).catalog(sample("ct"), workers=0)
    http, dimse = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pixels.cli", "serve", "-t", catalog, "--port", str(http),
         "--dimse-port", str(dimse), "--ae-title", "PIXELS"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        client = Client(f"PIXELS@127.0.0.1:{dimse}", ae_title="TESTS", timeout=10)
        deadline = time.monotonic() + 60
        # both listening: the SCP starts before the HTTP server binds its port
        # (``on_start``), so an answered C-ECHO alone does not say DICOMweb is up
        while True:
            try:
                assert client.echo() == 0
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{http}/dicomweb/studies", timeout=30
                ):
                    break
            except (DimseError, OSError):
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.3)
        # stored over DIMSE, found over DICOMweb (the same index, the same STOW-RS path)
        res = dcmtk("storescu", "-aec", "PIXELS", "127.0.0.1", str(dimse), sample("mr"))
        assert res.returncode == 0, res.stderr
        mr = pydicom.dcmread(sample("mr"))
        url = f"http://127.0.0.1:{http}/dicomweb/studies?StudyInstanceUID={mr.StudyInstanceUID}"
        deadline = time.monotonic() + 30
        while True:
            with urllib.request.urlopen(url, timeout=30) as rsp:
                found = json.loads(rsp.read() or b"[]")
            if found or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert [s["0020000D"]["Value"] for s in found] == [[mr.StudyInstanceUID]]
        # and C-FIND sees what the catalog had and what was stored
        studies = client.find({"StudyInstanceUID": ""}, "STUDY")
        ct = pydicom.dcmread(sample("ct"))
        assert sorted(d.StudyInstanceUID for d in studies) == sorted(
            [ct.StudyInstanceUID, mr.StudyInstanceUID]
        )
    finally:
        proc.terminate()
        proc.wait(30)
