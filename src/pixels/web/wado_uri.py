"""WADO-URI (PS3.18 section 9): ``GET /wado?requestType=WADO&studyUID=..&...``.

``contentType`` picks the answer: ``application/dicom`` (the file, in Explicit VR
Little Endian unless ``transferSyntax`` asks for another or the data is lossy),
``image/jpeg`` (the default for images) or ``image/png`` (one frame rendered
with the display pipeline of ``/rendered``). For objects without pixel data
the default is ``application/dicom``. Optional: ``frameNumber`` (1-based),
``rows`` / ``columns`` (the box the image is scaled to fit), ``windowCenter`` /
``windowWidth`` (replace the file's VOI) and ``imageQuality`` (JPEG, 1-100).
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from pixels.web.files import frame_count, open_instance
from pixels.web.index import index_of
from pixels.web.rendered import parse_quality, parse_window, render_row
from pixels.web.state import check_uid, state_of

__all__ = ["wado_uri"]

_IMAGE = {"image/jpeg": "jpeg", "image/png": "png", "image/*": "jpeg"}


def _param(request: Request, name: str) -> str:
    value = request.query_params.get(name)
    if not value:
        raise HTTPException(400, f"missing query parameter {name}")
    return value.strip()


def _positive(request: Request, name: str) -> int | None:
    text = request.query_params.get(name)
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError as e:
        raise HTTPException(400, f"{name} must be a positive integer") from e
    if value < 1:
        raise HTTPException(400, f"{name} must be a positive integer")
    return value


def _content_type(request: Request, has_pixels: bool) -> str:
    text = request.query_params.get("contentType")
    if not text:
        return "image/jpeg" if has_pixels else "application/dicom"
    for item in text.split(","):
        mtype = item.split(";", 1)[0].strip().lower()
        if mtype in ("application/dicom", "*/*") and (mtype != "*/*" or not has_pixels):
            return "application/dicom"
        if has_pixels and (mtype in _IMAGE or mtype == "*/*"):
            return "image/jpeg" if mtype == "*/*" else mtype
    raise HTTPException(
        406,
        "this object is available as application/dicom"
        + (", image/jpeg or image/png" if has_pixels else ""),
    )


def _size(row: dict[str, Any], rows: int | None, columns: int | None) -> int:
    """Longest side of the image fitting in ``rows`` x ``columns`` (never enlarged)."""
    h, w = max(row["Rows"] or 1, 1), max(row["Columns"] or 1, 1)
    scale = 1.0
    if rows is not None:
        scale = min(scale, rows / h)
    if columns is not None:
        scale = min(scale, columns / w)
    return max(1, round(max(h, w) * scale))


def _transfer_syntax(request: Request) -> str | None:
    """The ``transferSyntax`` parameter (PS3.18 9.1.2.2.8); absent: Explicit VR Little Endian
    (lossy data as stored)."""
    text = request.query_params.get("transferSyntax")
    return text.strip() if text and text.strip() else None


def wado_uri(request: Request) -> Response:
    """``GET /wado``: one object as stored or rendered (PS3.18 9)."""
    if request.query_params.get("requestType") != "WADO":
        raise HTTPException(400, "requestType must be WADO")
    study = check_uid(_param(request, "studyUID"), "studyUID")
    series = check_uid(_param(request, "seriesUID"), "seriesUID")
    sop = check_uid(_param(request, "objectUID"), "objectUID")
    frame = _positive(request, "frameNumber")
    rows_, columns = _positive(request, "rows"), _positive(request, "columns")
    center, width = (
        request.query_params.get("windowCenter"),
        request.query_params.get("windowWidth"),
    )
    if (center is None) != (width is None):
        raise HTTPException(400, "windowCenter and windowWidth go together")
    window = parse_window(center, width) if center is not None and width is not None else None
    quality = parse_quality(request.query_params.get("imageQuality"))
    found = index_of(state_of(request)).current().instance_rows(study, series, sop, "*")
    if not found:
        raise HTTPException(404, "no such instance in the catalog")
    row = found[0]
    n = frame_count(row)
    mtype = _content_type(request, n > 0)
    if mtype == "application/dicom":
        part = open_instance(row, _transfer_syntax(request))
        return StreamingResponse(part.chunks, media_type="application/dicom")
    if frame is not None and frame > n:
        raise HTTPException(400, f"frameNumber {frame} out of range: the object has {n} frame(s)")
    data = render_row(
        row,
        size=_size(row, rows_, columns),
        fmt=_IMAGE[mtype],
        frame=None if frame is None else frame - 1,
        window=window,
        quality=quality,
    )
    return Response(data, media_type="image/png" if mtype == "image/png" else "image/jpeg")
