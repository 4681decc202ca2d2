"""DIMSE SCU: C-ECHO, C-FIND, C-GET, C-MOVE and C-STORE against a remote PACS.

:func:`retrieve` pulls a study, series or instances from a PACS straight into a
catalog: by C-GET over the same association, or by C-MOVE to a Pixels SCP started
for the time of the move (the PACS must know that AE title at this host and port).
What arrives goes through the same path as the SCP's C-STORE
(:class:`~pixels.dimse.receive.StoreSink`): stored, journaled, committed.
"""

from __future__ import annotations

import io
import logging
import os
import ssl
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydicom import dcmread
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pynetdicom import AE, evt
from pynetdicom import status as status_tables
from pynetdicom.association import Association
from pynetdicom.pdu_primitives import UserIdentityNegotiation
from pynetdicom.presentation import (
    PresentationContext,
    StoragePresentationContexts,
    build_context,
    build_role,
)

from pixels.dicom.transcode import open_transcoder
from pixels.dimse.config import (
    DimseError,
    Peer,
    ServerConfig,
    associate_patiently,
    failed_association,
)
from pixels.dimse.contexts import (
    FIND_MODELS,
    GET_MODELS,
    MOVE_MODELS,
    NATIVE,
    STORAGE_SYNTAXES,
    Verification,
    storage_contexts,
    takes_as_stored,
)
from pixels.dimse.receive import (
    FAIL_CANNOT_UNDERSTAND,
    FAIL_OUT_OF_RESOURCES,
    SUCCESS,
    Stored,
    StoreSink,
    chunked_receive,
    discard_partial,
    partial_space,
    receive_store,
    release_received,
)
from pixels.errors import PixelsError
from pixels.web.state import is_uid

__all__ = [
    "Client",
    "GetCancelledError",
    "RetrieveResult",
    "identifier",
    "status_text",
]

LOG = logging.getLogger("pixels.dimse")

_MODEL_UIDS = {
    "find": {v: k for k, v in FIND_MODELS.items()},
    "get": {v: k for k, v in GET_MODELS.items()},
    "move": {v: k for k, v in MOVE_MODELS.items()},
}


def identifier(keys: Mapping[str, str], level: str) -> Dataset:
    """A query / retrieve identifier: ``keys`` (keyword or ``GGGGEEEE`` -> value; an
    empty value asks for the attribute) at ``level``."""
    ds = Dataset()
    ds.QueryRetrieveLevel = level.upper()
    for name, value in keys.items():
        tag = _tag(name)
        vr = dictionary_VR(tag)
        if vr == "SQ":
            ds.add_new(tag, vr, [])
            continue
        ds.add_new(tag, vr, value if value != "" else None)
    return ds


def _tag(name: str) -> int:
    text = name.strip()
    if len(text) == 8 and all(c in "0123456789abcdefABCDEF" for c in text):
        return int(text, 16)
    tag = tag_for_keyword(text)
    if tag is None:
        raise DimseError(f"unknown attribute {text!r} (neither a keyword nor a tag)")
    return int(tag)


@dataclass
class RetrieveResult:
    """The outcome of a C-GET / C-MOVE: final status and sub-operation counts."""

    status: int = 0
    completed: int = 0
    failed: int = 0
    warning: int = 0
    #: paths stored (C-GET into a folder or catalog; C-MOVE into a catalog)
    stored: list[str] = field(default_factory=list)
    #: instances received by C-GET and not stored: their SOP Instance UID, status, reason
    refused: list[str] = field(default_factory=list)
    comment: str = ""


class Client:
    """An SCU talking to one peer.

    Parameters
    ----------
    peer : Peer or str
        The remote AE (``AE@host:port``).
    ae_title : str
        The calling AE title.
    username, passcode : str, optional
        User identity negotiation (username and passcode).
    tls : ssl.SSLContext, optional
        Speak TLS (with a client certificate loaded in it, where the peer asks for one).
    timeout : float
        Seconds to wait for the peer (association, each message).
    """

    def __init__(
        self,
        peer: Peer | str,
        *,
        ae_title: str = "PIXELS",
        username: str | None = None,
        passcode: str | None = None,
        tls: ssl.SSLContext | None = None,
        timeout: float = 30.0,
    ):
        self.peer = Peer.parse(peer) if isinstance(peer, str) else peer
        self.ae_title = ae_title
        self.username = username
        self.passcode = passcode
        self.tls = tls
        self.timeout = timeout

    # --------------------------------------------------------- association
    def _associate(
        self,
        contexts: list[PresentationContext],
        *,
        roles: Iterable[Any] = (),
        handlers: list[Any] | None = None,
        chunked: bool = False,
    ) -> Association:
        """An association with the peer; ``chunked``: C-STORE data sets it receives are
        written to a file as they arrive (:func:`~pixels.dimse.receive.chunked_receive`)."""
        ae = AE(ae_title=self.ae_title)
        if chunked:
            chunked_receive(ae)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout
        ae.connection_timeout = self.timeout
        ext: list[Any] = list(roles)
        if self.username is not None:
            item = UserIdentityNegotiation()
            item.user_identity_type = 2
            item.primary_field = self.username.encode("utf-8")
            item.secondary_field = (self.passcode or "").encode("utf-8")
            ext.append(item)
        tls_args = (self.tls, self.peer.host) if self.tls is not None else None
        assoc = associate_patiently(
            lambda: ae.associate(
                self.peer.host,
                self.peer.port,
                contexts=contexts,
                ae_title=self.peer.ae_title,
                ext_neg=ext or None,
                evt_handlers=handlers,
                tls_args=tls_args,
            ),
            self.timeout,
        )
        if not assoc.is_established:
            raise DimseError(f"association with {self.peer}: {failed_association(assoc)}")
        return assoc

    # ---------------------------------------------------------------- echo
    def echo(self) -> int:
        """C-ECHO; the status (0 for success)."""
        assoc = self._associate([build_context(Verification)])
        try:
            rsp = assoc.send_c_echo()
            return _status(rsp, "C-ECHO", self.peer)
        finally:
            assoc.release()

    # ---------------------------------------------------------------- find
    def find(
        self, keys: Mapping[str, str], level: str = "STUDY", model: str = "STUDY"
    ) -> list[Dataset]:
        """C-FIND; the matches' identifiers."""
        uid = _MODEL_UIDS["find"][model.upper()]
        assoc = self._associate([build_context(uid)])
        out = []
        try:
            for rsp, ident in assoc.send_c_find(identifier(keys, level), uid):
                code = _status(rsp, "C-FIND", self.peer, pending_ok=True)
                if code in _PENDING and ident is not None:
                    out.append(ident)
        finally:
            assoc.release()
        return out

    # ---------------------------------------------------------------- store
    def store(self, paths: Iterable[str]) -> list[tuple[str, int]]:
        """C-STORE each file, in its own transfer syntax where the peer accepts it, else
        converted to Explicit VR Little Endian; ``(path, status)`` of each (``0x0122``:
        not sent, no context and no conversion for it).

        Raises
        ------
        DimseError
            A file cannot be read or is not a DICOM file (named; checked before any is
            sent); the association is refused.
        """
        files = list(paths)
        pairs = [_stored_as(path) for path in files]  # every file checked before sending any
        assoc = self._associate(storage_contexts(pairs))
        out = []
        try:
            for path, (sop_class, syntax) in zip(files, pairs, strict=True):
                try:
                    if takes_as_stored(assoc.accepted_contexts, sop_class, syntax):
                        rsp = assoc.send_c_store(path)
                    else:  # the peer takes the class only uncompressed
                        rsp = assoc.send_c_store(_explicit_le(path, syntax))
                    out.append((path, int(rsp.get("Status", 0xC000)) if rsp else 0xC000))
                except (ValueError, AttributeError, PixelsError) as e:
                    LOG.warning("C-STORE of %s not sent: %s", path, e)
                    out.append((path, 0x0122))
        finally:
            assoc.release()
        return out

    # ------------------------------------------------------------ get/move
    def get(
        self,
        keys: Mapping[str, str],
        level: str = "STUDY",
        model: str = "STUDY",
        *,
        folder: str,
        on_store: Callable[[str, str], Stored] | None = None,
        sop_classes: Iterable[str] | None = None,
    ) -> RetrieveResult:
        """C-GET into ``folder``.

        Each instance is received as the SCP receives one
        (:func:`~pixels.dimse.receive.receive_store`): written to a file as its fragments
        arrive, then made a DICOM file under a temporary name in ``folder``, never held in
        memory whole; checked against its C-STORE request and the Study, Series and SOP
        Instance UIDs ``keys`` ask for (an instance of another is refused), then handed to ``on_store`` (that file's path and its SOP
        Instance UID -> :class:`Stored`), which renames it into place. By default it is
        renamed to ``{folder}/{SOPInstanceUID}.dcm``. A file not stored, or cut off by
        an abort, is removed: nothing partial is left under a stored name. Each instance
        refused is named in :attr:`RetrieveResult.refused` (and the log).

        A write failing (``folder`` or the temporary folder full, read-only...) fails that
        C-STORE with 0xA700 (Out of resources) and cancels the C-GET (C-CANCEL-RQ, PS3.7
        9.3.3.3 / PS3.4 C.4.3.2: the peer ends its sub-operations and answers 0xFE00
        Cancel); a C-STORE arriving after it is refused unwritten. The instances stored
        before it stay, and :class:`GetCancelledError` names the folder and the SOP Instance
        UID (it used to go on through every instance, or, for a full temporary folder,
        hang until the timeout)."""
        uid = _MODEL_UIDS["get"][model.upper()]
        classes = list(dict.fromkeys(sop_classes or self._classes_of(keys, level)))
        contexts = [build_context(uid), *_get_contexts(classes)]
        roles = [build_role(c, scp_role=True) for c in classes]
        result = RetrieveResult()
        place = on_store or _into_folder(folder)
        expect = _asked_for(keys)

        stop: list[str] = []  # the write that failed: the C-GET is cancelled

        def handle(event: Any) -> int:
            req = event.request
            sop = str(req.AffectedSOPInstanceUID or "")
            if stop:  # cancelled: nothing more is written
                release_received(req)
                result.refused.append(f"SOP Instance {sop[:70]!r}: 0xA700 C-GET cancelled")
                return FAIL_OUT_OF_RESOURCES
            syntax = str(event.context.transfer_syntax)
            stored = receive_store(
                req, syntax, folder, self.peer.ae_title, lambda made: place(made, sop), expect
            )
            if stored.status == FAIL_OUT_OF_RESOURCES:
                stop.append(f"SOP Instance {sop[:70]!r} {stored.reason}")
            if stored.status:
                text = f"SOP Instance {sop[:70]!r}: 0x{stored.status:04X} {stored.reason}"
                LOG.warning("C-GET from %s: %s", self.peer, text)
                result.refused.append(text)
            elif stored.path:
                result.stored.append(stored.path)
            return stored.status

        def cut(event: Any) -> None:
            discard_partial(event.assoc)  # a data set cut off by an abort or a dropped peer

        handlers = [(evt.EVT_C_STORE, handle), (evt.EVT_ABORTED, cut), (evt.EVT_CONN_CLOSE, cut)]
        assoc = self._associate(contexts, roles=roles, handlers=handlers, chunked=True)
        cancelled = False
        try:
            for rsp, _ in assoc.send_c_get(identifier(keys, level), uid, msg_id=_GET_ID):
                _final(result, rsp, "C-GET", self.peer)
                # after its C-STORE-RSP, while sub-operations remain: not after the final
                # response (a C-CANCEL then names a message already answered), nor when
                # the pending one says none remain (nothing is left to cancel)
                left = getattr(rsp, "NumberOfRemainingSuboperations", None)
                pending = getattr(rsp, "Status", None) in _PENDING and left != 0
                if stop and not cancelled and pending and assoc.is_established:
                    assoc.send_c_cancel(_GET_ID, query_model=uid)
                    cancelled = True
        except DimseError as e:
            space = partial_space(assoc)  # a full temporary folder: why it went
            sop = discard_partial(assoc)  # the data set being received when the peer went
            if sop is None:
                raise
            raise DimseError(
                f"{e}; SOP Instance {sop[:70]!r} cut off: nothing of it kept{space}"
            ) from e
        finally:
            assoc.release()
        if stop:
            raise GetCancelledError(
                f"C-GET from {self.peer}: {stop[0]}; the C-GET was cancelled, "
                f"{len(result.stored)} instances stored before it kept",
                result,
            )
        return result

    def move(
        self, keys: Mapping[str, str], destination: str, level: str = "STUDY", model: str = "STUDY"
    ) -> RetrieveResult:
        """C-MOVE to the AE ``destination`` (known to the peer)."""
        uid = _MODEL_UIDS["move"][model.upper()]
        assoc = self._associate([build_context(uid)])
        result = RetrieveResult()
        try:
            for rsp, _ in assoc.send_c_move(identifier(keys, level), destination, uid):
                _final(result, rsp, "C-MOVE", self.peer)
        finally:
            assoc.release()
        return result

    def _classes_of(self, keys: Mapping[str, str], level: str) -> list[str]:
        """The SOP classes of what ``keys`` name, by an IMAGE level C-FIND (Study Root);
        the common storage classes when the peer does not answer it."""
        ask = {k: v for k, v in keys.items() if _tag(k) in _UNIQUE}
        ask["SOPClassUID"] = ""
        ask["SOPInstanceUID"] = ""
        try:
            found = self.find(ask, "IMAGE", "STUDY")
            classes = sorted({str(d.get("SOPClassUID", "")) for d in found} - {""})
            if classes:
                return classes
        except DimseError as e:
            LOG.info("no IMAGE level C-FIND for the SOP classes (%s): proposing common ones", e)
        return [str(cx.abstract_syntax) for cx in StoragePresentationContexts[:60]]


#: The Message ID of a C-GET request (what its C-CANCEL names).
_GET_ID = 1
#: The statuses of a C-GET response that say more is to come (PS3.4 C.4.3.1.4).
_PENDING = frozenset({0xFF00, 0xFF01})


class GetCancelledError(DimseError):
    """A C-GET cancelled because an instance could not be written (the message names the
    folder and the SOP Instance UID); :attr:`result`: what was stored before it."""

    def __init__(self, message: str, result: RetrieveResult):
        super().__init__(message)
        self.result = result


def _stored_as(path: str) -> tuple[str, str]:
    """``(SOP class, transfer syntax)`` of the DICOM file ``path`` from its file meta group.

    Raises
    ------
    DimseError
        ``path`` cannot be read, is not a DICOM file (Part 10: preamble, ``DICM``, file meta
        group) or its file meta group lacks the SOP class or transfer syntax; the message
        names the file.
    """
    try:
        meta = dcmread(path, stop_before_pixels=True).file_meta
    except OSError as e:
        raise DimseError(f"cannot read {path}: {e.strerror or e}; nothing was sent") from e
    except InvalidDicomError as e:
        raise DimseError(
            f"{path} is not a DICOM file (no 'DICM' prefix and file meta group): only DICOM "
            "files can be sent (leave it out); nothing was sent"
        ) from e
    sop_class, syntax = meta.get("MediaStorageSOPClassUID"), meta.get("TransferSyntaxUID")
    if not sop_class or not syntax:
        tag = "(0002,0002) Media Storage SOP Class UID" if not sop_class else ""
        tag = tag or "(0002,0010) Transfer Syntax UID"
        raise DimseError(f"{path}: its file meta group has no {tag}; nothing was sent")
    return str(sop_class), str(syntax)


def _explicit_le(path: str, syntax: str) -> Dataset:
    """The file at ``path`` converted to Explicit VR Little Endian (pixel data decoded)."""
    with open(path, "rb") as fh:
        data = b"".join(open_transcoder(fh, path=path, transfer_syntax=syntax).chunks())
    return dcmread(io.BytesIO(data))


def _asked_for(keys: Mapping[str, str]) -> dict[str, frozenset[str]]:
    """The UIDs a C-GET's ``keys`` ask for (Study, Series, SOP Instance; a list where
    several are given): an instance holding another is not stored."""
    out = {}
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        value = str(keys.get(keyword, "") or "").strip()
        if value and "*" not in value and "?" not in value:
            out[keyword] = frozenset(v.strip() for v in value.split("\\") if v.strip())
    return out


def _into_folder(folder: str) -> Callable[[str, str], Stored]:
    """The default C-GET store: a received file renamed to ``{folder}/{SOP}.dcm``."""

    def place(made: str, sop: str) -> Stored:
        if not is_uid(sop):
            return Stored(FAIL_CANNOT_UNDERSTAND, f"SOP Instance UID {sop[:70]!r} is not a UID")
        path = os.path.join(folder, f"{sop}.dcm")
        try:
            os.replace(made, path)
        except OSError as e:
            return Stored(FAIL_OUT_OF_RESOURCES, f"not written to {path}: {e}")
        return Stored(SUCCESS, "", path)

    return place


_UNIQUE = {0x00100020, 0x0020000D, 0x0020000E, 0x00080018}


def _get_contexts(classes: list[str]) -> list[PresentationContext]:
    """Storage contexts a C-GET receives on: per class one with the uncompressed syntaxes
    and, while fewer than 127 in all, one per compressed syntax (an acceptor picks one
    syntax per context, so a compressed file comes as stored only with a context of its own)."""
    out = [build_context(c, list(NATIVE)) for c in classes[:126]]
    compressed = [s for s in STORAGE_SYNTAXES if s not in NATIVE]
    if len(classes) * (1 + len(compressed)) <= 126:
        out += [build_context(c, [s]) for c in classes for s in compressed]
    return out


_MEANINGS = {
    "C-ECHO": status_tables.VERIFICATION_SERVICE_CLASS_STATUS,
    "C-STORE": status_tables.STORAGE_SERVICE_CLASS_STATUS,
    "C-FIND": status_tables.QR_FIND_SERVICE_CLASS_STATUS,
    "C-GET": status_tables.QR_GET_SERVICE_CLASS_STATUS,
    "C-MOVE": status_tables.QR_MOVE_SERVICE_CLASS_STATUS,
}


def status_text(code: int, service: str) -> str:
    """A DIMSE status in hex with its meaning for ``service`` (``C-MOVE``...), e.g.
    ``0xA801 (Failure: Move destination unknown)``; a code of a class (``0xCxxx``)
    is named by its class."""
    table = {**status_tables.GENERAL_STATUS, **_MEANINGS.get(service, {})}
    known = table.get(code)
    if known is None and 0xC000 <= code <= 0xCFFF:
        known = ("Failure", "Unable to process")
    if known is None and 0xA900 <= code <= 0xA9FF:
        known = ("Failure", "Identifier does not match SOP class")
    if known is None:
        return f"0x{code:04X}"
    return f"0x{code:04X} ({known[0]}: {known[1]})" if known[1] else f"0x{code:04X} ({known[0]})"


def _status(rsp: Any, what: str, peer: Peer, pending_ok: bool = False) -> int:
    if rsp is None or "Status" not in rsp:
        raise DimseError(f"{what} to {peer}: no response (timed out or aborted)")
    code = int(rsp.Status)
    if code in _PENDING and pending_ok:
        return code
    if code not in (0x0000,) and not (0xB000 <= code <= 0xBFFF):
        comment = str(rsp.get("ErrorComment", "") or "")
        text = f"{what} to {peer} failed with status {status_text(code, what)}"
        raise DimseError(f"{text}: {comment}" if comment else text)
    return code


def _final(result: RetrieveResult, rsp: Any, what: str, peer: Peer) -> None:
    if rsp is None or "Status" not in rsp:
        raise DimseError(f"{what} to {peer}: no response (timed out or aborted)")
    code = int(rsp.Status)
    for name, attr in (
        ("NumberOfCompletedSuboperations", "completed"),
        ("NumberOfFailedSuboperations", "failed"),
        ("NumberOfWarningSuboperations", "warning"),
    ):
        if name in rsp and rsp.get(name) is not None:
            setattr(result, attr, int(rsp.get(name)))
    if code in _PENDING:
        return
    result.status = code
    result.comment = str(rsp.get("ErrorComment", "") or "")


def retrieve(
    peer: Peer | str,
    catalog: str,
    keys: Mapping[str, str],
    level: str = "STUDY",
    *,
    method: str = "get",
    ae_title: str = "PIXELS",
    port: int = 11112,
    host: str = "127.0.0.1",
    storage_root: str | None = None,
    client: Client | None = None,
) -> RetrieveResult:
    """Pull what ``keys`` name from ``peer`` into the catalog at ``catalog``.

    ``method="get"``: C-GET, the instances arrive on the same association.
    ``method="move"``: C-MOVE to ``ae_title``, which this call serves on
    ``host:port`` for the time of the move (the peer must know it there).

    Raises
    ------
    DimseError
        The association or the retrieve failed; with ``"move"``, the peer says it sent
        more instances than arrived here (it knows ``ae_title`` at another address).
    """
    from pixels.dimse.server import DimseServer
    from pixels.web.state import WebState

    cli = client or Client(peer, ae_title=ae_title)
    state = WebState(catalog, storage_root=storage_root)
    if method == "get":
        sink = StoreSink(state)
        try:
            result = cli.get(
                keys, level, folder=sink.incoming, on_store=lambda made, _: sink.store_path(made)
            )
        finally:
            sink.close()
        return result
    if method != "move":
        raise DimseError(f"retrieve method {method!r} is not one of get, move")
    server = DimseServer(state, ServerConfig(port=port, host=host, ae_title=ae_title))
    with server:
        result = cli.move(keys, ae_title, level)
        server.sink.flush()
        arrived = server.sink.committed
    if result.completed > arrived and server.sink.error is None:
        # the peer's sub-operations all ended before its final answer: what it says it
        # sent to ae_title and did not come here went to another host or port
        raise DimseError(
            f"{cli.peer} says it moved {result.completed} instance(s) to {ae_title}, but "
            f"{arrived} arrived here ({ae_title}@{host}:{port}): it sends {ae_title}'s "
            f"C-MOVEs to another host or port. Give {ae_title} this host and port {port} "
            "in its configuration, or pass the AE title it knows here (--ae-title) and "
            "its port (--port)"
        )
    return result
