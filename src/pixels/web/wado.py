"""WADO-RS (PS3.18 10.4): metadata, instances, frames, bulk data, rendered images.

``/metadata`` is the table's ``meta`` with each ``BulkDataURI`` made absolute
(``{base}/dicomweb/studies/{s}/series/{se}/instances/{i}/bulkdata/{tagpath}``);
the server resolves those URLs from the same ``meta`` (the byte range is never
taken from the request). Files are read only for instances (streamed as
stored), frames (one ranged read per frame, through the catalog's frame
index), bulk data and rendered images.

Frames are sent in the stored transfer syntax when the ``Accept`` header allows
it (``transfer-syntax=*``, or the stored syntax, or its image media type),
otherwise decoded to uncompressed little-endian bytes
(``application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1``); 406 when
neither is acceptable.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from pixels.dicom.record import frame_index_of
from pixels.sources import open_file
from pixels.sources.ref import FileRef
from pixels.web.index import index_of
from pixels.web.multipart import MediaRange, multipart_chunks, new_boundary, parse_accept
from pixels.web.state import WebState, base_url, check_uid, state_of

__all__ = ["bulkdata", "frames", "metadata", "rendered", "retrieve", "thumbnail"]

EXPLICIT_LE = "1.2.840.10008.1.2.1"
_LE_NATIVE = frozenset({"1.2.840.10008.1.2", EXPLICIT_LE})
_CHUNK = 1 << 20

#: Media type of the frames of each encapsulated transfer syntax (PS3.18 Table 8.7.3-2).
IMAGE_TYPES = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/x-dicom-rle",
}

_TAGPATH = re.compile(r"^[0-9A-Fa-f]{8}(/[0-9]{1,6}/[0-9A-Fa-f]{8})*$")
_RANGE = re.compile(r"[?&]offset=(\d+)&length=(\d+)")
_PIXEL_TAGS = ("7FE00010", "7FE00008", "7FE00009")


# ----------------------------------------------------------------------------- helpers


def _instance_url(request: Request, row: dict[str, Any]) -> str:
    return (
        f"{base_url(request)}/dicomweb/studies/{row['StudyInstanceUID']}/series/"
        f"{row['SeriesInstanceUID']}/instances/{row['SOPInstanceUID']}"
    )


def _rows(request: Request, columns: str = "*") -> list[dict[str, Any]]:
    """Catalog rows of the study / series / instance of the request; HTTP 404 when none."""
    pp = request.path_params
    state: WebState = state_of(request)
    study = check_uid(pp["study"], "StudyInstanceUID")
    series = pp.get("series")
    sop = pp.get("instance")
    if series is not None:
        check_uid(series, "SeriesInstanceUID")
    if sop is not None:
        check_uid(sop, "SOPInstanceUID")
    rows = index_of(state).current().instance_rows(study, series, sop, columns)
    if not rows:
        what = "instance" if sop else "series" if series else "study"
        raise HTTPException(404, f"no such {what} in the catalog")
    return rows


def _read_range(row: dict[str, Any], offset: int, length: int) -> bytes:
    with open_file(FileRef.from_row(row)) as fp:
        fp.seek(offset)
        data = fp.read(length)
    if len(data) != length:
        raise HTTPException(500, f"{row['path']}: the file is shorter than the catalog says")
    return data


def _file_chunks(row: dict[str, Any]) -> Iterator[bytes]:
    with open_file(FileRef.from_row(row)) as fp:
        while chunk := fp.read(_CHUNK):
            yield chunk


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


_BULK_URI = re.compile(r'"BulkDataURI":"bulkdata/([^"?]*)(?:\?[^"]*)?"')


def meta_with_urls(meta: str, url: str) -> str:
    """``meta`` (JSON text) with its relative ``bulkdata/...`` URIs made absolute.

    The same result as :func:`rewrite_bulkdata` without parsing the JSON: the
    catalog writes ``meta`` compactly, so a ``"BulkDataURI":"bulkdata/`` member
    can be found as text (inside a JSON string its quotes would be escaped).
    """
    if '"BulkDataURI": ' in meta:  # not the compact form: take the safe way
        return json.dumps(rewrite_bulkdata(json.loads(meta), url))
    if '"BulkDataURI":"bulkdata/' not in meta:
        return meta
    prefix = '"BulkDataURI":' + json.dumps(url + "/bulkdata/")[:-1]
    return _BULK_URI.sub(lambda m: prefix + m.group(1) + '"', meta)


def _multipart_response(
    parts: list[tuple[str, Any]], inner_type: str, extra: str = ""
) -> StreamingResponse:
    boundary = new_boundary()
    ctype = f'multipart/related; type="{inner_type}"{extra}; boundary={boundary}'
    return StreamingResponse(multipart_chunks(parts, boundary), media_type=ctype)


# ---------------------------------------------------------------------------- metadata


def metadata(request: Request) -> Response:
    """``GET .../metadata`` at study, series or instance level: a JSON array of models."""
    accept = parse_accept(request.headers.get("accept"))
    if not any(
        r.type in ("application/dicom+json", "application/json", "*/*", "application/*")
        for r in accept
    ):
        raise HTTPException(406, "metadata is only available as application/dicom+json")
    rows = _rows(request, "StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID, meta")
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


def retrieve(request: Request) -> Response:
    """``GET`` a study, series or instance: the files as stored, streamed."""
    accept = parse_accept(request.headers.get("accept"))
    single_ok = "instance" in request.path_params
    rows = _rows(request)
    stored = {r["TransferSyntaxUID"] or EXPLICIT_LE for r in rows}
    for r in accept:
        inner = (
            r.params.get("type", "application/dicom").lower()
            if r.type == "multipart/related"
            else r.type
        )
        ts = r.params.get("transfer-syntax")
        if inner not in ("application/dicom", "*/*", "application/*"):
            continue
        if ts not in (None, "*") and stored != {ts}:
            continue  # transcoding is not implemented
        if r.type == "application/dicom" and single_ok:
            return StreamingResponse(_file_chunks(rows[0]), media_type="application/dicom")
        if r.type in ("multipart/related", "*/*"):
            parts = [
                (
                    f"application/dicom; transfer-syntax={row['TransferSyntaxUID'] or EXPLICIT_LE}",
                    _file_chunks(row),
                )
                for row in rows
            ]
            return _multipart_response(parts, "application/dicom")
    raise HTTPException(
        406,
        'instances are available as multipart/related; type="application/dicom" in their stored '
        f"transfer syntax ({', '.join(sorted(stored))})",
    )


# ------------------------------------------------------------------------------ frames


def _frame_numbers(text: str, n: int) -> list[int]:
    try:
        nums = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise HTTPException(
            400, f"frame list {text[:40]!r} is not a comma-separated list of numbers"
        ) from e
    if not nums:
        raise HTTPException(400, "empty frame list")
    for k in nums:
        if not 1 <= k <= n:
            raise HTTPException(404, f"frame {k} does not exist: the instance has {n} frame(s)")
    return nums


def _negotiate_frames(
    accept: list[MediaRange], ts: str, count: int
) -> tuple[bool, str, bool] | None:
    """``(decode, media type, multipart)`` for the first acceptable range, or None."""
    stored_type = (
        "application/octet-stream"
        if ts in _LE_NATIVE
        else IMAGE_TYPES.get(ts, "application/octet-stream")
    )
    for r in accept:
        multipart = r.type == "multipart/related"
        if not multipart and count > 1 and r.type != "*/*":
            continue
        inner = r.params.get("type", "application/octet-stream").lower() if multipart else r.type
        want = r.params.get("transfer-syntax")
        if inner in ("*/*", "application/*") or (inner == stored_type and want in (None, "*", ts)):
            return False, stored_type, multipart or r.type == "*/*"
        if inner == "application/octet-stream":
            if want == "*" or want == ts:
                return False, "application/octet-stream", multipart
            if want in (None, EXPLICIT_LE):
                return ts not in _LE_NATIVE, "application/octet-stream", multipart
    return None


def _decoded(data: bytes, meta: dict[str, Any], ts: str, path: str) -> bytes:
    from pixels.dicom.decode import PixelInfo, decode_frame

    arr = decode_frame(data, PixelInfo.from_json(meta, ts), path=path)
    arr = np.ascontiguousarray(arr)
    if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and np.little_endian is False):
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return arr.tobytes()


def _frames_response(request: Request, row: dict[str, Any], numbers: list[int] | None) -> Response:
    index = frame_index_of(row)
    if index is None:
        raise HTTPException(404, "the instance has no pixel data frames")
    nums = numbers if numbers is not None else list(range(1, len(index) + 1))
    ts = row["TransferSyntaxUID"] or EXPLICIT_LE
    accept = parse_accept(request.headers.get("accept"))
    chosen = _negotiate_frames(accept, ts, len(nums))
    if chosen is None:
        stored = IMAGE_TYPES.get(ts, "application/octet-stream")
        raise HTTPException(
            406,
            f"frames are available as {stored} (transfer syntax {ts}) or, decoded, as "
            f"application/octet-stream (transfer syntax {EXPLICIT_LE}), in multipart/related",
        )
    decode, mtype, multipart = chosen
    from pixels.dicom.frames import read_frame

    meta = json.loads(row["meta"])
    out = []
    with open_file(FileRef.from_row(row)) as fp:
        for k in nums:
            data = read_frame(fp, index, k - 1)
            out.append(_decoded(data, meta, ts, row["path"]) if decode else data)
    out_ts = EXPLICIT_LE if decode or ts == "1.2.840.10008.1.2" else ts
    if not multipart:
        return Response(out[0], media_type=f"{mtype}; transfer-syntax={out_ts}")
    part_type = f"{mtype}; transfer-syntax={out_ts}"
    return _multipart_response(
        [(part_type, [d]) for d in out], mtype, f"; transfer-syntax={out_ts}"
    )


def frames(request: Request) -> Response:
    """``GET .../instances/{i}/frames/{list}`` (1-based, comma separated)."""
    row = _rows(request)[0]
    n = len(row["frame_offsets"] or [])
    if n == 0:
        raise HTTPException(404, "the instance has no pixel data frames")
    return _frames_response(request, row, _frame_numbers(request.path_params["frames"], n))


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


def bulkdata(request: Request) -> Response:
    """``GET .../bulkdata/{tagpath}``: one element's value (pixel data: all its frames)."""
    tagpath = request.path_params["tagpath"]
    if not _TAGPATH.match(tagpath):
        raise HTTPException(
            400, f"{tagpath[:80]!r} is not a tag path (GGGGEEEE[/item/GGGGEEEE]...)"
        )
    row = _rows(request)[0]
    if tagpath.upper() in _PIXEL_TAGS and row["frame_offsets"]:
        return _frames_response(request, row, None)
    el = _find_element(json.loads(row["meta"]), tagpath)
    uri = el.get("BulkDataURI") if el else None
    m = _RANGE.search(uri or "")
    if m is None:
        raise HTTPException(404, f"no bulk data at {tagpath} in this instance")
    data = _read_range(row, int(m.group(1)), int(m.group(2)))
    for r in parse_accept(request.headers.get("accept")):
        if r.type == "multipart/related" and r.params.get("type", "application/octet-stream") in (
            "application/octet-stream",
            "*/*",
        ):
            return _multipart_response(
                [("application/octet-stream", [data])], "application/octet-stream"
            )
        if r.type in ("application/octet-stream", "*/*", "application/*"):
            return Response(data, media_type="application/octet-stream")
    raise HTTPException(406, "bulk data is available as application/octet-stream")


# ---------------------------------------------------------------------- rendered, thumbnail


def _image_format(request: Request) -> str:
    for r in parse_accept(request.headers.get("accept")):
        if r.type in ("image/jpeg", "*/*", "image/*"):
            return "jpeg"
        if r.type == "image/png":
            return "png"
    raise HTTPException(406, "rendered images are available as image/jpeg or image/png")


def _viewport(request: Request, default: int) -> int:
    vp = request.query_params.get("viewport")
    if not vp:
        return default
    try:
        sizes = [int(v) for v in vp.split(",")[:2] if v.strip()]
    except ValueError as e:
        raise HTTPException(400, "viewport must be 'width,height'") from e
    size = max(sizes) if sizes else default
    if not 1 <= size <= 4096:
        raise HTTPException(400, "viewport must be between 1 and 4096 pixels")
    return size


_WINDOW_FUNCTIONS = {"linear": "LINEAR", "linear-exact": "LINEAR_EXACT", "sigmoid": "SIGMOID"}


def parse_window(center: str, width: str, function: str = "linear") -> tuple[float, float, str]:
    """``(center, width, VOILUTFunction)`` from text; HTTP 400 when invalid."""
    try:
        c, w = float(center), float(width)
    except ValueError as e:
        raise HTTPException(400, "window center and width must be numbers") from e
    func = _WINDOW_FUNCTIONS.get(function.strip().lower())
    if func is None:
        raise HTTPException(400, "window function must be linear, linear-exact or sigmoid")
    if not (np.isfinite(c) and np.isfinite(w)) or w <= 0 or (func == "LINEAR" and w < 1):
        raise HTTPException(400, "window width must be > 0 (>= 1 for linear)")
    return c, w, func


def _window_param(request: Request) -> tuple[float, float, str] | None:
    """The ``window=center,width[,function]`` query parameter (PS3.18 8.3.5.1.3)."""
    text = request.query_params.get("window")
    if text is None:
        return None
    parts = [v.strip() for v in text.split(",")]
    if len(parts) not in (2, 3):
        raise HTTPException(400, "window must be 'center,width[,function]'")
    return parse_window(*parts)


def parse_quality(text: str | None) -> int:
    """JPEG quality 1-100 from text (default 85); HTTP 400 when invalid."""
    if text is None:
        return 85
    try:
        q = int(text)
    except ValueError as e:
        raise HTTPException(400, "quality must be an integer from 1 to 100") from e
    if not 1 <= q <= 100:
        raise HTTPException(400, "quality must be an integer from 1 to 100")
    return q


def with_window(meta: dict[str, Any], window: tuple[float, float, str]) -> dict[str, Any]:
    """``meta`` (changed in place) showing ``window`` instead of the file's VOI."""
    c, w, func = window
    meta["00281050"] = {"vr": "DS", "Value": [c]}
    meta["00281051"] = {"vr": "DS", "Value": [w]}
    meta["00281056"] = {"vr": "CS", "Value": [func]}
    meta.pop("00283010", None)
    for groups in ("52009229", "52009230"):
        for item in (meta.get(groups) or {}).get("Value") or []:
            if isinstance(item, dict):
                item.pop("00289132", None)
    return meta


def render_row(
    row: dict[str, Any],
    *,
    size: int,
    fmt: str,
    frame: int | None = None,
    window: tuple[float, float, str] | None = None,
    quality: int = 85,
) -> bytes:
    """One frame of a catalog row (default the middle one) as a JPEG or PNG image."""
    from pixels.dicom.thumb import thumbnail_from_file

    meta: dict[str, Any] = json.loads(row["meta"])
    if window is not None:
        with_window(meta, window)
    with open_file(FileRef.from_row(row)) as fp:
        img = thumbnail_from_file(
            fp,
            meta,
            row["TransferSyntaxUID"] or EXPLICIT_LE,
            path=row["path"],
            max_size=size,
            fmt=fmt,
            frame=frame,
            index=frame_index_of(row),
            quality=quality,
        )
    if img is None:
        raise HTTPException(404, "nothing to render: no pixel data")
    return img.data


def _render(request: Request, *, thumb: bool) -> Response:
    fmt = _image_format(request)
    window = None if thumb else _window_param(request)
    quality = 85 if thumb else parse_quality(request.query_params.get("quality"))
    rows = [r for r in _rows(request) if r["frame_offsets"]]
    if not rows:
        raise HTTPException(404, "nothing to render: no instance with pixel data")
    row = rows[len(rows) // 2]
    size = _viewport(request, 256 if thumb else max(row["Rows"] or 0, row["Columns"] or 0, 1))
    media = f"image/{fmt}"
    if (
        thumb
        and row.get("thumbnail")
        and row.get("thumbnail_format") == fmt
        and max(row.get("thumbnail_width") or 0, row.get("thumbnail_height") or 0) <= size
    ):
        return Response(row["thumbnail"], media_type=media)
    data = render_row(row, size=size, fmt=fmt, window=window, quality=quality)
    return Response(data, media_type=media)


def rendered(request: Request) -> Response:
    """``GET .../rendered``: the (middle) image at full size with its display pipeline.

    Query parameters: ``viewport``, ``window=center,width[,function]`` (replaces the
    file's VOI) and ``quality`` (JPEG, 1-100).
    """
    return _render(request, thumb=False)


def thumbnail(request: Request) -> Response:
    """``GET .../thumbnail``: the catalog thumbnail when it fits, else made now."""
    return _render(request, thumb=True)
