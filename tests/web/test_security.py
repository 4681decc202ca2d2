"""Server security and error answers, against real servers (in-process and ``pixels serve``).

- DNS rebinding: a ``Host`` that is not an allowed name gets 400.
- ``pixels serve --host 0.0.0.0`` without a token is refused unless
  ``--allow-unauthenticated``.
- The viewer's ``?token=`` never reaches the access log.
- A 500 keeps the keep-alive connection usable.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pydicom
import pytest

from corpus import sample_file
from pixels import Catalog
from pixels.web import create_app
from ports import port_file_args, wait_for_ports
from web.conftest import TOKEN, Server, running

FRAME = {"Accept": "multipart/related; type=application/octet-stream; transfer-syntax=*"}


def _instance_path(path: str | Path) -> str:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return (
        f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}"
    )


# ---------------------------------------------------------------- Host header


def test_host_header_must_name_an_allowed_host(server: Server) -> None:
    port = server.url.rsplit(":", 1)[1]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "LOCALHOST"):
        r = httpx.get(f"{server.url}/dicomweb/studies", headers={"Host": host})
        assert r.status_code == 200, host
    for host in (f"rebind.attacker.example:{port}", "127.0.0.1.attacker.example", "localhost.evil"):
        for path in ("/dicomweb/studies", "/", "/wado"):
            r = httpx.get(server.url + path, headers={"Host": host})
            assert r.status_code == 400 and "not served here" in r.text, (host, path)


def test_allowed_hosts_and_public_url_are_accepted(corpus: tuple[str, dict[str, str]]) -> None:
    app = create_app(
        corpus[0],
        token="",
        allowed_hosts=["pacs.example.org", "*.lab.example"],
        public_url="https://viewer.example.net/",
    )
    with running(app) as url:
        for host, status in (
            ("pacs.example.org", 200),
            ("ct.lab.example:8042", 200),
            ("viewer.example.net", 200),
            ("lab.example", 400),
            ("pacs.example.org.evil", 400),
        ):
            r = httpx.get(f"{url}/dicomweb/studies", headers={"Host": host})
            assert r.status_code == status, host


# ---------------------------------------------------------------- pixels serve


def _serve(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pixels.cli", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _wait_up(port_file: Path, proc: subprocess.Popen[str]) -> str:
    """The URL of a ``pixels serve --port 0 --port-file port_file`` once it listens."""
    [port] = wait_for_ports(port_file, proc)
    return f"http://127.0.0.1:{port}"


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out


def test_serve_on_all_addresses_needs_a_token(
    corpus: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    env = {"PIXELS_TOKEN": ""}
    proc = _serve(["--table", corpus[0], "--host", "0.0.0.0", "--port", "0"], env)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "without a token" in out and "--allow-unauthenticated" in out
    # with a token, or when asked for, it serves
    for i, (extra, env2) in enumerate(
        (
            (["--token", TOKEN], env),
            (["--allow-unauthenticated"], env),
            ([], {"PIXELS_TOKEN": TOKEN}),
        )
    ):
        ports = tmp_path / f"port{i}"
        proc = _serve(
            ["--table", corpus[0], "--host", "0.0.0.0", *port_file_args(ports), *extra], env2
        )
        try:
            url = _wait_up(ports, proc)
            r = httpx.get(f"{url}/dicomweb/studies")
            assert r.status_code == (200 if extra == ["--allow-unauthenticated"] else 401)
        finally:
            _stop(proc)


def _a_non_loopback_address() -> str:
    """An address of this machine that is not loopback (the one a default route uses)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent (UDP, no data)
        except OSError:
            pytest.skip("no network interface besides loopback")
        address = str(s.getsockname()[0])
    if address.startswith("127."):
        pytest.skip("no network interface besides loopback")
    return address


def test_serve_on_all_addresses_answers_at_this_machines_address(
    corpus: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    """``--host 0.0.0.0``: reached at this machine's address (its host name may resolve to
    127.0.1.1 only, as on Debian), the request is answered; an address it did not come in
    on, or a name, is still refused (DNS rebinding)."""
    address = _a_non_loopback_address()
    ports = tmp_path / "port"
    proc = _serve(["--table", corpus[0], "--host", "0.0.0.0", *port_file_args(ports),
                   "--token", TOKEN], {})  # fmt: skip
    try:
        [port] = wait_for_ports(ports, proc)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        r = httpx.get(f"http://{address}:{port}/dicomweb/studies", headers=auth, timeout=30)
        assert r.status_code == 200, r.text
        studies = r.json()
        assert studies, "no study answered"
        for study in studies:  # the URLs handed out name the address asked for
            assert study["00081190"]["Value"][0].startswith(f"http://{address}:{port}/dicomweb/")
        for host in ("203.0.113.7", f"203.0.113.7:{port}", "rebind.attacker.example",
                     f"0.0.0.0:{port}"):  # fmt: skip
            r = httpx.get(f"http://{address}:{port}/dicomweb/studies",
                          headers={**auth, "Host": host}, timeout=30)  # fmt: skip
            assert r.status_code == 400 and "not served here" in r.text, host
    finally:
        log = _stop(proc)
    # the start-up lines give a URL that is answered (a 0.0.0.0 one is refused: its Host
    # names no address of this machine), and say the server listens on every address
    assert f"DICOMweb: http://127.0.0.1:{port}/dicomweb  (catalog " in log, log
    assert f"Bound:    http://0.0.0.0:{port}  (every address of this machine)" in log, log


def test_serving_a_table_that_does_not_exist_says_so(tmp_path: Path) -> None:
    """``--table ./catlog`` (a typo) served an empty viewer without a word; the table
    is still made by the first STOW-RS, so it serves, with a note."""
    missing = tmp_path / "catlog"
    proc = _serve(["--table", str(missing), *port_file_args(tmp_path / "port")])
    try:
        _wait_up(tmp_path / "port", proc)
    finally:
        log = _stop(proc)
    assert f"note: no catalog table at {missing} yet: serving an empty catalog" in log, log
    # `pixels dimse scp` serves a missing table the same way, and says so the same way
    # (once listening: the note is waited for in its output, not given half a second)
    note = f"note: no catalog table at {missing} yet: serving an empty catalog"
    with open(tmp_path / "scp.log", "w+") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pixels.cli", "dimse", "scp", "-t", str(missing),
             *port_file_args(tmp_path / "scp.port")],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while note not in (log := (tmp_path / "scp.log").read_text()):
                assert proc.poll() is None and time.monotonic() < deadline, log
                time.sleep(0.2)
            [port] = wait_for_ports(tmp_path / "scp.port", proc)
            assert f":{port}" in log, log  # after the listening line
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_viewer_token_is_redacted_from_the_access_log(
    corpus: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    proc = _serve(["--table", corpus[0], *port_file_args(tmp_path / "port"), "--token", TOKEN])
    try:
        url = _wait_up(tmp_path / "port", proc)
        r = httpx.get(f"{url}/viewer", params={"StudyInstanceUIDs": "1.2.3", "token": TOKEN})
        assert r.status_code in (200, 404)  # index.html, or the install hint
        auth = {"Authorization": f"Bearer {TOKEN}"}
        r = httpx.get(f"{url}/dicomweb/studies?access_token={TOKEN}&limit=1", headers=auth)
        assert r.status_code == 200
    finally:
        log = _stop(proc)
    assert "GET /viewer?StudyInstanceUIDs=1.2.3&token=[redacted]" in log, log
    assert "access_token=[redacted]&limit=1" in log, log
    assert TOKEN not in log
    assert "note: no catalog table" not in log  # the table exists


# ---------------------------------------------------------------- error answers


@pytest.fixture()
def damaged(tmp_path: Path) -> Iterator[tuple[str, dict[str, Path], Path]]:
    """A catalog of real files, then one truncated and one deleted on disk."""
    data = tmp_path / "data"
    data.mkdir()
    files = {}
    for name in ("CT_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm"):
        files[name] = data / name
        shutil.copyfile(sample_file(name), files[name])
    catalog = str(tmp_path / "catalog")
    Catalog(catalog).catalog(str(data), workers=0)
    paths = {name: _instance_path(p) for name, p in files.items()}
    size = files["CT_small.dcm"].stat().st_size
    with open(files["CT_small.dcm"], "r+b") as f:
        f.truncate(size - 1000)  # pixel data cut after cataloging
    files["JPEG2000.dcm"].unlink()  # a file gone since it was cataloged
    with running(create_app(catalog, token="")) as url:
        yield url, {name: Path(p) for name, p in paths.items()}, files["CT_small.dcm"]


def test_errors_keep_the_connection_usable(damaged: tuple[str, dict[str, Path], Path]) -> None:
    url, paths, damaged_file = damaged
    ct, mr, gone = (str(paths[n]) for n in ("CT_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm"))
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(2):
            r = client.get(ct + "/frames/1", headers=FRAME)
            assert r.status_code == 500 and "truncated" in r.text
            assert str(damaged_file) in r.text  # the body names the file
            r = client.get(ct + "/rendered")
            assert r.status_code == 500 and "truncated" in r.text
            assert str(damaged_file) in r.text
            # the same connection answers the next request
            r = client.get(mr + "/frames/1", headers=FRAME)
            assert r.status_code == 200
            r = client.get(gone + "/frames/1", headers=FRAME)
            assert r.status_code == 410 and "JPEG2000.dcm" in r.text
            assert client.get("/dicomweb/studies").status_code == 200


def test_any_other_exception_is_a_500_that_keeps_the_connection() -> None:
    """A handler's bug (not a Pixels error) still gets an answer on a usable connection."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, StreamingResponse
    from starlette.routing import Route

    from pixels.web.errors import ErrorAnswers

    def broken(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str({}["missing"]))

    def cut(request: Request) -> StreamingResponse:
        def body() -> Iterator[bytes]:
            yield b"x" * 100
            raise RuntimeError("disk gone mid-stream")

        return StreamingResponse(body(), headers={"Content-Length": "200"})

    def fine(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[Route("/broken", broken), Route("/cut", cut), Route("/fine", fine)],
        middleware=[Middleware(ErrorAnswers)],
    )
    with running(app) as url, httpx.Client(base_url=url) as client:
        for _ in range(3):
            r = client.get("/broken")
            assert r.status_code == 500 and "server's log" in r.text
            assert "missing" not in r.text  # no internals in the answer
            assert client.get("/fine").text == "ok"
        # an answer that already started cannot become a 500: the connection is closed
        with pytest.raises(httpx.HTTPError):
            client.get("/cut")
        assert client.get("/fine").text == "ok"
