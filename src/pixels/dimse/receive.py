"""C-STORE received into the catalog: durable before the answer, committed in batches.

An instance received by C-STORE is made a DICOM file (PS3.10: preamble, a file meta
group written for it, then the data set's bytes exactly as the peer sent them in
the negotiated transfer syntax) and goes through the STOW-RS path
(:func:`pixels.web.stow.store_path`: the same checks, the same place
``{storage_root}/{Study}/{Series}/{SOP}.dcm``, the same catalog row). The data set is
never held in memory whole: pynetdicom writes it to a file as its fragments arrive
(:func:`chunked_receive`; in the process's temporary folder, ``TMPDIR``, which should
be on disk rather than a tmpfs), it is copied from there (in the kernel) behind the file
meta group into ``{storage_root}/.incoming`` (:func:`part10_file`) and that file is
renamed into place (:func:`receive_store`: the same steps for the C-GET SCU,
:meth:`pixels.dimse.scu.Client.get`, which renames into a folder or the catalog). Before the
success status is sent the file, its folder (and a folder made for it, in its parent)
are ``fsync``-ed and its path is appended to a journal
(``{storage_root}/.dimse/batch-*.paths``: its data and its entry in ``.dimse``
``fsync``-ed too; :class:`pixels.durable.Durable`).

The rows are committed to the Delta table in batches (:class:`StoreSink`: one
commit per :attr:`~pixels.dimse.config.ServerConfig.commit_every` instances or
``commit_seconds``, and at the end of each association), through the server's
:class:`~pixels.web.stow.GroupCommitter` (one commit with STOW-RS requests arriving
meanwhile). A C-FIND, C-GET or C-MOVE commits what is pending before it reads
(:meth:`StoreSink.settled`): a peer that stores and then queries finds what it stored.
A batch's journal is removed once its commit is in; a server killed
before that leaves it, and the next start catalogs the files it lists
(:meth:`StoreSink.recover`): nothing acknowledged is lost. The files made in
``.incoming`` and the journals are locked by the process writing them until they are
renamed into place, removed or committed (:mod:`pixels.web.spool`): another server of
the table starting meanwhile (``pixels serve`` beside ``pixels dimse scp``) leaves them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import struct
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID
from pynetdicom import _config as pynetdicom_config
from pynetdicom import dimse_messages

from pixels.dicom.meta import read_header
from pixels.dicom.notices import kept_warnings
from pixels.durable import Durable
from pixels.errors import PixelsError
from pixels.web import spool
from pixels.web.spool import Spool
from pixels.web.state import WebState
from pixels.web.stow import committer_of, store_file, store_path

__all__ = [
    "JOURNAL_DIR",
    "StoreSink",
    "Stored",
    "WriteGuard",
    "check_received",
    "chunked_receive",
    "discard_partial",
    "discard_received",
    "part10_bytes",
    "part10_file",
    "partial_space",
    "receive_store",
    "received_file",
    "received_path",
    "release_received",
    "write_error",
]

LOG = logging.getLogger("pixels.dimse")

#: Journals of stored-but-uncommitted files, under the storage root.
JOURNAL_DIR = ".dimse"

#: C-STORE statuses (PS3.4 B.2.3).
SUCCESS = 0x0000
FAIL_OUT_OF_RESOURCES = 0xA700
FAIL_DOES_NOT_MATCH = 0xA900
FAIL_CANNOT_UNDERSTAND = 0xC000


def chunked_receive(ae: Any) -> None:
    """Have pynetdicom write each C-STORE data set received to a file as its fragments
    arrive (``STORE_RECV_CHUNKED_DATASET``, a setting of the whole process) rather than
    gather it in memory: the handlers of :mod:`pixels.dimse` make their file from there
    (:func:`received_file`).

    That file is made in the temporary folder (``TMPDIR``). A write to it failing (the
    folder full) raised in pynetdicom's reactor thread, which died: the association hung
    until its timeout. For the associations of ``ae`` (pixels' own application entity)
    its files are made by :func:`_guarded_temporary`: a write error is kept and the rest
    of the data set discarded, so the request reaches its handler, which answers it
    0xA700 naming the folder (:func:`receive_store`). Other application entities of the
    process (a user's own SCP) keep pynetdicom's file: their handlers do not check
    :func:`write_error` and would take a cut data set for a whole one."""
    pynetdicom_config.STORE_RECV_CHUNKED_DATASET = True
    _GUARDED.add(ae)
    dimse_messages.NamedTemporaryFile = _guarded_temporary


#: The application entities whose received data sets are written through a WriteGuard.
_GUARDED: weakref.WeakSet[Any] = weakref.WeakSet()


class WriteGuard:
    """A file pynetdicom writes a received data set to that keeps the first write error
    (:attr:`error`) instead of raising it in the reactor thread, and discards what is
    written after it. It reads as pynetdicom's file (``name``, ``write``, ``file.flush``,
    ``close``)."""

    def __init__(self, handle: Any, name: str, error: OSError | None = None):
        self._handle = handle
        self.name = name
        self.error = error

    @property
    def file(self) -> WriteGuard:
        return self

    def write(self, data: bytes) -> int:
        if self.error is None:
            try:
                return int(self._handle.write(data))
            except OSError as e:
                self.error = e
        return len(data)

    def flush(self) -> None:
        if self.error is None:
            try:
                self._handle.flush()
            except OSError as e:
                self.error = e

    def close(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()


def _guarded_temporary(*args: Any, **kwargs: Any) -> Any:
    """pynetdicom's ``NamedTemporaryFile`` for a received data set, in a
    :class:`WriteGuard` (one that could not be made holds that error) when the association
    receiving it is one of :func:`chunked_receive`'s application entities; pynetdicom's
    own file otherwise. (pynetdicom makes it in the association's reactor thread, whose
    ``assoc`` is that association.)"""
    assoc = getattr(threading.current_thread(), "assoc", None)
    if getattr(assoc, "ae", None) not in _GUARDED:
        return tempfile.NamedTemporaryFile(*args, **kwargs)  # pynetdicom's own
    try:
        handle = tempfile.NamedTemporaryFile(*args, **kwargs)  # noqa: SIM115 - pynetdicom's
    except OSError as e:
        name = os.path.join(tempfile.gettempdir(), "(not made)")
        return WriteGuard(None, name, e)
    return WriteGuard(handle, handle.name)


def write_error(request: Any) -> str | None:
    """Why the data set of a C-STORE request could not be written where pynetdicom
    received it (``"not written to /tmp: [Errno 28] No space left on device (TMPDIR)"``);
    None when it was."""
    handle = getattr(request, "_dataset_file", None)
    error = getattr(handle, "error", None)
    if handle is None or error is None:
        return None
    return f"not written to {os.path.dirname(str(handle.name))}: {error} (TMPDIR)"


def received_path(request: Any) -> str | None:
    """The file pynetdicom wrote a C-STORE request's data set to (PS3.10, its own file
    meta group); None when it gathered it in memory (``request.DataSet``)."""
    path = getattr(request, "_dataset_path", None)
    return str(path) if isinstance(path, str | os.PathLike) else None


def _dataset_offset(fh: BinaryIO, path: str) -> int:
    """Where the data set starts in a PS3.10 file pynetdicom wrote (after its file meta
    group, whose (0002,0000) group length it writes first)."""
    fh.seek(128)
    head = fh.read(16)
    if len(head) != 16 or head[:12] != b"DICM\x02\x00\x00\x00UL\x04\x00":
        raise ValueError(f"{path}: no file meta group length (0002,0000) after 'DICM'")
    return 144 + int(struct.unpack("<I", head[12:])[0])


def part10_file(
    received: str,
    folder: str,
    sop_class: str,
    sop_instance: str,
    transfer_syntax: str,
    source_ae: str = "",
) -> Spool:
    """A DICOM file made in ``folder`` (locked until released, :func:`_temporary`) of the
    data set pynetdicom wrote to ``received``: the file meta group of :func:`part10_bytes`,
    then the data set's bytes copied unchanged by the kernel (never read into memory)."""
    head = part10_bytes(b"", sop_class, sop_instance, transfer_syntax, source_ae)
    made = _temporary(folder)
    try:
        with open(received, "rb") as src, os.fdopen(made.fd, "wb") as out:
            offset = _dataset_offset(src, received)
            out.write(head)
            out.flush()
            size = os.fstat(src.fileno()).st_size
            try:
                while offset < size:
                    sent = os.sendfile(out.fileno(), src.fileno(), offset, size - offset)
                    if sent == 0:
                        break
                    offset += sent
            except OSError:  # no sendfile between these files: a buffer at a time
                src.seek(offset)
                out.seek(len(head))
                shutil.copyfileobj(src, out, 1 << 20)
    except BaseException:
        made.discard()
        raise
    return made


def _temporary(folder: str) -> Spool:
    """A new file in ``folder`` (made if missing) under a hidden temporary name
    (``.pixels-*.part``): what is left there by a killed process reads as partial. It
    is locked by this process until released (:mod:`pixels.web.spool`): a server of
    this table starting meanwhile removes only the spools of killed ones."""
    return spool.create(folder, prefix=".pixels-", suffix=".part")


def received_file(request: Any, transfer_syntax: str, folder: str, source_ae: str = "") -> Spool:
    """The DICOM file made in ``folder`` (a temporary name, locked until released) of a C-STORE
    request's data set, as the SCP and the C-GET SCU receive one: :func:`part10_file`
    from the file pynetdicom wrote it to (:func:`chunked_receive`), or the PS3.10 bytes of
    its buffer where pynetdicom gathered it in memory. pynetdicom's file is left to the
    caller (:func:`release_received`)."""
    sop_class = str(request.AffectedSOPClassUID or "")
    sop = str(request.AffectedSOPInstanceUID or "")
    received = received_path(request)
    if received is not None:
        return part10_file(received, folder, sop_class, sop, transfer_syntax, source_ae)
    data = part10_bytes(request.DataSet.getvalue(), sop_class, sop, transfer_syntax, source_ae)
    made = _temporary(folder)
    try:
        with os.fdopen(made.fd, "wb") as out:
            out.write(data)
    except BaseException:
        made.discard()
        raise
    return made


def check_received(
    path: str, sop_class: str, sop: str, expect: Mapping[str, frozenset[str]] | None = None
) -> tuple[int, str] | None:
    """Why a received file (``path``, made by :func:`received_file`) may not be stored for
    a C-STORE request of ``sop_class`` / ``sop``: a failure status and its reason (the
    header unreadable, its SOP Class / Instance UID not the request's, or an attribute
    named in ``expect`` holding none of its values: what a C-GET asked for); None when it
    may. Only the header is read, by :func:`pixels.dicom.meta.read_header` (the reader the
    sink stores with: a tenth of pydicom's time on a CT, and the same verdict on what is
    DICOM; a defect after the header is the sink's to report)."""
    try:
        with kept_warnings() as kept:  # pydicom's complaints: part of the reason, not logs
            with open(path, "rb") as fh:
                header = read_header(fh, path=path)
            model = header.model if header.model is not None else json.loads(header.meta)
    except PixelsError as e:  # the reason goes to the peer: not the local path
        return FAIL_CANNOT_UNDERSTAND, f"malformed data set: {e.reason}"
    except Exception as e:
        return FAIL_CANNOT_UNDERSTAND, f"malformed data set: {e}"
    held_class = _text(model, 0x00080016)
    held_sop = _text(model, 0x00080018)
    held = {k: _text(model, tag_for_keyword(k) or 0) for k in expect or {}}
    if not held_sop or not held_class:
        why = "; ".join(kept) or "no SOP Class / Instance UID (0008,0016/0018) can be read"
        return FAIL_CANNOT_UNDERSTAND, f"malformed data set: {why}"
    if held_sop != sop:
        return (
            FAIL_DOES_NOT_MATCH,
            f"SOPInstanceUID (0008,0018) {held_sop!r} differs from the request's",
        )
    if held_class != sop_class:
        return (
            FAIL_DOES_NOT_MATCH,
            f"SOPClassUID (0008,0016) {held_class!r} differs from the request's",
        )
    for keyword, wanted in (expect or {}).items():
        if held[keyword] not in wanted:
            tag = tag_for_keyword(keyword) or 0
            return (
                FAIL_DOES_NOT_MATCH,
                f"{keyword} ({tag >> 16:04X},{tag & 0xFFFF:04X}) {held[keyword][:70]!r} is not "
                f"what the C-GET asked for ({', '.join(sorted(wanted))[:200]})",
            )
    return None


def _text(model: Mapping[str, Any], tag: int) -> str:
    """The values of ``tag`` in a DICOM JSON ``model``, joined by backslashes ("" if none)."""
    values = (model.get(f"{tag:08X}") or {}).get("Value") or []
    return "\\".join(str(v) for v in values)


def receive_store(
    request: Any,
    transfer_syntax: str,
    folder: str,
    source_ae: str,
    store: Callable[[str], Stored],
    expect: Mapping[str, frozenset[str]] | None = None,
) -> Stored:
    """One C-STORE request received, as the SCP and the C-GET SCU take one: its DICOM file
    made in ``folder`` (:func:`received_file`; pynetdicom's file then removed), checked
    against the request and ``expect`` (:func:`check_received`) and handed to ``store``,
    which renames it into place; what ``store`` leaves of it (refused, or never handed
    over) is removed. What became of it (a failure status with its reason, naming
    ``folder`` when it could not be written there, or success and the path)."""
    sop_class = str(request.AffectedSOPClassUID or "")
    sop = str(request.AffectedSOPInstanceUID or "")
    unwritten = write_error(request)
    if unwritten is not None:  # the temporary folder full: nothing of it was kept
        release_received(request)
        return Stored(FAIL_OUT_OF_RESOURCES, unwritten)
    try:
        made = received_file(request, transfer_syntax, folder, source_ae)
    except OSError as e:  # ENOSPC names no file: the folder is named
        return Stored(FAIL_OUT_OF_RESOURCES, f"not written to {folder}: {e}")
    except Exception as e:
        return Stored(FAIL_CANNOT_UNDERSTAND, f"cannot encode: {e}")
    finally:
        release_received(request)
    try:
        refused = check_received(made.path, sop_class, sop, expect)
        return store(made.path) if refused is None else Stored(*refused)
    finally:
        made.discard()  # not stored (renamed away if stored); the lock dropped


def release_received(request: Any) -> None:
    """Remove the file pynetdicom wrote a C-STORE request's data set to, if any (its
    storage SCP removes it after the handler; its C-GET SCU never does)."""
    handle = getattr(request, "_dataset_file", None)
    if handle is not None:
        discard_received(handle)


def _partial(assoc: Any) -> tuple[Any, Any]:
    """The DIMSE message ``assoc`` is receiving and the file pynetdicom writes its data set
    to (each None when there is none)."""
    message = getattr(getattr(assoc, "dimse", None), "message", None)
    return message, getattr(message, "_data_set_file", None)


def discard_partial(assoc: Any) -> str | None:
    """Remove the file pynetdicom was writing a C-STORE data set to when the association
    ends before the data set did (an abort, a dropped connection) or when the request is
    answered without its handler: pynetdicom deletes it only after the handler ran. The
    SOP Instance UID of the data set cut off (None: none was being received)."""
    message, handle = _partial(assoc)
    if handle is None:
        return None
    discard_received(handle)
    command = getattr(message, "command_set", None)
    return str(getattr(command, "AffectedSOPInstanceUID", "") or "")


#: Free space below which the folder of a data set cut off is named as a likely cause.
LOW_SPACE = 16 << 20


def partial_space(assoc: Any) -> str:
    """Where the data set being received is written, when that folder is (nearly) full:
    ``"; its temporary folder /tmp has 1024 bytes free (TMPDIR)"``, else ``""``.

    pynetdicom writes a data set to a file as its fragments arrive
    (:func:`chunked_receive`); a write failing there is now kept (:class:`WriteGuard`) and
    the request answered 0xA700, but a peer that goes (or a timeout) while that folder is
    full still gets here: all the caller sees then is "no response". Call before
    :func:`discard_partial`.
    """
    handle = _partial(assoc)[1]
    if handle is None:
        return ""
    folder = os.path.dirname(str(handle.name))
    try:
        st = os.statvfs(folder)
    except OSError:
        return ""
    free = st.f_bavail * st.f_frsize
    if free >= LOW_SPACE:
        return ""
    return f"; its temporary folder {folder} has {free} bytes free (TMPDIR)"


def discard_received(handle: Any) -> None:
    """Close and remove a temporary file pynetdicom received a data set into."""
    with contextlib.suppress(OSError):
        handle.close()
    with contextlib.suppress(OSError):
        os.unlink(handle.name)


def part10_bytes(
    dataset: bytes, sop_class: str, sop_instance: str, transfer_syntax: str, source_ae: str = ""
) -> bytes:
    """A DICOM file of a data set as received: preamble, ``DICM``, a file meta group
    (group length, version, media storage UIDs, transfer syntax, implementation,
    source AE), then ``dataset`` unchanged."""
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance)
    meta.TransferSyntaxUID = UID(transfer_syntax)
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "PIXELS"
    if source_ae:
        meta.SourceApplicationEntityTitle = source_ae
    buf = DicomBytesIO()
    buf.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(buf, meta, enforce_standard=True)
    buf.write(dataset)
    return buf.getvalue()


def _close(journal: Spool, remove: bool = False) -> None:
    """Close a journal (removed first when ``remove``: its commit is in) and unlock it."""
    if remove:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(journal.path)
    with contextlib.suppress(OSError):
        os.close(journal.fd)
    journal.release()


@dataclass(frozen=True)
class Stored:
    """What became of one C-STORE: its status, why (for a failure) and the stored path."""

    status: int
    reason: str = ""
    path: str | None = None


class StoreSink:
    """Stores received instances and commits their rows in batches (module docstring).

    Parameters
    ----------
    state : WebState
        The server's state (catalog, storage root, STOW-RS committer and index).
    every : int
        Rows committed together at most this many at a time.
    seconds : float
        A batch is committed at most this long after its first row.
    """

    def __init__(self, state: WebState, *, every: int = 200, seconds: float = 2.0):
        self.state = state
        self.every = max(1, every)
        self.seconds = seconds
        self.journals = os.path.join(state.storage_root, JOURNAL_DIR)
        self._durable = Durable(state.storage_root)
        self._cond = threading.Condition()
        self._rows: list[dict[str, Any]] = []
        self._journal: Spool | None = None
        self._first = 0.0
        self._closed = False
        self._commit_lock = threading.Lock()
        #: commits made and rows they held (tests, benchmarks)
        self.commits = 0
        self.committed = 0
        #: the last commit's error (the rows stay journaled for the next start)
        self.error: BaseException | None = None
        #: the table version holding every row committed so far (None: none yet)
        self.version: int | None = None
        self._thread = threading.Thread(target=self._run, name="pixels-dimse-commit", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ store
    @property
    def incoming(self) -> str:
        """The folder received files are made in before they are renamed into place."""
        return os.path.join(self.state.claimed_root(), ".incoming")

    def store(self, data: bytes) -> Stored:
        """Check and store one PS3.10 file's bytes; durable (and journaled) when it
        returns a success."""
        try:
            outcome, row = store_file(self.state, data)
        except OSError as e:  # the disk, not the data set: out of resources
            return Stored(FAIL_OUT_OF_RESOURCES, f"not stored: {e}")
        return self._stored(outcome, row)

    def store_path(self, path: str) -> Stored:
        """As :meth:`store`, for a PS3.10 file made under :attr:`incoming`: renamed into
        place when stored, removed when not."""
        try:
            outcome, row = store_path(self.state, path)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.unlink(path)
            return Stored(FAIL_OUT_OF_RESOURCES, f"not stored: {e}")
        return self._stored(outcome, row)

    def _stored(self, outcome: Any, row: dict[str, Any] | None) -> Stored:
        if outcome.failure is not None or row is None or outcome.path is None:
            status = FAIL_CANNOT_UNDERSTAND
            return Stored(status, outcome.reason or "not stored")
        path = outcome.path
        try:
            self._durable.placed(path)  # the file, its folder, a new folder's entries
            with self._cond:
                self._journal_append(path)
                if not self._rows:
                    self._first = time.monotonic()
                self._rows.append(row)
                self._cond.notify_all()
        except OSError as e:
            return Stored(FAIL_OUT_OF_RESOURCES, f"stored but not made durable: {e}", path)
        if outcome.replaced:
            LOG.info("C-STORE replaced %s (different bytes, same SOP instance)", path)
        return Stored(SUCCESS, "", path)

    def _journal_append(self, path: str) -> None:
        """Append ``path`` to this batch's journal (made, and locked by this process until
        its commit is in: another server of this table starting meanwhile leaves it),
        durable before ``path`` is acknowledged: its data and, for a new journal, its
        entry in :data:`JOURNAL_DIR` (and that folder's own entry, once per sink)."""
        if self._journal is None:
            self._journal = spool.create(self.journals, prefix="batch-", suffix=".paths")
            os.fchmod(self._journal.fd, 0o644)
            self._durable.named(self._journal.path)  # before its first line is acknowledged
        os.write(self._journal.fd, path.encode("utf-8") + b"\n")
        os.fsync(self._journal.fd)

    # ----------------------------------------------------------------- commit
    def flush(self) -> None:
        """Commit the rows stored so far (blocks until their commit is in)."""
        with self._commit_lock:
            with self._cond:
                rows, journal = self._rows, self._journal
                self._rows, self._journal = [], None
            if not rows:
                return
            try:
                version = committer_of(self.state).commit(rows)
            except BaseException as e:
                self.error = e
                LOG.error(
                    "DIMSE: %d stored instances not cataloged (kept in %s for the next start): %s",
                    len(rows),
                    journal.path if journal is not None else None,
                    e,
                )
                if journal is not None:  # unlocked: the next server to start catalogs it
                    _close(journal)
                return
            self.commits += 1
            self.committed += len(rows)
            self.version = version if self.version is None else max(self.version, version)
            if journal is not None:
                _close(journal, remove=True)

    def settled(self) -> int | None:
        """Commit what was acknowledged and is still pending (blocks until it is in), and
        give the table version that holds every instance acknowledged so far: a query
        answers from that version or a later one, so a peer that stores and then queries
        finds what it stored (as an archive that indexes on receipt answers)."""
        self.flush()
        return self.version

    def flush_soon(self) -> None:
        """Have the commit thread commit what is pending now (an association ended)."""
        with self._cond:
            self._first = time.monotonic() - self.seconds
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    if len(self._rows) >= self.every:
                        break
                    if self._rows:
                        left = self._first + self.seconds - time.monotonic()
                        if left <= 0:
                            break
                        self._cond.wait(left)
                    else:
                        self._cond.wait()
                if self._closed:
                    return
            self.flush()

    def close(self) -> None:
        """Commit what is pending and stop the commit thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()
        self.flush()

    # --------------------------------------------------------------- recovery
    def recover(self) -> int:
        """Catalog the files that journals left by a killed server list (their batch's
        commit never came); the number of files cataloged. A journal another live process
        of this table still writes (locked, :mod:`pixels.web.spool`) is its to commit: it
        is left alone."""
        with spool.locked_leftovers(self.journals, ".paths") as journals:
            return self._recover(journals)

    def _recover(self, journals: list[tuple[str, int]]) -> int:
        total = 0
        for journal, fd in journals:
            with open(fd, encoding="utf-8", closefd=False) as fh:
                paths = [p for p in fh.read().splitlines() if p]
            rows = []
            for path in dict.fromkeys(paths):
                try:
                    with open(path, "rb") as fh:
                        data = fh.read()
                except FileNotFoundError:
                    continue
                outcome, row = store_file(self.state, data)
                if row is not None:
                    rows.append(row)
                else:
                    LOG.error("DIMSE recovery: %s not cataloged: %s", path, outcome.reason)
            if rows:
                committer_of(self.state).commit(rows)
                total += len(rows)
            os.unlink(journal)
        if total:
            LOG.info("DIMSE: cataloged %d instances stored before the last stop", total)
        return total
