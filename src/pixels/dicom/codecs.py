"""Codec plugins: which backends decode which transfer syntax, and why one is unavailable.

Each :class:`Backend` wraps one decoding package. :data:`REGISTRY` maps every
supported transfer syntax to its backends in order of preference (fastest
first: Pillow 2.0 ms vs libjpeg 5.1 ms for a 640x480 YBR baseline frame,
pyjpegls 0.04 ms vs libjpeg 0.45 ms for a 64x64 JPEG-LS frame). A backend that cannot be
imported stays in the registry and reports the import error, so
:func:`codec_status` can tell a user exactly what to install.

A backend's ``decode`` returns the codec's raw output as a numpy array shaped
``(rows, cols)``, ``(rows, cols, samples)`` or, for RLE, ``(samples, rows, cols)``
(see :attr:`Backend.planar_output`), plus the resolution reduction it already
applied; :func:`pixels.dicom.decode.decode_frame` does the rest (masking, sign,
planar configuration, reduction by striding).

Examples
--------
>>> from pixels.dicom.codecs import codec_status
>>> codec_status()["1.2.840.10008.1.2.4.90"][0][:2]
('pylibjpeg-openjpeg', True)
"""

from __future__ import annotations

import importlib
import io
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np

from pixels.errors import DecodeError, MissingDecoderError

if TYPE_CHECKING:
    from pixels.dicom.decode import PixelInfo

# Transfer syntaxes
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.57"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
JPEG_LS_NEAR = "1.2.840.10008.1.2.4.81"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
J2K = "1.2.840.10008.1.2.4.91"
J2K_PART2_LOSSLESS = "1.2.840.10008.1.2.4.92"
J2K_PART2 = "1.2.840.10008.1.2.4.93"
HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"
HTJ2K_LOSSLESS_RPCL = "1.2.840.10008.1.2.4.202"
HTJ2K = "1.2.840.10008.1.2.4.203"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"

NATIVE_SYNTAXES = frozenset({IMPLICIT_LE, EXPLICIT_LE, DEFLATED_LE, EXPLICIT_BE})
JPEG_SYNTAXES = frozenset({JPEG_BASELINE, JPEG_EXTENDED, JPEG_LOSSLESS, JPEG_LOSSLESS_SV1})
JPEG_LS_SYNTAXES = frozenset({JPEG_LS_LOSSLESS, JPEG_LS_NEAR})
J2K_SYNTAXES = frozenset({J2K_LOSSLESS, J2K, HTJ2K_LOSSLESS, HTJ2K_LOSSLESS_RPCL, HTJ2K})
"""JPEG 2000 and HTJ2K: the codec undoes the YBR_RCT / YBR_ICT transform, output is RGB."""

VIDEO_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2.4.100",  # MPEG2 Main Profile / Main Level
        "1.2.840.10008.1.2.4.100.1",  # ... fragmentable
        "1.2.840.10008.1.2.4.101",  # MPEG2 Main Profile / High Level
        "1.2.840.10008.1.2.4.101.1",
        "1.2.840.10008.1.2.4.102",  # MPEG-4 AVC/H.264 High Profile / Level 4.1
        "1.2.840.10008.1.2.4.102.1",
        "1.2.840.10008.1.2.4.103",  # MPEG-4 AVC/H.264 BD-compatible High Profile / Level 4.1
        "1.2.840.10008.1.2.4.103.1",
        "1.2.840.10008.1.2.4.104",  # MPEG-4 AVC/H.264 High Profile / Level 4.2 For 2D Video
        "1.2.840.10008.1.2.4.104.1",
        "1.2.840.10008.1.2.4.105",  # ... Level 4.2 For 3D Video
        "1.2.840.10008.1.2.4.105.1",
        "1.2.840.10008.1.2.4.106",  # MPEG-4 AVC/H.264 Stereo High Profile / Level 4.2
        "1.2.840.10008.1.2.4.106.1",
        "1.2.840.10008.1.2.4.107",  # HEVC/H.265 Main Profile / Level 5.1
        "1.2.840.10008.1.2.4.108",  # HEVC/H.265 Main 10 Profile / Level 5.1
    }
)
"""Video: the fragments of the pixel data hold one stream for all frames (PS3.5 8.2.5-8.2.8),
indexed as one unit; the Basic Offset Table is empty and frames are not separable."""

SYNTAX_NAMES = {
    IMPLICIT_LE: "Implicit VR Little Endian",
    EXPLICIT_LE: "Explicit VR Little Endian",
    DEFLATED_LE: "Deflated Explicit VR Little Endian",
    EXPLICIT_BE: "Explicit VR Big Endian",
    JPEG_BASELINE: "JPEG Baseline (Process 1)",
    JPEG_EXTENDED: "JPEG Extended (Process 2 & 4)",
    JPEG_LOSSLESS: "JPEG Lossless (Process 14)",
    JPEG_LOSSLESS_SV1: "JPEG Lossless SV1",
    JPEG_LS_LOSSLESS: "JPEG-LS Lossless",
    JPEG_LS_NEAR: "JPEG-LS Near-Lossless",
    J2K_LOSSLESS: "JPEG 2000 Lossless",
    J2K: "JPEG 2000",
    HTJ2K_LOSSLESS: "HTJ2K Lossless",
    HTJ2K_LOSSLESS_RPCL: "HTJ2K Lossless RPCL",
    HTJ2K: "HTJ2K",
    RLE_LOSSLESS: "RLE Lossless",
    "1.2.840.10008.1.2.4.100": "MPEG2 Main Profile / Main Level",
    "1.2.840.10008.1.2.4.100.1": "Fragmentable MPEG2 Main Profile / Main Level",
    "1.2.840.10008.1.2.4.101": "MPEG2 Main Profile / High Level",
    "1.2.840.10008.1.2.4.101.1": "Fragmentable MPEG2 Main Profile / High Level",
    "1.2.840.10008.1.2.4.102": "MPEG-4 AVC/H.264 High Profile / Level 4.1",
    "1.2.840.10008.1.2.4.102.1": "Fragmentable MPEG-4 AVC/H.264 High Profile / Level 4.1",
    "1.2.840.10008.1.2.4.103": "MPEG-4 AVC/H.264 BD-compatible High Profile / Level 4.1",
    "1.2.840.10008.1.2.4.103.1": "Fragmentable MPEG-4 AVC/H.264 BD-compatible High Profile",
    "1.2.840.10008.1.2.4.104": "MPEG-4 AVC/H.264 High Profile / Level 4.2 For 2D Video",
    "1.2.840.10008.1.2.4.104.1": "Fragmentable MPEG-4 AVC/H.264 High Profile / Level 4.2 2D",
    "1.2.840.10008.1.2.4.105": "MPEG-4 AVC/H.264 High Profile / Level 4.2 For 3D Video",
    "1.2.840.10008.1.2.4.105.1": "Fragmentable MPEG-4 AVC/H.264 High Profile / Level 4.2 3D",
    "1.2.840.10008.1.2.4.106": "MPEG-4 AVC/H.264 Stereo High Profile / Level 4.2",
    "1.2.840.10008.1.2.4.106.1": "Fragmentable MPEG-4 AVC/H.264 Stereo High Profile",
    "1.2.840.10008.1.2.4.107": "HEVC/H.265 Main Profile / Level 5.1",
    "1.2.840.10008.1.2.4.108": "HEVC/H.265 Main 10 Profile / Level 5.1",
}

DecodeFn = Callable[[bytes, "PixelInfo", int], tuple[np.ndarray, int]]
"""``(frame bytes, info, reduce) -> (raw array, reduction applied)``."""


@dataclass(frozen=True, slots=True)
class Backend:
    """One decoding package.

    Parameters
    ----------
    name : str
        The backend's name, also the distribution to ``pip install``.
    module : str
        The module imported to use it; its import error is the reason it is unavailable.
    decode : callable
        ``(frame bytes, info, reduce) -> (raw array, reduction applied)``.
    accepts : callable
        ``info -> bool``: whether this backend handles that kind of frame (e.g. Pillow
        only 8-bit JPEG); the next backend is tried otherwise.
    planar_output : bool
        The raw array is ``(samples, rows, cols)`` (RLE) rather than interleaved.
    check : callable, optional
        ``() -> (available, reason)``, asked once the module imports: for a backend that
        needs more than a Python package (a system library loaded with ctypes).
    install : str
        How to install what is missing when it is not ``pip install <name>``.
    releases_gil : bool
        The codec runs without holding the GIL, so frames decode in parallel threads
        (preferred by :func:`backends_for` when the caller decodes in threads).
    """

    name: str
    module: str
    decode: DecodeFn
    accepts: Callable[[PixelInfo], bool] = lambda info: True
    planar_output: bool = False
    check: Callable[[], tuple[bool, str]] | None = None
    install: str = ""
    releases_gil: bool = False

    def run(self, data: bytes, info: PixelInfo, reduce: int) -> tuple[np.ndarray, int]:
        """Call :attr:`decode`; whatever a codec throws becomes an ``Exception``.

        The one boundary between Pixels and the decoding packages: a decoder written in
        Rust (pylibjpeg-rle) panics on some corrupt frames, and its
        ``pyo3_runtime.PanicException`` derives from ``BaseException``, not ``Exception``:
        it escaped every ``except Exception`` and, in a worker process, could not even be
        pickled back, so one bad file aborted a whole run. It is a :class:`DecodeError`
        here. ``KeyboardInterrupt`` and ``SystemExit`` pass through.
        """
        try:
            return self.decode(data, info, reduce)
        except (Exception, KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except BaseException as e:  # a codec's panic: no traceback object kept (not picklable)
            raise DecodeError(f"{self.name} failed: {type(e).__name__}: {e}") from None

    def status(self) -> tuple[bool, str]:
        """``(available, reason)``; the reason is the import or load error text, or ``""``."""
        ok, reason = _import_status(self.module)
        if ok and self.check is not None:
            return self.check()
        return ok, reason


@cache
def _import_status(module: str) -> tuple[bool, str]:
    try:
        importlib.import_module(module)
    except Exception as e:  # ImportError, or a broken binary module
        return False, f"{type(e).__name__}: {e}"
    return True, ""


# --------------------------------------------------------------------------- backends


def _libjpeg(data: bytes, info: PixelInfo, reduce: int) -> tuple[np.ndarray, int]:
    import libjpeg

    # colour_transform=0: return the components as stored (YCbCr stays YCbCr), as pydicom does
    return np.asarray(libjpeg.decode(data, colour_transform=0)), 0


def _openjpeg(data: bytes, info: PixelInfo, reduce: int) -> tuple[np.ndarray, int]:
    import openjpeg

    return np.asarray(openjpeg.decode(data)), 0


def _pyjpegls(data: bytes, info: PixelInfo, reduce: int) -> tuple[np.ndarray, int]:
    import jpeg_ls

    buf, params = jpeg_ls.decode_buffer(data)
    dtype = np.uint8 if params["bits_per_sample"] <= 8 else np.dtype("<u2")
    shape: tuple[int, ...] = (params["height"], params["width"])
    if params["components"] > 1:
        shape = (*shape, params["components"])
    return np.frombuffer(buf, dtype=dtype).reshape(shape), 0


def _rle(data: bytes, info: PixelInfo, reduce: int) -> tuple[np.ndarray, int]:
    import rle.utils

    ba = info.bits_allocated
    decoded = info.rows * info.columns * info.samples_per_pixel * max(ba // 8, 1)
    if decoded > 64 * len(data):  # a 2-byte replicate run gives at most 128 bytes
        raise DecodeError(
            f"an RLE frame of {len(data)} bytes cannot hold Rows (0028,0010) {info.rows} x "
            f"Columns (0028,0011) {info.columns} x SamplesPerPixel (0028,0002) "
            f"{info.samples_per_pixel} x {max(ba // 8, 1)} byte(s) ({decoded} bytes: RLE "
            "expands at most 64 times)"
        )
    buf = rle.utils.decode_pixel_data(
        data,
        version=2,
        rows=info.rows,
        columns=info.columns,
        bits_allocated=ba,
        samples_per_pixel=info.samples_per_pixel,
        byteorder="<",
    )
    dtype = np.dtype(f"<u{max(ba, 8) // 8}")
    if len(buf) != decoded:
        raise DecodeError(
            f"the RLE frame decodes to {len(buf)} bytes, the header says {decoded}: Rows "
            f"(0028,0010) {info.rows} x Columns (0028,0011) {info.columns} x SamplesPerPixel "
            f"(0028,0002) {info.samples_per_pixel} x BitsAllocated (0028,0100) {ba} / 8"
        )
    arr = np.frombuffer(buf, dtype=dtype)
    return arr.reshape(info.samples_per_pixel, info.rows, info.columns), 0


def _pillow_jpeg_accepts(info: PixelInfo) -> bool:
    return info.bits_stored <= 8 and info.samples_per_pixel in (1, 3)


def _pillow_jpeg(data: bytes, info: PixelInfo, reduce: int) -> tuple[np.ndarray, int]:
    from PIL import Image

    im = Image.open(io.BytesIO(data))
    if im.mode not in ("L", "RGB", "YCbCr"):
        raise DecodeError(f"Pillow gives mode {im.mode}")
    applied = 0
    if reduce:
        # DCT scaling (1/2, 1/4, 1/8): the decoder skips the high frequencies
        scale = 1 << min(reduce, 3)
        want = (-(-im.size[0] // scale), -(-im.size[1] // scale))
        im.draft("YCbCr" if im.mode != "L" else "L", want)
        if im.size == want:
            applied = min(reduce, 3)
    elif im.mode == "RGB":
        im.draft("YCbCr", im.size)  # keep YCbCr as stored (no colour conversion)
    arr = np.asarray(im)
    if applied == 0 and arr.shape[:2] != (info.rows, info.columns):
        raise DecodeError(f"Pillow decoded {arr.shape[:2]}, expected {(info.rows, info.columns)}")
    return arr, applied


def _pillow_j2k_accepts(info: PixelInfo) -> bool:
    # Pillow rescales precisions other than 8 and 16 bits (seen with 12-bit MR) and
    # has no signed output: use it only for unsigned 8/16-bit grey and 8-bit colour
    if info.pixel_representation != 0:
        return False
    if info.samples_per_pixel == 1:
        return info.bits_stored in (8, 16)
    return info.samples_per_pixel == 3 and info.bits_stored == 8


def _pillow_j2k(data: bytes, info: PixelInfo, reduce: int) -> tuple[np.ndarray, int]:
    from PIL import Image

    im = Image.open(io.BytesIO(data))
    if im.mode not in ("L", "I;16", "RGB"):
        raise DecodeError(f"Pillow gives mode {im.mode}")
    if reduce:
        im.reduce = reduce  # type: ignore[assignment,method-assign]  # openjpeg's cp_reduce
    arr = np.asarray(im)
    return arr, reduce


def _openjp2(data: bytes, info: PixelInfo, reduce: int) -> tuple[np.ndarray, int]:
    from pixels.dicom import openjp2

    arr, applied = openjp2.decode_reduced(data, reduce)
    want = (-(-info.rows // (1 << applied)), -(-info.columns // (1 << applied)))
    if arr.shape[:2] != want:
        raise DecodeError(f"openjpeg decoded {arr.shape[:2]}, expected {want}")
    return arr, applied


def _openjp2_status() -> tuple[bool, str]:
    from pixels.dicom import openjp2

    return openjp2.available()


def _gdcm(data: bytes, info: PixelInfo, reduce: int) -> tuple[np.ndarray, int]:
    # Untested here (python-gdcm not installed): goes through pydicom's gdcm plugin.
    from pydicom.encaps import encapsulate
    from pydicom.pixels import get_decoder

    opts: dict[str, Any] = {
        "rows": info.rows,
        "columns": info.columns,
        "samples_per_pixel": info.samples_per_pixel,
        "bits_allocated": info.bits_allocated,
        "bits_stored": info.bits_stored,
        "pixel_representation": info.pixel_representation,
        "photometric_interpretation": info.photometric,
        "planar_configuration": info.planar_configuration,
        "number_of_frames": 1,
        "decoding_plugin": "gdcm",
        "as_rgb": False,
    }
    decoder: Any = get_decoder(info.transfer_syntax)
    arr, _ = decoder.as_array(encapsulate([data]), **opts)
    return np.asarray(arr), 0


def _av(data: bytes, info: PixelInfo, reduce: int) -> tuple[np.ndarray, int]:
    """The first frame of a video stream (MPEG-2, H.264, HEVC) as RGB, through FFmpeg (PyAV)."""
    import av

    with av.open(io.BytesIO(data), mode="r") as container:
        for frame in container.decode(video=0):
            return frame.to_ndarray(format="rgb24"), 0
    raise DecodeError("the video stream holds no frame")


_SOF = frozenset(
    {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7}
)


def codestream_size(data: bytes, transfer_syntax: str) -> tuple[int, int, int] | None:
    """``(rows, columns, components)`` a JPEG, JPEG-LS or JPEG 2000 codestream declares.

    Read from its SOFn / SOF55 or SIZ marker segment without decoding, so a frame whose
    codestream lies about its size is refused before a codec allocates for it. None when
    the syntax has no such header, the header is not where expected (a JP2 file format
    wrapper) or the height is given later (DNL).
    """
    if transfer_syntax in J2K_SYNTAXES:
        if data[:4] != b"\xff\x4f\xff\x51" or len(data) < 42:
            return None
        xsiz, ysiz, xo, yo = struct.unpack(">4L", data[8:24])
        (csiz,) = struct.unpack(">H", data[40:42])
        return max(ysiz - yo, 0), max(xsiz - xo, 0), csiz
    if transfer_syntax in JPEG_SYNTAXES or transfer_syntax in JPEG_LS_SYNTAXES:
        if data[:2] != b"\xff\xd8":
            return None
        pos = 2
        while pos + 4 <= len(data):
            if data[pos] != 0xFF:
                return None
            marker = data[pos + 1]
            if marker == 0xFF:  # fill byte
                pos += 1
                continue
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                pos += 2
                continue
            (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
            if marker in _SOF:
                if pos + 10 > len(data):
                    return None
                rows, cols = struct.unpack(">HH", data[pos + 5 : pos + 9])
                return (rows, cols, data[pos + 9]) if rows else None
            if marker in (0xDA, 0xD9):  # scan or end before any frame header
                return None
            pos += 2 + length
    return None


def decode_video(stream: bytes, count: int) -> list[np.ndarray]:
    """The first `count` frames of a video stream as RGB arrays (PyAV), through
    :meth:`Backend.run`'s error handling: a broken stream is a :class:`DecodeError`."""

    def first(data: bytes, info: Any, reduce: int) -> tuple[np.ndarray, int]:
        import av

        out: list[np.ndarray] = []
        with av.open(io.BytesIO(data), mode="r") as container:
            for frame in container.decode(video=0):
                if len(out) >= count:
                    break
                out.append(frame.to_ndarray(format="rgb24"))
        return np.stack(out) if out else np.zeros((0, 0, 0, 3), np.uint8), 0

    ok, reason = AV.status()
    if not ok:
        raise DecodeError(f"decoding video needs PyAV: pip install av ({reason})")
    try:
        arr, _ = Backend("av", "av", first).run(stream, None, 0)  # type: ignore[arg-type]
    except DecodeError:
        raise
    except Exception as e:
        raise DecodeError(f"av failed: {type(e).__name__}: {e}") from e
    return list(arr)


LIBJPEG = Backend("pylibjpeg-libjpeg", "libjpeg", _libjpeg)
AV = Backend("av", "av", _av)
"""PyAV (FFmpeg): video syntaxes, first frame only (a stream is one unit in the frame index)."""
OPENJPEG = Backend("pylibjpeg-openjpeg", "openjpeg", _openjpeg)
PYJPEGLS = Backend("pyjpegls", "jpeg_ls", _pyjpegls)
RLE = Backend("pylibjpeg-rle", "rle", _rle, planar_output=True)
PILLOW_JPEG = Backend("pillow", "PIL.JpegImagePlugin", _pillow_jpeg, _pillow_jpeg_accepts)
PILLOW_J2K = Backend("pillow", "PIL.Jpeg2KImagePlugin", _pillow_j2k, _pillow_j2k_accepts)
GDCM = Backend("python-gdcm", "gdcm", _gdcm)
OPENJP2 = Backend(
    "openjp2-ctypes",
    "pixels.dicom.openjp2",
    _openjp2,
    check=_openjp2_status,
    install="apt-get install libopenjp2-7",
    releases_gil=True,  # ctypes releases the GIL around each call into libopenjp2
)
"""The system libopenjp2 through ctypes: decodes at reduced resolution, exact values; frames
decode in parallel threads (pylibjpeg-openjpeg holds the GIL while it decodes)."""

REGISTRY: dict[str, list[Backend]] = {
    # Pillow (libjpeg-turbo) is several times faster than libjpeg for 8-bit baseline
    JPEG_BASELINE: [PILLOW_JPEG, LIBJPEG, GDCM],
    JPEG_EXTENDED: [PILLOW_JPEG, LIBJPEG, GDCM],
    JPEG_LOSSLESS: [LIBJPEG, GDCM],
    JPEG_LOSSLESS_SV1: [LIBJPEG, GDCM],
    # CharLS (pyjpegls) is faster than libjpeg's JPEG-LS
    JPEG_LS_LOSSLESS: [PYJPEGLS, LIBJPEG, GDCM],
    JPEG_LS_NEAR: [PYJPEGLS, LIBJPEG, GDCM],
    # pylibjpeg-openjpeg bundles openjpeg 2.5.2: as fast as the system 2.5.0 for J2K
    # (RG1_J2KR 1955x1841: 458 vs 460 ms), faster for HTJ2K (28 vs 33 ms), so it stays
    # first; the system library is the fallback
    J2K_LOSSLESS: [OPENJPEG, OPENJP2, GDCM],
    J2K: [OPENJPEG, OPENJP2, GDCM],
    HTJ2K_LOSSLESS: [OPENJPEG, OPENJP2],
    HTJ2K_LOSSLESS_RPCL: [OPENJPEG, OPENJP2],
    HTJ2K: [OPENJPEG, OPENJP2],
    RLE_LOSSLESS: [RLE, GDCM],
    **{ts: [AV] for ts in sorted(VIDEO_SYNTAXES)},
}
"""Encapsulated syntax -> backends, preferred first. Native syntaxes need no codec."""

REDUCERS: dict[str, list[Backend]] = {
    # backends that decode at reduced resolution; used only when reduce > 0.
    # openjp2-ctypes gives exact values for any precision and sign (RG1_J2KR at 1/4:
    # 32 ms vs 460 ms full); Pillow only unsigned 8/16-bit
    J2K_LOSSLESS: [OPENJP2, PILLOW_J2K],
    J2K: [OPENJP2, PILLOW_J2K],
    HTJ2K_LOSSLESS: [OPENJP2, PILLOW_J2K],
    HTJ2K_LOSSLESS_RPCL: [OPENJP2, PILLOW_J2K],
    HTJ2K: [OPENJP2, PILLOW_J2K],
    JPEG_BASELINE: [PILLOW_JPEG],
    JPEG_EXTENDED: [PILLOW_JPEG],
}
"""Syntax -> backends that can decode at 1/2^k resolution (tried first when reduce > 0)."""


def codec_status() -> dict[str, list[tuple[str, bool, str]]]:
    """Every supported transfer syntax -> ``[(backend, available, reason), ...]``.

    Native syntaxes list the single built-in backend ``"numpy"``. The reason is the
    import error text when a backend is unavailable, else ``""``.
    """
    out: dict[str, list[tuple[str, bool, str]]] = {}
    for ts in sorted(NATIVE_SYNTAXES):
        out[ts] = [("numpy", True, "")]
    for ts, backends in REGISTRY.items():
        out[ts] = [(b.name, *b.status()) for b in backends]
    return out


def backends_for(
    transfer_syntax: str, info: PixelInfo, *, reduce: int = 0, threaded: bool = False
) -> list[Backend]:
    """The available backends that accept ``info``, preferred first (reducers first if reduce;
    with ``threaded``, those that release the GIL first: the caller decodes in threads)."""
    cands = list(REDUCERS.get(transfer_syntax, [])) if reduce else []
    cands += [b for b in REGISTRY.get(transfer_syntax, []) if b not in cands]
    if threaded:
        cands.sort(key=lambda b: not b.releases_gil)  # stable: the order within each group
    return [b for b in cands if b.status()[0] and b.accepts(info)]


def missing_decoder_error(transfer_syntax: str, path: str = "", cause: Any = None) -> DecodeError:
    """The error for a syntax no available backend decodes: names what to install."""
    name = SYNTAX_NAMES.get(transfer_syntax)
    label = f"{transfer_syntax} ({name})" if name else transfer_syntax
    backends = REGISTRY.get(transfer_syntax)
    if not backends:
        msg = f"no decoder for transfer syntax {label}: not a supported syntax"
    else:
        names = " or ".join(dict.fromkeys(b.name for b in backends if not b.install))
        how = [f"pip install {names}"] if names else []
        how += list(dict.fromkeys(b.install for b in backends if b.install))
        reasons = "; ".join(f"{b.name}: {b.status()[1] or 'refused this frame'}" for b in backends)
        msg = f"no decoder for transfer syntax {label}: {' or '.join(how)} ({reasons})"
    if cause is not None:
        msg += f"; last error: {cause}"
    return MissingDecoderError(msg, path or None)
