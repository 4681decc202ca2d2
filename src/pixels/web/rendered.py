"""Rendered images (PS3.18 10.4.1.1.3 and 8.3.5.1): ``/rendered``, ``/frames/{n}/rendered``, ``/thumbnail``.

One frame through the display pipeline (:func:`pixels.dicom.thumb.thumbnail_from_file`:
modality LUT, window, MONOCHROME1 inversion, colour), as ``image/jpeg`` or
``image/png``. Query parameters: ``viewport=width,height`` (the image is scaled to
fit, never enlarged beyond it), ``window=center,width[,function]`` (replaces the
file's VOI) and ``quality`` (JPEG, 1-100). A video instance's rendered form is
its stream (``video/mpeg`` / ``video/mp4``) when the client accepts it.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from pixels.dicom.video import MP4_SYNTAXES, frame_rate, mp4_from_stream
from pixels.web.files import FrameSource, frame_count, frame_numbers, open_frames, request_rows
from pixels.web.media import IMAGE_TYPES, VIDEO_ALIASES, video_chunks, video_response
from pixels.web.multipart import MediaRange, multipart_chunks, new_boundary, parse_accept

__all__ = [
    "frame_rendered",
    "parse_quality",
    "parse_window",
    "render_row",
    "rendered",
    "thumbnail",
    "with_window",
]


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


def _render_source(
    src: FrameSource,
    *,
    size: int,
    fmt: str,
    frame: int | None,
    window: tuple[float, float, str] | None,
    quality: int,
) -> bytes:
    from pixels.dicom.thumb import thumbnail_from_file

    meta: dict[str, Any] = json.loads(json.dumps(src.meta)) if window is not None else src.meta
    if window is not None:
        with_window(meta, window)
    img = thumbnail_from_file(
        src.fp,
        meta,
        src.transfer_syntax,
        path=src.opened.path,
        max_size=size,
        fmt=fmt,
        frame=frame,
        index=src.index,
        quality=quality,
    )
    if img is None:
        raise HTTPException(404, "nothing to render: no pixel data")
    return img.data


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
    src = open_frames(row)
    if src is None:
        raise HTTPException(404, "nothing to render: no pixel data")
    try:
        if src.video and frame not in (None, 0):
            raise HTTPException(
                406,
                "of a video only the first frame is rendered as an image; the whole video "
                "is available as video/mpeg or video/mp4",
            )
        if src.video:
            frame = 0
        return _render_source(src, size=size, fmt=fmt, frame=frame, window=window, quality=quality)
    finally:
        src.close()


def _video_rendered(request: Request, row: dict[str, Any]) -> Response | None:
    """A video instance rendered as a video when the client prefers one (``video/*`` or
    ``*/*`` before any image type: a ``<video>`` element); None to render its first frame.

    H.264 / HEVC come as an MP4 file (the stream remuxed, :mod:`pixels.dicom.video`),
    MPEG-2 as its stream (``video/mpeg``).
    """
    ts = row["TransferSyntaxUID"] or ""
    mtype = IMAGE_TYPES.get(ts, "")
    if not mtype.startswith("video/"):
        return None
    accept = parse_accept(request.headers.get("accept"))
    for r in accept:
        kind = VIDEO_ALIASES.get(r.type, r.type)
        if kind.startswith("image/"):
            return None
        if kind in (mtype, "video/*", "*/*"):
            break
    else:
        return None
    src = open_frames(row)
    if src is None:
        return None
    if ts not in MP4_SYNTAXES:
        return video_response(src, [MediaRange(mtype)])
    try:
        with tempfile.SpooledTemporaryFile(max_size=16 << 20) as raw:
            for chunk in video_chunks(src):
                raw.write(chunk)
            mp4 = mp4_from_stream(raw, ts, frame_rate(src.meta))  # type: ignore[arg-type]
    finally:
        src.close()

    def chunks() -> Iterator[bytes]:
        with mp4:
            while data := mp4.read(1 << 20):
                yield data

    return StreamingResponse(chunks(), media_type="video/mp4")


def _render(request: Request, *, thumb: bool, frame: int | None = None) -> Response:
    rows = [r for r in request_rows(request) if frame_count(r)]
    if not rows:
        raise HTTPException(404, "nothing to render: no instance with pixel data")
    row = rows[len(rows) // 2]
    video = _video_rendered(request, row)
    if video is not None:
        return video
    fmt = _image_format(request)
    window = None if thumb else _window_param(request)
    quality = 85 if thumb else parse_quality(request.query_params.get("quality"))
    size = _viewport(request, 256 if thumb else max(row["Rows"] or 0, row["Columns"] or 0, 1))
    media = f"image/{fmt}"
    if (
        thumb
        and row.get("thumbnail")
        and row.get("thumbnail_format") == fmt
        and max(row.get("thumbnail_width") or 0, row.get("thumbnail_height") or 0) <= size
    ):
        return Response(row["thumbnail"], media_type=media)
    data = render_row(row, size=size, fmt=fmt, frame=frame, window=window, quality=quality)
    return Response(data, media_type=media)


def rendered(request: Request) -> Response:
    """``GET .../rendered``: the (middle) image at full size with its display pipeline.

    Query parameters: ``viewport``, ``window=center,width[,function]`` (replaces the
    file's VOI) and ``quality`` (JPEG, 1-100).
    """
    return _render(request, thumb=False)


def frame_rendered(request: Request) -> Response:
    """``GET .../instances/{i}/frames/{list}/rendered``: frames through the display pipeline.

    One frame: an image. Several: a ``multipart/related`` of images when the client
    accepts it (``multipart/related; type="image/jpeg"``), else 406.
    """
    row = request_rows(request)[0]
    n = frame_count(row)
    if n == 0:
        raise HTTPException(404, "nothing to render: the instance has no pixel data frames")
    nums = frame_numbers(request.path_params["frames"], n)
    if len(nums) == 1:
        return _render(request, thumb=False, frame=nums[0] - 1)
    fmt = None
    for r in parse_accept(request.headers.get("accept")):
        inner = r.params.get("type", "image/jpeg").lower()
        if r.type == "multipart/related" and inner in ("image/jpeg", "image/png", "image/*"):
            fmt = "png" if inner == "image/png" else "jpeg"
            break
    if fmt is None:
        raise HTTPException(
            406,
            'several rendered frames are available as multipart/related; type="image/jpeg" '
            'or type="image/png" (one frame: image/jpeg or image/png)',
        )
    window = _window_param(request)
    quality = parse_quality(request.query_params.get("quality"))
    size = _viewport(request, max(row["Rows"] or 0, row["Columns"] or 0, 1))
    src = open_frames(row)
    if src is None:
        raise HTTPException(404, "nothing to render: no pixel data")
    try:
        images = [
            _render_source(src, size=size, fmt=fmt, frame=k - 1, window=window, quality=quality)
            for k in nums
        ]
    finally:
        src.close()
    boundary = new_boundary()
    media = f"image/{fmt}"
    return Response(
        b"".join(multipart_chunks([(media, [img]) for img in images], boundary)),
        media_type=f'multipart/related; type="{media}"; boundary={boundary}',
    )


def thumbnail(request: Request) -> Response:
    """``GET .../thumbnail``: the catalog thumbnail when it fits, else made now."""
    return _render(request, thumb=True)
