"""``pixels serve --dimse-port``: DICOMweb and DIMSE in one process over one catalog;
``pixels dimse scp``. Both on ``--port 0`` (and ``--dimse-port 0``), their ports read from
``--port-file``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pydicom
import pytest

from dimse.conftest import dcmtk, sample
from pixels import Catalog
from pixels.dimse.config import DimseError, ServerConfig
from pixels.dimse.scu import Client
from pixels.dimse.server import DimseServer
from pixels.web.listen import bind, bound_port
from ports import port_file_args, wait_for_ports


def test_serve_answers_dicomweb_and_dimse_from_one_catalog(
    tmp_path: pytest.TempPathFactory,
) -> None:
    catalog = os.path.join(str(tmp_path), "catalog")
    Catalog(catalog).catalog(sample("ct"), workers=0)
    port_file = os.path.join(str(tmp_path), "ports")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pixels.cli", "serve", "-t", catalog, *port_file_args(port_file),
         "--dimse-port", "0", "--ae-title", "PIXELS"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        http, dimse = wait_for_ports(port_file, proc)  # the HTTP port, then the DIMSE one
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
    # kill PID (SIGTERM): the server stops as on Ctrl-C (its port file removed), then
    # ends as a terminated process does
    assert proc.returncode == -signal.SIGTERM
    assert not os.path.exists(port_file)


def test_scp_on_port_0_says_its_port(tmp_path: pytest.TempPathFactory) -> None:
    """``pixels dimse scp --port 0 --port-file``: dcmtk's echoscu reaches the port in the
    file, the port the start-up line names."""
    catalog = os.path.join(str(tmp_path), "catalog")
    Catalog(catalog).catalog(sample("ct"), workers=0)
    port_file = os.path.join(str(tmp_path), "port")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pixels.cli", "dimse", "scp", "-t", catalog,
         *port_file_args(port_file), "--ae-title", "ZEROPORT"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        [port] = wait_for_ports(port_file, proc)
        res = dcmtk("echoscu", "-aec", "ZEROPORT", "127.0.0.1", str(port))
        assert res.returncode == 0, res.stderr
        found = dcmtk("findscu", "-S", "-aec", "ZEROPORT", "-k", "QueryRetrieveLevel=STUDY",
                      "-k", "StudyInstanceUID", "127.0.0.1", str(port))  # fmt: skip
        assert pydicom.dcmread(sample("ct")).StudyInstanceUID in found.stderr, found.stderr
    finally:
        proc.terminate()
        log = proc.communicate(timeout=30)[1]
    assert f"DIMSE: ZEROPORT@127.0.0.1:{port}  (catalog {catalog})" in log, log
    assert proc.returncode == -signal.SIGTERM
    assert not os.path.exists(port_file)  # removed on SIGTERM too (a script's kill PID)


def test_a_dimse_port_in_use_says_what_to_do(tmp_path: pytest.TempPathFactory) -> None:
    """A DIMSE port another process listens on: named, with what to do about it."""
    catalog = os.path.join(str(tmp_path), "catalog")
    Catalog(catalog).catalog(sample("ct"), workers=0)
    taken = bind("127.0.0.1", 0)
    port = bound_port(taken)
    try:
        with pytest.raises(DimseError) as err:
            DimseServer(catalog, ServerConfig(port=port)).start()
    finally:
        for sock in taken:
            sock.close()
    message = str(err.value)
    assert f"cannot listen for DIMSE on 127.0.0.1:{port}: Address already in use" in message
    assert "choose another port; 0: a free one" in message, message


def _readme_dcmtk_lines() -> list[str]:
    """The README's dcmtk command lines against PIXELS (echoscu to getscu: movescu needs
    a destination), continuation lines joined, comments left."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = readme.split("## DICOM networking", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    text = block.replace("\\\n", " ")
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith("echoscu "))
    end = next(i for i, line in enumerate(lines) if line.startswith("movescu "))
    return [line for line in lines[start:end] if line]


def test_the_readmes_dcmtk_commands_run_as_written(tmp_path: Path) -> None:
    """echoscu, storescu, findscu and getscu as the README writes them (dcmtk's, its port
    and study UID replaced by this server's and a cataloged study's), in a fresh folder."""
    catalog = os.path.join(str(tmp_path), "catalog")
    Catalog(catalog).catalog(sample("ct"), workers=0)
    work = tmp_path / "user"
    work.mkdir()
    shutil.copy(sample("mr"), work / "mr.dcm")  # storescu's *.dcm
    study = pydicom.dcmread(sample("ct")).StudyInstanceUID
    lines = _readme_dcmtk_lines()
    words = {w for line in lines for w in line.replace(";", " ").split()}
    assert {"echoscu", "storescu", "findscu", "getscu"} <= words, lines
    with DimseServer(catalog, ServerConfig(port=0)) as server:
        for line in lines:
            command = line.replace(" 11112", f" {server.port}")
            command = command.replace("StudyInstanceUID=1.2.3 ", f"StudyInstanceUID={study} ")
            res = subprocess.run(["bash", "-c", command], cwd=work, capture_output=True,
                                 text=True, timeout=120,
                                 env={**os.environ, "PATH": f"/usr/bin:{os.environ['PATH']}"})  # fmt: skip
            assert res.returncode == 0, (line, res.stdout, res.stderr)
    [got] = os.listdir(work / "out")  # getscu's -od folder: the CT
    assert pydicom.dcmread(work / "out" / got).SOPInstanceUID == (
        pydicom.dcmread(sample("ct")).SOPInstanceUID
    )
