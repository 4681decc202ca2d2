"""The pixels of catalog rows: frames read through each row's frame index, decoded by the registry.

What every reader of a row's pixels does, in one place (the ML datasets and volumes,
the patcher): parse the row's ``meta`` once, rebuild its frame index, open the file
(local, fsspec URL or zip member) and read each frame with one ranged read (one per
fragment of a compressed frame), then decode it with the codec registry
(:func:`pixels.dicom.decode.decode_frame`). Nothing reads a whole file to get one
frame; a row without a frame index (deflated transfer syntax) is the one exception,
decoded from its local file.

Examples
--------
>>> from pixels.row_pixels import RowPixels                      # doctest: +SKIP
>>> px = RowPixels.of(row)   # a catalog row (dict) with PIXEL_COLUMNS     # doctest: +SKIP
>>> with px.open() as fp:                                          # doctest: +SKIP
...     arr = px.decode(px.read(fp, 0))
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from pixels.dicom.codecs import EXPLICIT_LE
from pixels.dicom.decode import PixelInfo, decode_frame, read_frames
from pixels.dicom.frames import FrameIndex, read_frame
from pixels.dicom.record import frame_index_of
from pixels.errors import PixelsError
from pixels.sources import ArchiveLimits, open_file
from pixels.sources.ref import FileRef

__all__ = ["PIXEL_COLUMNS", "RowPixels"]

#: Catalog columns needed to find, open, index and decode a row's frames.
PIXEL_COLUMNS = (
    "path",
    "modificationTime",
    "length",
    "relative_path",
    "local_path",
    "extension",
    "original_path",
    "meta",
    "SOPInstanceUID",
    "TransferSyntaxUID",
    "frame_offsets",
    "frame_lengths",
    "frame_fragments",
    "frame_bit_offsets",
)


@dataclass(frozen=True)
class RowPixels:
    """One catalog row, parsed once for reading its frames.

    Attributes
    ----------
    path : str
        The row's ``path`` (named in errors).
    ref : FileRef
        Where its bytes are (:meth:`pixels.sources.ref.FileRef.from_row`).
    meta : dict
        Its DICOM JSON.
    info : PixelInfo
        How to interpret its frames.
    index : FrameIndex or None
        Its frame index; None for rows without one (deflated, no pixel data).
    """

    path: str
    ref: FileRef
    meta: dict[str, Any]
    info: PixelInfo
    index: FrameIndex | None

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> RowPixels:
        """Parse a catalog row (``meta`` as JSON text or already a dict).

        Raises
        ------
        PixelsError
            The row has no ``meta``, or it is not JSON (the message names the path).
        """
        path = str(row.get("path") or "")
        raw = row.get("meta")
        if not raw:
            raise PixelsError("no meta in the catalog row", path or None)
        try:
            meta = json.loads(raw) if isinstance(raw, str | bytes) else dict(raw)
        except (ValueError, TypeError) as e:
            raise PixelsError(f"the catalog row's meta is not DICOM JSON: {e}", path) from e
        ts = row.get("TransferSyntaxUID") or EXPLICIT_LE
        index = frame_index_of(dict(row))
        return cls(path, FileRef.from_row(row), meta, PixelInfo.from_json(meta, ts), index)

    @property
    def transfer_syntax(self) -> str:
        """The row's transfer syntax UID."""
        return self.info.transfer_syntax

    @property
    def n_frames(self) -> int:
        """Frames in the file (from the frame index when there is one)."""
        return len(self.index) if self.index is not None else self.info.number_of_frames

    def open(
        self,
        storage_options: dict[str, Any] | None = None,
        limits: ArchiveLimits | None = None,
    ) -> AbstractContextManager[BinaryIO]:
        """Open the row's file (seekable): local, fsspec URL or zip member."""
        if limits is None:
            return open_file(self.ref, storage_options=storage_options)
        return open_file(self.ref, storage_options=storage_options, limits=limits)

    def read(self, fp: BinaryIO, frame: int) -> bytes:
        """The bytes of ``frame`` (from 0), one ranged read per fragment, through the index."""
        if self.index is None:
            raise PixelsError("no frame index in the catalog row (no pixel data?)", self.path)
        return read_frame(fp, self.index, frame, path=self.path)

    def decode(self, data: bytes, *, threaded: bool = False) -> np.ndarray:
        """Decode one frame's bytes (:func:`pixels.dicom.decode.decode_frame`).

        ``threaded``: the caller decodes frames in several threads, so a backend that
        releases the GIL is preferred where the registry has one.
        """
        return decode_frame(data, self.info, path=self.path, threaded=threaded)

    def frames(
        self,
        frames: Sequence[int],
        *,
        storage_options: dict[str, Any] | None = None,
        limits: ArchiveLimits | None = None,
        threaded: bool = False,
    ) -> Iterator[tuple[int, np.ndarray]]:
        """``(frame, array)`` for each of ``frames``, the file opened once.

        A row without a frame index is decoded from its local file
        (:func:`pixels.dicom.decode.read_frames`); a URL without one is an error.
        """
        if self.index is None:
            local = self.ref.local_path or (self.path if "://" not in self.path else None)
            if local is None:
                raise PixelsError(
                    "no frame index (deflated or no pixel data) and not a local file", self.path
                )
            yield from zip(frames, read_frames(local, list(frames)), strict=True)
            return
        with self.open(storage_options, limits) as fp:
            for f in frames:
                yield f, self.decode(self.read(fp, f), threaded=threaded)
