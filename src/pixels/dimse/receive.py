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
renamed into place. Before the
success status is sent the file and its folder are ``fsync``-ed and its path is
appended to a journal (``{storage_root}/.dimse/batch-*.paths``, ``fsync``-ed too).

The rows are committed to the Delta table in batches (:class:`StoreSink`: one
commit per :attr:`~pixels.dimse.config.ServerConfig.commit_every` instances or
``commit_seconds``, and at the end of each association), through the server's
:class:`~pixels.web.stow.GroupCommitter` (one commit with STOW-RS requests arriving
meanwhile). A C-FIND, C-GET or C-MOVE commits what is pending before it reads
(:meth:`StoreSink.settled`): a peer that stores and then queries finds what it stored.
A batch's journal is removed once its commit is in; a server killed
before that leaves it, and the next start catalogs the files it lists
(:meth:`StoreSink.recover`): nothing acknowledged is lost.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import struct
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, BinaryIO

from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID
from pynetdicom import _config as pynetdicom_config

from pixels.web.state import WebState
from pixels.web.stow import committer_of, store_file, store_path

__all__ = [
    "JOURNAL_DIR",
    "StoreSink",
    "Stored",
    "chunked_receive",
    "discard_partial",
    "part10_bytes",
    "part10_file",
    "received_bytes",
    "received_path",
]

LOG = logging.getLogger("pixels.dimse")

#: Journals of stored-but-uncommitted files, under the storage root.
JOURNAL_DIR = ".dimse"

#: C-STORE statuses (PS3.4 B.2.3).
SUCCESS = 0x0000
FAIL_OUT_OF_RESOURCES = 0xA700
FAIL_DOES_NOT_MATCH = 0xA900
FAIL_CANNOT_UNDERSTAND = 0xC000


def chunked_receive() -> None:
    """Have pynetdicom write each C-STORE data set received to a file as its fragments
    arrive (``STORE_RECV_CHUNKED_DATASET``, a setting of the whole process) rather than
    gather it in memory: the handlers of :mod:`pixels.dimse` read it from there
    (:func:`received_path`, :func:`received_bytes`)."""
    pynetdicom_config.STORE_RECV_CHUNKED_DATASET = True


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


def received_bytes(request: Any) -> bytes:
    """A C-STORE request's data set as the peer sent it (from pynetdicom's file or its
    buffer)."""
    path = received_path(request)
    if path is None:
        return bytes(request.DataSet.getvalue())
    with open(path, "rb") as fh:
        fh.seek(_dataset_offset(fh, path))
        return fh.read()


def part10_file(
    received: str,
    folder: str,
    sop_class: str,
    sop_instance: str,
    transfer_syntax: str,
    source_ae: str = "",
) -> str:
    """A DICOM file made in ``folder`` (its path) of the data set pynetdicom wrote to
    ``received``: the file meta group of :func:`part10_bytes`, then the data set's bytes
    copied unchanged by the kernel (never read into memory)."""
    head = part10_bytes(b"", sop_class, sop_instance, transfer_syntax, source_ae)
    try:
        fd, path = tempfile.mkstemp(dir=folder, suffix=".dcm")
    except FileNotFoundError:
        os.makedirs(folder, exist_ok=True)
        fd, path = tempfile.mkstemp(dir=folder, suffix=".dcm")
    try:
        with open(received, "rb") as src, os.fdopen(fd, "wb") as out:
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
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    return path


def discard_partial(assoc: Any) -> None:
    """Remove the file pynetdicom was writing a C-STORE data set to when the association
    ends before the data set did (an abort, a dropped connection) or when the request is
    answered without its handler: pynetdicom deletes it only after the handler ran."""
    message = getattr(getattr(assoc, "dimse", None), "message", None)
    handle = getattr(message, "_data_set_file", None)
    if handle is not None:
        discard_received(handle)


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


@dataclass(frozen=True)
class Stored:
    """What became of one C-STORE: its status, why (for a failure) and the stored path."""

    status: int
    reason: str = ""
    path: str | None = None


def _fsync_path(path: str, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
        self._cond = threading.Condition()
        self._rows: list[dict[str, Any]] = []
        self._journal: str | None = None
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
        return os.path.join(self.state.storage_root, ".incoming")

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
            _fsync_path(path)
            _fsync_path(os.path.dirname(path), directory=True)
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
        if self._journal is None:
            os.makedirs(self.journals, exist_ok=True)
            self._journal = os.path.join(self.journals, f"batch-{uuid.uuid4().hex}.paths")
        fd = os.open(self._journal, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, path.encode("utf-8") + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)

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
                    journal,
                    e,
                )
                return
            self.commits += 1
            self.committed += len(rows)
            self.version = version if self.version is None else max(self.version, version)
            if journal is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(journal)

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
        commit never came); the number of files cataloged."""
        try:
            names = sorted(n for n in os.listdir(self.journals) if n.endswith(".paths"))
        except FileNotFoundError:
            return 0
        total = 0
        for name in names:
            journal = os.path.join(self.journals, name)
            with open(journal, encoding="utf-8") as fh:
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
