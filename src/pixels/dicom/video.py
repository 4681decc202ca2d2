"""A DICOM video stream in a container a browser plays: H.264 / HEVC remuxed into MP4.

DICOM stores MPEG-4 AVC/H.264 and HEVC/H.265 pixel data as the codec's elementary
stream (PS3.5 A.4.5-A.4.7), with no container and no timestamps. A ``<video>``
element (the OHIF viewer's video viewport, through WADO-RS ``/rendered``) needs
an ISO base media (MP4) file. :func:`mp4_from_stream` copies the stream's packets
into a fragmented MP4 without re-encoding: timestamps come from the frame rate of
the header (Cine Rate, Frame Time, Recommended Display Frame Rate; 30 when none)
and, for streams with B-frames, from the display order found by decoding once
(the output frames are dropped, never held). Needs PyAV (``pip install av``).

Examples
--------
>>> import io                                                   # doctest: +SKIP
>>> mp4 = mp4_from_stream(io.BytesIO(h264), "1.2.840.10008.1.2.4.102", 30)
>>> mp4.read(12)[4:8]                                           # doctest: +SKIP
b'ftyp'
"""

from __future__ import annotations

import tempfile
from fractions import Fraction
from typing import Any, BinaryIO

from pixels.errors import DecodeError, MissingDecoderError

__all__ = ["MP4_SYNTAXES", "frame_rate", "mp4_from_stream"]

_H264 = {f"1.2.840.10008.1.2.4.{n}" for n in range(102, 107)}
_HEVC = {"1.2.840.10008.1.2.4.107", "1.2.840.10008.1.2.4.108"}
#: Video syntaxes whose stream can be put in an MP4 file (H.264 and HEVC, fragmentable too).
MP4_SYNTAXES = frozenset(_H264 | _HEVC | {f"{ts}.1" for ts in _H264 | _HEVC})
_SPOOL_MEMORY = 16 << 20


def frame_rate(meta: dict[str, Any]) -> Fraction:
    """Frames per second from a DICOM JSON header (Cine Rate, Frame Time, else 30)."""

    def first(tag: str) -> float | None:
        values = (meta.get(tag) or {}).get("Value") or []
        try:
            v = float(values[0])
        except (IndexError, TypeError, ValueError):
            return None
        return v if v > 0 else None

    rate = first("00180040")  # Cine Rate
    if rate is None and (ms := first("00181063")) is not None:  # Frame Time (ms)
        rate = 1000.0 / ms
    if rate is None:
        rate = first("00082144")  # Recommended Display Frame Rate
    return Fraction(rate or 30).limit_denominator(1001)


def mp4_from_stream(src: BinaryIO, transfer_syntax: str, rate: Fraction) -> BinaryIO:
    """Remux the elementary stream read from `src` into a fragmented MP4 file.

    Returns a file positioned at 0 (in memory up to 16 MiB, then on disk).

    Raises
    ------
    MissingDecoderError
        PyAV is not installed.
    DecodeError
        `transfer_syntax` is not H.264 / HEVC, or the stream holds no video packet.
    """
    try:
        import av
    except ImportError as e:
        raise MissingDecoderError("MP4 from a video stream needs PyAV: pip install av") from e
    if transfer_syntax not in MP4_SYNTAXES:
        raise DecodeError(f"transfer syntax {transfer_syntax} is not H.264 or HEVC video")
    fmt = "hevc" if transfer_syntax.split(".")[7] in ("107", "108") else "h264"
    src.seek(0)
    try:
        with av.open(src, mode="r", format=fmt) as inp:
            vin = inp.streams.video[0]
            packets = [p for p in inp.demux(vin) if p.size]
            if not packets:
                raise DecodeError("the video stream holds no packet")
            shown = _display_positions(packets, fmt)
            delay = max(0, max(i - shown[i] for i in range(len(packets))))
            out = tempfile.SpooledTemporaryFile(max_size=_SPOOL_MEMORY)  # noqa: SIM115 - returned
            with av.open(
                out,
                mode="w",
                format="mp4",
                options={"movflags": "frag_keyframe+empty_moov+default_base_moof"},
            ) as mux:
                vout = mux.add_stream_from_template(vin)
                tick = 1 / rate  # packet times count frames; the muxer rescales them
                vout.time_base = tick
                for i, p in enumerate(packets):
                    p.stream = vout
                    p.time_base = tick
                    p.dts = i - delay  # the first frame shown at 0
                    p.pts = shown[i]
                    p.duration = 1
                    mux.mux(p)
    except av.error.FFmpegError as e:
        raise DecodeError(f"cannot put the video stream in MP4: {e}") from e
    out.seek(0)
    return out  # type: ignore[return-value]


def _display_positions(packets: list[Any], fmt: str) -> list[int]:
    """Where each packet (in decode order) is shown: decode once, frames dropped."""
    import av

    dec: Any = av.CodecContext.create(fmt, "r")
    order: list[int] = []
    for i, p in enumerate(packets):
        p.pts = p.dts = i
        order += [int(f.pts) for f in dec.decode(p) if f.pts is not None]
    order += [int(f.pts) for f in dec.decode(None) if f.pts is not None]
    pos = {d: k for k, d in enumerate(order)}
    # a packet that gave no frame (corrupt, or a parameter set) keeps its decode position
    return [pos.get(i, i) for i in range(len(packets))]
