"""Servers of one table sharing a storage root: a start-up cleans only what killed writers left.

Real commands: ``pixels dimse scp`` receiving from dcmtk's ``storescu``, ``pixels serve``
started on the same table meanwhile, and a STOW-RS request spooled by one server while
another starts (the journals of a live SCP: tests/dimse/test_receive.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pyarrow.compute as pc
import pydicom
import pytest
from pydicom.uid import generate_uid

from dimse.conftest import DCMTK, sample
from pixels import Catalog
from pixels.web.app import create_app
from ports import port_file_args, wait_for_ports

_ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))


def _sops(catalog: str) -> set[str]:
    table = Catalog(catalog).table.delta().to_pyarrow_table(columns=["SOPInstanceUID", "error"])
    return set(table.filter(pc.is_null(table["error"]))["SOPInstanceUID"].to_pylist())


def _big_ct(path: Path, side: int = 6144) -> str:
    """A real CT (pydicom's CT_small) with ``side`` x ``side`` 16-bit pixels (72 MiB at
    6144): long enough to copy that a spool of it can be caught in ``.incoming``."""
    ds = pydicom.dcmread(sample("ct"))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Rows = ds.Columns = side
    ds.PixelData = np.zeros((side, side), np.int16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return str(ds.SOPInstanceUID)


@contextlib.contextmanager
def _pixels(
    *args: str, port_file: Path, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], list[int]]]:
    """``pixels ARGS --port 0 --port-file port_file`` running until the block ends (once it
    listens); the process and the ports it listens on."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pixels.cli", *args, *port_file_args(port_file)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env or _ENV,
    )
    try:
        yield proc, wait_for_ports(port_file, proc)
    finally:
        proc.kill()  # (what it acknowledged is committed or journaled already)
        proc.wait(30)


def _catch_spool(incoming: str, proc: subprocess.Popen[str], timeout: float = 120) -> str | None:
    """Stop ``proc`` (SIGSTOP) as soon as a ``.pixels-*.part`` spool is in ``incoming``:
    that spool, still there with its writer stopped (None: renamed before the stop)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError):
            names = [n for n in os.listdir(incoming) if n.endswith(".part")]
            if names:
                os.kill(proc.pid, signal.SIGSTOP)
                path = os.path.join(incoming, names[0])
                return path if os.path.exists(path) else None
        time.sleep(0.0005)
    raise AssertionError(f"no spool appeared in {incoming}")


def _table(tmp_path: Path) -> tuple[str, str, dict[str, str]]:
    """A catalog, its storage root, and the environment of an SCP of it (pynetdicom's
    received data sets in a folder of the test's, not the machine's /tmp)."""
    catalog = str(tmp_path / "catalog")
    Catalog(catalog).catalog(sample("ct"), workers=0)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    return catalog, str(tmp_path / "stow"), dict(_ENV, TMPDIR=str(tmp))


@pytest.mark.slow
def test_a_serve_started_during_a_c_store_leaves_its_spool(tmp_path: Path) -> None:
    catalog, root, env = _table(tmp_path)
    incoming = os.path.join(root, ".incoming")
    scp_ports = tmp_path / "scp.port"
    with _pixels("dimse", "scp", "-t", catalog, port_file=scp_ports, env=env) as (scp, [dimse]):
        for attempt in range(4):  # a spool renamed before the stop landed: another file
            big = tmp_path / f"big{attempt}.dcm"
            sop = _big_ct(big)
            send = subprocess.Popen(
                [os.path.join(DCMTK, "storescu"), "-aec", "PIXELS", "127.0.0.1", str(dimse),
                 str(big)],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip
            caught = _catch_spool(incoming, scp)
            if caught is not None:
                break
            os.kill(scp.pid, signal.SIGCONT)
            assert send.wait(120) == 0
        else:
            pytest.fail("no spool caught in flight in 4 tries")
        try:
            # another server of this table starts while that C-STORE's spool is in flight
            with _pixels("serve", "-t", catalog, port_file=tmp_path / "web.port"):
                assert os.path.exists(caught), "the live C-STORE's spool was removed"
        finally:
            os.kill(scp.pid, signal.SIGCONT)
        out = send.communicate(timeout=120)[0]
        assert send.returncode == 0 and "Failed" not in out, out
        deadline = time.monotonic() + 60
        while sop not in _sops(catalog):  # committed at the end of the association
            assert time.monotonic() < deadline, f"{sop} was never cataloged"
            time.sleep(0.2)
    assert os.listdir(incoming) == []


@pytest.mark.slow
def test_a_spool_of_a_killed_scp_is_removed_at_the_next_start(tmp_path: Path) -> None:
    catalog, root, env = _table(tmp_path)
    incoming = os.path.join(root, ".incoming")
    caught = None
    scp_ports = tmp_path / "scp.port"
    with _pixels("dimse", "scp", "-t", catalog, port_file=scp_ports, env=env) as (scp, [dimse]):
        for attempt in range(4):
            big = tmp_path / f"big{attempt}.dcm"
            _big_ct(big)
            send = subprocess.Popen(
                [os.path.join(DCMTK, "storescu"), "-aec", "PIXELS", "127.0.0.1", str(dimse),
                 str(big)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            caught = _catch_spool(incoming, scp)
            if caught is not None:
                break
            os.kill(scp.pid, signal.SIGCONT)
            send.wait(120)
        assert caught is not None, "no spool caught in flight in 4 tries"
        scp.kill()  # SIGKILL, stopped mid-transfer: its spool stays behind, unlocked
        scp.wait(30)
        send.wait(120)
    assert os.path.exists(caught)
    with _pixels("serve", "-t", catalog, port_file=tmp_path / "web.port"):
        assert not os.path.exists(caught)
    assert os.listdir(incoming) == []


def test_a_stow_spool_of_another_server_survives_its_start(tmp_path: Path) -> None:
    """A STOW-RS body over 16 MiB is spooled to ``.incoming`` while it arrives: a second
    ``pixels serve`` of the table starting then leaves it, and the request succeeds."""
    from web.conftest import running

    catalog = str(tmp_path / "catalog")
    Catalog(catalog).catalog(sample("ct"), workers=0)
    big = tmp_path / "big.dcm"
    sop = _big_ct(big, side=3072)  # 18 MiB
    data = big.read_bytes()
    boundary = "spool-test-boundary"
    head = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    half = threading.Event()
    go = threading.Event()

    def body() -> Iterator[bytes]:
        yield head
        for pos in range(0, len(data), 1 << 20):
            if pos >= 17 << 20 and not half.is_set():
                half.set()  # past the in-memory limit: spooled to a file now
                assert go.wait(120)
            yield data[pos : pos + (1 << 20)]
        yield tail

    app = create_app(catalog, token="", viewer=False)
    incoming = tmp_path / "stow" / ".incoming"
    result: dict[str, httpx.Response] = {}
    with running(app) as url:
        ctype = f'multipart/related; type="application/dicom"; boundary={boundary}'
        post = threading.Thread(
            target=lambda: result.setdefault(
                "r",
                httpx.post(
                    f"{url}/dicomweb/studies",
                    content=body(),
                    headers={"Content-Type": ctype},
                    timeout=120,
                ),
            )
        )
        post.start()
        try:
            assert half.wait(60)
            deadline = time.monotonic() + 30
            while not list(incoming.glob("*.body")):
                assert time.monotonic() < deadline, "the body was not spooled"
                time.sleep(0.01)
            [spooled] = list(incoming.glob("*.body"))
            with _pixels("serve", "-t", catalog, port_file=tmp_path / "web.port"):
                assert spooled.exists(), "the live request's spool was removed"
        finally:
            go.set()
            post.join(120)
        r = result["r"]
        assert r.status_code == 200, r.text
        assert sop in _sops(catalog)
    assert list(incoming.iterdir()) == []
