"""Decode one frame's bytes to a numpy array, optionally at reduced resolution.

What :func:`decode_frame` returns
---------------------------------
The stored values of one frame, shaped ``(rows, cols)`` or ``(rows, cols, samples)``
(always interleaved), masked to *Bits Stored* and sign-extended when *Pixel
Representation* is 1, with pydicom's dtype (``uint8``/``int8`` ... ``uint32``/``int32``
from *Bits Allocated*; for JPEG 2000 and JPEG-LS from the codestream's precision).

Colour stays in the stored photometric space, with two exceptions that come from the
codecs themselves (see :attr:`PixelInfo.decoded_photometric`):

- ``YBR_FULL_422`` comes out as ``YBR_FULL`` (chroma upsampled: JPEG codecs do it, and
  native 4:2:2 data is expanded here);
- JPEG 2000 / HTJ2K with ``YBR_RCT`` / ``YBR_ICT`` comes out as ``RGB`` (the codec
  inverts the multi-component transform).

pydicom's ``ds.pixel_array`` additionally converts ``YBR_FULL``/``YBR_FULL_422`` to RGB
by default; use :func:`pixels.dicom.display.to_display` (or
``pydicom.pixels.convert_color_space``) for that.

Examples
--------
>>> from pydicom.data import get_testdata_file
>>> from pixels.dicom.decode import read_frames
>>> read_frames(get_testdata_file("CT_small.dcm"))[0].shape
(128, 128)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pixels.dicom import codecs
from pixels.errors import DecodeError, DicomReadError

__all__ = ["PixelInfo", "decode_frame", "read_frames"]


def _json_value(meta: Mapping[str, Any], tag: str, default: Any = None) -> Any:
    el = meta.get(tag)
    if not el:
        return default
    values = el.get("Value")
    if not values:
        return default
    return values[0]


@dataclass(frozen=True, slots=True)
class PixelInfo:
    """Everything needed to interpret one frame's bytes.

    ``pixel_data_vr`` matters only for 8-bit Explicit VR Big Endian data written as OW,
    whose bytes are swapped in pairs.
    """

    transfer_syntax: str
    rows: int
    columns: int
    samples_per_pixel: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    photometric: str
    planar_configuration: int
    number_of_frames: int
    pixel_data_vr: str = ""

    @classmethod
    def from_dataset(cls, ds: Any) -> PixelInfo:
        """From a pydicom Dataset (a header read with ``stop_before_pixels`` is enough)."""
        ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
        vr = ""
        if "PixelData" in ds:
            vr = str(ds.get_item("PixelData").VR)
        ba = int(ds.get("BitsAllocated", 8))
        return cls(
            transfer_syntax=ts or codecs.EXPLICIT_LE,
            rows=int(ds.Rows),
            columns=int(ds.Columns),
            samples_per_pixel=int(ds.get("SamplesPerPixel", 1) or 1),
            bits_allocated=ba,
            bits_stored=int(ds.get("BitsStored", ba) or ba),
            pixel_representation=int(ds.get("PixelRepresentation", 0) or 0),
            photometric=str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip(),
            planar_configuration=int(ds.get("PlanarConfiguration", 0) or 0),
            number_of_frames=int(ds.get("NumberOfFrames", 1) or 1),
            pixel_data_vr=vr,
        )

    @classmethod
    def from_json(cls, meta: Mapping[str, Any], transfer_syntax: str) -> PixelInfo:
        """From a DICOM JSON model dict (``{"00280010": {"vr": "US", "Value": [512]}}``)."""
        ba = int(_json_value(meta, "00280100", 8))
        return cls(
            transfer_syntax=transfer_syntax,
            rows=int(_json_value(meta, "00280010", 0)),
            columns=int(_json_value(meta, "00280011", 0)),
            samples_per_pixel=int(_json_value(meta, "00280002", 1) or 1),
            bits_allocated=ba,
            bits_stored=int(_json_value(meta, "00280101", ba) or ba),
            pixel_representation=int(_json_value(meta, "00280103", 0) or 0),
            photometric=str(_json_value(meta, "00280004", "MONOCHROME2")).strip(),
            planar_configuration=int(_json_value(meta, "00280006", 0) or 0),
            number_of_frames=int(_json_value(meta, "00280008", 1) or 1),
            pixel_data_vr=str(meta.get("7FE00010", {}).get("vr", "")),
        )

    @property
    def is_native(self) -> bool:
        """Pixel data is not encapsulated (uncompressed, possibly deflated or big endian)."""
        return self.transfer_syntax in codecs.NATIVE_SYNTAXES

    @property
    def frame_pixels(self) -> int:
        """Samples in one frame as stored (YBR_FULL_422 native: 2 per pixel)."""
        if self.is_native and self.photometric == "YBR_FULL_422" and self.samples_per_pixel == 3:
            return self.rows * self.columns * 2
        return self.rows * self.columns * self.samples_per_pixel

    @property
    def frame_bits(self) -> int:
        """Bits in one native frame (frames of 1-bit data may not start on a byte)."""
        return self.frame_pixels * self.bits_allocated

    @property
    def frame_length(self) -> int:
        """Bytes in one native frame (rounded up for 1-bit data)."""
        return (self.frame_bits + 7) // 8

    @property
    def decoded_photometric(self) -> str:
        """The photometric interpretation of what :func:`decode_frame` returns."""
        pi = self.photometric
        if pi == "YBR_FULL_422":
            return "YBR_FULL"
        if pi in ("YBR_RCT", "YBR_ICT") and self.transfer_syntax in codecs.J2K_SYNTAXES:
            return "RGB"
        if self.transfer_syntax in codecs.VIDEO_SYNTAXES and self.samples_per_pixel == 3:
            return "RGB"  # FFmpeg converts the stream's YUV (YBR_PARTIAL_420) to RGB
        return pi


# --------------------------------------------------------------------------- native


def _native(data: bytes, info: PixelInfo, bit_offset: int = 0) -> np.ndarray:
    rows, cols, spp, ba = info.rows, info.columns, info.samples_per_pixel, info.bits_allocated
    n = info.frame_pixels
    buf = np.frombuffer(data, dtype=np.uint8)
    if ba == 1:
        bits = np.unpackbits(buf, bitorder="little")[bit_offset : bit_offset + n]
        if bits.size < n:
            raise DecodeError(f"frame needs {n} bits, got {bits.size}")
        flat = bits
    else:
        if ba % 8:
            raise DecodeError(f"Bits Allocated {ba} is not supported")
        size = ba // 8
        need = n * size
        if buf.size < need:
            raise DecodeError(f"frame needs {need} bytes, got {buf.size}")
        buf = buf[:need]
        big = info.transfer_syntax == codecs.EXPLICIT_BE
        if big and size == 1 and info.pixel_data_vr == "OW":  # frame must start on an even byte
            buf = np.frombuffer(data, dtype=np.uint8)
            buf = buf[: buf.size - buf.size % 2].reshape(-1, 2)[:, ::-1].reshape(-1)[:need]
        flat = buf.view(np.dtype(f"{'>' if big else '<'}u{size}")).astype(f"=u{size}", copy=False)
    if info.is_native and info.photometric == "YBR_FULL_422" and spp == 3:
        if cols % 2:
            raise DecodeError(
                f"native YBR_FULL_422 pixel data needs an even number of Columns (0028,0011), "
                f"got {cols}: its chroma samples are shared by pairs of pixels"
            )
        pairs = flat.reshape(rows, cols // 2, 4)
        out = np.empty((rows, cols, 3), dtype=flat.dtype)
        out[:, 0::2, 0] = pairs[..., 0]
        out[:, 1::2, 0] = pairs[..., 1]
        out[:, :, 1] = np.repeat(pairs[..., 2], 2, axis=1)
        out[:, :, 2] = np.repeat(pairs[..., 3], 2, axis=1)
        return out
    if spp == 1:
        return flat.reshape(rows, cols)
    if info.planar_configuration == 1:
        return flat.reshape(spp, rows, cols).transpose(1, 2, 0)
    return flat.reshape(rows, cols, spp)


# --------------------------------------------------------------------------- values


def _finish(raw: np.ndarray, info: PixelInfo) -> np.ndarray:
    """Cast to pydicom's dtype, mask to Bits Stored, sign-extend."""
    ts = info.transfer_syntax
    if ts in codecs.J2K_SYNTAXES or ts in codecs.JPEG_LS_SYNTAXES:
        nbytes = raw.dtype.itemsize  # the codestream's precision decides, as in pydicom
    else:
        nbytes = max(info.bits_allocated, 8) // 8
    nbits = 8 * nbytes
    u = raw.astype(f"=u{nbytes}", copy=False)  # signed codec output wraps to its bit pattern
    bs = min(info.bits_stored, nbits)
    # Values that already fit Bits Stored are their own result (the usual case): two
    # reductions that allocate nothing then replace two passes that each write a copy.
    if info.pixel_representation == 1:
        s = u.view(f"=i{nbytes}")
        shift = nbits - bs
        if shift and s.size and (s.min() < -(1 << (bs - 1)) or s.max() >= 1 << (bs - 1)):
            s = np.right_shift(np.left_shift(s, shift), shift)  # bits above: sign-extend
        return s
    if bs < nbits and info.bits_allocated != 1 and u.size and u.max() >= 1 << bs:
        u = np.bitwise_and(u, np.array((1 << bs) - 1, dtype=u.dtype))
    return u


#: A compressed frame decoding to more than this many bytes...
EXPANSION_FLOOR = 256 << 20
#: ... must not be more than this many times smaller than what it decodes to. Real frames
#: stay far below (a blank 4096 x 4096 16-bit JPEG 2000 frame: ~2e4); a 400-byte frame that
#: claims 65535 x 65535 x 16 bits would be 2e7.
MAX_EXPANSION = 100_000


def _check_expansion(size: int, info: PixelInfo, ts: str) -> None:
    """Before decoding: refuse a frame whose header and codestream agree on a size no codec
    could reach from so few bytes (the decoder would allocate it first)."""
    if ts in codecs.VIDEO_SYNTAXES or ts == codecs.RLE_LOSSLESS:  # RLE: its exact bound (64)
        return
    decoded = info.rows * info.columns * info.samples_per_pixel * max(info.bits_allocated // 8, 1)
    if decoded > EXPANSION_FLOOR and decoded > MAX_EXPANSION * max(size, 1):
        raise DecodeError(
            f"a {codecs.SYNTAX_NAMES.get(ts, ts)} frame of {size} bytes cannot decode to Rows "
            f"(0028,0010) {info.rows} x Columns (0028,0011) {info.columns} x SamplesPerPixel "
            f"(0028,0002) {info.samples_per_pixel} x BitsAllocated (0028,0100) "
            f"{info.bits_allocated} ({decoded} bytes, {decoded // max(size, 1)} times more; "
            f"at most {MAX_EXPANSION} is accepted)"
        )


def _check_codestream(head: bytes, info: PixelInfo, ts: str) -> None:
    """Before decoding: the size the codestream declares is the header's (codecs allocate
    for what the codestream says; a 400-byte frame may claim 65535 x 65535)."""
    size = codecs.codestream_size(head, ts)
    if size is None:
        return
    rows, cols, comps = size
    if (rows, cols, comps) != (info.rows, info.columns, info.samples_per_pixel):
        raise DecodeError(
            f"the {codecs.SYNTAX_NAMES.get(ts, ts)} codestream declares {rows} x {cols} x "
            f"{comps} samples, the header says Rows (0028,0010) {info.rows} x Columns "
            f"(0028,0011) {info.columns} x SamplesPerPixel (0028,0002) {info.samples_per_pixel}"
        )


def _check_shape(raw: np.ndarray, info: PixelInfo, ts: str) -> None:
    """The codestream's image is the one the header describes (a header that lies about
    Rows/Columns/SamplesPerPixel would otherwise give a frame of another size)."""
    samples = raw.shape[2] if raw.ndim == 3 else 1
    if raw.shape[:2] != (info.rows, info.columns) or samples != info.samples_per_pixel:
        raise DecodeError(
            f"the {codecs.SYNTAX_NAMES.get(ts, ts)} codestream holds {raw.shape[0]} x "
            f"{raw.shape[1]} x {samples} samples, the header says Rows (0028,0010) {info.rows} x "
            f"Columns (0028,0011) {info.columns} x SamplesPerPixel (0028,0002) "
            f"{info.samples_per_pixel}"
        )


def check_frame(data: bytes, info: PixelInfo, *, path: str = "") -> None:
    """The checks an encapsulated frame passes before any codec sees it: the size its
    codestream declares is the header's, and its bytes can plausibly decode to it.

    Raises
    ------
    DecodeError
        Naming ``path`` and the tags that disagree.
    """
    ts = info.transfer_syntax
    try:
        _check_codestream(bytes(data[:65536]), info, ts)
        _check_expansion(len(data), info, ts)
    except DecodeError as e:
        if e.path or not path:
            raise
        raise DecodeError(e.reason, path) from e


def _check_reduce(reduce: int) -> None:
    if not isinstance(reduce, int) or reduce < 0:
        raise ValueError(f"reduce must be an integer >= 0, got {reduce!r}")


def decode_frame(
    data: bytes, info: PixelInfo, *, reduce: int = 0, path: str = "", threaded: bool = False
) -> np.ndarray:
    """Decode one frame's bytes as stored.

    Parameters
    ----------
    data : bytes
        One frame: for native syntaxes its slice of *Pixel Data* (big-endian when the
        syntax says so; already inflated for the deflated syntax), for encapsulated
        syntaxes its fragments concatenated.
    info : PixelInfo
        How to interpret the bytes.
    reduce : int
        Decode at ``1 / 2**reduce`` resolution: JPEG 2000 / HTJ2K via openjpeg's
        resolution reduction (the system libopenjp2, else Pillow), 8-bit JPEG via DCT scaling (Pillow), otherwise
        a full decode then every ``2**reduce``-th pixel. The shape is
        ``ceil(rows / 2**reduce), ceil(cols / 2**reduce)``.
    path : str
        Named in errors.
    threaded : bool
        The caller decodes frames in several threads: prefer a backend that releases the
        GIL (:attr:`pixels.dicom.codecs.Backend.releases_gil`) where there is one.

    Returns
    -------
    numpy.ndarray
        ``(rows, cols)`` or ``(rows, cols, samples)``; its photometric interpretation is
        ``info.decoded_photometric``.

    Raises
    ------
    DecodeError
        No decoder is installed for the syntax (the message says what to install), or
        the frame is corrupt.
    """
    _check_reduce(reduce)
    ts = info.transfer_syntax
    applied = 0
    try:
        if info.is_native:
            raw = _native(data, info)
        else:
            check_frame(data, info)
            backends = codecs.backends_for(ts, info, reduce=reduce, threaded=threaded)
            if not backends:
                raise codecs.missing_decoder_error(ts, path)
            last: Exception | None = None
            for backend in backends:
                try:
                    raw, applied = backend.run(bytes(data), info, reduce)
                except Exception as e:
                    last = e
                    continue
                if backend.planar_output:
                    raw = raw[0] if raw.shape[0] == 1 else raw.transpose(1, 2, 0)
                if not applied:
                    _check_shape(raw, info, ts)
                break
            else:
                raise DecodeError(
                    f"could not decode frame ({codecs.SYNTAX_NAMES.get(ts, ts)}): {last}",
                    path or None,
                ) from last
    except DecodeError as e:
        if e.path or not path:
            raise
        raise DecodeError(e.reason, path) from e
    arr = _finish(raw, info)
    step = 1 << (reduce - applied)
    if step > 1:
        arr = np.ascontiguousarray(arr[::step, ::step])
    return arr


# --------------------------------------------------------------------------- files


def _read_encapsulated_frames(
    f: Any, offset: int, info: PixelInfo, frames: Sequence[int], path: str
) -> dict[int, bytes]:
    """Walk the items of encapsulated Pixel Data from ``offset`` (its value start)."""
    from pydicom.encaps import generate_frames

    f.seek(offset)
    wanted = set(frames)
    out: dict[int, bytes] = {}
    # generate_frames reads the fragments and uses the offset tables when present
    for i, frame in enumerate(
        generate_frames(f, number_of_frames=info.number_of_frames, endianness="<")
    ):
        if i in wanted:
            out[i] = frame
            if len(out) == len(wanted):
                break
    return out


def read_frames(path: str, frames: Sequence[int] = (0,), *, reduce: int = 0) -> list[np.ndarray]:
    """Decode the given frames (0-based) of a local DICOM file.

    Reads the header with pydicom (``stop_before_pixels``), then only the requested
    frames: a seek for native data, a walk over the fragments for encapsulated data.
    (Deflated files are inflated whole; video streams are decoded from the start up
    to the last frame asked for, as RGB.)

    Raises
    ------
    DicomReadError
        The file is not readable DICOM, has no Pixel Data, or a frame is out of range.
    DecodeError
        See :func:`decode_frame`.
    """
    import pydicom

    _check_reduce(reduce)
    path = os.fspath(path)
    with open(path, "rb") as f:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True, force=True)
        except Exception as e:
            raise DicomReadError(f"cannot read DICOM header: {e}", path) from e
        pos = f.tell()
        info = PixelInfo.from_dataset(ds)
        for i in frames:
            if not 0 <= i < info.number_of_frames:
                raise DicomReadError(f"frame {i} out of range 0..{info.number_of_frames - 1}", path)
        if info.transfer_syntax == codecs.DEFLATED_LE:
            full = pydicom.dcmread(path, force=True)
            if "PixelData" not in full:
                raise DicomReadError("no Pixel Data (7FE0,0010)", path)
            info = PixelInfo.from_dataset(full)
            return [_decode_native_from(full.PixelData, info, i, reduce, path) for i in frames]
        # stop_before_pixels leaves the file at the Pixel Data element's tag
        f.seek(pos)
        head = f.read(12)
        big = info.transfer_syntax == codecs.EXPLICIT_BE
        order = ">" if big else "<"
        if (
            len(head) < 8
            or int.from_bytes(head[:2], "big" if big else "little") != 0x7FE0
            or (int.from_bytes(head[2:4], "big" if big else "little") != 0x0010)
        ):
            raise DicomReadError("no Pixel Data (7FE0,0010)", path)
        # some files are implicit VR despite an explicit syntax: look at the bytes
        implicit = info.transfer_syntax == codecs.IMPLICIT_LE or head[4:6] not in (
            b"OB",
            b"OW",
            b"UN",
            b"OF",
            b"OD",
            b"OL",
            b"OV",
        )
        if implicit:
            value_offset, vr = pos + 8, ""
            length = int.from_bytes(head[4:8], "little")
        else:
            vr = head[4:6].decode("ascii", "replace")
            value_offset = pos + 12
            length = int.from_bytes(head[8:12], "big" if big else "little")
        info = PixelInfo(**{**_asdict(info), "pixel_data_vr": vr})
        del order
        if big and info.bits_allocated in (1, 8) and vr == "OW":
            # 8-bit or bit-packed data written as OW: swap byte pairs of the whole value once
            f.seek(value_offset)
            blob = f.read(length)
            even = np.frombuffer(blob[: len(blob) - len(blob) % 2], dtype=np.uint8)
            swapped = even.reshape(-1, 2)[:, ::-1].tobytes()
            info = PixelInfo(**{**_asdict(info), "pixel_data_vr": "OB"})
            return [_decode_native_from(swapped, info, i, reduce, path) for i in frames]
        if info.is_native:
            out = []
            for i in frames:
                start_bit = i * info.frame_bits
                f.seek(value_offset + start_bit // 8)
                chunk = f.read(info.frame_length + 1)
                out.append(_decode_native_from(chunk, info, 0, reduce, path, start_bit % 8))
            return out
        if info.transfer_syntax in codecs.VIDEO_SYNTAXES:
            return _video_frames(f, value_offset, info, frames, reduce, path)
        got = _read_encapsulated_frames(f, value_offset, info, frames, path)
    missing = [i for i in frames if i not in got]
    if missing:
        raise DicomReadError(f"encapsulated Pixel Data lacks frame(s) {missing}", path)
    return [decode_frame(got[i], info, reduce=reduce, path=path) for i in frames]


def _video_frames(
    f: Any, offset: int, info: PixelInfo, frames: Sequence[int], reduce: int, path: str
) -> list[np.ndarray]:
    """Frames of a video stream (every fragment joined), decoded in order by FFmpeg (PyAV)."""
    from pydicom.encaps import generate_fragments

    f.seek(offset)
    stream = b"".join(list(generate_fragments(f, endianness="<"))[1:])  # after the BOT item
    try:
        decoded = codecs.decode_video(stream, max(frames) + 1 if frames else 0)
    except DecodeError as e:
        raise DecodeError(e.reason, path) from e
    if len(decoded) <= max(frames, default=-1):
        raise DecodeError(
            f"the video stream holds {len(decoded)} frame(s), NumberOfFrames (0028,0008) says "
            f"{info.number_of_frames}",
            path,
        )
    step = 1 << reduce
    out = []
    for i in frames:
        arr = decoded[i]
        _check_shape(arr, info, info.transfer_syntax)
        out.append(np.ascontiguousarray(arr[::step, ::step]))
    return out


def _asdict(info: PixelInfo) -> dict[str, Any]:
    return {k: getattr(info, k) for k in PixelInfo.__slots__}


def _decode_native_from(
    blob: bytes, info: PixelInfo, i: int, reduce: int, path: str, bit_offset: int = 0
) -> np.ndarray:
    start_bit = i * info.frame_bits + bit_offset
    chunk = blob[start_bit // 8 : start_bit // 8 + info.frame_length + 1]
    if info.bits_allocated == 1:
        arr = _finish(_native(chunk, info, bit_offset=start_bit % 8), info)
        step = 1 << reduce
        return np.ascontiguousarray(arr[::step, ::step])
    return decode_frame(chunk, info, reduce=reduce, path=path)
