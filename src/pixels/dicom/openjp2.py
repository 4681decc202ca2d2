"""JPEG 2000 / HTJ2K decoding with the system openjpeg library (libopenjp2) via ctypes.

Why: openjpeg can decode at a reduced resolution (it skips the highest wavelet
levels), which makes thumbnails of large JPEG 2000 frames several times cheaper than
a full decode. pylibjpeg-openjpeg does not expose that, and Pillow's reduction
rescales 12-bit data and has no signed output. This module returns the exact sample
values at any resolution factor, with pydicom's dtype rules.

Needs the shared library ``libopenjp2.so.7`` (Debian/Ubuntu: ``apt-get install
libopenjp2-7``; openjpeg >= 2.5 also decodes HTJ2K). :func:`available` says whether
it loaded and, if not, why.

Each call creates its own codec, stream and image and frees them before returning,
so calls from several threads are independent (ctypes releases the GIL while the
library decodes).

Examples
--------
>>> from pixels.dicom import openjp2
>>> ok, reason = openjp2.available()
>>> isinstance(ok, bool) and isinstance(reason, str)
True
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache
from typing import Any

import numpy as np

from pixels.errors import DecodeError

__all__ = ["available", "decode", "decode_reduced", "version"]

_SONAME = "libopenjp2.so.7"
_OPJ_PATH_LEN = 4096
_OPJ_CODEC_J2K = 0
_OPJ_CODEC_JP2 = 2
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP"

# ----------------------------------------------------------------------------- C structs
# Mirrors of openjpeg.h (2.5). Sizes checked against the C compiler on x86-64:
# opj_dparameters_t 8252, opj_image_t 48, opj_image_comp_t 64 bytes.

_c_uint32 = ctypes.c_uint32
_c_int = ctypes.c_int


class _DParameters(ctypes.Structure):
    _fields_ = [
        ("cp_reduce", _c_uint32),
        ("cp_layer", _c_uint32),
        ("infile", ctypes.c_char * _OPJ_PATH_LEN),
        ("outfile", ctypes.c_char * _OPJ_PATH_LEN),
        ("decod_format", _c_int),
        ("cod_format", _c_int),
        ("DA_x0", _c_uint32),
        ("DA_x1", _c_uint32),
        ("DA_y0", _c_uint32),
        ("DA_y1", _c_uint32),
        ("m_verbose", _c_int),
        ("tile_index", _c_uint32),
        ("nb_tile_to_decode", _c_uint32),
        ("jpwl_correct", _c_int),
        ("jpwl_exp_comps", _c_int),
        ("jpwl_max_tiles", _c_int),
        ("flags", ctypes.c_uint),
    ]


class _ImageComp(ctypes.Structure):
    _fields_ = [
        ("dx", _c_uint32),
        ("dy", _c_uint32),
        ("w", _c_uint32),
        ("h", _c_uint32),
        ("x0", _c_uint32),
        ("y0", _c_uint32),
        ("prec", _c_uint32),
        ("bpp", _c_uint32),  # deprecated in 2.5, still present
        ("sgnd", _c_uint32),
        ("resno_decoded", _c_uint32),
        ("factor", _c_uint32),
        ("data", ctypes.POINTER(ctypes.c_int32)),
        ("alpha", ctypes.c_uint16),
    ]


class _Image(ctypes.Structure):
    _fields_ = [
        ("x0", _c_uint32),
        ("y0", _c_uint32),
        ("x1", _c_uint32),
        ("y1", _c_uint32),
        ("numcomps", _c_uint32),
        ("color_space", _c_int),  # OPJ_COLOR_SPACE (an enum)
        ("comps", ctypes.POINTER(_ImageComp)),
        ("icc_profile_buf", ctypes.POINTER(ctypes.c_ubyte)),
        ("icc_profile_len", _c_uint32),
    ]


_READ_FN = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
_SKIP_FN = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p)
_SEEK_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int64, ctypes.c_void_p)
_MSG_FN = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_void_p)

_SIZE_T_MAX = ctypes.c_size_t(-1).value  # (OPJ_SIZE_T)-1: end of stream


# ----------------------------------------------------------------------------- library


def _find_library() -> str:
    return ctypes.util.find_library("openjp2") or _SONAME


def _declare(lib: Any) -> None:
    vp = ctypes.c_void_p
    p_image = ctypes.POINTER(_Image)
    sigs: dict[str, tuple[Any, list[Any]]] = {
        "opj_version": (ctypes.c_char_p, []),
        "opj_create_decompress": (vp, [_c_int]),
        "opj_destroy_codec": (None, [vp]),
        "opj_set_default_decoder_parameters": (None, [ctypes.POINTER(_DParameters)]),
        "opj_setup_decoder": (_c_int, [vp, ctypes.POINTER(_DParameters)]),
        "opj_set_error_handler": (_c_int, [vp, _MSG_FN, vp]),
        "opj_set_warning_handler": (_c_int, [vp, _MSG_FN, vp]),
        "opj_read_header": (_c_int, [vp, vp, ctypes.POINTER(p_image)]),
        "opj_set_decoded_resolution_factor": (_c_int, [vp, _c_uint32]),
        "opj_decode": (_c_int, [vp, vp, p_image]),
        "opj_end_decompress": (_c_int, [vp, vp]),
        "opj_image_destroy": (None, [p_image]),
        "opj_stream_create": (vp, [ctypes.c_size_t, _c_int]),
        "opj_stream_destroy": (None, [vp]),
        "opj_stream_set_read_function": (None, [vp, _READ_FN]),
        "opj_stream_set_skip_function": (None, [vp, _SKIP_FN]),
        "opj_stream_set_seek_function": (None, [vp, _SEEK_FN]),
        "opj_stream_set_user_data_length": (None, [vp, ctypes.c_uint64]),
    }
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes


@cache
def _load() -> tuple[Any, str]:
    """``(library or None, reason it could not be loaded)``."""
    name = _find_library()
    try:
        lib = ctypes.CDLL(name)
        _declare(lib)
    except (OSError, AttributeError) as e:
        return None, (
            f"cannot load the openjpeg library {name} ({e}); "
            "install it with: apt-get install libopenjp2-7"
        )
    return lib, ""


def available() -> tuple[bool, str]:
    """``(True, "")`` when libopenjp2 loads, else ``(False, reason)``."""
    lib, reason = _load()
    return lib is not None, reason


def version() -> str:
    """The loaded openjpeg version (``"2.5.0"``); raises :class:`DecodeError` if missing."""
    return str(_lib().opj_version().decode())


def _lib() -> Any:
    lib, reason = _load()
    if lib is None:
        raise DecodeError(reason)
    return lib


# ----------------------------------------------------------------------------- decoding


def _dtype(prec: int, sgnd: bool) -> np.dtype[Any]:
    # pydicom / pylibjpeg-openjpeg: the smallest of 8/16/32 bits that holds the precision
    nbytes = 1 if prec <= 8 else 2 if prec <= 16 else 4
    return np.dtype(f"{'i' if sgnd else 'u'}{nbytes}")


class _MemoryStream:
    """An input opj_stream_t over ``data``; keeps the callbacks alive while it lives."""

    def __init__(self, lib: Any, data: bytes) -> None:
        self.lib = lib
        self.data = data
        self.size = len(data)
        self.pos = 0
        # address of the bytes object's own buffer (no copy; ``data`` keeps it alive)
        self.addr = ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value or 0
        self.read_fn = _READ_FN(self._read)
        self.skip_fn = _SKIP_FN(self._skip)
        self.seek_fn = _SEEK_FN(self._seek)
        # one internal buffer holding the whole codestream: one read callback
        self.handle = lib.opj_stream_create(max(self.size, 1), 1)
        if not self.handle:
            raise DecodeError("openjpeg could not create a stream")
        lib.opj_stream_set_read_function(self.handle, self.read_fn)
        lib.opj_stream_set_skip_function(self.handle, self.skip_fn)
        lib.opj_stream_set_seek_function(self.handle, self.seek_fn)
        lib.opj_stream_set_user_data_length(self.handle, self.size)

    def _read(self, buf: int, n: int, _user: int) -> int:
        left = self.size - self.pos
        if left <= 0:
            return _SIZE_T_MAX
        n = min(n, left)
        ctypes.memmove(buf, self.addr + self.pos, n)
        self.pos += n
        return n

    def _skip(self, n: int, _user: int) -> int:
        new = self.pos + n
        if new < 0:
            return -1
        self.pos = min(new, self.size)
        return n

    def _seek(self, n: int, _user: int) -> int:
        if n < 0 or n > self.size:
            return 0
        self.pos = n
        return 1

    def close(self) -> None:
        if self.handle:
            self.lib.opj_stream_destroy(self.handle)
            self.handle = None


def _image_to_array(image: _Image) -> np.ndarray:
    n = int(image.numcomps)
    if n < 1:
        raise DecodeError("JPEG 2000 image has no components")
    planes = []
    shape: tuple[int, int] | None = None
    dtype: np.dtype[Any] | None = None
    for i in range(n):
        comp = image.comps[i]
        w, h = int(comp.w), int(comp.h)
        if shape is None:
            shape = (h, w)
        elif (h, w) != shape:
            raise DecodeError(
                f"JPEG 2000 component {i} is {h}x{w}, component 0 is {shape[0]}x{shape[1]} "
                "(subsampled components are not supported)"
            )
        if not comp.data:
            raise DecodeError(f"JPEG 2000 component {i} was not decoded")
        dt = _dtype(int(comp.prec), bool(comp.sgnd))
        dtype = dt if dtype is None or dt.itemsize > dtype.itemsize else dtype
        planes.append(np.ctypeslib.as_array(comp.data, shape=(h, w)))  # a view, no copy
    assert dtype is not None
    # a copy: the component buffers are freed with the image
    if n == 1:
        return planes[0].astype(dtype)
    out = np.empty((*planes[0].shape, n), dtype=dtype)
    for i, p in enumerate(planes):
        out[..., i] = p
    return out


def decode(data: bytes, reduce: int = 0) -> np.ndarray:
    """Decode a codestream at ``1 / 2**reduce`` resolution; see :func:`decode_reduced`."""
    return decode_reduced(data, reduce)[0]


def decode_reduced(data: bytes, reduce: int = 0) -> tuple[np.ndarray, int]:
    """Decode a JPEG 2000 / HTJ2K codestream (or JP2 file) at ``1 / 2**reduce`` resolution.

    Parameters
    ----------
    data : bytes
        A raw codestream (as in DICOM) or a JP2 file.
    reduce : int
        Resolution levels to discard; clamped to what the codestream has (its number
        of decomposition levels). The shape is then ``ceil(rows / 2**k), ceil(cols /
        2**k)`` with ``k`` the applied factor.

    Returns
    -------
    (numpy.ndarray, int)
        The array and the reduction factor applied. The array is ``(rows, cols)`` or
        ``(rows, cols, components)``, interleaved; dtype ``uint8``/``int8`` for
        precisions up to 8 bits, ``uint16``/``int16`` up to 16, else
        ``uint32``/``int32``, signed when the codestream says so. Colour is as openjpeg
        returns it (the inverse RCT/ICT applied when the codestream uses one).

    Raises
    ------
    DecodeError
        The library is missing, or the codestream is corrupt (the message carries
        openjpeg's error text).
    """
    if reduce < 0:
        raise ValueError(f"reduce must be >= 0, got {reduce!r}")
    lib = _lib()
    data = bytes(data)
    fmt = _OPJ_CODEC_JP2 if data[:6] == _JP2_SIGNATURE else _OPJ_CODEC_J2K
    errors: list[str] = []

    def on_error(msg: bytes | None, _user: int) -> None:
        if msg:
            errors.append(msg.decode("utf-8", "replace").strip())

    def fail(what: str) -> DecodeError:
        detail = "; ".join(dict.fromkeys(e for e in errors if e))
        return DecodeError(f"openjpeg: {what}" + (f": {detail}" if detail else ""))

    error_cb = _MSG_FN(on_error)
    quiet_cb = _MSG_FN(lambda msg, user: None)
    codec = stream = None
    image = ctypes.POINTER(_Image)()
    try:
        codec = lib.opj_create_decompress(fmt)
        if not codec:
            raise DecodeError("openjpeg could not create a decoder")
        lib.opj_set_error_handler(codec, error_cb, None)
        lib.opj_set_warning_handler(codec, quiet_cb, None)
        params = _DParameters()
        lib.opj_set_default_decoder_parameters(ctypes.byref(params))
        if not lib.opj_setup_decoder(codec, ctypes.byref(params)):
            raise fail("decoder setup failed")
        stream = _MemoryStream(lib, data)
        if not lib.opj_read_header(stream.handle, codec, ctypes.byref(image)) or not image:
            raise fail("cannot read the codestream header")
        k = int(reduce)
        while k > 0 and not lib.opj_set_decoded_resolution_factor(codec, k):
            k -= 1  # more than the codestream's decomposition levels: take fewer
        errors.clear()  # messages from the refused factors
        if not lib.opj_decode(codec, stream.handle, image):
            raise fail("cannot decode the codestream")
        if not lib.opj_end_decompress(codec, stream.handle):
            raise fail("cannot finish decoding the codestream")
        return _image_to_array(image.contents), k
    finally:
        if image:
            lib.opj_image_destroy(image)
        if codec:
            lib.opj_destroy_codec(codec)
        if stream is not None:
            stream.close()
