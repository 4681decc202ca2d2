"""The SCP's guards: loopback unless authenticated, AE titles, user identity, hostile peers."""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Iterator

import pydicom
import pytest
from click.testing import CliRunner
from pydicom.uid import generate_uid
from pynetdicom import AE, _config
from pynetdicom.presentation import build_context

from dimse.conftest import dcmtk, sample
from pixels import Catalog
from pixels.cli import main
from pixels.dimse.config import DimseError, Peer, ServerConfig, check_listen
from pixels.dimse.receive import part10_bytes
from pixels.dimse.scu import Client
from pixels.dimse.server import DimseServer

CT_CLASS = "1.2.840.10008.5.1.4.1.1.2"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DimseServer]:
    """An SCP requiring a user and a calling AE title from a list."""
    catalog = str(tmp_path_factory.mktemp("dimse-guarded") / "catalog")
    Catalog(catalog).catalog(sample("ct"), workers=0)
    config = ServerConfig(
        port=0,
        users={"alice": "s3cret"},
        allowed_callers=("GOOD", "STORESCU"),
        # not short: a test's client idle between its messages (reading the table on a
        # loaded machine) must not be aborted; the stalled peer test has its own server
        timeout=30,
        commit_seconds=0.2,
    )
    server = DimseServer(catalog, config).start()
    try:
        yield server
    finally:
        server.stop()


def _echo(
    server: DimseServer,
    calling: str = "GOOD",
    user: str | None = "alice",
    passcode: str = "s3cret",
    called: str = "PIXELS",
) -> bool:
    """C-ECHO by Pixels' SCU (dcmtk's echoscu negotiates no user identity): accepted?"""
    client = Client(
        Peer(called, "127.0.0.1", server.port),
        ae_title=calling,
        username=user,
        passcode=passcode,
        timeout=10,
    )
    try:
        return client.echo() == 0
    except DimseError:
        return False


def test_listening_beyond_loopback_needs_authentication() -> None:
    with pytest.raises(DimseError, match=r"on 0\.0\.0\.0: that is not loopback"):
        check_listen(ServerConfig(host="0.0.0.0"))
    check_listen(ServerConfig(host="0.0.0.0", users={"a": "b"}))
    check_listen(ServerConfig(host="::1"))
    res = CliRunner().invoke(
        main, ["serve", "--table", "nowhere", "--dimse-port", "0", "--dimse-host", "0.0.0.0"]
    )
    assert res.exit_code != 0
    assert "refusing to listen for DIMSE on 0.0.0.0" in res.output
    # and says which options configure it
    for option in ("--user NAME=PASSCODE", "--tls-cert", "--tls-ca"):
        assert option in res.output, res.output


def test_user_identity_and_calling_ae_title(guarded: DimseServer) -> None:
    assert _echo(guarded)
    assert not _echo(guarded, user=None)
    assert "no user identity was negotiated" in guarded.refusals[-1]
    assert not _echo(guarded, passcode="wrong")
    assert "wrong username or passcode for user 'alice'" in guarded.refusals[-1]
    assert not _echo(guarded, calling="BAD")
    assert "'BAD'" in guarded.refusals[-1] and "allowed list" in guarded.refusals[-1]
    assert not _echo(guarded, called="OTHER")
    assert "called AE title 'OTHER' is not 'PIXELS'" in guarded.refusals[-1]
    # dcmtk's storescu negotiates user identity too
    res = dcmtk("storescu", "-aet", "STORESCU", "-aec", "PIXELS", "--user", "alice",
                "--password", "wrong", "127.0.0.1", str(guarded.port), sample("ct"))  # fmt: skip
    assert res.returncode != 0
    assert "wrong username or passcode" in guarded.refusals[-1]


def test_refused_associations_get_an_associate_rj_with_the_reason(guarded: DimseServer) -> None:
    """dcmtk's tools see an A-ASSOCIATE-RJ naming why, not a dropped connection (the SCP
    once closed the socket while the reject was still queued: "Peer aborted Association")."""
    port = str(guarded.port)
    for tool, args, reason in (
        ("echoscu", ["-aet", "GOOD", "-aec", "OTHER"], "Called AE Title Not Recognized"),
        ("echoscu", ["-aet", "BAD", "-aec", "PIXELS"], "Calling AE Title Not Recognized"),
        ("storescu", ["-aet", "GOOD", "-aec", "PIXELS", "--user", "alice", "--password",
                      "wrong"], "No Reason"),
    ):  # fmt: skip
        files = [sample("mr")] if tool == "storescu" else []
        for _ in range(3):  # the race lost once would already show
            res = dcmtk(tool, "-v", *args, "127.0.0.1", port, *files)
            text = res.stdout + res.stderr
            assert res.returncode != 0
            assert "Association Rejected" in text, text
            assert "Result: Rejected Permanent, Source: Service User" in text, text
            assert f"Reason: {reason}" in text, text


def _client_ae() -> AE:
    ae = AE(ae_title="GOOD")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    return ae


def _identity() -> list[object]:
    from pynetdicom.pdu_primitives import UserIdentityNegotiation

    item = UserIdentityNegotiation()
    item.user_identity_type = 2
    item.primary_field = b"alice"
    item.secondary_field = b"s3cret"
    return [item]


def test_unknown_sop_class_is_not_accepted(guarded: DimseServer) -> None:
    ae = _client_ae()
    contexts = [build_context("1.2.3.4.5.6.7"), build_context("1.2.840.10008.1.1")]
    assoc = ae.associate(
        "127.0.0.1", guarded.port, contexts=contexts, ae_title="PIXELS", ext_neg=_identity()
    )
    try:
        assert assoc.is_established
        rejected = {cx.abstract_syntax: cx.result for cx in assoc.rejected_contexts}
        assert rejected == {"1.2.3.4.5.6.7": 0x03}  # abstract syntax not supported
    finally:
        assoc.release()


def test_malformed_and_mismatched_data_sets_are_refused(
    guarded: DimseServer, tmp_path: object
) -> None:
    """Data sets sent byte for byte (pynetdicom's chunked send does not decode them): a cut
    one is refused with 0xC000, one whose SOP Instance UID is not the request's with 0xA900;
    each status names what was wrong, nothing is stored, and the next store succeeds."""
    ct = sample("ct")
    with open(ct, "rb") as fh:
        fh.seek(128 + 4)
        pydicom.filereader._read_file_meta_info(fh)
        body = fh.read()
    bad_sop, other_sop = generate_uid(), generate_uid()
    explicit = "1.2.840.10008.1.2.1"
    cut = os.path.join(str(tmp_path), "cut.dcm")
    with open(cut, "wb") as fh:  # the header cut inside an element, then junk
        fh.write(part10_bytes(body[:700] + b"\xff" * 64, CT_CLASS, bad_sop, explicit))
    mismatched = os.path.join(str(tmp_path), "mismatched.dcm")
    with open(mismatched, "wb") as fh:  # file meta names another instance than the data set
        fh.write(part10_bytes(body, CT_CLASS, other_sop, explicit))
    ae = _client_ae()
    assoc = ae.associate(
        "127.0.0.1",
        guarded.port,
        contexts=[build_context(CT_CLASS, [explicit])],
        ae_title="PIXELS",
        ext_neg=_identity(),
    )
    before = Catalog(guarded.state.catalog.table.uri).table.count()
    old = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        assert assoc.is_established
        rsp = assoc.send_c_store(cut)
        assert rsp.Status == 0xC000
        assert "malformed data set" in rsp.ErrorComment
        rsp = assoc.send_c_store(mismatched)
        assert rsp.Status == 0xA900
        assert "SOPInstanceUID (0008,0018)" in rsp.ErrorComment
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = old
        assoc.release()
    stored = os.path.join(guarded.state.storage_root)
    names = [n for _, _, files in os.walk(stored) for n in files]
    assert not any(bad_sop in n or other_sop in n for n in names)
    incoming = os.path.join(stored, ".incoming")  # the refused files were not left there
    assert not os.path.isdir(incoming) or not os.listdir(incoming)
    # a good store on a new association still works; the catalog lost nothing
    res = dcmtk("storescu", "-aet", "GOOD", "-aec", "PIXELS", "--user", "alice", "--password",
                "s3cret", "127.0.0.1", str(guarded.port), sample("mr"))  # fmt: skip
    assert res.returncode == 0, res.stderr
    deadline = time.monotonic() + 120
    while Catalog(guarded.state.catalog.table.uri).table.count() < before + 1:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closed ``sock`` (recv gives b"" or a reset) within ``seconds``."""
    sock.settimeout(seconds)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_huge_pdu_and_stalled_peer_are_cut_off(guarded: DimseServer, tmp_path: object) -> None:
    with socket.create_connection(("127.0.0.1", guarded.port)) as sock:
        # an association request announcing 200 MB
        sock.sendall(struct.pack(">BBL", 0x01, 0, 200 << 20) + b"\x00" * 64)
        assert _closed_within(sock, 10)
    assert "of 209715200 bytes, above the limit" in guarded.refusals[-1]
    # a silent peer is dropped after the timeout (1 s here: a server of its own, so that
    # no other test's client idles into it)
    config = ServerConfig(port=0, users={"alice": "s3cret"}, timeout=1.0)
    catalog = os.path.join(str(tmp_path), "catalog")
    Catalog(catalog).catalog(sample("ct"), workers=0)
    quick = DimseServer(catalog, config).start()
    try:
        with socket.create_connection(("127.0.0.1", quick.port)) as sock:
            start = time.monotonic()
            assert _closed_within(sock, 15)
            assert time.monotonic() - start < 14
        assert _echo(quick, calling="ANY")
    finally:
        quick.stop()
    assert _echo(guarded)
