"""NRRD (teem's Nearly Raw Raster Data) for label volumes: what MONAI Label clients read and send.

:func:`encode` writes a 3-D label volume as NRRD 4 with a raw body, the first
axis varying fastest (``sizes: X Y Z`` for an ``[X, Y, Z]`` array), in DICOM's
patient space (``left-posterior-superior``). :func:`decode` reads the NRRDs
clients send back (raw or gzip body, integer types, either byte order) into an
``[X, Y, Z]`` array.

>>> import numpy as np
>>> a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
>>> bool((decode(encode(a, np.eye(4))).array == a).all())
True
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass

import numpy as np

from pixels.errors import NrrdError

__all__ = ["NrrdError", "NrrdVolume", "decode", "encode"]

#: NRRD type names -> numpy dtypes (integer label types only).
_TYPES = {
    "uint8": "u1",
    "uchar": "u1",
    "unsigned char": "u1",
    "uint8_t": "u1",
    "int8": "i1",
    "signed char": "i1",
    "int8_t": "i1",
    "uint16": "u2",
    "ushort": "u2",
    "unsigned short": "u2",
    "uint16_t": "u2",
    "int16": "i2",
    "short": "i2",
    "int16_t": "i2",
    "uint32": "u4",
    "uint": "u4",
    "unsigned int": "u4",
    "uint32_t": "u4",
    "int32": "i4",
    "int": "i4",
    "int32_t": "i4",
}
MAX_HEADER = 64 * 1024


@dataclass(frozen=True)
class NrrdVolume:
    """A decoded NRRD: the ``[X, Y, Z]`` array and its header fields (lower-case keys)."""

    array: np.ndarray
    fields: dict[str, str]


def _vec(v: np.ndarray) -> str:
    return "(" + ",".join(f"{float(x):.10g}" for x in v) + ")"


def encode(labels: np.ndarray, affine_lps: np.ndarray) -> bytes:
    """NRRD bytes of an ``[X, Y, Z]`` label volume (``uint8``, raw).

    Parameters
    ----------
    labels : numpy.ndarray
        Integer labels 0..255, shape ``[X, Y, Z]`` (columns, rows, slices).
    affine_lps : numpy.ndarray
        4x4 voxel index -> LPS mm (DICOM patient coordinates); its columns give
        ``space directions`` and its last column ``space origin``.
    """
    if labels.ndim != 3:
        raise NrrdError(f"a label volume has 3 dimensions, not {labels.ndim}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise NrrdError("labels do not fit in uint8 (0..255)")
    x, y, z = labels.shape
    dirs = " ".join(_vec(affine_lps[:3, i]) for i in range(3))
    header = (
        "NRRD0004\n"
        "# written by pixels\n"
        "type: uint8\n"
        "dimension: 3\n"
        "space: left-posterior-superior\n"
        f"sizes: {x} {y} {z}\n"
        f"space directions: {dirs}\n"
        "kinds: domain domain domain\n"
        "encoding: raw\n"
        f"space origin: {_vec(affine_lps[:3, 3])}\n"
        "\n"
    )
    body = np.asarray(labels, dtype=np.uint8).tobytes(order="F")  # first axis fastest
    return header.encode("ascii") + body


def decode(data: bytes) -> NrrdVolume:
    """Read a 3-D integer NRRD (raw or gzip) into an ``[X, Y, Z]`` array.

    Raises
    ------
    NrrdError
        Not NRRD, a missing or bad ``type``/``dimension``/``sizes``/``encoding``,
        a detached data file, or a body of the wrong length.
    """
    if not data.startswith(b"NRRD000"):
        raise NrrdError("not an NRRD file (it does not start with 'NRRD000')")
    end = data.find(b"\n\n", 0, MAX_HEADER)
    sep = 2
    if end < 0:
        end, sep = data.find(b"\r\n\r\n", 0, MAX_HEADER), 4
    if end < 0:
        raise NrrdError(f"no end of header (a blank line) in the first {MAX_HEADER} bytes")
    fields: dict[str, str] = {}
    for line in data[:end].decode("latin-1").splitlines()[1:]:
        if not line or line.startswith("#") or ":=" in line.split(": ", 1)[0]:
            continue
        key, colon, value = line.partition(": ")
        if not colon:
            raise NrrdError(f"NRRD header line without ': ': {line[:80]!r}")
        fields[key.strip().lower()] = value.strip()
    for key in ("type", "dimension", "sizes", "encoding"):
        if key not in fields:
            raise NrrdError(f"NRRD header has no '{key}' field")
    if "data file" in fields or "datafile" in fields:
        raise NrrdError("NRRD with a detached data file is not accepted (send the data inline)")
    dtype = _TYPES.get(fields["type"].lower())
    if dtype is None:
        raise NrrdError(f"NRRD type {fields['type']!r} is not an integer label type")
    if fields["dimension"] != "3":
        raise NrrdError(f"NRRD dimension is {fields['dimension']}, a label volume has 3")
    try:
        sizes = [int(s) for s in fields["sizes"].split()]
    except ValueError:
        raise NrrdError(f"NRRD sizes {fields['sizes']!r} are not integers") from None
    if len(sizes) != 3 or min(sizes) < 1:
        raise NrrdError(f"NRRD sizes {fields['sizes']!r}: 3 positive sizes expected")
    body = data[end + sep :]
    encoding = fields["encoding"].lower()
    if encoding in ("gzip", "gz"):
        try:
            body = gzip.decompress(body)
        except (OSError, EOFError) as e:
            raise NrrdError(f"NRRD gzip body cannot be inflated: {e}") from e
    elif encoding != "raw":
        raise NrrdError(f"NRRD encoding {fields['encoding']!r} is not accepted (raw or gzip)")
    dt = np.dtype(dtype)
    if dt.itemsize > 1:
        dt = dt.newbyteorder(">" if fields.get("endian", "little").lower() == "big" else "<")
    want = int(np.prod(sizes)) * dt.itemsize
    if len(body) != want:
        raise NrrdError(f"NRRD body holds {len(body)} bytes; sizes {sizes} of {dt} need {want}")
    array = np.frombuffer(body, dt).reshape(sizes, order="F")
    return NrrdVolume(array, fields)
