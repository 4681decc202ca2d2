"""C-STORE's durability: what was acknowledged but not yet committed is cataloged at the next start."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

import pyarrow.compute as pc
import pydicom
import pytest
from pynetdicom.dimse import DIMSEServiceProvider

from dimse.conftest import DCMTK, big_mr, dataset_bytes, dcmtk, mount_tmpfs, sample
from fsyncs import record_fsyncs
from pixels import Catalog
from pixels.dimse.config import ServerConfig
from pixels.dimse.receive import JOURNAL_DIR, StoreSink
from pixels.dimse.server import DimseServer
from pixels.table.durability import added_files, log_entry
from pixels.web.state import WebState


def _sops(catalog: str) -> set[str]:
    table = Catalog(catalog).table.delta().to_pyarrow_table(columns=["SOPInstanceUID", "error"])
    return set(table.filter(pc.is_null(table["error"]))["SOPInstanceUID"].to_pylist())


def _uncommitting(catalog: str) -> DimseServer:
    """An SCP of ``catalog`` started that commits only when it stops."""
    server = DimseServer(catalog, ServerConfig(port=0, commit_every=1000, commit_seconds=3600))
    server.sink.flush_soon = lambda: None  # type: ignore[method-assign]  # no commit at release
    return server.start()


def test_a_journal_of_a_live_scp_is_left_by_a_second_starting(
    tmp_path: pytest.TempPathFactory,
) -> None:
    """Two SCPs of one table (one storage root): the second starting leaves the first's
    journal (locked: still pending), and the first commits it."""
    catalog = os.path.join(str(tmp_path), "catalog")
    Catalog(catalog).catalog(sample("ct"), workers=0)
    first = _uncommitting(catalog)
    try:
        res = dcmtk("storescu", "-aec", "PIXELS", "127.0.0.1", str(first.port), sample("mr"))
        assert res.returncode == 0, res.stderr
        journals = os.path.join(first.state.storage_root, JOURNAL_DIR)
        (journal,) = os.listdir(journals)
        second = DimseServer(catalog, ServerConfig(port=0)).start()
        try:
            assert os.listdir(journals) == [journal]  # the first's, still pending
            assert len(_sops(catalog)) == 1 and second.sink.commits == 0
        finally:
            second.stop()
    finally:
        first.stop()  # commits it
    assert first.sink.commits == 1 and len(_sops(catalog)) == 2
    assert os.listdir(journals) == []


def test_stored_but_uncommitted_files_are_cataloged_at_the_next_start(
    tmp_path: pytest.TempPathFactory,
) -> None:
    catalog = os.path.join(str(tmp_path), "catalog")
    Catalog(catalog).catalog(sample("ct"), workers=0)
    # a server that stores, acknowledges, then dies before its batch is committed
    server = _uncommitting(catalog)
    try:
        res = dcmtk("storescu", "-aec", "PIXELS", "127.0.0.1", str(server.port),
                    sample("mr"), sample("multiframe"))  # fmt: skip
        assert res.returncode == 0, res.stderr
        journals = os.path.join(server.state.storage_root, JOURNAL_DIR)
        (journal,) = os.listdir(journals)
        with open(os.path.join(journals, journal)) as fh:
            paths = fh.read().split()
        assert len(paths) == 2 and all(os.path.exists(p) for p in paths)
        assert len(_sops(catalog)) == 1  # acknowledged, not committed
    finally:
        # the "crash": the server stops listening, its pending rows are dropped uncommitted
        # (and its journal's lock goes with the process)
        server.sink._rows.clear()
        held, server.sink._journal = server.sink._journal, None
        assert held is not None
        os.close(held.fd)
        held.release()
        server.stop()
    assert len(_sops(catalog)) == 1
    # the next start catalogs them before it listens
    again = DimseServer(catalog, ServerConfig(port=0)).start()
    try:
        assert len(_sops(catalog)) == 3
        assert not os.listdir(os.path.join(again.state.storage_root, JOURNAL_DIR))
    finally:
        again.stop()


def _received_from_storescu(catalog: str) -> DimseServer:
    """A real SCP of ``catalog`` that received MR_small from dcmtk's storescu, stopped."""
    server = DimseServer(catalog, ServerConfig(port=0)).start()
    try:
        res = dcmtk("storescu", "-aec", "PIXELS", "127.0.0.1", str(server.port), sample("mr"))
        assert res.returncode == 0, res.stderr
    finally:
        server.stop()
    return server


def test_a_c_store_is_answered_after_its_file_and_journal_are_on_disk(
    tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real SCP receiving from dcmtk's storescu, with ``os.fsync`` spied on (the real
    one runs) and the DIMSE messages it sends recorded: before the C-STORE response, the
    stored file, its series folder, the study folder made for it (in its parent), the
    journal and the journal's entry in ``.dimse`` (and ``.dimse``'s in the root, the root's,
    made by this first write, in its parent) are synced."""
    catalog = os.path.join(str(tmp_path), "catalog")
    Catalog(catalog).catalog(sample("ct"), workers=0)
    events: list[tuple[str, str]] = []
    real_send = DIMSEServiceProvider.send_msg
    record_fsyncs(monkeypatch, lambda path: events.append(("fsync", path)))

    def send_msg(self: DIMSEServiceProvider, primitive: object, context_id: int) -> None:
        status = getattr(primitive, "Status", None)  # (a response's)
        events.append(("sent", f"{type(primitive).__name__} status {status}"))
        real_send(self, primitive, context_id)

    monkeypatch.setattr(DIMSEServiceProvider, "send_msg", send_msg)
    server = _received_from_storescu(catalog)
    root = server.state.storage_root
    answered = events.index(("sent", "C_STORE status 0"))
    synced = [path for kind, path in events[:answered] if kind == "fsync"]
    (stored,) = [p for p in synced if p.endswith(".dcm")]
    series = os.path.dirname(stored)
    journals = os.path.join(root, JOURNAL_DIR)
    (journal,) = {p for p in synced if p.startswith(journals + os.sep)}
    expected = {stored, series, os.path.dirname(series), root, os.path.dirname(root)}
    expected |= {journal, journals}
    assert expected <= set(synced), expected - set(synced)
    assert synced.index(journals) < synced.index(journal)  # named, then its line synced


def test_a_journal_is_removed_only_once_its_commit_is_on_disk(
    tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real SCP receiving from dcmtk's storescu, ``os.fsync`` and ``os.unlink`` spied on
    (the real ones run): the batch's journal is removed only after its commit's log entry,
    the data file it adds, ``_delta_log`` and the table folder are synced. delta-rs syncs
    none of them: a power loss after the removal could keep an acknowledged file but lose
    its row and the journal that would have cataloged it."""
    catalog = os.path.join(str(tmp_path), "catalog")
    Catalog(catalog).catalog(sample("ct"), workers=0)
    events: list[tuple[str, str]] = []
    real_unlink = os.unlink
    record_fsyncs(monkeypatch, lambda path: events.append(("fsync", path)))

    def unlink(path: str, *args: object, **kwargs: object) -> None:
        events.append(("unlink", os.fspath(path)))
        real_unlink(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "unlink", unlink)
    server = _received_from_storescu(catalog)
    journals = os.path.join(server.state.storage_root, JOURNAL_DIR)
    (removed,) = [
        i for i, (kind, p) in enumerate(events) if kind == "unlink" and p.startswith(journals)
    ]
    synced = [p for kind, p in events[:removed] if kind == "fsync"]
    version = Catalog(catalog).table.version()  # the sink's one commit
    (data,) = added_files(catalog, version)
    entry = log_entry(catalog, version)
    expected = {data, entry, os.path.join(catalog, "_delta_log"), catalog}
    assert expected <= set(synced), expected - set(synced)
    assert synced.index(data) < synced.index(entry)


def test_a_sink_commits_in_batches(tmp_path: pytest.TempPathFactory) -> None:
    catalog = os.path.join(str(tmp_path), "catalog")
    Catalog(catalog).catalog(sample("ct"), workers=0)
    sink = StoreSink(WebState(catalog), every=2, seconds=3600)
    try:
        for key in ("mr", "multiframe", "j2k"):
            with open(sample(key), "rb") as fh:
                assert sink.store(fh.read()).status == 0
            if key == "multiframe":  # the limit reached: committed without waiting for time
                deadline = time.monotonic() + 120
                while sink.committed < 2:
                    assert time.monotonic() < deadline
                    time.sleep(0.02)
    finally:
        sink.close()
    assert (sink.commits, sink.committed) == (2, 3)  # two at the limit, one at the close
    assert len(_sops(catalog)) == 4


def test_a_query_right_after_a_store_finds_what_was_acknowledged(
    tmp_path: pytest.TempPathFactory,
) -> None:
    """Stored instances are committed in batches, but a C-FIND or C-GET that comes after
    the C-STORE's success finds them: the query commits what is pending first (a PACS
    that indexes on receipt answers the same)."""
    root = str(tmp_path)
    catalog = os.path.join(root, "catalog")
    Catalog(catalog).catalog(sample("ct"), workers=0)
    server = DimseServer(catalog, ServerConfig(port=0, commit_every=1000, commit_seconds=3600))
    server.sink.flush_soon = lambda: None  # type: ignore[method-assign]  # no commit at release
    server.start()
    try:
        mr = pydicom.dcmread(sample("mr"), stop_before_pixels=True)
        res = dcmtk("storescu", "-aec", "PIXELS", "127.0.0.1", str(server.port), sample("mr"))
        assert res.returncode == 0, res.stderr
        assert server.sink.committed == 0  # acknowledged, its batch not committed
        out = os.path.join(root, "found")
        os.makedirs(out)
        res = dcmtk("findscu", "-S", "-aec", "PIXELS", "-X", "-od", out,
                    "-k", "QueryRetrieveLevel=IMAGE", "-k", f"StudyInstanceUID={mr.StudyInstanceUID}",
                    "-k", f"SeriesInstanceUID={mr.SeriesInstanceUID}", "-k", "SOPInstanceUID",
                    "127.0.0.1", str(server.port))  # fmt: skip
        assert res.returncode == 0, res.stderr
        found = [pydicom.dcmread(os.path.join(out, f)) for f in sorted(os.listdir(out))]
        assert [d.SOPInstanceUID for d in found] == [mr.SOPInstanceUID]
        assert server.sink.committed == 1
        got = os.path.join(root, "got")
        os.makedirs(got)
        # a second store, then a C-GET of the study at once: it sends the new instance
        with open(sample("mr"), "rb") as fh:
            twin = pydicom.dcmread(fh)
        twin.SOPInstanceUID = mr.SOPInstanceUID + ".2"
        twin.file_meta.MediaStorageSOPInstanceUID = twin.SOPInstanceUID
        second = os.path.join(root, "second.dcm")
        twin.save_as(second, enforce_file_format=True)
        res = dcmtk("storescu", "-aec", "PIXELS", "127.0.0.1", str(server.port), second)
        assert res.returncode == 0, res.stderr
        res = dcmtk("getscu", "-S", "-aec", "PIXELS", "-od", got,
                    "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={mr.StudyInstanceUID}",
                    "-k", f"SeriesInstanceUID={mr.SeriesInstanceUID}",
                    "127.0.0.1", str(server.port))  # fmt: skip
        assert res.returncode == 0, res.stderr
        sops = {pydicom.dcmread(os.path.join(got, f)).SOPInstanceUID for f in os.listdir(got)}
        assert sops == {mr.SOPInstanceUID, twin.SOPInstanceUID}
    finally:
        server.stop()


def test_a_c_store_is_received_into_a_file_and_a_cut_one_leaves_none(
    tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 32 MB multi-frame sent by storescu reaches the SCP as a file pynetdicom writes as
    its fragments arrive (the data set was gathered in memory, then copied once more into
    the PS3.10 bytes: bench_dimse_store.py); the stored file is the data set as sent under
    Pixels' file meta group. storescu killed mid-transfer leaves no partial file behind
    (pynetdicom deletes its file only after the handler ran), nothing stored or journaled."""
    root = str(tmp_path)
    received = os.path.join(root, "received")
    os.makedirs(received)
    monkeypatch.setattr(tempfile, "tempdir", received)  # where pynetdicom writes data sets
    big = os.path.join(root, "big.dcm")
    sop = big_mr(big, 64)
    catalog = os.path.join(root, "catalog")
    Catalog(catalog).catalog(sample("ct"), workers=0)
    # small PDUs: the transfer lasts long enough to be cut in the middle
    config = ServerConfig(port=0, max_pdu=4096, timeout=10)
    with DimseServer(catalog, config) as server:
        incoming = os.path.join(server.state.storage_root, ".incoming")
        peer = subprocess.Popen([f"{DCMTK}/storescu", "-aec", "PIXELS", "127.0.0.1",
                                 str(server.port), big])  # fmt: skip
        deadline = time.monotonic() + 120
        partial: list[str] = []
        while not partial:  # wait until the data set is being written to a file
            assert peer.poll() is None, "storescu ended before its data set was cut"
            assert time.monotonic() < deadline
            partial = [os.path.join(received, n) for n in os.listdir(received)]
            partial = [p for p in partial if os.path.getsize(p) > (1 << 20)]
            time.sleep(0.005)
        peer.kill()
        peer.wait()
        deadline = time.monotonic() + 120
        while os.listdir(received):
            assert time.monotonic() < deadline, os.listdir(received)
            time.sleep(0.05)
        journals = os.path.join(server.state.storage_root, JOURNAL_DIR)
        assert not os.path.isdir(journals) or not os.listdir(journals)
        assert sop not in _sops(catalog)
        # sent whole: stored as sent, nothing left in either folder
        res = dcmtk("storescu", "-aec", "PIXELS", "127.0.0.1", str(server.port), big,
                    timeout=120)  # fmt: skip
        assert res.returncode == 0, res.stderr
        server.sink.settled()
        assert sop in _sops(catalog)
        assert os.listdir(received) == []
        assert not os.path.isdir(incoming) or os.listdir(incoming) == []
    stored = os.path.join(server.state.storage_root, *_uids(big), f"{sop}.dcm")
    meta = pydicom.dcmread(stored, stop_before_pixels=True).file_meta
    assert meta.SourceApplicationEntityTitle == "STORESCU"
    assert meta.MediaStorageSOPInstanceUID == sop
    assert meta.ImplementationVersionName == "PIXELS"
    assert dataset_bytes(stored) == dataset_bytes(big)


def _uids(path: str) -> tuple[str, str]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)


def test_a_received_file_that_is_no_dicom_is_refused_without_naming_the_local_path(
    tmp_path: pytest.TempPathFactory,
) -> None:
    """The check's reason is sent to the peer (ErrorComment): it says what is wrong with the
    data set, never where this server keeps its files."""
    from pixels.dimse.receive import FAIL_CANNOT_UNDERSTAND, check_received

    with open(sample("ct"), "rb") as fh:
        data = fh.read()
    ds = pydicom.dcmread(sample("ct"), stop_before_pixels=True)
    cut = os.path.join(str(tmp_path), "incoming", ".pixels-cut.part")
    os.makedirs(os.path.dirname(cut))
    with open(cut, "wb") as fh:  # cut inside an element's header, then junk
        fh.write(data[:700] + b"\xff" * 64)
    status, reason = check_received(cut, str(ds.SOPClassUID), str(ds.SOPInstanceUID)) or (0, "")
    assert status == FAIL_CANNOT_UNDERSTAND
    assert reason.startswith("malformed data set: "), reason
    assert str(tmp_path) not in reason and ".part" not in reason, reason


def _full_temporary_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, Path, str]:
    """A 4 MB MR, a 256 kB tmpfs made pynetdicom's temporary folder (the caller unmounts
    it) and a catalog of a CT: their paths."""
    big = str(tmp_path / "big.dcm")
    big_mr(big, 8)
    temporary = tmp_path / "tmp"
    mount_tmpfs(temporary, "size=256k")
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))  # where pynetdicom writes
    catalog = str(tmp_path / "catalog")
    Catalog(catalog).catalog(sample("ct"), workers=0)
    return big, temporary, catalog


@pytest.mark.root
def test_an_scp_with_a_full_temporary_folder_answers_out_of_resources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """pynetdicom writes a data set received to a file in the temporary folder; that
    folder full (a 256 kB tmpfs, a 4 MB instance), its reactor thread died and storescu
    waited for a response until the association timed out. The C-STORE is now answered
    0xA700 naming the folder, and the association goes on: a small instance after it is
    stored."""
    big, temporary, catalog = _full_temporary_folder(tmp_path, monkeypatch)
    try:
        with DimseServer(catalog, ServerConfig(port=0, timeout=30)) as server:
            res = dcmtk("storescu", "-v", "--no-halt", "-aec", "PIXELS", "127.0.0.1",
                        str(server.port), big, sample("mr"), timeout=25)  # fmt: skip
        left = os.listdir(temporary)
    finally:  # (lazily: a file left open there, as by the reactor thread that died)
        subprocess.run(["umount", "--lazy", str(temporary)], check=True)
    out = res.stdout + res.stderr
    assert "Received Store Response (Refused: OutOfResources)" in out, out
    assert f"not written to {temporary}: [Errno 28] No space left on device" in caplog.text
    assert left == []
    assert len(_sops(catalog)) == 2  # the CT and the MR sent after the failed one


@pytest.mark.root
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_full_temporary_folder_is_not_hidden_from_another_scp_of_the_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pixels' guard on pynetdicom's temporary file (a write error kept, the rest of the
    data set discarded, the request handed on) is for its own handlers, which check it
    (0xA700). Another pynetdicom SCP of the same process (a user's own, started after a
    pixels SCP) must not get a cut data set as if whole: with the guard on every
    association its handler was called with the first 256 kB of a 4 MB instance and
    answered Success. Its association now sees pynetdicom's own write error."""
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import EnhancedMRImageStorage  # type: ignore[attr-defined]

    big, temporary, catalog = _full_temporary_folder(tmp_path, monkeypatch)
    seen: list[int] = []  # the size of each data set the user's handler was given

    def handle(event: object) -> int:
        seen.append(os.path.getsize(event.dataset_path))  # type: ignore[attr-defined]
        return 0x0000

    user = AE(ae_title="USER")
    user.add_supported_context(EnhancedMRImageStorage)
    user.network_timeout = user.dimse_timeout = 5
    try:
        with DimseServer(catalog, ServerConfig(port=0, timeout=30)):
            scp = user.start_server(
                ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, handle)]
            )
            try:
                port = str(scp.server_address[1])
                res = dcmtk("storescu", "-v", "-td", "5", "-aec", "USER", "127.0.0.1", port,
                            big, timeout=25)  # fmt: skip
            finally:
                scp.shutdown()
    finally:
        subprocess.run(["umount", "--lazy", str(temporary)], check=True)
    out = res.stdout + res.stderr
    assert seen == [], f"the user's handler got a cut data set of {seen} bytes"
    assert "Received Store Response (Success)" not in out, out
