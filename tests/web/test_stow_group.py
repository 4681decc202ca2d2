"""STOW-RS group commit: one Delta commit per request at most, concurrent requests
committed together, each answered only once its rows are committed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pydicom
import pytest
from deltalake import DeltaTable

from corpus import copy_with_new_uids, sample_file
from pixels import Catalog
from pixels.web import create_app
from pixels.web.stow import committer_of
from web.conftest import running

BOUNDARY = "pixels-group-boundary"
HEADERS = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'}


def _body(paths: list[Path]) -> bytes:
    parts = [
        f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + p.read_bytes()
        + b"\r\n"
        for p in paths
    ]
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def _sop(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def _table_sops(catalog: str) -> set[str]:
    rows = DeltaTable(catalog).to_pyarrow_table(columns=["SOPInstanceUID"])
    return {s for s in rows["SOPInstanceUID"].to_pylist() if s}


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[tuple[str, str, object]]:
    data = tmp_path / "data"
    data.mkdir()
    (data / "CT_small.dcm").write_bytes(Path(sample_file("CT_small.dcm")).read_bytes())
    catalog = str(tmp_path / "catalog")
    Catalog(catalog).catalog(str(data), workers=0)
    app = create_app(catalog, token="", storage_root=str(tmp_path / "stow"))
    with running(app) as url:
        yield url, catalog, app


def test_one_request_of_several_instances_is_one_commit(
    served: tuple[str, str, object], tmp_path: Path
) -> None:
    url, catalog, _ = served
    files = copy_with_new_uids(sample_file("MR_small.dcm"), tmp_path / "in", 5, per_series=5)
    before = DeltaTable(catalog).version()
    r = httpx.post(f"{url}/dicomweb/studies", content=_body(files), headers=HEADERS, timeout=60)
    assert r.status_code == 200, r.text
    assert DeltaTable(catalog).version() == before + 1
    assert {_sop(p) for p in files} <= _table_sops(catalog)


def test_concurrent_requests_are_all_stored_each_answered_after_its_commit(
    served: tuple[str, str, object], tmp_path: Path
) -> None:
    url, catalog, app = served
    n = 24
    files = copy_with_new_uids(sample_file("CT_small.dcm"), tmp_path / "in", n, per_series=4)
    before = DeltaTable(catalog).version()
    start = threading.Barrier(n)
    committed_at_answer: dict[str, bool] = {}

    def send(path: Path) -> int:
        start.wait()
        r = httpx.post(
            f"{url}/dicomweb/studies", content=_body([path]), headers=HEADERS, timeout=120
        )
        # the answer came: the instance must already be in a committed version
        committed_at_answer[_sop(path)] = _sop(path) in _table_sops(catalog)
        return r.status_code

    with ThreadPoolExecutor(n) as pool:
        codes = list(pool.map(send, files))
    assert codes == [200] * n
    sops = {_sop(p) for p in files}
    assert committed_at_answer == dict.fromkeys(sops, True)
    assert sops <= _table_sops(catalog)
    # one commit per group of concurrent requests, never more than one per request
    committer = committer_of(app.state.pixels)  # type: ignore[attr-defined]
    assert committer.requests == n
    assert DeltaTable(catalog).version() - before == committer.commits <= n
    # and QIDO finds every one of them
    r = httpx.get(f"{url}/dicomweb/instances", params={"limit": 1000}, timeout=60)
    assert sops <= {i["00080018"]["Value"][0] for i in r.json()}


def test_searches_are_answered_while_stow_requests_wait_for_their_commit(
    served: tuple[str, str, object], tmp_path: Path
) -> None:
    """More STOW requests than the server has worker threads wait for a commit held up
    by another writer (the table's writer lock, as a running ``pixels catalog`` holds
    it): a search is still answered at once, and every STOW is stored once the lock goes."""
    import os
    import time

    from pixels.locks import lock_file, unlock_file

    url, catalog, _ = served
    n = 48  # more than the 40 threads Starlette runs sync handlers in
    files = copy_with_new_uids(sample_file("MR_small.dcm"), tmp_path / "in", n, per_series=8)
    lock_dir = os.path.join(catalog, "_pixels")
    os.makedirs(lock_dir, exist_ok=True)
    with open(os.path.join(lock_dir, "writer.lock"), "a+") as lock:
        lock_file(lock.fileno())
        pool = ThreadPoolExecutor(n)
        try:
            futures = [
                pool.submit(
                    httpx.post,
                    f"{url}/dicomweb/studies",
                    content=_body([p]),
                    headers=HEADERS,
                    timeout=300,
                )
                for p in files
            ]
            time.sleep(5)  # the requests are read, checked and waiting for the commit
            assert not any(f.done() for f in futures)
            r = httpx.get(f"{url}/dicomweb/studies", timeout=20)
            assert r.status_code == 200 and len(r.json()) == 1  # the table as it was
        finally:
            unlock_file(lock.fileno())
        codes = [f.result().status_code for f in futures]
        pool.shutdown()
    assert codes == [200] * n
    assert {_sop(p) for p in files} <= _table_sops(catalog)
