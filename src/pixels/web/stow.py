"""STOW-RS (PS3.18 10.5): store instances sent as multipart/related application/dicom.

The body is spooled to a temporary file under ``{storage_root}/.incoming`` (never
held whole in memory; larger than the limit: 413; what a killed server left there
is removed when the next one starts, :func:`clean_stale_spools`), split into parts, and each
part checked: it must be a DICOM file (PS3.10: preamble, ``DICM``, file meta with a
transfer syntax; a data set readable only by force is refused), parse as DICOM
(:func:`pixels.dicom.meta.read_header`, deflated data inflated under a cap) and
carry valid SOP Class, SOP Instance, Study and Series UIDs; with a study in the
URL the instance must belong to it. A good part is written to
``{storage_root}/{StudyUID}/{SeriesUID}/{SOPUID}.dcm`` atomically (temporary file
then :func:`os.replace`) and cataloged before the answer, so the next QIDO-RS request
sees it: the rows of one request, and of the requests that arrive while a commit
runs, go into one Delta commit (:class:`GroupCommitter`), and a request is answered
only once its rows are committed and in the server's index.

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
import filecmp
import json
import mmap
import os
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import pyarrow as pa
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from pixels.table import CatalogTable
from pixels.web.index import index_of
from pixels.web.multipart import MultipartError, parse_media_type, split_parts
from pixels.web.state import WebState, base_url, check_uid, is_uid, state_of

__all__ = ["GroupCommitter", "clean_stale_spools", "committer_of", "store"]

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


def clean_stale_spools(storage_root: str, *, before: float | None = None) -> list[str]:
    """Remove what requests left in ``{storage_root}/.incoming`` before `before` (default now).

    A request removes its own spool (the body) and part files when it ends; only a
    server that was killed leaves them. Called when the app is created: anything
    last written before then belongs to no live request of this server (one server
    per storage root). Returns the removed paths.
    """
    incoming = os.path.join(storage_root, ".incoming")
    cutoff = time.time() if before is None else before
    removed = []
    try:
        entries = list(os.scandir(incoming))
    except FileNotFoundError:
        return []
    for entry in entries:
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                os.unlink(entry.path)
                removed.append(entry.path)
        except FileNotFoundError:
            continue
    return removed


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
    incoming = os.path.join(state.storage_root, ".incoming")
    os.makedirs(incoming, exist_ok=True)
    fd, spool = tempfile.mkstemp(dir=incoming, suffix=".body")
    try:
        total = 0
        with os.fdopen(fd, "wb") as out:
            async for chunk in request.stream():
                total += len(chunk)
                if total > state.max_upload:
                    raise HTTPException(
                        413, f"the body is larger than the limit of {state.max_upload} bytes"
                    )
                out.write(chunk)
        outcomes, rows = await run_in_threadpool(_store_body, state, spool, boundary, study)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(spool)
    if rows is not None:
        # waiting for the commit holds no worker thread: searches keep being answered
        try:
            await committer_of(state).commit_async(rows)
        except Exception as e:  # the files are stored; say they could not be cataloged
            for o in outcomes:
                if o.failure is None and o.path:
                    o.failure, o.reason = FAIL_PROCESSING, f"stored but not cataloged: {e}"
    return _response(request, outcomes, study)


def _store_body(
    state: WebState, spool: str, boundary: str, study: str | None
) -> tuple[list[_Outcome], pa.Table | None]:
    """Check and place the parts of a body; their outcomes and the catalog rows to commit."""
    if os.path.getsize(spool) == 0:
        raise HTTPException(400, "empty body: no multipart parts")
    with open(spool, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        try:
            parts = split_parts(mm, boundary)
        except MultipartError as e:
            raise HTTPException(400, str(e)) from e
        if not parts:
            raise HTTPException(400, "the multipart body has no parts")
        outcomes = []
        with state.write_lock:  # placing files: one request at a time (duplicates, replaces)
            for part in parts:
                outcomes.append(
                    _store_part(state, mm, part.start, part.end, part.content_type, study)
                )
    stored = [o.path for o in outcomes if o.failure is None and o.path]
    if not stored:
        return outcomes, None
    try:
        return outcomes, _records(stored)
    except Exception as e:
        for o in outcomes:
            if o.failure is None and o.path:
                o.failure, o.reason = FAIL_PROCESSING, f"stored but not cataloged: {e}"
        return outcomes, None


def _records(paths: list[str]) -> pa.Table:
    """Catalog rows of stored files (the per-file work every engine runs)."""
    from pixels.dicom.record import RecordOptions
    from pixels.engines import worker
    from pixels.sources import iter_files

    refs = [ref for p in paths for ref in iter_files(p, expand_archives=False)]
    return pa.Table.from_batches([worker.run(refs, RecordOptions())])


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

    def commit(self, rows: pa.Table) -> int:
        """Commit ``rows`` (with whatever other requests hand in meanwhile); the version."""
        sub = _Submission(rows)
        self._submit(sub)
        sub.done.wait()
        if sub.error is not None:
            raise sub.error
        assert sub.version is not None
        return sub.version

    async def commit_async(self, rows: pa.Table) -> int:
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
                self.table.append(
                    pa.concat_tables([g.rows for g in group], promote_options="default")
                )
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


@dataclass
class _Submission:
    rows: pa.Table
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


def _store_part(
    state: WebState, mm: mmap.mmap, start: int, end: int, ctype: str, study: str | None
) -> _Outcome:
    from pixels.dicom.meta import read_header

    if ctype and parse_media_type(ctype).type != "application/dicom":
        return _Outcome(None, None, failure=FAIL_CANNOT_UNDERSTAND, reason=f"part type {ctype!r}")
    incoming = os.path.join(state.storage_root, ".incoming")
    fd, tmp = tempfile.mkstemp(dir=incoming, suffix=".dcm")
    keep = False
    try:
        with os.fdopen(fd, "wb") as out:
            for pos in range(start, end, 1 << 22):
                out.write(mm[pos : min(end, pos + (1 << 22))])
        try:
            with open(tmp, "rb") as fp:
                problem = _not_part10(fp)
                if problem:
                    return _Outcome(None, None, failure=FAIL_CANNOT_UNDERSTAND, reason=problem)
                header = read_header(fp, path="STOW-RS part")
            js = json.loads(header.meta)
        except Exception as e:
            return _Outcome(None, None, failure=FAIL_CANNOT_UNDERSTAND, reason=f"not DICOM: {e}")
        uids = {k: _value(js, t) for k, t in _UID_TAGS.items()}
        res = _Outcome(uids["class"], uids["sop"], uids["study"], uids["series"])
        if not all(isinstance(v, str) and is_uid(v) for v in uids.values()):
            res.failure, res.reason = (
                FAIL_CANNOT_UNDERSTAND,
                "missing or invalid SOP/Study/Series UID",
            )
            return res
        if study is not None and uids["study"] != study:
            res.failure, res.reason = FAIL_STUDY_MISMATCH, "StudyInstanceUID differs from the URL's"
            return res
        folder = os.path.join(state.storage_root, str(uids["study"]), str(uids["series"]))
        os.makedirs(folder, exist_ok=True)
        dest = os.path.join(folder, f"{uids['sop']}.dcm")
        if os.path.exists(dest):
            if filecmp.cmp(dest, tmp, shallow=False):
                res.path = dest  # identical: nothing to write (cataloging is a no-op)
                return res
            res.replaced = True
        os.replace(tmp, dest)
        keep = True
        res.path = dest
        return res
    finally:
        if not keep:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _not_part10(fp: BinaryIO) -> str | None:
    """Why a part is not a DICOM file (PS3.10: preamble, ``DICM``, file meta with a transfer
    syntax); None when it is. A data set that could only be read by force is refused rather
    than stored as a ``.dcm`` file no other reader accepts."""
    from pydicom.filereader import _read_file_meta_info

    head = fp.read(132)
    if len(head) < 132 or head[128:132] != b"DICM":
        return (
            "not a DICOM file: no 'DICM' prefix at byte 128 (a data set without preamble and "
            "file meta is not accepted)"
        )
    try:
        meta = _read_file_meta_info(fp)
    except Exception as e:
        return f"not a DICOM file: the file meta information cannot be read: {e}"
    if not str(meta.get("TransferSyntaxUID", "") or "").strip():
        return "not a DICOM file: the file meta has no Transfer Syntax UID (0002,0010)"
    fp.seek(0)
    return None


_UID_TAGS = {"class": "00080016", "sop": "00080018", "study": "0020000D", "series": "0020000E"}


def _value(js: dict[str, Any], tag: str) -> Any:
    values = (js.get(tag) or {}).get("Value") or [None]
    return values[0]


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
