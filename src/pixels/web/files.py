"""Cataloged files opened for an answer: instances, frames and bulk data, ready to stream.

Every function here opens the file and reads what it needs to know *now*, so a
file that vanished (410), a codec that is missing (406) or a corrupt header
(500) is raised before the answer's status is sent (:mod:`pixels.web.errors`
maps them); the streaming part then only copies bytes.

- :func:`open_instance` gives a file's bytes as stored or, through
  :mod:`pixels.dicom.transcode`, in Explicit VR Little Endian;
- :func:`open_frames` gives a :class:`FrameSource`: the frame index, the header
  and frames as Explicit VR Little Endian bytes (big endian swapped, implicit VR
  relabelled, deflated files inflated to a temporary file first), as stored, or
  decoded;
- :func:`open_range` streams one byte range (a bulk data value) without holding
  it whole.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np
from starlette.exceptions import HTTPException
from starlette.requests import Request

from pixels.dicom import codecs
from pixels.dicom.record import frame_index_of
from pixels.dicom.tags import PIXEL_DATA_KEYS
from pixels.dicom.transcode import (
    DEFAULT_INFLATE_LIMIT,
    LOSSY_SYNTAXES,
    VIDEO_SYNTAXES,
    WEB_UNSAFE_SYNTAXES,
    open_transcoder,
)
from pixels.dicom.words import swap_bytes
from pixels.errors import DicomReadError, MissingDecoderError, TranscodeError
from pixels.sources import open_file
from pixels.sources.ref import FileRef
from pixels.web.index import index_of
from pixels.web.rowcache import cached_rows
from pixels.web.state import check_uid, state_of

__all__ = [
    "EXPLICIT_LE",
    "FrameSource",
    "Opened",
    "Streamed",
    "frame_count",
    "frame_numbers",
    "instance_syntax",
    "open_frames",
    "open_instance",
    "open_range",
    "range_of",
    "request_rows",
]

EXPLICIT_LE = codecs.EXPLICIT_LE
_CHUNK = 1 << 20
#: Bytes of a deflated file's inflated copy kept in memory before spilling to disk.
_SPOOL_MEMORY = 16 << 20


class Opened:
    """A catalog row's file, opened now; :meth:`close` closes it (idempotent)."""

    def __init__(self, row: dict[str, Any]) -> None:
        self.row = row
        self.path: str = row["path"]
        self._stack = contextlib.ExitStack()
        self.fp: BinaryIO = self._stack.enter_context(open_file(FileRef.from_row(row)))

    def close(self) -> None:
        self._stack.close()

    def callback(self, fn: Any, *args: Any) -> None:
        """Run ``fn(*args)`` when the file is closed."""
        self._stack.callback(fn, *args)


@dataclass
class Streamed:
    """Bytes ready to stream: the media type of the part and its chunks.

    The chunks close the file when exhausted, and :meth:`close` closes it when
    the answer is never sent.
    """

    content_type: str
    chunks: Iterator[bytes]
    opened: Opened | None = None

    def close(self) -> None:
        if self.opened is not None:
            self.opened.close()


def _closing(chunks: Iterator[bytes], opened: Opened) -> Iterator[bytes]:
    try:
        yield from chunks
    finally:
        opened.close()


def _file_chunks(fp: BinaryIO) -> Iterator[bytes]:
    fp.seek(0)
    while chunk := fp.read(_CHUNK):
        yield chunk


# ---------------------------------------------------------------------------- instances


def instance_syntax(stored: str, want: str | None) -> str | None:
    """The transfer syntax to send an instance stored in `stored` when `want` is asked for.

    `want` is the ``transfer-syntax`` parameter: None (absent: Explicit VR Little
    Endian, except lossy data which keeps its syntax, PS3.18 8.7.3.4), ``"*"``
    (the stored syntax, except Implicit VR / Big Endian, never sent on the web) or
    a UID. Returns None when that cannot be offered.
    """
    if want is None:
        return stored if stored in LOSSY_SYNTAXES else EXPLICIT_LE
    if want == "*":
        return EXPLICIT_LE if stored in WEB_UNSAFE_SYNTAXES else stored
    if want in WEB_UNSAFE_SYNTAXES:
        return None
    if want in (stored, EXPLICIT_LE):
        return want
    return None


def _is_part10(fp: BinaryIO) -> bool:
    fp.seek(128)
    return fp.read(4) == b"DICM"


def open_instance(
    row: dict[str, Any], want: str | None, *, inflate_limit: int = DEFAULT_INFLATE_LIMIT
) -> Streamed:
    """Open an instance's file and get its bytes ready in the syntax `want` asks for.

    Files stored without file meta (read only by force when cataloged) are always
    converted, so what is sent is a DICOM file with file meta.

    Raises
    ------
    TranscodeError
        `want` cannot be offered for this file (the message says why).
    MissingDecoderError, DicomReadError, SourceError
        See :mod:`pixels.web.errors`.
    """
    stored = row["TransferSyntaxUID"] or EXPLICIT_LE
    target = instance_syntax(stored, want)
    if target is None:
        raise TranscodeError(
            f"the instance is stored in {stored}; it can be sent in that syntax or in "
            f"{EXPLICIT_LE}, not in {want}",
            row["path"],
        )
    opened = Opened(row)
    try:
        if target == stored and stored not in WEB_UNSAFE_SYNTAXES and _is_part10(opened.fp):
            return Streamed(
                f"application/dicom; transfer-syntax={stored}",
                _closing(_file_chunks(opened.fp), opened),
                opened,
            )
        try:
            t = open_transcoder(
                opened.fp,
                path=opened.path,
                transfer_syntax=stored,
                inflate_limit=inflate_limit,
            )
        except (TranscodeError, MissingDecoderError):
            if want is not None or stored in WEB_UNSAFE_SYNTAXES or not _is_part10(opened.fp):
                raise
            # no transfer syntax asked for: what cannot be decoded goes as stored
            return Streamed(
                f"application/dicom; transfer-syntax={stored}",
                _closing(_file_chunks(opened.fp), opened),
                opened,
            )
        return Streamed(
            f"application/dicom; transfer-syntax={EXPLICIT_LE}",
            _closing(t.chunks(), opened),
            opened,
        )
    except BaseException:
        opened.close()
        raise


# ---------------------------------------------------------------------------- bulk data


#: Bytes per number of the binary VRs a big endian file stores big endian.
_WORD = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8, "US": 2, "SS": 2, "AT": 2}
_WORD |= {"UL": 4, "SL": 4, "FL": 4, "FD": 8, "SV": 8, "UV": 8}


def open_range(row: dict[str, Any], offset: int, length: int, vr: str = "OB") -> Streamed:
    """Open a file and stream `length` bytes from `offset` (never held whole).

    Values of a big endian file are sent little endian (swapped by the word size
    of `vr`), as everything Pixels sends.

    Raises
    ------
    DicomReadError
        The file is shorter than the catalog says (changed since cataloged).
    """
    opened = Opened(row)
    big = row["TransferSyntaxUID"] == codecs.EXPLICIT_BE
    return range_of(opened, opened.fp, offset, length, _WORD.get(vr, 1) if big else 1)


def range_of(opened: Opened, fp: BinaryIO, offset: int, length: int, word: int = 1) -> Streamed:
    """Stream `length` bytes from `offset` of `fp` (a file of `opened`), closing it at the end;
    `word` > 1: byte-swapped in words of that many bytes."""
    try:
        end = fp.seek(0, 2)
        if offset + length > end:
            raise DicomReadError(
                f"the file is shorter than the catalog says: a value of {length} bytes at "
                f"byte {offset}, the file has {end} bytes (changed since it was cataloged?)",
                opened.path,
            )
    except BaseException:
        opened.close()
        raise

    def chunks() -> Iterator[bytes]:
        fp.seek(offset)
        left = length
        while left > 0:
            data = fp.read(min(_CHUNK, left))
            if not data:
                raise DicomReadError(f"truncated while sending bytes at {offset}", opened.path)
            left -= len(data)
            yield swap_bytes(data, word) if word > 1 else data

    return Streamed("application/octet-stream", _closing(chunks(), opened), opened)


# ------------------------------------------------------------------------------ frames


@dataclass
class FrameSource:
    """One instance's pixel data, opened: its frames as stored, as LE native bytes, decoded.

    Attributes
    ----------
    opened : Opened
        The stored file (close it with :meth:`close`).
    fp : BinaryIO
        Where frames are read: the stored file, or its inflated copy (deflated).
    meta : dict
        The DICOM JSON of the file read (the inflated copy has its own offsets).
    transfer_syntax : str
        The syntax of `fp` (Explicit VR Little Endian for an inflated copy).
    stored_syntax : str
        The syntax as cataloged.
    index : FrameIndex
        Where each frame is in `fp`.
    """

    opened: Opened
    fp: BinaryIO
    meta: dict[str, Any]
    transfer_syntax: str
    stored_syntax: str
    index: Any
    info: Any = field(default=None)

    def __post_init__(self) -> None:
        from pixels.dicom.decode import PixelInfo

        self.info = PixelInfo.from_json(self.meta, self.transfer_syntax)

    def __len__(self) -> int:
        return len(self.index)

    def close(self) -> None:
        self.opened.close()

    @property
    def native(self) -> bool:
        return self.transfer_syntax in codecs.NATIVE_SYNTAXES

    @property
    def video(self) -> bool:
        return self.transfer_syntax in VIDEO_SYNTAXES

    def stored(self, k: int) -> bytes:
        """Frame `k` (0-based) as stored: encapsulated, its fragments joined."""
        from pixels.dicom.frames import read_frame

        return read_frame(self.fp, self.index, k, path=self.opened.path)

    def little_endian(self, k: int) -> bytes:
        """Native frame `k` in Explicit VR Little Endian (big endian data byte-swapped)."""
        from pixels.dicom.frames import read_frame, read_frame_swapped

        if self.transfer_syntax != codecs.EXPLICIT_BE:
            return read_frame(self.fp, self.index, k, path=self.opened.path)
        info = self.info
        ba = info.bits_allocated
        vr = str((self.meta.get("7FE00010") or {}).get("vr", "OW"))
        width = ba // 8 if ba > 8 else 2 if vr == "OW" else 1
        if width == 1:
            return read_frame(self.fp, self.index, k, path=self.opened.path)
        # words swapped from the start of the value (bit-packed frames then re-aligned)
        frame = read_frame_swapped(self.fp, self.index, k, width, path=self.opened.path)
        # the index may keep the byte pair holding an odd frame's last pixel: cut to the frame
        return frame if ba == 1 else frame[: info.frame_length]

    def decode_refusal(self) -> str | None:
        """Why decoded frames would not match the metadata (None: they would)."""
        info = self.info
        if self.video:
            return "video is not decoded to frames here"
        if info.decoded_photometric != info.photometric:
            return (
                f"decoded frames would be {info.decoded_photometric}, not the "
                f"{info.photometric} the instance's metadata says"
            )
        return None

    def check_decoder(self) -> None:
        """Raise MissingDecoderError now when no installed codec decodes these frames."""
        if self.native:
            return
        if not codecs.backends_for(self.transfer_syntax, self.info):
            raise codecs.missing_decoder_error(self.transfer_syntax, self.opened.path)

    def decoded(self, k: int) -> bytes:
        """Encapsulated frame `k` decoded to little-endian native bytes laid out as the
        metadata says (Planar Configuration 1: colour planes one after the other)."""
        from pixels.dicom.decode import decode_frame

        info = self.info
        arr = decode_frame(self.stored(k), info, path=self.opened.path)
        ba = info.bits_allocated
        dtype = np.dtype(f"<{'i' if info.pixel_representation else 'u'}{max(ba // 8, 1)}")
        arr = np.asarray(arr).astype(dtype, copy=False)
        if arr.ndim == 3 and info.planar_configuration == 1:
            arr = arr.transpose(2, 0, 1)
        return np.ascontiguousarray(arr).tobytes()


def _inflated_copy(
    opened: Opened, stored: str, inflate_limit: int
) -> tuple[BinaryIO, dict[str, Any]]:
    """A deflated file converted to Explicit VR Little Endian in a temporary file, and its header."""
    from pixels.dicom.meta import read_header

    t = open_transcoder(
        opened.fp, path=opened.path, transfer_syntax=stored, inflate_limit=inflate_limit
    )
    tmp = tempfile.SpooledTemporaryFile(max_size=_SPOOL_MEMORY)  # noqa: SIM115 - closed with opened
    opened.callback(tmp.close)
    for chunk in t.chunks():
        tmp.write(chunk)
    tmp.seek(0)
    header = read_header(tmp, path=opened.path)  # type: ignore[arg-type]
    return tmp, json.loads(header.meta)  # type: ignore[return-value]


def open_frames(
    row: dict[str, Any], *, inflate_limit: int = DEFAULT_INFLATE_LIMIT
) -> FrameSource | None:
    """Open an instance's pixel data; None when it has none.

    Raises
    ------
    DicomReadError, SourceError
        See :mod:`pixels.web.errors`.
    """
    stored = row["TransferSyntaxUID"] or EXPLICIT_LE
    deflated = stored == codecs.DEFLATED_LE
    if not deflated and not row.get("frame_offsets"):
        return None
    opened = Opened(row)
    try:
        if deflated:
            from pixels.dicom.frames import index_from_header

            fp, meta = _inflated_copy(opened, stored, inflate_limit)
            index = index_from_header(fp, meta, path=opened.path, transfer_syntax=EXPLICIT_LE)
            if index is None:
                opened.close()
                return None
            return FrameSource(opened, fp, meta, EXPLICIT_LE, stored, index)
        meta = json.loads(row["meta"])
        return FrameSource(opened, opened.fp, meta, stored, stored, frame_index_of(row))
    except BaseException:
        opened.close()
        raise


def open_deflated_header(
    row: dict[str, Any], *, inflate_limit: int = DEFAULT_INFLATE_LIMIT
) -> tuple[Opened, BinaryIO, dict[str, Any]]:
    """A deflated file's inflated copy and its header (bulk data offsets in the copy)."""
    opened = Opened(row)
    try:
        fp, meta = _inflated_copy(opened, row["TransferSyntaxUID"], inflate_limit)
    except BaseException:
        opened.close()
        raise
    return opened, fp, meta


def frame_numbers(text: str, n: int) -> list[int]:
    """The 1-based frame numbers of a ``frames/{list}`` path; HTTP 400 / 404 when invalid."""
    try:
        nums = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise HTTPException(
            400, f"frame list {text[:40]!r} is not a comma-separated list of numbers"
        ) from e
    if not nums:
        raise HTTPException(400, "empty frame list")
    for k in nums:
        if not 1 <= k <= n:
            raise HTTPException(404, f"frame {k} does not exist: the instance has {n} frame(s)")
    return nums


def frame_count(row: dict[str, Any]) -> int:
    """Frames of a cataloged instance (deflated files: from the header, as none are indexed)."""
    n = len(row["frame_offsets"] or [])
    ts = row["TransferSyntaxUID"] or ""
    if ts == codecs.DEFLATED_LE or ts in VIDEO_SYNTAXES:
        meta = json.loads(row["meta"])
        if not any(t in meta for t in PIXEL_DATA_KEYS):
            return 0
        values = (meta.get("00280008") or {}).get("Value") or [1]
        try:
            return max(int(float(values[0])), 1)
        except (TypeError, ValueError):
            return 1 if ts == codecs.DEFLATED_LE else n
    return n


def request_rows(
    request: Request, columns: str = "*", *, cached: bool = False
) -> list[dict[str, Any]]:
    """Catalog rows of the study / series / instance of the request; HTTP 404 when none.

    ``cached``: the rows may come from (and go to) the table version's
    :mod:`pixels.web.rowcache`; the caller must not change them.
    """
    pp = request.path_params
    state = state_of(request)
    study = check_uid(pp["study"], "StudyInstanceUID")
    series = pp.get("series")
    sop = pp.get("instance")
    if series is not None:
        check_uid(series, "SeriesInstanceUID")
    if sop is not None:
        check_uid(sop, "SOPInstanceUID")
    snap = index_of(state).current()
    if cached:
        rows = cached_rows(
            snap,
            (study, series, sop, columns),
            lambda: snap.instance_rows(study, series, sop, columns),
        )
    else:
        rows = snap.instance_rows(study, series, sop, columns)
    if not rows:
        what = "instance" if sop else "series" if series else "study"
        raise HTTPException(404, f"no such {what} in the catalog")
    return rows
