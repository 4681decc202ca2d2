"""Shared test fixtures.

- ``s3_server``: a real moto S3 server in a subprocess (session-scoped).
- ``dicom_file``: path of a real DICOM test file shipped with pydicom.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest


class S3Server(NamedTuple):
    """A running S3-compatible endpoint and the s3fs options that reach it."""

    endpoint_url: str
    storage_options: dict[str, Any]


#: A moto S3 server on a free port, bound by the server itself (``ThreadedMotoServer``,
#: port 0), in a process of its own; its first line on stdout: the port.
_MOTO = """
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer("127.0.0.1", 0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()  # until the test session closes our stdin (or ends)
"""


def _first_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """``proc``'s first line on stdout ("" when it exited, or wrote none in ``timeout`` s)."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline().strip() if ready else ""


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """Start a moto S3 server (``moto.server``) on a free local port; stop it at session end.

    Use a unique bucket name per test (the server is shared by the session).
    """
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    proc = subprocess.Popen(
        [sys.executable, "-c", _MOTO],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    port = _first_line(proc, timeout=60)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(endpoint + "/moto-api/", timeout=1):
                    break
            except OSError:
                if not port or proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not start on {endpoint}") from None
                time.sleep(0.1)
        yield S3Server(
            endpoint,
            {
                "key": "testing",
                "secret": "testing",
                "client_kwargs": {"endpoint_url": endpoint},
            },
        )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def dicom_file() -> Path:
    """A small real CT image (pydicom's ``CT_small.dcm``)."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file("CT_small.dcm", download=False)
    assert path is not None
    return Path(str(path))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """With PIXELS_STRICT_SKIPS=1 (set by scripts/test.sh, so in CI) a skipped test fails:
    every check needs its dependency installed there, and a skip would hide a missing one.
    A test marked ``root`` (it mounts a file system) may skip when not run as root: CI runs
    as root, a developer's run need not."""
    outcome = yield
    report = outcome.get_result()
    if (
        os.environ.get("PIXELS_STRICT_SKIPS") == "1"
        and report.skipped
        and not hasattr(report, "wasxfail")
        and not (item.get_closest_marker("root") is not None and os.geteuid() != 0)
    ):
        report.outcome = "failed"
        report.longrepr = f"skipped, which the strict test run does not allow: {report.longrepr}"


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One local Spark session (``local[2]``, loopback, no UI, UTC) shared by the whole run.

    Its warehouse (where metastore-named tables go) is a temporary folder.
    """
    pytest.importorskip("pyspark", reason="pyspark is not installed (pip install -e '.[spark]')")
    from pixels.engines.spark.session import local_session

    warehouse = tmp_path_factory.mktemp("spark-warehouse")
    session = local_session(
        "local[2]",
        driver_memory="2g",
        conf={
            "spark.sql.warehouse.dir": str(warehouse),
            "spark.driver.extraJavaOptions": f"-Dderby.system.home={warehouse}",
        },
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
