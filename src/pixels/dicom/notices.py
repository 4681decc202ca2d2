"""Warnings raised while reading one file, kept for its row instead of printed.

pydicom warns (``warnings.warn``) about files it can still read: a value that is
not valid for its VR (``Invalid value for VR IS: '1A'``), a data set whose
implicit/explicit VR differs from its transfer syntax. Printed, they land on top
of a progress bar, from every worker process, and name neither the file nor the
element. :func:`kept_warnings` collects them while one file is read instead:
each message gets the tag ``(gggg,eeee)`` of the element pydicom was reading
(found on the stack at the moment of the warning) and becomes one entry of the
row's ``warnings`` column; :func:`warning_kind` groups them for a run's summary.

Examples
--------
>>> import warnings
>>> with kept_warnings() as kept:
...     warnings.warn("Invalid value for VR IS: '1A'")
>>> kept
["Invalid value for VR IS: '1A'"]
>>> warning_kind(kept[0])
'Invalid value for VR IS'
"""

from __future__ import annotations

import contextlib
import re
import sys
import threading
import warnings
from collections.abc import Iterator
from types import FrameType
from typing import Any

#: Entries kept per file: a file with thousands of bad values costs a bounded row.
MAX_PER_FILE = 20
#: Characters kept of one message.
MAX_LENGTH = 300
_SEE_ALSO = re.compile(r"\s*Please see <[^>]*>.*$", re.DOTALL)
_TURN = threading.RLock()
_TAG_NAMES = ("raw_data_element", "raw", "elem", "data_element", "element")


def _tag_of(value: Any) -> int | None:
    if isinstance(value, int) and 0 <= value <= 0xFFFFFFFF:
        return value
    tag = getattr(value, "tag", None)
    if isinstance(tag, int) and 0 <= tag <= 0xFFFFFFFF:
        return tag
    return None


def _tag_on_stack(frame: FrameType | None) -> int | None:
    """The innermost element tag held by a frame of the warning's call stack."""
    depth = 0
    while frame is not None and depth < 40:
        local = frame.f_locals
        for name in _TAG_NAMES:
            if name in local and (tag := _tag_of(local[name])) is not None:
                return tag
        if "tag" in local and (tag := _tag_of(local["tag"])) is not None:
            return tag
        frame = frame.f_back
        depth += 1
    return None


def _clean(message: str) -> str:
    text = _SEE_ALSO.sub("", message).strip()
    return text if len(text) <= MAX_LENGTH else text[: MAX_LENGTH - 3] + "..."


@contextlib.contextmanager
def kept_warnings() -> Iterator[list[str]]:
    """Collect the warnings raised inside the block instead of printing them.

    Yields the list the messages go to, in order, each prefixed with the tag
    ``(gggg,eeee)`` of the element being read when the warning was raised (where
    one is found), at most :data:`MAX_PER_FILE` (then a count of the rest), each
    repeated message once. Python's warning state is per process: threads reading
    files in one process (the DICOMweb server's STOW) take turns through this block,
    so none of them restores another's state.
    """
    kept: list[str] = []
    seen: set[str] = set()
    dropped = 0

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        nonlocal dropped
        text = _clean(str(message))
        tag = _tag_on_stack(sys._getframe(1))
        if tag is not None and not text.startswith("("):
            text = f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {text}"
        if text in seen:
            return
        seen.add(text)
        if len(kept) < MAX_PER_FILE:
            kept.append(text)
        else:
            dropped += 1

    with _TURN, warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        try:
            yield kept
        finally:
            if dropped:
                kept.append(f"... and {dropped} more warnings")


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_TAG = re.compile(r"\(\s*[0-9A-Fa-f]{4},\s*[0-9A-Fa-f]{4}\)\s*")
_NUMBER = re.compile(r"\b\d+(\.\d+)?\b")


def warning_kind(message: str) -> str:
    """What a kept warning is about, without the values, tag or path (for summaries).

    Examples
    --------
    >>> warning_kind("(0020,0013) Invalid value for VR IS: '1A'")
    'Invalid value for VR IS'
    >>> warning_kind("Expected explicit VR, but found implicit VR - using implicit VR for reading")
    'Expected explicit VR, but found implicit VR - using implicit VR for reading'
    """
    text = _TAG.sub("", message)
    text = _QUOTED.sub("", text)
    text = _NUMBER.sub("N", text)
    text = re.sub(r"\s+", " ", text).strip().rstrip(":.,; ")
    return text[:120] or "warning"
