"""Re-encode a stored DICOM file in Explicit VR Little Endian, streaming.

DICOMweb answers in Explicit VR Little Endian unless the client asks for another
syntax (PS3.18 8.7.3.4): every origin server must be able to convert what it
stores into it, except lossy compressed pixel data (which may keep its syntax)
and pixel data too large for a 32-bit length. Web services never send Implicit
VR or Explicit VR Big Endian.

:func:`open_transcoder` reads a file's header (file meta, the dataset up to the
pixel data, the pixel data element header) and checks that the conversion is
possible, so every error a client can be told about is raised *before* a
response starts; :meth:`Transcoder.chunks` then streams the converted file:

- Implicit VR Little Endian: VRs from the data dictionary (``UN`` for unknown
  private elements), pixel data copied as stored;
- Explicit VR Big Endian: every numeric value re-encoded little endian, OW / OF /
  OL / OD / OV values and native pixel data byte-swapped (8-bit pixel data
  written as OW swapped in pairs);
- Deflated Explicit VR Little Endian: inflated as it streams
  (:class:`pixels.dicom.deflate.InflatingReader`), never more than ``inflate_limit``
  bytes (a deflate bomb raises :class:`~pixels.errors.DicomReadError`);
- encapsulated pixel data, when ``decode`` is true: each frame decoded
  (:func:`pixels.dicom.decode.decode_frame`) and written native; Photometric
  Interpretation becomes the decoder's (``YBR_FULL_422`` -> ``YBR_FULL``,
  JPEG 2000 ``YBR_ICT``/``YBR_RCT`` -> ``RGB``) and Planar Configuration 0.

Memory stays bounded by the header and one frame, whatever the file's size.

Examples
--------
>>> from pydicom.data import get_testdata_file
>>> with open(get_testdata_file("MR_small_bigendian.dcm"), "rb") as f:
...     t = open_transcoder(f, path="MR_small_bigendian.dcm")
...     data = b"".join(t.chunks())
>>> data[128:132], t.source_syntax
(b'DICM', '1.2.840.10008.1.2.2')
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
from pydicom.uid import UID

from pixels.dicom import codecs
from pixels.dicom.deflate import MAX_INFLATED, InflatingReader
from pixels.dicom.tags import PIXEL_DATA_TAGS
from pixels.dicom.words import WORD_SIZES, swap_bytes, swap_value
from pixels.errors import DicomReadError, TranscodeError

__all__ = [
    "LOSSY_SYNTAXES",
    "VIDEO_SYNTAXES",
    "WEB_UNSAFE_SYNTAXES",
    "Transcoder",
    "open_transcoder",
    "to_little_endian",
]

#: MPEG-2, MPEG-4 AVC/H.264 and HEVC/H.265 (PS3.5 A.4.5-A.4.7): one stream for all frames.
VIDEO_SYNTAXES = codecs.VIDEO_SYNTAXES
#: Syntaxes whose pixel data is (or may be) lossy: DICOMweb may send them as stored.
LOSSY_SYNTAXES = (
    frozenset({codecs.JPEG_BASELINE, codecs.JPEG_EXTENDED, codecs.JPEG_LS_NEAR, codecs.J2K})
    | frozenset({codecs.HTJ2K, codecs.J2K_PART2})
    | VIDEO_SYNTAXES
)
#: Syntaxes web services must not send (PS3.18 8.7.3.4): always converted.
WEB_UNSAFE_SYNTAXES = frozenset({codecs.IMPLICIT_LE, codecs.EXPLICIT_BE})

_CHUNK = 1 << 20
_MAX_LENGTH = 0xFFFFFFFE
#: Default cap on the inflated size of a deflated file (bytes): the header pass's.
DEFAULT_INFLATE_LIMIT = MAX_INFLATED


# --------------------------------------------------------------------------- datasets


def to_little_endian(ds: Any, *, top: bool = True) -> Any:
    """A pydicom Dataset read big endian, its binary values made little endian.

    Numeric and text values are decoded by pydicom and need nothing; OW / OF / OL /
    OD / OV values are byte-swapped by their word size (:func:`~pixels.dicom.words.swap_value`:
    an odd-length OW padded first); sequences are converted item by item, the pixel data
    of an item (an icon image) included. The top level's pixel data is left to the
    transcoder's pixel path (``top``). The result has no original encoding and can be
    written little endian. It is a new Dataset holding ``ds``'s elements, each value
    replaced by its little endian bytes: ``ds`` is used up.
    """
    from pydicom.dataset import Dataset

    out = Dataset()
    for elem in ds:  # iterating converts raw elements with the dataset's encoding
        elem = ds[elem.tag]
        if elem.VR == "SQ":
            elem.value = [to_little_endian(item, top=False) for item in elem.value]
        elif (
            elem.VR in WORD_SIZES
            and isinstance(elem.value, bytes)
            and not (top and elem.tag in PIXEL_DATA_TAGS)
        ):
            elem.value = swap_value(elem.value, WORD_SIZES[elem.VR])
        out.add(elem)
    return out


# --------------------------------------------------------------------------- transcoder


@dataclass
class _Pixels:
    tag: int
    vr: str | None
    length: int
    value_pos: int


class Transcoder:
    """One file opened for conversion to Explicit VR Little Endian (see :func:`open_transcoder`).

    Attributes
    ----------
    source_syntax : str
        The stored transfer syntax.
    dataset : pydicom.Dataset
        The dataset up to the pixel data, as it will be written (little endian).
    photometric : str or None
        Photometric Interpretation of the converted pixel data.
    """

    def __init__(
        self,
        fp: BinaryIO,
        body: BinaryIO,
        file_meta: Any,
        dataset: Any,
        pixels: _Pixels | None,
        *,
        implicit: bool,
        little: bool,
        path: str,
        decode: bool,
    ) -> None:
        self._fp = fp
        self._body = body
        self.file_meta = file_meta
        self.dataset = dataset
        self._pixels = pixels
        self._implicit = implicit
        self._little = little
        self.path = path
        self.source_syntax = str(file_meta.get("TransferSyntaxUID", ""))
        self._decode = decode
        self.photometric: str | None = dataset.get("PhotometricInterpretation")
        self._info: Any = None
        self._index: Any = None
        self._first: bytes | None = None
        if pixels is not None and self.encapsulated:
            self._plan_decode()
        elif pixels is not None and body is fp:
            end = fp.seek(0, 2)
            if pixels.value_pos + pixels.length > end:
                raise DicomReadError(
                    f"truncated: pixel data ({pixels.tag >> 16:04X},{pixels.tag & 0xFFFF:04X}) "
                    f"should have {pixels.length} bytes, the file holds "
                    f"{max(end - pixels.value_pos, 0)}",
                    path,
                )
        self._head = self._header()

    @property
    def encapsulated(self) -> bool:
        return self._pixels is not None and self._pixels.length == 0xFFFFFFFF

    def _plan_decode(self) -> None:
        from pixels.dicom.decode import PixelInfo
        from pixels.dicom.frames import index_frames

        assert self._pixels is not None
        ts = self.source_syntax
        if not self._decode:
            raise TranscodeError(
                f"pixel data is encapsulated ({codecs.SYNTAX_NAMES.get(ts, ts)}); "
                "decoding was not asked for",
                self.path,
            )
        if ts in VIDEO_SYNTAXES:
            raise TranscodeError(
                f"video ({ts}) cannot be decoded to frames here: send it as stored", self.path
            )
        ds = self.dataset
        info = PixelInfo.from_dataset(_WithMeta(ds, self.file_meta))
        if not codecs.backends_for(ts, info):
            raise codecs.missing_decoder_error(ts, self.path)
        frame_bytes = info.rows * info.columns * info.samples_per_pixel * info.bits_allocated // 8
        total = frame_bytes * info.number_of_frames
        if total > _MAX_LENGTH:
            raise TranscodeError(
                f"decoded pixel data would be {total} bytes, more than a 32-bit length holds",
                self.path,
            )
        self._index = index_frames(
            self._fp,
            pixel_offset=self._pixels.value_pos,
            pixel_length=None,
            number_of_frames=info.number_of_frames,
            rows=info.rows,
            columns=info.columns,
            samples_per_pixel=info.samples_per_pixel,
            bits_allocated=info.bits_allocated,
            encapsulated=True,
            path=self.path,
            tag=self._pixels.tag,
        )
        self._info = info
        self.photometric = info.decoded_photometric
        ds.PhotometricInterpretation = info.decoded_photometric
        if info.samples_per_pixel > 1:
            ds.PlanarConfiguration = 0
        self._pixel_length = total
        self._first = self._frame(0)  # a corrupt single frame fails before any byte is sent

    def _frame(self, k: int) -> bytes:
        from pixels.dicom.decode import decode_frame
        from pixels.dicom.frames import read_frame

        info = self._info
        ba = info.bits_allocated
        dtype = np.dtype(f"<{'i' if info.pixel_representation else 'u'}{max(ba // 8, 1)}")
        arr = decode_frame(
            read_frame(self._fp, self._index, k, path=self.path), info, path=self.path
        )
        return np.ascontiguousarray(arr).astype(dtype, copy=False).tobytes()

    def _header(self) -> bytes:
        """File meta and the dataset up to the pixel data, written now (errors before streaming)."""
        from pydicom.dataset import FileMetaDataset
        from pydicom.filewriter import dcmwrite

        meta = FileMetaDataset()
        for elem in self.file_meta:
            if elem.tag.element != 0:
                meta.add(elem)
        meta.TransferSyntaxUID = UID(codecs.EXPLICIT_LE)
        head = self.dataset
        for key, source in (
            ("MediaStorageSOPClassUID", "SOPClassUID"),
            ("MediaStorageSOPInstanceUID", "SOPInstanceUID"),
        ):
            if not meta.get(key) and head.get(source):
                setattr(meta, key, head.get(source))
        head.file_meta = meta
        buf = io.BytesIO()
        try:
            dcmwrite(buf, head, implicit_vr=False, little_endian=True, enforce_file_format=True)
        except Exception as e:
            raise TranscodeError(
                f"cannot write the header in Explicit VR Little Endian: {e}", self.path
            ) from e
        return buf.getvalue()

    def chunks(self) -> Iterator[bytes]:
        """The whole file in Explicit VR Little Endian, in pieces of at most ~1 MiB."""
        yield self._head
        p = self._pixels
        if p is not None:
            yield from self._pixel_chunks(p)
            yield from self._trailing()

    def _element_header(self, tag: int, vr: str, length: int) -> bytes:
        return struct.pack("<HH2sHL", tag >> 16, tag & 0xFFFF, vr.encode(), 0, length)

    def _pixel_chunks(self, p: _Pixels) -> Iterator[bytes]:
        if self.encapsulated:
            yield from self._decoded_chunks(p)
            return
        ba = int(self.dataset.get("BitsAllocated", 8) or 8)
        vr = p.vr or ("OW" if ba > 8 else "OB")
        if p.tag == 0x7FE00010:
            out_vr = "OW" if ba > 8 else "OB"
        else:
            out_vr = "OF" if p.tag == 0x7FE00008 else "OD"
        width = 1
        if not self._little:
            width = {"OF": 4, "OD": 8}.get(vr, max(ba // 8, 2) if vr == "OW" else 1)
        length = p.length
        yield self._element_header(p.tag, out_vr, length + length % 2)
        self._body.seek(p.value_pos)
        left = length
        step = _CHUNK - _CHUNK % 8
        while left > 0:
            data = self._body.read(min(step, left))
            if not data:
                raise DicomReadError(
                    f"truncated: pixel data ({p.tag >> 16:04X},{p.tag & 0xFFFF:04X}) should "
                    f"have {length} bytes, the file ends {left} bytes short",
                    self.path,
                )
            left -= len(data)
            yield swap_bytes(data, width) if width > 1 else data
        if length % 2:
            yield b"\0"

    def _decoded_chunks(self, p: _Pixels) -> Iterator[bytes]:
        vr = "OW" if self._info.bits_allocated > 8 else "OB"
        yield self._element_header(0x7FE00010, vr, self._pixel_length + self._pixel_length % 2)
        for k in range(len(self._index)):
            if k == 0 and self._first is not None:
                yield self._first
            else:
                yield self._frame(k)
        if self._pixel_length % 2:
            yield b"\0"

    def _trailing(self) -> Iterator[bytes]:
        """Elements after the pixel data (private groups, digital signatures), converted."""
        from pydicom.filebase import DicomBytesIO
        from pydicom.filereader import read_dataset
        from pydicom.filewriter import write_dataset

        p = self._pixels
        assert p is not None
        if self.encapsulated:
            idx = self._index
            last = idx.fragments[-1][-1] if idx.fragments else (idx.offsets[-1], idx.lengths[-1])
            pos = last[0] + last[1]
            self._body.seek(pos)
            head = self._body.read(8)
            if head[:4] != b"\xfe\xff\xdd\xe0":
                return  # frames past the last indexed one: nothing reliable follows
            start = pos + 8
        else:
            start = p.value_pos + p.length
        self._body.seek(start)
        rest = self._body.read(_CHUNK)
        if len(rest.strip(b"\0")) < 8:
            return
        more = self._body.read()
        tail = read_dataset(io.BytesIO(rest + more), self._implicit, self._little)
        if not len(tail):
            return
        if not self._little:
            tail = to_little_endian(tail)
        out = DicomBytesIO()
        out.is_little_endian = True
        out.is_implicit_VR = False
        write_dataset(out, tail)
        yield out.getvalue()


class _WithMeta:
    """A header dataset seen with its file meta (what PixelInfo.from_dataset reads)."""

    def __init__(self, ds: Any, meta: Any) -> None:
        self._ds = ds
        self.file_meta = meta

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ds, name)

    def __contains__(self, key: object) -> bool:
        return key in self._ds

    def get(self, key: str, default: Any = None) -> Any:
        return self._ds.get(key, default)

    def get_item(self, key: str) -> Any:
        return self._ds.get_item(key)


def open_transcoder(
    fp: BinaryIO,
    *,
    path: str,
    decode: bool = True,
    inflate_limit: int = DEFAULT_INFLATE_LIMIT,
    transfer_syntax: str | None = None,
) -> Transcoder:
    """Read a file's header and get ready to stream it in Explicit VR Little Endian.

    Parameters
    ----------
    fp : binary file
        The stored file (seekable).
    path : str
        Named in errors.
    decode : bool
        Decode encapsulated pixel data (else such a file is refused).
    inflate_limit : int
        Largest inflated size accepted for a deflated file.
    transfer_syntax : str, optional
        The syntax to read a file with no file meta (or none in it) in, as
        cataloged; such a file gets file meta when written.

    Raises
    ------
    TranscodeError
        Video, encapsulated pixel data with ``decode=False``, or decoded pixel data
        too large for a 32-bit length.
    MissingDecoderError
        No decoder installed for the stored syntax.
    DicomReadError
        The file is not DICOM with file meta, or its header cannot be read.
    """
    from pydicom.filereader import _read_file_meta_info, read_dataset, read_preamble

    fp.seek(0)
    try:
        read_preamble(fp, True)  # no preamble: rewinds to byte 0
        file_meta = _read_file_meta_info(fp)
    except Exception as e:
        raise DicomReadError(f"cannot read the file meta information: {e}", path) from e
    ts = str(file_meta.get("TransferSyntaxUID", "") or "") or (transfer_syntax or "")
    if not ts:
        raise DicomReadError("no Transfer Syntax UID (0002,0010) in the file meta", path)
    file_meta.TransferSyntaxUID = UID(ts)
    body: BinaryIO = fp
    if ts == codecs.DEFLATED_LE:
        body = InflatingReader(fp, limit=inflate_limit, path=path)  # type: ignore[assignment]
    implicit = ts == codecs.IMPLICIT_LE
    little = ts != codecs.EXPLICIT_BE
    found: list[tuple[int, str | None, int]] = []

    def stop(tag: Any, vr: str | None, length: int) -> bool:
        if int(tag) in PIXEL_DATA_TAGS:
            found.append((int(tag), vr, length))
            return True
        return False

    try:
        ds = read_dataset(body, implicit, little, stop_when=stop)
        # pydicom corrects a wrong VR mode; the dataset knows which it used
        implicit = bool(getattr(ds, "original_encoding", (implicit, little))[0])
    except DicomReadError:
        raise
    except Exception as e:
        raise DicomReadError(f"cannot read the dataset: {e}", path) from e
    pixels = None
    if found:
        tag, vr, length = found[0]
        pos = body.tell()
        explicit_long = vr is not None and not implicit
        pixels = _Pixels(tag, vr, length, pos + (12 if explicit_long else 8))
    header = to_little_endian(ds) if not little else _copy(ds)
    return Transcoder(
        fp,
        body,
        file_meta,
        header,
        pixels,
        implicit=implicit,
        little=little,
        path=path,
        decode=decode,
    )


def _copy(ds: Any) -> Any:
    from pydicom.dataset import Dataset

    out = Dataset()
    for elem in ds:
        out.add(ds[elem.tag])
    return out
