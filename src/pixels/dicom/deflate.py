"""Inflate deflated DICOM data sets (transfer syntax 1.2.840.10008.1.2.1.99) with a cap.

A deflated file stores its data set (everything after the file meta group) as a
raw deflate stream (PS3.5 A.5). pydicom inflates it whole, with no limit: a few
megabytes of hostile input inflate to gigabytes (a deflate bomb). Everything in
Pixels that inflates a data set goes through this module instead, which streams
the inflate in chunks and stops with :class:`DeflateError` (a
:class:`~pixels.errors.DicomReadError`) as soon as the output passes a limit:

* :func:`inflate_chunks`: the inflated bytes as a stream of chunks (for writing
  them somewhere, e.g. a STOW spool file, without holding them);
* :func:`inflate`: the inflated bytes whole, under a limit;
* :class:`InflatingReader`: a forward-seekable file object over the inflated
  bytes, for a parser that reads a header and skips what it does not need
  (skipped bytes are inflated and dropped, never held).

Examples
--------
>>> import io, zlib
>>> c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
>>> raw = c.compress(b"x" * 1000) + c.flush()
>>> inflate(io.BytesIO(raw), limit=10_000) == b"x" * 1000
True
>>> inflate(io.BytesIO(raw), limit=999)
Traceback (most recent call last):
...
pixels.dicom.deflate.DeflateError: deflated data set inflates to more than 999 bytes (the limit)
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterator
from typing import BinaryIO

from pixels.errors import DicomReadError

__all__ = [
    "CHUNK",
    "MAX_INFLATED",
    "MAX_RETAINED",
    "DeflateError",
    "InflatingReader",
    "inflate",
    "inflate_chunks",
]

#: Default limit on the inflated size of a data set (bytes).
MAX_INFLATED = 1 << 30
#: Default limit on the inflated bytes an :class:`InflatingReader` holds at once.
MAX_RETAINED = 64 << 20
#: Compressed bytes read, and inflated bytes produced, per step.
CHUNK = 1 << 20


class DeflateError(DicomReadError):
    """A deflated data set inflates past a limit, is corrupt or is cut short."""


def _too_big(limit: int, path: str | None) -> DeflateError:
    return DeflateError(
        f"deflated data set inflates to more than {limit} bytes (the limit)", path=path
    )


def inflate_chunks(
    src: BinaryIO, *, limit: int = MAX_INFLATED, path: str | None = None
) -> Iterator[bytes]:
    """Yield the inflated bytes of the raw deflate stream read from `src`, chunk by chunk.

    Parameters
    ----------
    src : binary file-like
        Positioned at the start of the deflate stream (right after the file meta
        group); read to its end in chunks of :data:`CHUNK` bytes.
    limit : int
        Largest inflated size accepted.
    path : str, optional
        Named in errors.

    Raises
    ------
    DicomReadError
        The output passes `limit`, or the stream is corrupt or cut short.
    """
    d = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    while not d.eof:
        data = d.unconsumed_tail or src.read(CHUNK)
        if not data:
            raise DeflateError("deflated data set is cut short (incomplete stream)", path=path)
        try:
            out = d.decompress(data, CHUNK)
        except zlib.error as e:
            raise DeflateError(f"deflated data set is corrupt: {e}", path=path) from e
        total += len(out)
        if total > limit:
            raise _too_big(limit, path)
        if out:
            yield out


def inflate(src: BinaryIO, *, limit: int = MAX_INFLATED, path: str | None = None) -> bytes:
    """Return the inflated bytes of the raw deflate stream read from `src` (at most `limit`).

    See :func:`inflate_chunks` for the parameters and errors.
    """
    return b"".join(inflate_chunks(src, limit=limit, path=path))


class InflatingReader(io.RawIOBase):
    """Read-only file object over the inflated bytes of a raw deflate stream.

    Bytes are inflated as reads ask for them. Seeking forward is free (the
    bytes in between are inflated and dropped when next read past); seeking
    back is possible only within the bytes still held (those read since the
    last forward skip). At most `retain` inflated bytes are held, and at most
    `limit` are produced in all: past either, reads raise
    :class:`~pixels.errors.DicomReadError`.

    Parameters
    ----------
    src : binary file-like
        Positioned at the start of the deflate stream.
    limit, retain : int
        Caps on the total inflated size and on the bytes held.
    path : str, optional
        Named in errors.
    """

    def __init__(
        self,
        src: BinaryIO,
        *,
        limit: int = MAX_INFLATED,
        retain: int = MAX_RETAINED,
        path: str | None = None,
    ) -> None:
        super().__init__()
        self._chunks = inflate_chunks(src, limit=limit, path=path)
        self._data = bytearray()
        self._origin = 0  # inflated offset of _data[0]
        self._pos = 0
        self._eof = False
        self._retain = retain
        self._path = path

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self._pos
        elif whence == io.SEEK_END:
            self._fill(None)
            offset += self._origin + len(self._data)
        elif whence != io.SEEK_SET:
            raise ValueError(f"invalid whence {whence}")
        if offset < self._origin:
            raise OSError(
                f"cannot seek back to {offset}: inflated bytes before {self._origin} are gone"
            )
        self._pos = offset
        return offset

    @property
    def inflated(self) -> int:
        """Bytes inflated so far (the whole length once :meth:`available` said False)."""
        return self._origin + len(self._data)

    def available(self, end: int) -> bool:
        """Whether the inflated stream is at least `end` bytes long (inflating up to it)."""
        self._fill(end)
        return self._origin + len(self._data) >= end

    def _fill(self, end: int | None) -> None:
        """Inflate until `end` (None: the end of the stream), dropping bytes skipped over."""
        while not self._eof and (end is None or self._origin + len(self._data) < end):
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self._eof = True
                break
            held_end = self._origin + len(self._data)
            if end is not None and self._pos >= held_end + len(chunk):
                # wholly before the read position: skipped over, never held
                self._origin = held_end + len(chunk)
                self._data.clear()
                continue
            self._data += chunk
            if len(self._data) > self._retain:
                # keep a little before the read position (parsers step back a few bytes)
                drop = max(0, min(self._pos - 64 - self._origin, len(self._data)))
                del self._data[:drop]
                self._origin += drop
                if len(self._data) > self._retain:
                    raise DeflateError(
                        f"deflated data set: more than {self._retain} inflated bytes to hold "
                        "at once (the limit)",
                        path=self._path,
                    )

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            self._fill(None)
            end = self._origin + len(self._data)
        else:
            end = self._pos + size
            self._fill(end)
        start = self._pos - self._origin
        out = bytes(self._data[start : end - self._origin]) if start >= 0 else b""
        self._pos += len(out)
        return out

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
