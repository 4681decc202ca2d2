"""The DIMSE SCP over a catalog: C-ECHO, C-STORE, C-FIND, C-GET and C-MOVE.

One :class:`DimseServer` per catalog, sharing the DICOMweb server's
:class:`~pixels.web.state.WebState` when both run in one process (``pixels serve
--dimse-port``): the same index answers QIDO-RS and C-FIND, the same STOW-RS
path and group committer store what C-STORE receives.

Associations are checked before anything else (a rejection names why, in the
log): the called AE title must be the server's, the calling one in
``allowed_callers`` when that is given, and with ``users`` configured the
association must negotiate user identity (username and passcode) matching one.
A peer that stays silent longer than ``timeout`` is aborted, and one sending a
PDU larger than ``max_pdu`` is disconnected: neither affects other associations
or loses stored data.
"""

from __future__ import annotations

import contextlib
import hmac
import io
import logging
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.presentation import build_context
from pynetdicom.transport import ThreadedAssociationServer

from pixels.dicom.transcode import open_transcoder
from pixels.dimse.config import (
    DimseError,
    ServerConfig,
    associate_patiently,
    check_listen,
    failed_association,
)
from pixels.dimse.contexts import (
    ACCEPT_ORDER,
    FIND_MODELS,
    GET_MODELS,
    MOVE_MODELS,
    STORAGE_CLASSES,
    Verification,
    storage_contexts,
    takes_as_stored,
)
from pixels.dimse.query import FindError, InstanceFile, find, instances_for, parse_identifier
from pixels.dimse.receive import (
    FAIL_CANNOT_UNDERSTAND,
    StoreSink,
    chunked_receive,
    discard_partial,
    receive_store,
    release_received,
)
from pixels.sources import open_file
from pixels.sources.ref import FileRef
from pixels.web.index import index_of
from pixels.web.listen import why_not
from pixels.web.state import WebState
from pixels.web.stow import clean_stale_spools

__all__ = ["DimseServer", "load_instance", "status"]

LOG = logging.getLogger("pixels.dimse")

#: Largest association request PDU accepted (its user information included).
_MAX_RQ_PDU = 256 << 10
#: Largest other control PDU (release, abort, reject: a few bytes each).
_MAX_CONTROL_PDU = 64 << 10


def status(code: int, comment: str = "") -> Dataset:
    """A status data set: Status (0000,0900) and an ErrorComment (0000,0902) naming why."""
    ds = Dataset()
    ds.Status = code
    if comment:
        ds.ErrorComment = "".join(c if " " <= c <= "~" and c != "\\" else " " for c in comment)[:64]
    return ds


def load_instance(item: InstanceFile, *, explicit_le: bool = False) -> Dataset:
    """The data set of a cataloged file (local, zip member or object store), read whole;
    its elements stay as stored, so sending it re-encodes the same bytes.

    With ``explicit_le`` it is converted to Explicit VR Little Endian first
    (:func:`pixels.dicom.transcode.open_transcoder`: big endian swapped, encapsulated
    pixel data decoded), for a peer that does not take it as stored.

    Raises
    ------
    TranscodeError, MissingDecoderError
        ``explicit_le`` and the pixel data cannot be converted (video, no decoder).
    """
    ref = FileRef.from_row(item.row)
    with open_file(ref) as fp:
        data = fp.read()
    if explicit_le:
        transcoder = open_transcoder(
            io.BytesIO(data), path=str(item.row["path"]), transfer_syntax=item.transfer_syntax
        )
        data = b"".join(transcoder.chunks())
    return dcmread(io.BytesIO(data), force=False)


def _reject(assoc: Any, diagnostic: int) -> None:
    """Send an A-ASSOCIATE-RJ (rejected permanent, by the service user, ``diagnostic``:
    0x01 no reason given, 0x03 calling AE title, 0x07 called AE title not recognized)
    and wait until it is out: returning at once, pynetdicom closes the socket behind the
    reject still queued, and the peer sees the connection dropped instead of the reason."""
    assoc.acse.send_reject(0x01, 0x01, diagnostic)
    assoc.kill()  # as pynetdicom's own rejection: the DUL sends it, the peer closes


class _PduGuard:
    """Wraps an association socket's ``recv``: a PDU header announcing more than the
    limits is answered by closing the connection (the peer is told nothing more)."""

    def __init__(self, sock: Any, max_pdu: int, peer: str, refuse: Callable[[str], None]):
        self._recv = sock.recv
        self._max = max_pdu
        self._peer = peer
        self._refuse = refuse
        self._header = True

    def __call__(self, n: int) -> bytes:
        data: bytes = self._recv(n)
        if not self._header:
            self._header = True
            return data
        if n != 6 or len(data) != 6:
            return data
        pdu_type, _, length = struct.unpack(">BBL", data)
        limit = {1: _MAX_RQ_PDU, 4: self._max + 64}.get(pdu_type, _MAX_CONTROL_PDU)
        if length > limit:
            self._refuse(
                f"{self._peer} sent a PDU of type 0x{pdu_type:02X} of {length} bytes, above "
                f"the limit of {limit}: connection closed"
            )
            return data[:2]  # the DUL takes a short header for a closed connection
        self._header = length == 0
        return data


class _StoreClassCheck:
    """Replaces an association's ``_serve_request`` (pynetdicom 3.0): a C-STORE whose
    Affected SOP Class UID is not its presentation context's abstract syntax is answered
    ``0xC000`` naming both, as dcmtk's storescp answers it. pynetdicom looks the service
    up by the command's class alone and aborts the association when that names none (a
    file whose SOP Class UID is malformed, sent by dcmsend): the peer's later instances,
    on that association, were then lost too."""

    def __init__(self, assoc: Any, peer: str):
        self._serve = assoc._serve_request
        self._assoc = assoc
        self._peer = peer

    def __call__(self, msg: Any, context_id: int) -> None:
        if isinstance(msg, C_STORE):
            context = self._assoc._accepted_cx.get(context_id)
            wanted = str(context.abstract_syntax) if context is not None else ""
            sent = str(msg.AffectedSOPClassUID or "")
            if context is not None and sent != wanted:
                release_received(msg)  # pynetdicom removes it only after its handler
                why = f"Affected SOP Class UID {sent[:64]!r} is not the context's {wanted}"
                LOG.warning("DIMSE: C-STORE from %s refused (0xC000): %s", self._peer, why)
                rsp = C_STORE()
                rsp.MessageIDBeingRespondedTo = msg.MessageID
                rsp.AffectedSOPClassUID = wanted
                with contextlib.suppress(Exception):  # a malformed UID is left out
                    rsp.AffectedSOPInstanceUID = msg.AffectedSOPInstanceUID
                rsp.Status = FAIL_CANNOT_UNDERSTAND
                rsp.ErrorComment = why[:64]  # type: ignore[assignment]
                self._assoc.dimse.send_msg(rsp, context_id)
                return
        self._serve(msg, context_id)


class _NoAssociation:
    """Stands for the association to a C-MOVE destination where none is made (the
    identifier is refused, nothing matches, or the destination refused): pynetdicom's
    C-MOVE SCP then answers the handler's status with its counts and only releases this."""

    is_established = True

    def release(self) -> None:
        """Nothing to release."""


class _ServerAE(AE):
    """pynetdicom's AE, save that the association to a C-MOVE destination is the one
    the handler made (``made``): pynetdicom's C-MOVE SCP associates itself otherwise and
    answers any failure to, a refused connection or a rejection, with 0xA801 (Move
    Destination unknown), which sends an operator looking for a missing configuration."""

    def associate(  # type: ignore[override]
        self, addr: str, port: int, *args: Any, **kwargs: Any
    ) -> Any:
        made = kwargs.pop("made", None)
        if made is not None:
            return made
        return super().associate(addr, port, *args, **kwargs)


class DimseServer:
    """The SCP (module docstring).

    Parameters
    ----------
    state : WebState or str
        The web server's state, or a catalog path (a state of its own is made).
    config : ServerConfig
        Port, AE title, security and commit settings.

    Examples
    --------
    >>> server = DimseServer("./catalog", ServerConfig(port=0))   # doctest: +SKIP
    >>> server.start(); server.port                               # doctest: +SKIP
    41827
    >>> server.stop()                                             # doctest: +SKIP
    """

    def __init__(self, state: WebState | str, config: ServerConfig | None = None):
        self.config = config or ServerConfig()
        check_listen(self.config)
        self.state = state if isinstance(state, WebState) else WebState(state)
        self.sink = StoreSink(
            self.state, every=self.config.commit_every, seconds=self.config.commit_seconds
        )
        self._server: ThreadedAssociationServer | None = None
        #: Why associations were rejected or aborted, most recent last (tests, logs).
        self.refusals: list[str] = []
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- running
    @property
    def port(self) -> int:
        """The port listened on (the ephemeral one when configured with 0)."""
        if self._server is None:
            return self.config.port
        return int(self._server.server_address[1])

    def start(self) -> DimseServer:
        """Remove the spools and catalog what a killed server left journaled (not those of
        live servers of this table, :mod:`pixels.web.spool`), then listen (in threads;
        port 0: a free one, :attr:`port`). :class:`DimseError` when it cannot bind."""
        clean_stale_spools(self.state.storage_root)
        self.sink.recover()
        ae = self._application_entity()
        chunked_receive(ae)  # C-STORE data sets written to a file as they arrive
        handlers = [
            (evt.EVT_CONN_OPEN, self._on_open),
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_C_ECHO, lambda event: 0x0000),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_FIND, self._on_find),
            (evt.EVT_C_GET, self._on_get),
            (evt.EVT_C_MOVE, self._on_move),
            (evt.EVT_RELEASED, self._on_end),
            (evt.EVT_ABORTED, self._on_end),
            (evt.EVT_CONN_CLOSE, self._on_close),
        ]
        try:
            self._server = ae.start_server(
                (self.config.host, self.config.port),
                block=False,
                evt_handlers=handlers,  # type: ignore[arg-type]
                ssl_context=self.config.ssl_context(),
            )
        except OSError as e:  # in use, not an address of this machine: said, not a traceback
            raise DimseError(
                f"cannot listen for DIMSE on {self.config.host}:{self.config.port}: {why_not(e)}"
            ) from e
        LOG.info(
            "DIMSE: %s listening on %s:%d (catalog %s)",
            self.config.ae_title,
            self.config.host,
            self.port,
            self.state.table.uri,
        )
        return self

    def stop(self) -> None:
        """Stop listening, end the associations and commit what is pending."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        self.sink.close()

    def __enter__(self) -> DimseServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _application_entity(self) -> AE:
        cfg = self.config
        ae = _ServerAE(ae_title=cfg.ae_title)
        ae.maximum_associations = 32
        ae.maximum_pdu_size = cfg.max_pdu
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = cfg.timeout
        ae.connection_timeout = cfg.timeout
        ae.require_called_aet = True
        contexts = [build_context(Verification)]
        contexts += [build_context(uid) for uid in (*FIND_MODELS, *GET_MODELS, *MOVE_MODELS)]
        ae.supported_contexts = contexts
        # storage in every syntax the catalog reads; the roles let C-GET send them back
        for uid in STORAGE_CLASSES:
            ae.add_supported_context(uid, list(ACCEPT_ORDER), scu_role=True, scp_role=True)
        return ae

    # ------------------------------------------------------------ association
    def _refuse(self, why: str) -> None:
        with self._lock:
            self.refusals.append(why)
            del self.refusals[:-100]
        LOG.warning("DIMSE: %s", why)

    def _on_open(self, event: Any) -> None:
        sock = event.assoc.dul.socket
        peer = f"{event.address[0]}:{event.address[1]}"
        if sock is not None:
            sock.recv = _PduGuard(sock, self.config.max_pdu, peer, self._refuse)
        event.assoc._serve_request = _StoreClassCheck(event.assoc, peer)

    def _on_requested(self, event: Any) -> None:
        assoc = event.assoc
        rq = assoc.requestor.primitive
        calling = str(rq.calling_ae_title or "").strip()
        called = str(rq.called_ae_title or "").strip()
        cfg = self.config
        peer = f"{assoc.requestor.address}:{assoc.requestor.port}"
        if called != cfg.ae_title:
            self._refuse(
                f"association from {calling!r} at {peer} rejected: called AE title "
                f"{called!r} is not {cfg.ae_title!r}"
            )
            _reject(assoc, 0x07)
            return
        if cfg.allowed_callers and calling not in cfg.allowed_callers:
            self._refuse(
                f"association from {calling!r} at {peer} rejected: calling AE title not in "
                "the allowed list"
            )
            _reject(assoc, 0x03)
            return
        if cfg.users:
            why = self._identity_problem(assoc.requestor.user_identity)
            if why:
                self._refuse(f"association from {calling!r} at {peer} rejected: {why}")
                _reject(assoc, 0x01)
                return

    def _identity_problem(self, item: Any) -> str | None:
        if item is None:
            return "no user identity was negotiated (username and passcode required)"
        if item.user_identity_type != 2:
            return f"user identity type {item.user_identity_type} (username and passcode required)"
        user = bytes(item.primary_field or b"").decode("utf-8", "replace")
        given = bytes(item.secondary_field or b"")
        known = self.config.users.get(user)
        if known is None or not hmac.compare_digest(given, known.encode("utf-8")):
            return f"wrong username or passcode for user {user[:64]!r}"
        return None

    def _on_end(self, event: Any) -> None:
        self.sink.flush_soon()

    def _on_close(self, event: Any) -> None:
        discard_partial(event.assoc)  # a data set cut off by an abort or a dropped peer

    # ---------------------------------------------------------------- C-STORE
    def _on_store(self, event: Any) -> Dataset:
        req = event.request
        calling = str(event.assoc.requestor.ae_title or "").strip()
        sop = str(req.AffectedSOPInstanceUID or "")
        syntax = str(event.context.transfer_syntax)
        # written to a file as it arrived: the data set is never in memory whole
        stored = receive_store(req, syntax, self.sink.incoming, calling, self.sink.store_path)
        if stored.status:
            return self._store_failed(stored.status, stored.reason, calling, sop)
        return status(0x0000)

    def _store_failed(self, code: int, reason: str, calling: str, sop: str) -> Dataset:
        LOG.warning("DIMSE: C-STORE of %s from %r failed (0x%04X): %s", sop, calling, code, reason)
        return status(code, reason)

    # ----------------------------------------------------------------- C-FIND
    def _on_find(self, event: Any) -> Iterator[tuple[Any, Any]]:
        model = FIND_MODELS.get(str(event.context.abstract_syntax), "STUDY")
        try:
            query = parse_identifier(event.identifier, model)
            index = index_of(self.state)
            cap = self.config.find_limit
            # (instances acknowledged on any association are found: pending ones committed)
            snap = index.current(self.sink.settled())
            answers = find(snap, query, self.config.ae_title, cap + 1, index)
            for sent, answer in enumerate(answers):
                if event.is_cancelled:
                    yield 0xFE00, None
                    return
                if sent == cap:  # more match: as Orthanc's LimitFindResults answers
                    LOG.warning("DIMSE: C-FIND answers cut at find_limit=%d", cap)
                    yield 0xFE00, None
                    return
                yield 0xFF00, answer
        except FindError as e:
            LOG.warning("DIMSE: C-FIND refused (0x%04X): %s", e.status, e.reason)
            yield status(e.status, e.reason), None
            return
        except Exception as e:
            LOG.exception("DIMSE: C-FIND failed")
            yield status(0xC001, f"unable to process: {e}"), None
            return
        yield 0x0000, None

    # ------------------------------------------------------------ C-GET/C-MOVE
    def _matched(self, event: Any, models: dict[Any, str]) -> list[InstanceFile]:
        model = models.get(str(event.context.abstract_syntax), "STUDY")
        query = parse_identifier(event.identifier, model)
        return instances_for(index_of(self.state).current(self.sink.settled()), query)

    def _send(
        self, event: Any, items: list[InstanceFile], store_assoc: Callable[[], Any]
    ) -> Iterator[tuple[Any, Any]]:
        """The (status, data set) pairs of a C-GET / C-MOVE: each instance as stored, or
        converted to Explicit VR Little Endian where the association it is sent on
        (``store_assoc()``) has no context taking it as stored."""
        for item in items:
            if event.is_cancelled:
                yield 0xFE00, None
                return
            assoc = store_assoc()
            convert = assoc is not None and not takes_as_stored(
                assoc.accepted_contexts, item.sop_class, item.transfer_syntax
            )
            try:
                ds = load_instance(item, explicit_le=convert)
            except Exception as e:
                how = "converted to Explicit VR Little Endian" if convert else "read"
                LOG.warning("DIMSE: %s cannot be %s for retrieval: %s", item.row["path"], how, e)
                yield 0xFF00, f"unreadable: {item.row['path']}"  # counted as a failure
                continue
            yield 0xFF00, ds

    def _on_get(self, event: Any) -> Iterator[Any]:
        try:
            items = self._matched(event, GET_MODELS)
        except FindError as e:
            LOG.warning("DIMSE: C-GET refused (0x%04X): %s", e.status, e.reason)
            yield 1  # with 0, pynetdicom answers Success before reading the failure
            yield status(e.status, e.reason), None
            return
        yield len(items)
        yield from self._send(event, items, lambda: event.assoc)

    def _on_move(self, event: Any) -> Iterator[Any]:
        dest = str(event.move_destination or "").strip()
        where = self.config.destinations.get(dest)
        if where is None:
            LOG.warning("DIMSE: C-MOVE to unknown destination %r refused (0xA801)", dest)
            yield None, None
            return
        try:
            items = self._matched(event, MOVE_MODELS)
        except FindError as e:
            LOG.warning("DIMSE: C-MOVE refused (0x%04X): %s", e.status, e.reason)
            yield where[0], where[1], {"made": _NoAssociation()}
            yield 1  # with 0, pynetdicom answers Success before reading the failure
            yield status(e.status, e.reason), None
            return
        if not items:
            yield where[0], where[1], {"made": _NoAssociation()}
            yield 0
            return
        contexts = storage_contexts((i.sop_class, i.transfer_syntax) for i in items)
        ae = event.assoc.ae
        store = associate_patiently(
            lambda: ae.associate(where[0], where[1], contexts=contexts, ae_title=dest),
            ae.acse_timeout or 30.0,
        )
        if not store.is_established:
            why = f"{dest}@{where[0]}:{where[1]} {failed_association(store)}"
            LOG.warning("DIMSE: C-MOVE failed (0xA702): move destination %s", why)
            yield where[0], where[1], {"made": _NoAssociation()}
            yield len(items)
            failed = Dataset()
            failed.FailedSOPInstanceUIDList = [i.sop_instance for i in items]
            yield status(0xA702, why), failed
            return
        yield where[0], where[1], {"made": store}
        yield len(items)
        yield from self._send(event, items, lambda: store)
