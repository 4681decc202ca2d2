"""WADO-RS (PS3.18 10.4): metadata, instances, frames, bulk data.

``/metadata`` is the table's ``meta`` with each ``BulkDataURI`` made absolute
(``{base}/dicomweb/studies/{s}/series/{se}/instances/{i}/bulkdata/{tagpath}``);
the server resolves those URLs from the same ``meta`` (the byte range is never
taken from the request). Files are read only for instances, frames, bulk data
and rendered images (:mod:`pixels.web.rendered`), always opened before the
answer starts (:mod:`pixels.web.files`), so a vanished file or a missing codec
gets its own status (:mod:`pixels.web.errors`), never a body cut short.

Transfer syntaxes (PS3.18 8.7.3.4): instances are sent in Explicit VR Little
Endian unless the client asks otherwise (``transfer-syntax=*``: as stored) or
the stored pixel data is lossy (kept as stored); Implicit VR and Big Endian are
never sent (converted). Frames are sent as stored (``transfer-syntax=*``, the
stored syntax or its image media type) or as little-endian native bytes
(``application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1``), decoded
when compressed: only where the decoded frame is what the metadata describes
(decoders turn ``YBR_FULL_422`` into ``YBR_FULL`` and JPEG 2000 ``YBR_ICT`` /
``YBR_RCT`` into ``RGB``: such frames are offered as stored only; Planar
Configuration 1 is honoured). 406 when nothing acceptable can be made.

Video (MPEG-2, H.264, HEVC) pixel data is one stream for all frames: frames and
the pixel data bulk data are that stream, as ``video/mpeg`` (MPEG-2) or
``video/mp4`` (H.264, HEVC), PS3.18 8.7.4.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from pixels.dicom import codecs
from pixels.dicom.tags import PIXEL_DATA_KEYS, bulk_range
from pixels.web.files import (
    EXPLICIT_LE,
    FrameSource,
    Streamed,
    frame_count,
    frame_numbers,
    open_deflated_header,
    open_frames,
    open_instance,
    open_range,
    request_rows,
)
from pixels.web.media import IMAGE_TYPES, VIDEO_ALIASES, multipart_response, video_response
from pixels.web.multipart import MediaRange, parse_accept
from pixels.web.rendered import frame_rendered, rendered, thumbnail
from pixels.web.state import base_url

__all__ = [
    "bulkdata",
    "frame_rendered",
    "frames",
    "meta_with_urls",
    "metadata",
    "rendered",
    "retrieve",
    "rewrite_bulkdata",
    "thumbnail",
]

_TAGPATH = re.compile(r"^[0-9A-Fa-f]{8}(/[0-9]{1,6}/[0-9A-Fa-f]{8})*$")


# ----------------------------------------------------------------------------- helpers


def rewrite_bulkdata(node: Any, url: str) -> Any:
    """Copy of a DICOM JSON model with relative ``bulkdata/...`` URIs made absolute."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "BulkDataURI" and isinstance(v, str) and v.startswith("bulkdata/"):
                out[k] = f"{url}/{v.split('?', 1)[0]}"
            else:
                out[k] = rewrite_bulkdata(v, url)
        return out
    if isinstance(node, list):
        return [rewrite_bulkdata(v, url) for v in node]
    return node


_BULK_KEY = '"BulkDataURI":"bulkdata/'


def meta_with_urls(meta: str, url: str) -> str:
    """``meta`` (JSON text) with its relative ``bulkdata/...`` URIs made absolute.

    The same result as :func:`rewrite_bulkdata` without parsing the JSON: the
    catalog writes ``meta`` compactly, so a ``"BulkDataURI":"bulkdata/`` member
    can be found as text (inside a JSON string its quotes would be escaped); the
    URI's query (``?offset=..&length=..``, the server's own) is dropped.
    """
    if '"BulkDataURI": ' in meta:  # not the compact form: take the safe way
        return json.dumps(rewrite_bulkdata(json.loads(meta), url))
    i = meta.find(_BULK_KEY)
    if i < 0:
        return meta
    prefix = '"BulkDataURI":' + json.dumps(url + "/bulkdata/")[:-1]
    out: list[str] = []
    start = 0
    while i >= 0:  # str.find and slices: a regex substitution took 1.6x as long
        j = i + len(_BULK_KEY)
        end = meta.index('"', j)
        query = meta.find("?", j, end)
        out += (meta[start:i], prefix, meta[j : end if query < 0 else query])
        start = end
        i = meta.find(_BULK_KEY, end)
    out.append(meta[start:])
    return "".join(out)


# ---------------------------------------------------------------------------- metadata


def metadata(request: Request) -> Response:
    """``GET .../metadata`` at study, series or instance level: a JSON array of models."""
    accept = parse_accept(request.headers.get("accept"))
    if not any(
        r.type in ("application/dicom+json", "application/json", "*/*", "application/*")
        for r in accept
    ):
        raise HTTPException(406, "metadata is only available as application/dicom+json")
    rows = request_rows(
        request, "StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID, meta", cached=True
    )
    base = base_url(request)
    body = (
        "["
        + ",".join(
            meta_with_urls(
                r["meta"],
                f"{base}/dicomweb/studies/{r['StudyInstanceUID']}/series/"
                f"{r['SeriesInstanceUID']}/instances/{r['SOPInstanceUID']}",
            )
            for r in rows
        )
        + "]"
    )
    return Response(body, media_type="application/dicom+json")


# ---------------------------------------------------------------------------- instances

#: Instances of one answer kept open from the start; the rest are opened once to check
#: them before the answer starts, then again when their turn comes.
_KEEP_OPEN = 32


def _instance_ranges(
    accept: list[MediaRange], single_ok: bool
) -> Iterator[tuple[bool, str | None]]:
    """``(single part, transfer-syntax parameter)`` of each acceptable range, best first."""
    for r in accept:
        if r.type == "multipart/related":
            inner = r.params.get("type", "application/dicom").lower()
            if inner in ("application/dicom", "*/*", "application/*"):
                yield False, r.params.get("transfer-syntax")
        elif r.type == "application/dicom" and single_ok:
            yield True, r.params.get("transfer-syntax")
        elif r.type in ("*/*", "application/*"):
            yield False, r.params.get("transfer-syntax")


def retrieve(request: Request) -> Response:
    """``GET`` a study, series or instance (PS3.18 10.4.1.1.1): DICOM files.

    Explicit VR Little Endian unless the ``transfer-syntax`` parameter says
    otherwise (``*``: as stored, Implicit VR and Big Endian converted); lossy
    compressed instances keep their syntax when none is asked for.
    """
    from pixels.web.files import instance_syntax

    accept = parse_accept(request.headers.get("accept"))
    single_ok = "instance" in request.path_params
    rows = request_rows(request)
    stored = sorted({r["TransferSyntaxUID"] or EXPLICIT_LE for r in rows})
    for single, want in _instance_ranges(accept, single_ok):
        if any(instance_syntax(ts, want) is None for ts in stored):
            continue
        return _instances_response(rows, want, single)
    raise HTTPException(
        406,
        'instances are available as multipart/related; type="application/dicom" (also '
        "application/dicom for one instance) with transfer-syntax absent (Explicit VR Little "
        f"Endian; lossy data as stored), {EXPLICIT_LE}, * or the stored syntax "
        f"({', '.join(stored)})",
    )


def _instances_response(rows: list[dict[str, Any]], want: str | None, single: bool) -> Response:
    limit = _inflate_limit()
    kept: list[Streamed] = []
    try:
        for i, row in enumerate(rows):
            part = open_instance(row, want, inflate_limit=limit)
            if i < _KEEP_OPEN:
                kept.append(part)
            else:
                part.close()
    except BaseException:
        for p in kept:
            p.close()
        raise
    if single:
        return StreamingResponse(kept[0].chunks, media_type=kept[0].content_type)

    def parts() -> Iterator[tuple[str, Iterator[bytes]]]:
        try:
            for i, row in enumerate(rows):
                p = kept[i] if i < len(kept) else open_instance(row, want, inflate_limit=limit)
                yield p.content_type, p.chunks
        finally:
            for p in kept:
                p.close()

    return multipart_response(parts(), "application/dicom")


def _inflate_limit() -> int:
    from pixels.dicom.transcode import DEFAULT_INFLATE_LIMIT

    return DEFAULT_INFLATE_LIMIT


# ------------------------------------------------------------------------------ frames


def _negotiate_frames(
    accept: list[MediaRange], src: FrameSource, count: int
) -> tuple[str, str, bool] | None:
    """``(mode, media type, multipart)`` for the first acceptable range, or None.

    ``mode`` is ``"le"`` (native frames as little-endian bytes), ``"stored"``
    (compressed frames as stored) or ``"decode"`` (compressed frames decoded).
    """
    ts = src.transfer_syntax
    stored_type = (
        "application/octet-stream"
        if src.native
        else IMAGE_TYPES.get(ts, "application/octet-stream")
    )
    refusal = None if src.native else src.decode_refusal()
    for r in accept:
        multipart = r.type == "multipart/related"
        if not multipart and count > 1 and r.type != "*/*":
            continue
        inner = r.params.get("type", "application/octet-stream").lower() if multipart else r.type
        inner = VIDEO_ALIASES.get(inner, inner)
        want = r.params.get("transfer-syntax")
        multi = multipart or r.type == "*/*"
        family = stored_type.split("/")[0] + "/*"
        if src.native:
            if inner in ("*/*", "application/*", "application/octet-stream") and want in (
                None,
                "*",
                EXPLICIT_LE,
            ):
                return "le", "application/octet-stream", multi
            continue
        if inner in ("*/*", family) or (inner == stored_type and want in (None, "*", ts)):
            return "stored", stored_type, multi
        if inner in ("application/octet-stream", "application/*"):
            if want == "*" or want == ts:
                return "stored", "application/octet-stream", multi
            if want in (None, EXPLICIT_LE) and refusal is None:
                return "decode", "application/octet-stream", multi
    return None


def _frames_response(request: Request, row: dict[str, Any], numbers: list[int] | None) -> Response:
    accept = parse_accept(request.headers.get("accept"))
    src = open_frames(row, inflate_limit=_inflate_limit())
    if src is None:
        raise HTTPException(404, "the instance has no pixel data frames")
    try:
        return _frames_of(src, accept, numbers)
    except BaseException:
        src.close()
        raise


def _frames_of(src: FrameSource, accept: list[MediaRange], numbers: list[int] | None) -> Response:
    if src.video:
        return video_response(src, accept)
    nums = numbers if numbers is not None else list(range(1, len(src) + 1))
    chosen = _negotiate_frames(accept, src, len(nums))
    ts = src.transfer_syntax
    if chosen is None:
        stored = IMAGE_TYPES.get(ts, "application/octet-stream")
        why = src.decode_refusal() if not src.native else None
        decoded = (
            f"; not decoded: {why}"
            if why
            else f" or, decoded, as application/octet-stream (transfer syntax {EXPLICIT_LE})"
        )
        raise HTTPException(
            406,
            f"frames are available as {stored} (transfer syntax "
            f"{EXPLICIT_LE if src.native else ts}){'' if src.native else decoded}, "
            "in multipart/related",
        )
    mode, mtype, multipart = chosen
    if mode == "decode":
        src.check_decoder()
    read = {"le": src.little_endian, "stored": src.stored, "decode": src.decoded}[mode]
    out_ts = ts if mode == "stored" else EXPLICIT_LE
    part_type = f"{mtype}; transfer-syntax={out_ts}"
    first = read(nums[0] - 1)  # errors of the first frame come before the answer starts
    if not multipart:
        src.close()
        return Response(first, media_type=part_type)

    def parts() -> Iterator[tuple[str, list[bytes]]]:
        try:
            yield part_type, [first]
            for k in nums[1:]:
                yield part_type, [read(k - 1)]
        finally:
            src.close()

    return multipart_response(parts(), mtype, f"; transfer-syntax={out_ts}")


def frames(request: Request) -> Response:
    """``GET .../instances/{i}/frames/{list}`` (1-based, comma separated)."""
    row = request_rows(request)[0]
    n = frame_count(row)
    if n == 0:
        raise HTTPException(404, "the instance has no pixel data frames")
    return _frames_response(request, row, frame_numbers(request.path_params["frames"], n))


# ---------------------------------------------------------------------------- bulk data


def _find_element(meta: dict[str, Any], tagpath: str) -> dict[str, Any] | None:
    steps = tagpath.upper().split("/")
    node: Any = meta
    for i in range(0, len(steps), 2):
        el = node.get(steps[i]) if isinstance(node, dict) else None
        if el is None:
            return None
        if i + 1 == len(steps):
            return el if isinstance(el, dict) else None
        items = el.get("Value") or []
        k = int(steps[i + 1])
        if k >= len(items):
            return None
        node = items[k]
    return None


def _bulk_media(request: Request) -> bool | None:
    """True: multipart; False: single part; None: neither is acceptable."""
    for r in parse_accept(request.headers.get("accept")):
        if r.type == "multipart/related" and r.params.get("type", "application/octet-stream") in (
            "application/octet-stream",
            "*/*",
        ):
            return True
        if r.type in ("application/octet-stream", "*/*", "application/*"):
            return False
    return None


def bulkdata(request: Request) -> Response:
    """``GET .../bulkdata/{tagpath}``: one element's value (pixel data: all its frames)."""
    tagpath = request.path_params["tagpath"]
    if not _TAGPATH.match(tagpath):
        raise HTTPException(
            400, f"{tagpath[:80]!r} is not a tag path (GGGGEEEE[/item/GGGGEEEE]...)"
        )
    row = request_rows(request)[0]
    if tagpath.upper() in PIXEL_DATA_KEYS and frame_count(row):
        return _frames_response(request, row, None)
    multipart = _bulk_media(request)
    if multipart is None:
        raise HTTPException(406, "bulk data is available as application/octet-stream")
    el = _find_element(json.loads(row["meta"]), tagpath)
    if el is None or "BulkDataURI" not in el:
        raise HTTPException(404, f"no bulk data at {tagpath} in this instance")
    span = bulk_range(el["BulkDataURI"])
    if span is not None and span[1] is not None:
        part = open_range(row, span[0], span[1], str(el.get("vr", "OB")))
    elif (row["TransferSyntaxUID"] or "") == codecs.DEFLATED_LE:
        # offsets of a deflated file are in its inflated copy
        opened, fp, meta = open_deflated_header(row, inflate_limit=_inflate_limit())
        el = _find_element(meta, tagpath)
        span = bulk_range((el or {}).get("BulkDataURI"))
        if span is None or span[1] is None:
            opened.close()
            raise HTTPException(404, f"no bulk data at {tagpath} in this instance")
        from pixels.web.files import range_of

        part = range_of(opened, fp, span[0], span[1])
    else:
        raise HTTPException(404, f"no bulk data at {tagpath} in this instance")
    if multipart:
        return multipart_response(
            [("application/octet-stream", part.chunks)], "application/octet-stream"
        )
    return StreamingResponse(part.chunks, media_type="application/octet-stream")
