"""C-GET from dcmtk's dcmqrscp: a large multi-frame is received into a file as it arrives
(not gathered in memory: bench_dimse_get.py), byte for byte the data set dcmtk's getscu
receives, and a transfer cut by the peer leaves nothing behind and names the instance."""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import pydicom
import pytest

from dimse.conftest import big_mr, dataset_bytes, dataset_of, dcmqrscp, dcmtk, free_port
from pixels.dimse.config import DimseError
from pixels.dimse.scu import Client, RetrieveResult


def _partials(folder: str) -> list[str]:
    """Files over 1 MB in ``folder``: a data set being written there."""
    paths = [os.path.join(folder, n) for n in os.listdir(folder)]
    out = []
    for p in paths:
        try:
            if os.path.getsize(p) > (1 << 20):
                out.append(p)
        except FileNotFoundError:
            continue
    return out


def _children(pid: int) -> list[int]:
    """The processes ``pid`` forked (dcmqrscp: one per association)."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(c) for c in text.split()]


def test_a_large_c_get_is_received_into_a_file_and_a_cut_one_leaves_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 32 MB multi-frame fetched by C-GET reaches the SCU as a file pynetdicom writes as
    its fragments arrive (it was gathered in memory, then copied into the PS3.10 bytes: 2x
    the file); dcmqrscp killed mid-transfer leaves no file under the destination name nor a
    temporary one, and the error names the instance cut off. Fetched whole, the file is
    the data set getscu receives, byte for byte, and the source's."""
    received = tmp_path / "received"
    received.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(received))  # where pynetdicom writes data sets
    big = str(tmp_path / "big.dcm")
    sop = big_mr(big, 64)
    study = str(pydicom.dcmread(big, stop_before_pixels=True).StudyInstanceUID)
    port = free_port()
    client = Client(f"ARCHIVE@127.0.0.1:{port}", timeout=20)
    out = tmp_path / "out"
    out.mkdir()
    root = tmp_path / "archive"
    root.mkdir()
    with dcmqrscp(root, port, big) as archive:
        outcome: list[RetrieveResult | BaseException] = []

        def get() -> None:
            try:
                outcome.append(client.get({"StudyInstanceUID": study}, folder=str(out)))
            except BaseException as e:
                outcome.append(e)

        thread = threading.Thread(target=get)
        thread.start()
        deadline = time.monotonic() + 60
        while not _partials(str(received)):  # the data set is being written to a file
            assert thread.is_alive(), f"the C-GET ended before it was cut: {outcome}"
            assert time.monotonic() < deadline
            time.sleep(0.002)
        for child in _children(archive.pid):  # the association's process, mid data set
            os.kill(child, signal.SIGKILL)
        thread.join(60)
        assert not thread.is_alive()
        (error,) = outcome
        assert isinstance(error, DimseError), error
        assert f"SOP Instance {sop!r} cut off: nothing of it kept" in str(error)
        deadline = time.monotonic() + 20
        while os.listdir(received):  # pynetdicom's partial file removed
            assert time.monotonic() < deadline, os.listdir(received)
            time.sleep(0.05)
        assert os.listdir(out) == []  # nothing under the destination name, no temporary file
        # fetched whole, as getscu fetches it
        result = client.get({"StudyInstanceUID": study}, folder=str(out))
        theirs = tmp_path / "getscu"
        theirs.mkdir()
        res = dcmtk("getscu", "-S", "-aec", "ARCHIVE", "-od", str(theirs),
                    "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
                    "127.0.0.1", str(port), timeout=120)  # fmt: skip
        assert res.returncode == 0, res.stderr
    assert (result.status, result.completed, result.failed, result.refused) == (0, 1, 0, [])
    mine = str(out / f"{sop}.dcm")
    assert result.stored == [mine]
    assert os.listdir(out) == [f"{sop}.dcm"]
    assert os.listdir(received) == []
    (got,) = theirs.iterdir()
    assert dataset_bytes(mine) == dataset_bytes(str(got))
    assert dataset_of(mine) == dataset_of(big)
    meta = pydicom.dcmread(mine, stop_before_pixels=True).file_meta
    assert (meta.MediaStorageSOPInstanceUID, meta.SourceApplicationEntityTitle) == (sop, "ARCHIVE")
