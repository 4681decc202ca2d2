"""``pixels serve --port 0 --port-file PATH``: a free port, bound by the server, said.

Real ``pixels serve`` processes reached with urllib at the port read from the file; the
answers that carry URLs (QIDO's RetrieveURL, the MONAI Label viewer's server cookie) name
that port; the port file holds nothing else, and an old one is never read as the new.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import pydicom
import pytest

from corpus import sample_file
from pixels import Catalog
from pixels.web import monailabel_ohif
from pixels.web.listen import bind, bound_port
from ports import port_file_args, wait_for_ports


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("serve-port") / "catalog")
    Catalog(path).catalog(str(sample_file("CT_small.dcm")), workers=0)
    return path


def _serve(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pixels.cli", "serve", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop(proc: subprocess.Popen[str]) -> str:
    """Stop ``proc`` (SIGINT); what it wrote to stderr."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=30)[1]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[1]


@pytest.fixture(scope="module")
def served(catalog: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """``pixels serve --port 0 --port-file``: the port in the file."""
    port_file = tmp_path_factory.mktemp("port-file") / "port"
    proc = _serve("-t", catalog, *port_file_args(port_file))
    try:
        [port] = wait_for_ports(port_file, proc)
        assert port > 0
        assert os.listdir(port_file.parent) == ["port"]  # no temporary file left behind
        yield port
    finally:
        log = _stop(proc)
    assert not port_file.exists()  # removed when the server stopped
    # Ctrl-C is how it is stopped: a clean exit, not click's 'Aborted!' and status 1
    assert proc.returncode == 0, log
    assert "Aborted!" not in log, log


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, Message]:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=30) as r:
        return r.status, r.read(), r.headers


def test_port_0_is_reached_at_the_port_in_the_file(served: int) -> None:
    port = served
    ct = pydicom.dcmread(sample_file("CT_small.dcm"))
    status, body, _ = _get(f"http://127.0.0.1:{port}/dicomweb/studies")
    assert status == 200
    assert [s["0020000D"]["Value"] for s in json.loads(body)] == [[ct.StudyInstanceUID]]


def test_urls_the_server_hands_out_name_the_bound_port(served: int) -> None:
    port = served
    ct = pydicom.dcmread(sample_file("CT_small.dcm"))
    # a Host header without a port (dicomweb-client's): the port comes from the server
    for host in ("127.0.0.1", f"127.0.0.1:{port}"):
        _, body, _ = _get(f"http://127.0.0.1:{port}/dicomweb/studies", {"Host": host})
        [study] = json.loads(body)
        assert study["00081190"]["Value"] == [
            f"http://127.0.0.1:{port}/dicomweb/studies/{ct.StudyInstanceUID}"
        ]
    # the viewer's configuration: DICOMweb at this server's own root, whatever its port
    status, body, _ = _get(f"http://127.0.0.1:{port}/app-config.js")
    assert status == 200
    config, _ = json.JSONDecoder().raw_decode(body.decode().split("window.config = ", 1)[1])
    [source] = config["dataSources"]
    assert source["configuration"]["qidoRoot"] == "/dicomweb"
    assert source["configuration"]["wadoRoot"] == "/dicomweb"
    if monailabel_ohif.installed_version() is None:
        return
    # MONAI Label's viewer is told its server's URL (a cookie): with the bound port
    _, _, headers = _get(f"http://127.0.0.1:{port}/ohif/", {"Host": "127.0.0.1"})
    cookies = headers.get_all("set-cookie")
    want = f"{monailabel_ohif.COOKIE}=http%3A//127.0.0.1%3A{port}/monailabel/;"
    assert any(c.startswith(want) for c in cookies), cookies


def test_the_start_up_line_names_the_bound_port(catalog: str, tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    proc = _serve("-t", catalog, *port_file_args(port_file))
    try:
        [port] = wait_for_ports(port_file, proc)
    finally:
        log = _stop(proc)
    [line] = [x for x in log.splitlines() if x.startswith("DICOMweb: ")]
    url = re.fullmatch(r"DICOMweb: (\S+)  \(catalog (.+)\)", line)
    assert url is not None, line
    assert url.group(1) == f"http://127.0.0.1:{port}/dicomweb"
    assert f"Viewer:   http://127.0.0.1:{port}/" in log
    # behind a proxy: the public URL is the one to give out, the bound one is said too
    proc = _serve(
        "-t", catalog, *port_file_args(port_file), "--public-url", "https://pacs.example.org/"
    )
    try:
        [port] = wait_for_ports(port_file, proc)
    finally:
        log = _stop(proc)
    assert "DICOMweb: https://pacs.example.org/dicomweb  (catalog" in log, log
    assert f"Bound:    http://127.0.0.1:{port}\n" in log, log


def test_a_port_in_use_is_named(catalog: str, tmp_path: Path) -> None:
    taken = bind("127.0.0.1", 0)
    port = bound_port(taken)
    (tmp_path / "p").write_text("1\n")  # a killed run's port file: removed at the start
    try:
        proc = _serve("-t", catalog, "--port", str(port), "--port-file", str(tmp_path / "p"))
        _, err = proc.communicate(timeout=60)
    finally:
        for sock in taken:
            sock.close()
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in err, err
    assert "choose another port; 0: a free one" in err, err  # and what to do
    assert not (tmp_path / "p").exists()


def test_bind_port_0_takes_one_free_port_on_every_address() -> None:
    socks = bind("localhost", 0)
    try:
        port = bound_port(socks)
        assert port > 0
        assert {s.getsockname()[1] for s in socks} == {port}
        with socket.create_connection(("127.0.0.1", port), timeout=10):
            pass  # listening already: the kernel accepts before any server runs
    finally:
        for s in socks:
            s.close()
