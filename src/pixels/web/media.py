"""Media types of pixel data in DICOMweb answers, and the answers that only pass bytes on.

:data:`IMAGE_TYPES` maps each encapsulated transfer syntax to the media type of
its frames (PS3.18 Table 8.7.3-2 and 8.7.4-1): video syntaxes are one stream for
all frames, sent whole as ``video/mpeg`` (MPEG-2) or ``video/mp4`` (H.264, HEVC).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import Response, StreamingResponse

from pixels.dicom import codecs
from pixels.web.files import FrameSource
from pixels.web.multipart import MediaRange, multipart_chunks, new_boundary

__all__ = ["IMAGE_TYPES", "VIDEO_ALIASES", "multipart_response", "video_chunks", "video_response"]

#: Media type of the frames of each encapsulated transfer syntax (PS3.18 Table 8.7.3-2).
IMAGE_TYPES = {
    codecs.JPEG_BASELINE: "image/jpeg",
    codecs.JPEG_EXTENDED: "image/jpeg",
    codecs.JPEG_LOSSLESS: "image/jpeg",
    codecs.JPEG_LOSSLESS_SV1: "image/jpeg",
    codecs.JPEG_LS_LOSSLESS: "image/jls",
    codecs.JPEG_LS_NEAR: "image/jls",
    codecs.J2K_LOSSLESS: "image/jp2",
    codecs.J2K: "image/jp2",
    codecs.J2K_PART2_LOSSLESS: "image/jpx",
    codecs.J2K_PART2: "image/jpx",
    codecs.HTJ2K_LOSSLESS: "image/jphc",
    codecs.HTJ2K_LOSSLESS_RPCL: "image/jphc",
    codecs.HTJ2K: "image/jphc",
    codecs.RLE_LOSSLESS: "image/x-dicom-rle",
}
# video: the whole stream (PS3.18 Table 8.7.4-1): MPEG-2 video/mpeg, H.264 and HEVC video/mp4
IMAGE_TYPES.update(
    {
        ts: "video/mpeg" if ts.split(".")[7] in ("100", "101") else "video/mp4"
        for ts in codecs.VIDEO_SYNTAXES
    }
)
#: Other names clients use for the same video media types (dicomweb-client: video/mpeg2).
VIDEO_ALIASES = {"video/mpeg2": "video/mpeg", "video/h265": "video/mp4", "video/h264": "video/mp4"}


def multipart_response(parts: Any, inner_type: str, extra: str = "") -> StreamingResponse:
    """``parts``: an iterable of ``(content type, chunks)``, consumed while streaming."""
    boundary = new_boundary()
    ctype = f'multipart/related; type="{inner_type}"{extra}; boundary={boundary}'
    return StreamingResponse(multipart_chunks(parts, boundary), media_type=ctype)


def video_response(src: FrameSource, accept: list[MediaRange]) -> Response:
    """The whole video stream, whatever frames were asked for (PS3.18 8.7.4)."""
    ts = src.transfer_syntax
    mtype = IMAGE_TYPES[ts]
    for r in accept:
        multipart = r.type == "multipart/related"
        inner = r.params.get("type", mtype).lower() if multipart else r.type
        inner = VIDEO_ALIASES.get(inner, inner)
        want = r.params.get("transfer-syntax")
        if inner in (mtype, "video/*", "*/*") and want in (None, "*", ts):
            break
        if inner in ("application/octet-stream", "application/*") and want in ("*", ts):
            break
    else:
        src.close()
        raise HTTPException(
            406,
            f"this instance is a video ({codecs.SYNTAX_NAMES.get(ts, ts)}): its frames are "
            f"available only as the whole stream, {mtype}; transfer-syntax={ts}",
        )
    chunks = video_chunks(src)
    part_type = f"{mtype}; transfer-syntax={ts}"
    if not multipart:
        return StreamingResponse(chunks, media_type=part_type)
    return multipart_response([(part_type, chunks)], mtype, f"; transfer-syntax={ts}")


def video_chunks(src: FrameSource) -> Iterator[bytes]:
    """Every fragment of the pixel data once, in order (the video stream)."""
    try:
        seen: set[tuple[int, int]] = set()
        frags = src.index.fragments or tuple(
            ((o, n),) for o, n in zip(src.index.offsets, src.index.lengths, strict=True)
        )
        for group in frags:
            for off, ln in group:
                if (off, ln) in seen:
                    continue
                seen.add((off, ln))
                src.fp.seek(off)
                left = ln
                while left > 0:
                    data = src.fp.read(min(left, 1 << 20))
                    if not data:
                        return
                    left -= len(data)
                    yield data
    finally:
        src.close()
