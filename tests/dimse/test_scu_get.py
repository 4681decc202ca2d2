"""C-GET from dcmtk's dcmqrscp: a large multi-frame is received into a file as it arrives
(not gathered in memory: bench_dimse_get.py), byte for byte the data set dcmtk's getscu
receives, and a transfer cut by the peer leaves nothing behind and names the instance."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pydicom
import pytest

from dimse.conftest import (
    big_mr,
    dataset_bytes,
    dataset_of,
    dcmqrscp,
    dcmtk,
    free_port,
    mount_tmpfs,
    sample,
)
from pixels.dimse.config import DimseError
from pixels.dimse.scu import Client, GetCancelledError, RetrieveResult, retrieve


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
        deadline = time.monotonic() + 120
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


def _same_length_uids(n: int) -> list[str]:
    """``n`` new UIDs of one length (one can replace another in dcmqrscp's index)."""
    base = pydicom.uid.generate_uid()[:50]
    return [f"{base}.{i}" for i in range(1, n + 1)]  # n < 10


def test_an_instance_the_c_get_did_not_ask_for_is_refused(tmp_path: Path) -> None:
    """A peer answering a C-GET for one study with an instance of another (here dcmqrscp
    whose index says so: its C-STORE request and data set agree with each other) had it
    stored in the folder (or the catalog) without a word. It is now refused (0xA900),
    named with the attribute that differs; the instance asked for is stored."""
    asked, other = _same_length_uids(2)
    files = []
    for key, study in (("ct.dcm", asked), ("mr.dcm", other)):
        ds = pydicom.dcmread(sample(key[:2]))
        ds.StudyInstanceUID = study
        ds.save_as(tmp_path / key)
        files.append(str(tmp_path / key))
    intruder = str(pydicom.dcmread(files[1]).SOPInstanceUID)
    port = free_port()
    out = tmp_path / "out"
    (tmp_path / "archive").mkdir()
    with dcmqrscp(tmp_path / "archive", port, *files):
        index = tmp_path / "archive" / "db" / "index.dat"
        index.write_bytes(index.read_bytes().replace(other.encode(), asked.encode()))
        client = Client(f"ARCHIVE@127.0.0.1:{port}", timeout=20)
        result = client.get({"StudyInstanceUID": asked}, folder=str(out))
    kept = str(pydicom.dcmread(files[0]).SOPInstanceUID)
    assert result.stored == [str(out / f"{kept}.dcm")]
    assert os.listdir(out) == [f"{kept}.dcm"]
    (refused,) = result.refused
    assert refused.startswith(f"SOP Instance {intruder!r}: 0xA900 StudyInstanceUID (0020,000D)")
    assert f"{other!r} is not what the C-GET asked for ({asked})" in refused
    assert (result.completed, result.failed) == (1, 1)


def _study(tmp_path: Path, bigs: int) -> tuple[str, list[str], list[str]]:
    """A study of ``bigs`` 4 MB multi-frame MRs and a small CT: its UID, the files, and
    the big ones' SOP Instance UIDs."""
    first = str(tmp_path / "big0.dcm")
    big_mr(first, 8)
    ds = pydicom.dcmread(first)
    study = str(ds.StudyInstanceUID)
    files, sops = [], []
    for n in range(bigs):
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        ds.save_as(tmp_path / f"big{n}.dcm")
        files.append(str(tmp_path / f"big{n}.dcm"))
        sops.append(str(ds.SOPInstanceUID))
    small = pydicom.dcmread(sample("ct"))
    small.StudyInstanceUID = study
    small.save_as(tmp_path / "small.dcm")
    return study, [*files, str(tmp_path / "small.dcm")], sops


@pytest.mark.root
@pytest.mark.parametrize(
    ("options", "error"),
    [("size=256k", "No space left on device"), ("ro,size=256k", "Read-only file system")],
)
def test_a_c_get_into_a_full_or_read_only_folder_names_it_and_is_cancelled(
    tmp_path: Path, options: str, error: str
) -> None:
    """4 MB instances into a 256 kB folder (a tmpfs), or any into a read-only one: the
    first that cannot be written is refused (0xA700) and the C-GET cancelled (C-CANCEL;
    dcmqrscp ends it), the error naming the folder and the SOP Instance UID.
    It used to go on, each of the other instances sent whole and refused. What was
    stored before stays; nothing partial is left."""
    study, files, sops = _study(tmp_path, 6)
    out = tmp_path / "out"
    mount_tmpfs(out, options)
    try:
        port = free_port()
        (tmp_path / "archive").mkdir()
        with dcmqrscp(tmp_path / "archive", port, *files):
            client = Client(f"ARCHIVE@127.0.0.1:{port}", timeout=20)
            with pytest.raises(GetCancelledError) as stopped:
                client.get({"StudyInstanceUID": study}, folder=str(out))
        left = sorted(os.listdir(out))
    finally:
        subprocess.run(["umount", str(out)], check=True)
    result = stopped.value.result
    first = result.refused[0]
    sop = first.split("'")[1]
    assert sop in sops and f"0xA700 not written to {out}: " in first and error in first
    assert f"SOP Instance {sop!r} not written to {out}: " in str(stopped.value)
    # dcmqrscp ends it at the C-CANCEL (0xA702: sub-operations refused for resources);
    # it used to send every instance, each refused
    assert result.status in (0xFE00, 0xA702), result
    assert len(result.refused) < len(sops), result.refused
    assert left == sorted(os.path.basename(p) for p in result.stored)


def test_c_gets_of_one_instance_into_one_folder_at_once(tmp_path: Path) -> None:
    """Four C-GETs of the same 4 MB instance into one folder at the same time: each
    renames a whole file into place, so one file is left, the source's data set, and no
    temporary one."""
    big = str(tmp_path / "big.dcm")
    sop = big_mr(big, 8)
    study = str(pydicom.dcmread(big, stop_before_pixels=True).StudyInstanceUID)
    port = free_port()
    out = tmp_path / "out"
    (tmp_path / "archive").mkdir()
    outcome: list[RetrieveResult | BaseException] = []

    def get() -> None:
        try:
            client = Client(f"ARCHIVE@127.0.0.1:{port}", timeout=30)
            outcome.append(client.get({"StudyInstanceUID": study}, folder=str(out)))
        except BaseException as e:
            outcome.append(e)

    with dcmqrscp(tmp_path / "archive", port, big):
        threads = [threading.Thread(target=get) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    assert [(r.completed, r.stored) for r in outcome if isinstance(r, RetrieveResult)] == [
        (1, [str(out / f"{sop}.dcm")])
    ] * 4, outcome
    assert os.listdir(out) == [f"{sop}.dcm"]
    assert dataset_of(str(out / f"{sop}.dcm")) == dataset_of(big)


@pytest.mark.root
def test_a_full_temporary_folder_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pynetdicom writes a data set received to a file in the temporary folder as it
    arrives; that folder full (a 256 kB tmpfs, 4 MB instances), its reactor thread died
    with the write's error and the C-GET ended at the timeout with "no response" (naming
    the folder's free space). The write error is now kept (:class:`WriteGuard`), that
    C-STORE answered 0xA700 and the C-GET cancelled at once, the error naming the folder
    and the SOP Instance UID. Nothing is left in either folder."""
    study, files, sops = _study(tmp_path, 3)
    temporary, out = tmp_path / "tmp", tmp_path / "out"
    mount_tmpfs(temporary, "size=256k")
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))  # where pynetdicom writes
    try:
        port = free_port()
        (tmp_path / "archive").mkdir()
        with dcmqrscp(tmp_path / "archive", port, *files[:-1]):
            client = Client(f"ARCHIVE@127.0.0.1:{port}", timeout=30)
            with pytest.raises(GetCancelledError) as stopped:
                client.get({"StudyInstanceUID": study}, folder=str(out))
        left = os.listdir(temporary)
    finally:
        subprocess.run(["umount", str(temporary)], check=True)
    sop = stopped.value.result.refused[0].split("'")[1]
    assert sop in sops
    assert (
        f"SOP Instance {sop!r} not written to {temporary}: [Errno 28] No space left on device "
        "(TMPDIR); the C-GET was cancelled, 0 instances stored before it kept"
    ) in str(stopped.value)
    assert stopped.value.result.status in (0xFE00, 0xA702)
    assert len(stopped.value.result.refused) < len(sops)
    assert left == []
    assert not out.exists() or os.listdir(out) == []


def test_a_sop_instance_uid_with_path_separators_never_leaves_the_folder(tmp_path: Path) -> None:
    """dcmqrscp serving a file whose SOP Instance UID is ``1.2.3/../../../evil`` (its C-STORE
    request says so too): refused (0xC000, not a UID), into a folder and into a catalog;
    nothing is written outside either, nothing partial is left."""
    ds = pydicom.dcmread(sample("mr"))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3/../../../evil"
    ds.save_as(tmp_path / "source.dcm")
    study = str(ds.StudyInstanceUID)
    port = free_port()
    out, archive = tmp_path / "deep" / "er" / "out", tmp_path / "archive"  # evil: in deep/
    archive.mkdir()
    with dcmqrscp(archive, port, str(tmp_path / "source.dcm")):
        peer = f"ARCHIVE@127.0.0.1:{port}"
        result = Client(peer, timeout=20).get({"StudyInstanceUID": study}, folder=str(out))
        pulled = retrieve(peer, str(tmp_path / "cat"), {"StudyInstanceUID": study})
    for res in (result, pulled):
        (refused,) = res.refused
        assert refused.startswith("SOP Instance '1.2.3/../../../evil': 0xC000"), refused
        assert res.stored == [] and (res.completed, res.failed) == (0, 1)
    assert os.listdir(out) == []
    mine = [p for p in tmp_path.rglob("*") if p.is_file() and archive not in p.parents]
    assert [p.name for p in mine if p.suffix == ".dcm" or "evil" in p.name] == ["source.dcm"]


@pytest.mark.root
def test_a_c_get_whose_last_instance_is_not_written_sends_no_c_cancel_after_it_ended(
    tmp_path: Path,
) -> None:
    """The C-CANCEL names the C-GET's own Message ID and goes only while sub-operations
    remain. A pynetdicom C-GET SCP sends a small CT, then a 4 MB MR that does not fit
    (256 kB tmpfs): the MR's C-STORE fails and the pending response after it says 0
    remain. A C-CANCEL-RQ used to be sent then (nothing left to cancel; a peer that
    sends no pending response after its last sub-operation got it after its final
    one); with the failure on the first of two MRs it goes, naming the C-GET's ID."""
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import (  # type: ignore[attr-defined]
        CTImageStorage,
        EnhancedMRImageStorage,
        StudyRootQueryRetrieveInformationModelGet,
    )

    study, files, _ = _study(tmp_path, 2)
    big = [pydicom.dcmread(f) for f in files[:2]]
    small = pydicom.dcmread(files[-1])
    received: list[tuple[str, int | None]] = []  # (message, ID it names) in arrival order
    answered: list[int] = []  # the C-GET's Message IDs

    def on_recv(event: object) -> None:
        msg = event.message  # type: ignore[attr-defined]
        cs = msg.command_set
        name = type(msg).__name__
        if name == "C_GET_RQ":
            answered.append(int(cs.MessageID))
        cancelled = int(cs.MessageIDBeingRespondedTo) if name == "C_CANCEL_RQ" else None
        received.append((name, cancelled))

    def on_get(event: object) -> object:
        sent = [small, *datasets]
        yield len(sent)
        for ds in sent:
            if event.is_cancelled:  # type: ignore[attr-defined]
                yield 0xFE00, None
                return
            yield 0xFF00, ds

    scp = AE(ae_title="ARCHIVE")
    scp.add_supported_context(StudyRootQueryRetrieveInformationModelGet)
    for cx in (CTImageStorage, EnhancedMRImageStorage):
        scp.add_supported_context(cx, scu_role=True, scp_role=True)
    server = scp.start_server(
        ("127.0.0.1", 0),
        block=False,
        evt_handlers=[(evt.EVT_C_GET, on_get), (evt.EVT_DIMSE_RECV, on_recv)],
    )
    out = tmp_path / "out"
    mount_tmpfs(out, "size=256k")
    try:
        client = Client(f"ARCHIVE@127.0.0.1:{server.server_address[1]}", timeout=20)
        for datasets in ([big[0]], big):  # the MR last; then the first of two MRs
            received.clear()
            with pytest.raises(GetCancelledError):
                client.get({"StudyInstanceUID": study}, folder=str(out))
            cancels = [r for r in received if r[0] == "C_CANCEL_RQ"]
            if len(datasets) == 1:
                assert cancels == [], received
            else:
                assert cancels == [("C_CANCEL_RQ", answered[-1])], received
    finally:
        server.shutdown()
        subprocess.run(["umount", str(out)], check=True)
