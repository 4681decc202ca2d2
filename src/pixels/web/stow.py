"""STOW-RS (PS3.18 10.5): store instances sent as multipart/related application/dicom.

A body of up to :data:`IN_MEMORY` bytes is held in memory; a larger one is spooled
to a temporary file under ``{storage_root}/.incoming`` (never held whole in memory;
larger than the limit: 413; what a killed server left there is removed when the
next one starts, :func:`clean_stale_spools`; a spool is locked by the process writing it,
:mod:`pixels.web.spool`, so one still being written by another server stays). The body is split into parts, and each
part checked: it must be a DICOM file (PS3.10: preamble, ``DICM``, file meta with a
transfer syntax; a data set readable only by force is refused), parse as DICOM
(:func:`pixels.dicom.meta.read_header`, deflated data inflated under a cap) and
carry valid SOP Class, SOP Instance, Study and Series UIDs; with a study in the
URL the instance must belong to it. Each part's header is read once, from the
request's bytes: that one read checks it and makes its catalog row
(:func:`pixels.dicom.record.header_record`, the row ``pixels catalog`` would make of
the stored file); the stored file is never read back. A good part is written to
``{storage_root}/{StudyUID}/{SeriesUID}/{SOPUID}.dcm`` atomically (temporary file
then :func:`os.replace`) and cataloged before the answer, so the next QIDO-RS request
sees it: the rows of one request, and of the requests that arrive while a commit
runs, go into one Delta commit (:class:`GroupCommitter`), and a request is answered
only once its rows are committed and in the server's index. A server killed at any
point loses nothing it acknowledged, nor does a power loss: each stored file, its
folder and any folder made for it are ``fsync``-ed before their commit
(:class:`pixels.durable.Durable`), and a local table's commit before it returns.

Duplicates: a SOP instance already stored with identical bytes is a success and
nothing is written; different bytes replace the stored file (a new version; the
catalog row for that path is replaced too) and the item says so with
WarningReason (0008,1196) ``0xB000``.

The response is a Store Instances Response (DICOM JSON): ReferencedSOPSequence
(0008,1199) for stored instances, FailedSOPSequence (0008,1198) with
FailureReason (0008,1197) ``0xA900`` (study does not match the URL) or ``0xC000``
(cannot understand: not DICOM, UIDs missing); status 200 when all were stored,
202 when some failed, 409 when all failed; 400 for a malformed multipart body,
415 for another content type, 413 for a body over the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import mmap
import os
import struct
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, TypeAlias, cast

import pyarrow as pa
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from pixels.dicom.meta import read_header
from pixels.dicom.notices import kept_warnings
from pixels.dicom.record import RecordOptions, header_record
from pixels.schema import SCHEMA
from pixels.sources.local import local_ref
from pixels.table import CatalogTable
from pixels.web import spool
from pixels.web.index import index_of
from pixels.web.multipart import MultipartError, parse_media_type, split_parts
from pixels.web.state import WebState, base_url, check_uid, is_uid, state_of

__all__ = [
    "IN_MEMORY",
    "GroupCommitter",
    "clean_stale_spools",
    "committer_of",
    "store",
    "store_file",
]

#: Bodies up to this size are held in memory; larger ones are spooled to a file.
IN_MEMORY = 16 << 20

FAIL_STUDY_MISMATCH = 0xA900
FAIL_CANNOT_UNDERSTAND = 0xC000
FAIL_PROCESSING = 0x0110
WARN_REPLACED = 0xB000


@dataclass
class _Outcome:
    sop_class: str | None
    sop: str | None
    study: str | None = None
    series: str | None = None
    failure: int | None = None
    reason: str = ""
    replaced: bool = False
    path: str | None = None


def clean_stale_spools(storage_root: str) -> list[str]:
    """Remove what killed servers left in ``{storage_root}/.incoming``: the spools no live
    process holds (:func:`pixels.web.spool.clean`; another server of this table, STOW-RS
    or C-STORE, may be receiving into the same folder). Called when a server starts;
    returns the removed paths."""
    return spool.clean(os.path.join(storage_root, spool.INCOMING))


async def store(request: Request) -> Response:
    """``POST /studies`` and ``POST /studies/{study}``."""
    state = state_of(request)
    study = request.path_params.get("study")
    if study is not None:
        check_uid(study, "StudyInstanceUID")
    ctype = parse_media_type(request.headers.get("content-type", ""))
    if ctype.type != "multipart/related":
        raise HTTPException(
            415, 'STOW-RS accepts multipart/related; type="application/dicom" bodies only'
        )
    inner = ctype.params.get("type", "application/dicom").lower()
    if inner != "application/dicom":
        raise HTTPException(415, f"part type {inner!r} is not supported: send application/dicom")
    boundary = ctype.params.get("boundary")
    if not boundary:
        raise HTTPException(400, "Content-Type has no boundary parameter")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > state.max_upload:
        raise HTTPException(413, f"the body is larger than the limit of {state.max_upload} bytes")
    body, spooled = await _receive(request, state)
    try:
        outcomes, rows = await run_in_threadpool(
            _store_body, state, spooled.path if spooled is not None else body, boundary, study
        )
    finally:
        if spooled is not None:
            spooled.discard()
    if rows is not None:
        # waiting for the commit holds no worker thread: searches keep being answered
        try:
            await committer_of(state).commit_async(rows)
        except Exception as e:  # the files are stored; say they could not be cataloged
            for o in outcomes:
                if o.failure is None and o.path:
                    o.failure, o.reason = FAIL_PROCESSING, f"stored but not cataloged: {e}"
    return _response(request, outcomes, study)


async def _receive(request: Request, state: WebState) -> tuple[bytes, spool.Spool | None]:
    """The body in memory, or spooled to a file when larger than :data:`IN_MEMORY` (that
    file, locked until the caller discards it)."""
    chunks: list[bytes] = []
    held = total = 0
    spooled: spool.Spool | None = None
    out: BinaryIO | None = None
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > state.max_upload:
                raise HTTPException(
                    413, f"the body is larger than the limit of {state.max_upload} bytes"
                )
            if out is not None:
                out.write(chunk)
                continue
            chunks.append(chunk)
            held += len(chunk)
            if held > IN_MEMORY:
                incoming = os.path.join(state.claimed_root(), spool.INCOMING)
                spooled = spool.create(incoming, suffix=".body")
                out = os.fdopen(spooled.fd, "wb")
                out.writelines(chunks)
                chunks = []
        if out is not None:
            out.close()
    except BaseException:
        if out is not None:
            out.close()
        if spooled is not None:
            spooled.discard()
        raise
    return b"".join(chunks), spooled


def _store_body(
    state: WebState, source: bytes | str, boundary: str, study: str | None
) -> tuple[list[_Outcome], list[dict[str, Any]] | None]:
    """Check and place the parts of a body (bytes, or the path of its spool file); their
    outcomes and the catalog rows to commit."""
    if isinstance(source, bytes):
        return _store_parts(state, source, boundary, study)
    if os.path.getsize(source) == 0:
        raise HTTPException(400, "empty body: no multipart parts")
    with open(source, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        return _store_parts(state, mm, boundary, study)


def _store_parts(
    state: WebState, body: bytes | mmap.mmap, boundary: str, study: str | None
) -> tuple[list[_Outcome], list[dict[str, Any]] | None]:
    if len(body) == 0:
        raise HTTPException(400, "empty body: no multipart parts")
    try:
        parts = split_parts(body, boundary)
    except MultipartError as e:
        raise HTTPException(400, str(e)) from e
    if not parts:
        raise HTTPException(400, "the multipart body has no parts")
    outcomes, rows = [], []
    for part in parts:
        outcome, row = _store_part(state, body, part.start, part.end, part.content_type, study)
        outcomes.append(outcome)
        if row is not None:
            rows.append(row)
    return outcomes, rows or None


class GroupCommitter:
    """Commits the rows of concurrent STOW-RS requests together: one Delta commit per group.

    Each request hands its rows to :meth:`commit` and waits; one thread appends
    everything handed in meanwhile in one commit (:meth:`CatalogTable.append`, so
    the identity rule applies across the group) and wakes every request of the
    group with the version that holds its rows, or the error. A request is
    answered only after the commit holding its rows: a crash loses nothing
    acknowledged.
    """

    def __init__(self, table: CatalogTable, after_commit: Callable[[int], Any] | None = None):
        self.table = CatalogTable(table.uri, table.storage_options)
        #: Called with each new version before its requests are answered (the server's
        #: index catches up, so that the next request of any client sees the rows).
        self.after_commit = after_commit
        self._cond = threading.Condition()
        self._pending: list[_Submission] = []
        self._thread: threading.Thread | None = None
        #: Commits made and requests they held (for benchmarks and tests).
        self.commits = 0
        self.requests = 0

    def commit(self, rows: Rows) -> int:
        """Commit ``rows`` (with whatever other requests hand in meanwhile); the version."""
        sub = _Submission(rows)
        self._submit(sub)
        sub.done.wait()
        if sub.error is not None:
            raise sub.error
        assert sub.version is not None
        return sub.version

    async def commit_async(self, rows: Rows) -> int:
        """:meth:`commit` for a coroutine: it waits without holding a thread."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()

        def settle(sub: _Submission) -> None:
            if fut.done():
                return
            if sub.error is not None:
                fut.set_exception(sub.error)
            else:
                fut.set_result(sub.version if sub.version is not None else -1)

        sub = _Submission(rows, notify=lambda s: loop.call_soon_threadsafe(settle, s))
        self._submit(sub)
        return await fut

    def _submit(self, sub: _Submission) -> None:
        with self._cond:
            self._pending.append(sub)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="pixels-stow-commit", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._cond.wait_for(lambda: bool(self._pending), timeout=_IDLE_S):
                    self._thread = None
                    return
                group, self._pending = self._pending, []
            try:
                self.table.append(_concat([g.rows for g in group]))
                version = self.table.version()
                if self.after_commit is not None:
                    self.after_commit(version)
                self.commits += 1
                self.requests += len(group)
                for g in group:
                    g.version = version
            except BaseException as e:
                for g in group:
                    g.error = e
            finally:
                for g in group:
                    g.done.set()
                    if g.notify is not None:
                        g.notify(g)


#: Seconds the commit thread waits for work before it ends (a new request starts it again).
_IDLE_S = 30.0


#: Catalog rows handed to :meth:`GroupCommitter.commit`: a table, or row dicts.
Rows: TypeAlias = pa.Table | Sequence[dict[str, Any]]


def _concat(groups: list[Rows]) -> pa.Table:
    """One table of the rows of a group (row dicts converted together, once)."""
    dicts = [r for g in groups if not isinstance(g, pa.Table) for r in g]
    tables = [g for g in groups if isinstance(g, pa.Table)]
    if dicts:
        tables.append(pa.Table.from_pylist(dicts, schema=SCHEMA))
    return pa.concat_tables(tables, promote_options="default")


@dataclass
class _Submission:
    rows: Rows
    done: threading.Event = field(default_factory=threading.Event)
    version: int | None = None
    error: BaseException | None = None
    notify: Callable[[_Submission], Any] | None = None


_COMMITTERS: weakref.WeakKeyDictionary[WebState, GroupCommitter] = weakref.WeakKeyDictionary()
_COMMITTERS_LOCK = threading.Lock()


def committer_of(state: WebState) -> GroupCommitter:
    """The :class:`GroupCommitter` of a server's state (made on first use)."""
    with _COMMITTERS_LOCK:
        c = _COMMITTERS.get(state)
        if c is None:
            index = index_of(state)
            c = _COMMITTERS[state] = GroupCommitter(
                state.table, after_commit=lambda v: index.current(min_version=v)
            )
        return c


def store_file(state: WebState, data: bytes) -> tuple[_Outcome, dict[str, Any] | None]:
    """One DICOM file's bytes (PS3.10) through the checks and placement of a STOW-RS part
    (C-STORE, :mod:`pixels.dimse`, uses it): its outcome (``failure``, ``reason``,
    ``path``) and catalog row (None: not stored)."""
    return _store_part(state, data, 0, len(data), "", None)


def store_path(state: WebState, path: str) -> tuple[_Outcome, dict[str, Any] | None]:
    """As :func:`store_file`, for a DICOM file written under the storage root's
    ``.incoming`` folder: it is renamed into place (not copied, nor read whole), or
    removed when it is not stored."""
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as body:
        try:
            return _store_part(state, body, 0, len(body), "", None, move_from=path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # not placed (refused, or identical to the stored file)


def _store_part(
    state: WebState,
    body: bytes | mmap.mmap,
    start: int,
    end: int,
    ctype: str,
    study: str | None,
    move_from: str | None = None,
) -> tuple[_Outcome, dict[str, Any] | None]:
    """Check one part, store it and make its catalog row (None: not stored); ``move_from``:
    the part is that whole file, renamed into place."""
    if ctype and parse_media_type(ctype).type != "application/dicom":
        fail = _Outcome(None, None, failure=FAIL_CANNOT_UNDERSTAND, reason=f"part type {ctype!r}")
        return fail, None
    with _PartReader(body, start, end) as reader:
        fp = cast(BinaryIO, reader)
        try:
            problem = _not_part10(body, start, end, fp)
            if problem:
                return _Outcome(None, None, failure=FAIL_CANNOT_UNDERSTAND, reason=problem), None
            with kept_warnings() as kept:
                header = read_header(fp, path="STOW-RS part")
        except Exception as e:
            fail = _Outcome(None, None, failure=FAIL_CANNOT_UNDERSTAND, reason=f"not DICOM: {e}")
            return fail, None
        uids = {k: header.keys.get(col) for k, col in _UID_KEYS.items()}
        res = _Outcome(uids["class"], uids["sop"], uids["study"], uids["series"])
        if not all(isinstance(v, str) and is_uid(v) for v in uids.values()):
            res.failure, res.reason = (
                FAIL_CANNOT_UNDERSTAND,
                "missing or invalid SOP/Study/Series UID",
            )
            return res, None
        if study is not None and uids["study"] != study:
            res.failure, res.reason = FAIL_STUDY_MISMATCH, "StudyInstanceUID differs from the URL's"
            return res, None
        folder = os.path.join(state.claimed_root(), str(uids["study"]), str(uids["series"]))
        dest = os.path.abspath(os.path.join(folder, f"{uids['sop']}.dcm"))
        res.replaced, st = _place(state, body, start, end, folder, dest, move_from)
        res.path = dest
        try:
            ref = local_ref(dest, st, os.path.basename(dest))
            return res, header_record(ref, fp, header, _OPTIONS, list(kept))
        except Exception as e:  # the file is stored; say it could not be cataloged
            res.failure, res.reason = FAIL_PROCESSING, f"stored but not cataloged: {e}"
            return res, None


_OPTIONS = RecordOptions()


def _place(
    state: WebState,
    body: bytes | mmap.mmap,
    start: int,
    end: int,
    folder: str,
    dest: str,
    move_from: str | None = None,
) -> tuple[bool, os.stat_result]:
    """Store the part at ``dest`` (a temporary file, or the file ``move_from``, then
    :func:`os.replace`): whether it replaced a different file, and the stored file's
    ``stat``. Identical bytes there already: nothing is written. Few file system calls:
    they are what a loaded disk makes slow."""
    part: spool.Spool | None = None
    if move_from is not None:  # (locked by its maker, who releases it)
        fd, tmp = -1, move_from
    else:
        part = spool.create(os.path.join(state.claimed_root(), spool.INCOMING), suffix=".dcm")
        fd, tmp = part.fd, part.path
    placed = False
    try:
        if fd < 0:
            st = os.stat(tmp)
        else:
            with os.fdopen(fd, "wb") as out:
                for pos in range(start, end, 1 << 22):
                    out.write(body[pos : min(end, pos + (1 << 22))])
                out.flush()
                os.fsync(out.fileno())  # on disk before its row is committed
                st = os.fstat(out.fileno())  # a rename keeps it: the stored file's stat
        with state.write_lock:  # one request at a time decides between duplicate and replace
            replaced = os.path.exists(dest)
            if replaced and _same_bytes(dest, body, start, end):
                return False, os.stat(dest)  # identical: the stored file stays as it is
            try:
                os.replace(tmp, dest)
            except FileNotFoundError:  # the study/series folder is new
                os.makedirs(folder, exist_ok=True)
                os.replace(tmp, dest)
            placed = True
        if move_from is None:  # (a C-STORE's file: its sink makes it durable)
            state.durable.named(dest)
        return replaced, st
    finally:
        if not placed:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if part is not None:
            part.release()


def _same_bytes(path: str, body: bytes | mmap.mmap, start: int, end: int) -> bool:
    """Whether the file at ``path`` holds exactly ``body[start:end]``."""
    try:
        if os.stat(path).st_size != end - start:
            return False
        with open(path, "rb") as fh:
            pos = start
            while pos < end:
                chunk = fh.read(min(end - pos, 1 << 22))
                if not chunk or chunk != body[pos : pos + len(chunk)]:
                    return False
                pos += len(chunk)
            return True
    except FileNotFoundError:
        return False


class _PartReader(io.RawIOBase):
    """A read-only, seekable file over ``body[start:end]`` (the bytes are not copied)."""

    def __init__(self, body: bytes | mmap.mmap, start: int, end: int):
        super().__init__()
        self._view = memoryview(body)[start:end]
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        n = len(self._view) - self._pos if size is None or size < 0 else size
        data = self._view[self._pos : self._pos + n].tobytes()
        self._pos += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: len(self._view)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        self._view.release()  # an mmap cannot be closed while a view of it exists
        super().close()


def _not_part10(body: bytes | mmap.mmap, start: int, end: int, fp: BinaryIO) -> str | None:
    """Why a part is not a DICOM file (PS3.10: preamble, ``DICM``, file meta with a transfer
    syntax); None when it is. A data set that could only be read by force is refused rather
    than stored as a ``.dcm`` file no other reader accepts."""
    if end - start < 132 or body[start + 128 : start + 132] != b"DICM":
        return (
            "not a DICOM file: no 'DICM' prefix at byte 128 (a data set without preamble and "
            "file meta is not accepted)"
        )
    ts = _meta_transfer_syntax(body, start + 132, end)
    if ts is None:  # a file meta group the scan is unsure of: pydicom reads it
        from pydicom.filereader import _read_file_meta_info

        fp.seek(132)
        try:
            meta = _read_file_meta_info(fp)
        except Exception as e:
            return f"not a DICOM file: the file meta information cannot be read: {e}"
        finally:
            fp.seek(0)
        ts = str(meta.get("TransferSyntaxUID", "") or "").strip()
    if not ts:
        return "not a DICOM file: the file meta has no Transfer Syntax UID (0002,0010)"
    return None


_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN"})
_LONG_VRS |= {b"UR", b"UT", b"UV"}


def _meta_transfer_syntax(body: bytes | mmap.mmap, pos: int, end: int) -> str | None:
    """The Transfer Syntax UID of the explicit VR little endian file meta group at ``pos``
    ("" when the group has none); None when the group is not plain enough to be sure."""
    ts = ""
    while pos + 8 <= end:
        group, elem = struct.unpack_from("<HH", body, pos)
        if group != 2:
            return ts
        vr = body[pos + 4 : pos + 6]
        if not (b"AA" <= vr <= b"ZZ"):
            return None
        if vr in _LONG_VRS:
            if pos + 12 > end or struct.unpack_from("<H", body, pos + 6)[0]:
                return None
            (length,) = struct.unpack_from("<L", body, pos + 8)
            pos += 12
        else:
            (length,) = struct.unpack_from("<H", body, pos + 6)
            pos += 8
        if length == 0xFFFFFFFF or pos + length > end:
            return None
        if elem == 0x0010:
            ts = bytes(body[pos : pos + min(length, 128)]).decode("latin-1").strip("\x00 ")
        pos += length
    return None


_UID_KEYS = {
    "class": "SOPClassUID",
    "sop": "SOPInstanceUID",
    "study": "StudyInstanceUID",
    "series": "SeriesInstanceUID",
}


def _response(request: Request, outcomes: list[_Outcome], study: str | None) -> Response:
    base = base_url(request) + "/dicomweb"
    ok, failed = [], []
    for o in outcomes:
        item: dict[str, Any] = {}
        if o.sop_class:
            item["00081150"] = {"vr": "UI", "Value": [o.sop_class]}
        if o.sop:
            item["00081155"] = {"vr": "UI", "Value": [o.sop]}
        if o.failure is None:
            url = f"{base}/studies/{o.study}/series/{o.series}/instances/{o.sop}"
            item["00081190"] = {"vr": "UR", "Value": [url]}
            if o.replaced:
                item["00081196"] = {"vr": "US", "Value": [WARN_REPLACED]}
            ok.append(dict(sorted(item.items())))
        else:
            item["00081197"] = {"vr": "US", "Value": [o.failure]}
            failed.append(dict(sorted(item.items())))
    body: dict[str, Any] = {}
    studies = {o.study for o in outcomes if o.failure is None}
    target = study or (studies.pop() if len(studies) == 1 else None)
    if target:
        body["00081190"] = {"vr": "UR", "Value": [f"{base}/studies/{target}"]}
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": failed}
    if ok:
        body["00081199"] = {"vr": "SQ", "Value": ok}
    status = 200 if not failed else 409 if not ok else 202
    reasons = "; ".join(o.reason for o in outcomes if o.failure is not None and o.reason)
    safe = "".join(c if " " <= c <= "~" and c not in '"\\' else " " for c in reasons[:500])
    headers = {"Warning": f'299 pixels "{safe}"'} if reasons else None
    return Response(json.dumps(body), status, headers=headers, media_type="application/dicom+json")
