"""File-type detection from the first bytes of a file.

:func:`detect_file_type` looks only at a short head of the file (no extension
guessing, except to tell ``.nii.gz`` from other gzip streams). Read at least
:data:`HEAD_BYTES` bytes: DICOM needs 132 (128-byte preamble + ``DICM``) and
NIfTI-1 needs 348 (its magic sits at offset 344).

Examples
--------
>>> detect_file_type(b"\\x89PNG\\r\\n\\x1a\\n" + bytes(8))
'png'
>>> detect_file_type(b"\\x1f\\x8b\\x08\\x00", "brain.nii.gz")
'nifti'
"""

from __future__ import annotations

import struct

#: How many bytes of the head a caller should pass (enough for every rule here).
HEAD_BYTES = 512

#: Value Representations that use the long explicit-VR form (2 reserved bytes, 4-byte length).
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
#: Value Representations with a 2-byte length.
_SHORT_VRS = frozenset(
    {
        b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS",
        b"LO", b"LT", b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US",
    }
)  # fmt: skip
#: Sane upper bound for the value length of the first elements of group 0002/0008.
_MAX_FIRST_LENGTH = 0x10000

_NIFTI1_SIZES = (struct.pack("<i", 348), struct.pack(">i", 348))
_NIFTI2_SIZES = (struct.pack("<i", 540), struct.pack(">i", 540))
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
_J2K_CODESTREAM = b"\xff\x4f\xff\x51"


def _parse_element(head: bytes, offset: int, endian: str = "<") -> tuple[int, int, int] | None:
    """Parse one data element header at ``offset`` (``endian`` is ``<`` or ``>``).

    Returns ``(group, element, next_offset)`` or None when it does not look like
    an element of group 0x0002 or 0x0008 with a plausible VR or length.
    """
    if len(head) < offset + 8:
        return None
    group, element = struct.unpack_from(endian + "HH", head, offset)
    if group not in (0x0002, 0x0008) or element > 0x00FF:
        return None
    vr = head[offset + 4 : offset + 6]
    if vr in _LONG_VRS:
        if head[offset + 6 : offset + 8] != b"\x00\x00" or len(head) < offset + 12:
            return None
        (length,) = struct.unpack_from(endian + "I", head, offset + 8)
        start = offset + 12
    elif vr in _SHORT_VRS:
        (length,) = struct.unpack_from(endian + "H", head, offset + 6)
        start = offset + 8
    elif endian == ">":
        return None  # big endian is always explicit VR
    else:
        # Implicit VR little endian: a 4-byte length follows the tag.
        (length,) = struct.unpack_from("<I", head, offset + 4)
        start = offset + 8
    if length >= _MAX_FIRST_LENGTH:
        return None
    return group, element, start + length


def _looks_like_preambleless_dicom(head: bytes, endian: str = "<") -> bool:
    """Conservative test for a DICOM data set written without preamble and ``DICM``.

    The first element must be in group 0x0002 (file meta) or 0x0008 (identifying
    attributes) with a known VR (or, little endian only, a small implicit length);
    when the head holds the next element too, it must follow in ascending tag order
    in group 0002/0008.
    """
    first = _parse_element(head, 0, endian)
    if first is None:
        return False
    group, element, nxt = first
    if len(head) < nxt + 8:
        return True
    second = _parse_element(head, nxt, endian)
    if second is None:
        return False
    return (second[0], second[1]) > (group, element)


def detect_file_type(head: bytes, name: str = "") -> str:
    """Detect a file's type from its first bytes.

    Parameters
    ----------
    head : bytes
        The first bytes of the file; pass at least :data:`HEAD_BYTES` (512) when
        the file is that long. DICOM needs 132 bytes, NIfTI-1 needs 348.
    name : str, optional
        File name, used only to call a gzip stream ``nifti`` when it ends ``.nii.gz``.

    Returns
    -------
    str
        One of ``dicom``, ``png``, ``jpeg``, ``jpeg2000``, ``tiff``, ``nifti``,
        ``zip``, ``gzip``, ``pdf``, ``unknown``.

    Examples
    --------
    >>> detect_file_type(bytes(128) + b"DICM")
    'dicom'
    >>> detect_file_type(b"hello")
    'unknown'
    """
    # DICM first: a DICOM preamble may itself hold a TIFF header (dual-personality files).
    if head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(_JP2_SIGNATURE) or head.startswith(_J2K_CODESTREAM):
        return "jpeg2000"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"):
        return "zip"
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head.startswith(b"\x1f\x8b"):
        return "nifti" if name.lower().endswith(".nii.gz") else "gzip"
    if head[344:348] in (b"n+1\x00", b"ni1\x00") and head[:4] in _NIFTI1_SIZES:
        return "nifti"
    if head[4:8] in (b"n+2\x00", b"ni2\x00") and head[:4] in _NIFTI2_SIZES:
        return "nifti"
    if _looks_like_preambleless_dicom(head, "<") or _looks_like_preambleless_dicom(head, ">"):
        return "dicom"
    return "unknown"
