"""Media types for DICOMweb: ``Accept`` negotiation, multipart/related in and out.

Parsing is strict where it matters for safety (a body that does not follow
RFC 2046 is refused with a reason) and lenient where clients differ (quoted or
bare ``boundary`` and ``type`` parameters, a preamble before the first
delimiter).
"""

from __future__ import annotations

import mmap
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

__all__ = [
    "MediaRange",
    "MultipartError",
    "new_boundary",
    "parse_accept",
    "parse_media_type",
    "part_header",
    "split_parts",
]


class MultipartError(ValueError):
    """A multipart body or a media type that cannot be parsed (the message says why)."""


@dataclass(frozen=True, slots=True)
class MediaRange:
    """One media range of an ``Accept`` header (or a ``Content-Type``).

    ``type`` is lower case (``multipart/related``); ``params`` has lower-case keys
    and unquoted values (``type``, ``transfer-syntax``, ``boundary``).
    """

    type: str
    params: dict[str, str] = field(default_factory=dict)
    q: float = 1.0


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    out: list[str] = []
    cur: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


def parse_media_type(text: str) -> MediaRange:
    """Parse ``type/subtype; key=value; key="value"``."""
    pieces = _split_outside_quotes(text, ";")
    mtype = pieces[0].strip().lower()
    params: dict[str, str] = {}
    q = 1.0
    for piece in pieces[1:]:
        if "=" not in piece:
            continue
        key, value = piece.split("=", 1)
        key = key.strip().lower()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if key == "q":
            try:
                q = float(value)
            except ValueError:
                q = 0.0
        else:
            params[key] = value.strip()
    return MediaRange(mtype, params, q)


def parse_accept(header: str | None) -> list[MediaRange]:
    """Media ranges of an ``Accept`` header, best first (absent header: ``*/*``)."""
    if not header or not header.strip():
        return [MediaRange("*/*")]
    ranges = [parse_media_type(p) for p in _split_outside_quotes(header, ",") if p.strip()]
    ranges = [r for r in ranges if r.q > 0]
    return sorted(ranges, key=lambda r: -r.q)


def new_boundary() -> str:
    """A random boundary that cannot occur in DICOM data by chance."""
    return "pixels-" + secrets.token_hex(16)


def part_header(content_type: str, boundary: str, extra: Iterable[tuple[str, str]] = ()) -> bytes:
    """The delimiter and headers that open one part."""
    lines = [f"--{boundary}", f"Content-Type: {content_type}"]
    lines += [f"{k}: {v}" for k, v in extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def closing(boundary: str) -> bytes:
    """The close delimiter."""
    return f"\r\n--{boundary}--\r\n".encode("latin-1")


def multipart_chunks(
    parts: Iterable[tuple[str, Iterable[bytes]]], boundary: str
) -> Iterator[bytes]:
    """Stream ``(content_type, chunks)`` parts as one multipart/related body."""
    first = True
    for ctype, chunks in parts:
        yield (b"" if first else b"\r\n") + part_header(ctype, boundary)
        first = False
        yield from chunks
    if first:  # no part at all: still a well-formed (empty) body
        yield f"--{boundary}--\r\n".encode("latin-1")
    else:
        yield closing(boundary)


@dataclass(frozen=True, slots=True)
class Part:
    """One part of a parsed multipart body: its headers and where its content is."""

    headers: dict[str, str]
    start: int
    end: int

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


def split_parts(body: bytes | mmap.mmap, boundary: str) -> list[Part]:
    """Find the parts of a multipart body (RFC 2046) without copying their content.

    Raises
    ------
    MultipartError
        No opening delimiter, a part without a header block, or no close delimiter.
    """
    if not boundary or len(boundary) > 200:
        raise MultipartError("the multipart boundary is missing or longer than 200 characters")
    delim = b"--" + boundary.encode("latin-1")
    if body[: len(delim)] == delim:
        pos = 0
    else:
        pos = body.find(b"\r\n" + delim)
        if pos < 0:
            raise MultipartError("the body does not contain the boundary given in Content-Type")
        pos += 2
    parts: list[Part] = []
    while True:
        pos += len(delim)
        tail = body[pos : pos + 2]
        if tail == b"--":
            break
        # transport padding (spaces/tabs) may follow a delimiter before its CRLF
        while body[pos : pos + 1] in (b" ", b"\t"):
            pos += 1
        if body[pos : pos + 2] != b"\r\n":
            raise MultipartError(
                "malformed multipart: a boundary delimiter is not followed by CRLF"
            )
        pos += 2
        head_end = body.find(b"\r\n\r\n", pos)
        if body[pos : pos + 2] == b"\r\n":  # a part with no header lines
            head_end, headers = pos - 2, {}
        elif head_end < 0:
            raise MultipartError("malformed multipart: a part has no end of headers (CRLF CRLF)")
        else:
            headers = _parse_headers(bytes(body[pos:head_end]))
        start = head_end + 4
        nxt = body.find(b"\r\n" + delim, start)
        if nxt < 0:
            raise MultipartError("malformed multipart: no closing boundary delimiter")
        parts.append(Part(headers, start, nxt))
        pos = nxt + 2
    return parts


def _parse_headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.decode("latin-1").split("\r\n"):
        if not line.strip():
            continue
        if ":" not in line:
            raise MultipartError(
                f"malformed multipart: a part header line has no colon: {line[:80]!r}"
            )
        key, value = line.split(":", 1)
        headers[key.strip().lower()] = value.strip()
    return headers
