"""``Content-Encoding: gzip`` for large answers, their big parts compressed once and reused.

A MONAI Label click answer is a 26 MB NRRD that is mostly zeros (level 1: about 1 MB).
:class:`Deflated` holds such a part compressed once (raw deflate blocks ended by a
full flush, so that no later block refers back into it and blocks may follow it);
:func:`gzip_join` makes one gzip member of several parts, copying the deflated ones
and compressing only the small rest (a multipart's headers), so an unchanged answer
is not compressed again. One member, not several concatenated: some clients (httpx)
read only the first member of a gzip body.

>>> import gzip
>>> part = Deflated.of(b"0" * 1000)
>>> gzip.decompress(gzip_join([b"head ", part, b" tail"])) == b"head " + b"0" * 1000 + b" tail"
True
>>> accepts_gzip("gzip, deflate, br"), accepts_gzip("identity"), accepts_gzip("gzip;q=0")
(True, False, False)
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["LEVEL", "Deflated", "accepts_gzip", "gzip_join"]

#: zlib level: 1 makes a 26 MB label volume about 1 MB in ~0.1 s of CPU; 6 gives about
#: 0.6 MB for 3-4 times the CPU (bench/bench_monailabel.py --gzip).
LEVEL = 1
_WBITS = -zlib.MAX_WBITS  # raw deflate: the gzip header and trailer are written here


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an ``Accept-Encoding`` value accepts ``gzip`` (RFC 9110, 12.5.3).

    ``gzip`` or ``x-gzip`` with a ``q`` above 0, or ``*`` above 0 when gzip is not
    named; no header, ``identity`` alone or ``gzip;q=0``: no.
    """
    star = False
    for item in (accept_encoding or "").split(","):
        coding, _, params = item.partition(";")
        coding = coding.strip().lower()
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
        if coding in ("gzip", "x-gzip"):
            return q > 0
        if coding == "*":
            star = q > 0
    return star


@dataclass(frozen=True)
class Deflated:
    """``raw`` compressed once: raw deflate blocks that :func:`gzip_join` copies.

    Attributes
    ----------
    raw : bytes
        The bytes themselves (their CRC when another part comes before them).
    blocks : bytes
        Their deflate blocks, none final, ended by a full flush (byte aligned, and
        referring to nothing before them).
    crc : int
        CRC-32 of ``raw``.
    """

    raw: bytes
    blocks: bytes
    crc: int

    @classmethod
    def of(cls, raw: bytes, level: int = LEVEL) -> Deflated:
        """Compress ``raw`` at ``level`` (zlib's 1..9)."""
        c = zlib.compressobj(level, zlib.DEFLATED, _WBITS)
        return cls(raw, c.compress(raw) + c.flush(zlib.Z_FULL_FLUSH), zlib.crc32(raw))


def gzip_join(parts: Sequence[bytes | Deflated], level: int = LEVEL) -> bytes:
    """One gzip member (RFC 1952) of ``parts`` in order: :class:`Deflated` parts copied,
    plain ones compressed at ``level`` now."""
    out = [b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"]  # deflate, no name, mtime 0
    crc, size = 0, 0
    c = zlib.compressobj(level, zlib.DEFLATED, _WBITS)
    for part in parts:
        if isinstance(part, Deflated):
            out.append(c.flush(zlib.Z_FULL_FLUSH))  # byte aligned, nothing to refer back to
            out.append(part.blocks)
            crc = part.crc if size == 0 else zlib.crc32(part.raw, crc)
            size += len(part.raw)
        else:
            out.append(c.compress(part))
            crc = zlib.crc32(part, crc)
            size += len(part)
    out.append(c.flush(zlib.Z_FINISH))
    out.append(struct.pack("<II", crc, size & 0xFFFFFFFF))
    return b"".join(out)
