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

import re
import sys
import threading
import warnings
from collections.abc import Callable
from types import FrameType
from typing import Any, TypeVar

#: Entries kept per file: a file with thousands of bad values costs a bounded row.
MAX_PER_FILE = 20
#: Characters kept of one message.
MAX_LENGTH = 300
_SEE_ALSO = re.compile(r"\s*Please see <[^>]*>.*$", re.DOTALL)
_TURN = threading.RLock()
_T = TypeVar("_T")
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


class _Kept:
    """The warnings of one ``kept_warnings`` block (see :func:`_show`): its thread, and
    the ``showwarning`` in place outside the blocks (for the warnings not its file's)."""

    __slots__ = ("dropped", "kept", "outside", "seen", "thread")

    def __init__(self) -> None:
        self.kept: list[str] = []
        self.seen: set[str] = set()
        self.dropped = 0
        self.thread = threading.get_ident()
        self.outside: Any = None


#: The open blocks, innermost last (only the thread holding :data:`_TURN` touches it).
_OPEN: list[_Kept] = []
#: Threads working for a block's thread (:func:`on_behalf`): their ident -> that thread's.
_CARRIED: dict[int, int] = {}


def on_behalf(fn: Callable[..., _T]) -> Callable[..., _T]:
    """``fn``, to be run in other threads (a pool's) for the file this thread reads inside
    :func:`kept_warnings`: the warnings it raises there are that file's, kept in this
    thread's block (other threads' go where they went outside the blocks). ``fn`` itself
    when this thread has no block open."""
    owner = threading.get_ident()
    if not (_OPEN and _OPEN[-1].thread == owner):
        return fn

    def run(*args: Any, **kwargs: Any) -> _T:
        me = threading.get_ident()
        _CARRIED[me] = owner
        try:
            return fn(*args, **kwargs)
        finally:
            _CARRIED.pop(me, None)

    return run


def _show(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """``warnings.showwarning`` inside :func:`kept_warnings`: to the innermost block's list.

    Not the file's, so not kept: a warning of another thread (``showwarning`` is the
    process'; decided by the filters in place outside the block, it goes where it went
    outside the blocks) unless that thread works for the block's (:func:`on_behalf`), and a
    ``ResourceWarning`` (an unclosed socket or file of anyone's, finalized by a garbage
    collection that happened to run during the read; Python ignores them by default).
    """
    into = _OPEN[-1] if _OPEN else None  # (another thread's warning as the last block ends)
    if into is None:
        return
    me = threading.get_ident()
    if _CARRIED.get(me, me) != into.thread:  # (its filters let it through: shown as outside)
        if into.outside is not None:
            into.outside(message, category, filename, lineno, file, line)
        return
    if issubclass(category, ResourceWarning):
        return
    text = _clean(str(message))
    tag = _tag_on_stack(sys._getframe(1))
    if tag is not None and not text.startswith("("):
        text = f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {text}"
    if text in into.seen:
        return
    into.seen.add(text)
    if len(into.kept) < MAX_PER_FILE:
        into.kept.append(text)
    else:
        into.dropped += 1


class _BlockThread:
    """The ``message`` pattern of the filter a block puts first (:data:`_OWN`): it matches
    any text, but only in the thread whose block is open (or one working for it,
    :func:`on_behalf`). Another thread's warning passes over it to the filters that were
    in place before the block: ignored, shown once or every time as they say."""

    def match(self, text: str) -> bool:
        me = threading.get_ident()
        return bool(_OPEN) and _OPEN[-1].thread == _CARRIED.get(me, me)


#: The filter a block puts first: every warning of the block's thread reaches :func:`_show`.
_OWN = ("always", _BlockThread(), Warning, None, 0)


def _filters_changed() -> None:
    """Tell :mod:`warnings` its filters changed (the registries of warnings already shown
    once are cleared), as its own ``filterwarnings`` does."""
    mutated = getattr(warnings, "_filters_mutated", None) or getattr(
        warnings, "_filters_mutated_lock_held", None
    )
    if mutated is not None:
        mutated()


class kept_warnings:  # noqa: N801 - used as a function: ``with kept_warnings() as kept``
    """Collect the warnings raised inside the block instead of printing them.

    Yields the list the messages go to, in order, each prefixed with the tag
    ``(gggg,eeee)`` of the element being read when the warning was raised (where
    one is found), at most :data:`MAX_PER_FILE` (then a count of the rest), each
    repeated message once. Python's warning state is per process: threads reading
    files in one process (the DICOMweb server's STOW) take turns through this block,
    so none of them restores another's state.

    The block puts one filter first (:data:`_OWN`: "always", for its own thread only)
    and ``warnings.showwarning`` (:func:`_show`); the filters in place stay behind it
    and are not marked changed, so another thread's warnings (a server's request
    threads) are decided by them as outside the blocks (a ``DeprecationWarning`` ignored
    or shown once stays so), and the warnings Python recorded as shown once stay
    recorded. (So a warning this thread raises that was already shown once outside the
    blocks, from the same line with the same text, is not raised again: not kept.) The
    filters are restored after the block (marked changed only if they were changed
    inside it).

    A block inside another one (a catalog worker keeps one open around a task of
    many files, then one per file) only takes the warnings over while the outer
    block's settings are still in place: it costs no copy of the warning filters.
    """

    __slots__ = ("_filters", "_installed", "_into", "_shown")

    def __init__(self) -> None:
        self._into = _Kept()
        self._filters: Any = None  # (the list in place before: typeshed says Sequence)
        self._installed: list[Any] = []
        self._shown: Any = None

    def __enter__(self) -> list[str]:
        _TURN.acquire()
        try:
            if not (_OPEN and warnings.showwarning is _show and warnings.filters[:1] == [_OWN]):
                self._into.outside = self._shown = warnings.showwarning
                self._filters = warnings.filters
                self._installed = [_OWN, *list(self._filters)]
                warnings.filters = list(self._installed)
                warnings.showwarning = _show
            else:
                self._into.outside = _OPEN[-1].outside
            _OPEN.append(self._into)
        except BaseException:
            _TURN.release()
            raise
        return self._into.kept

    def __exit__(self, *exc: Any) -> None:
        try:
            into = _OPEN.pop()
            if into.dropped:
                into.kept.append(f"... and {into.dropped} more warnings")
            if self._filters is not None:
                changed = warnings.filters != self._installed
                warnings.filters = self._filters
                warnings.showwarning = self._shown
                if changed:  # (changed inside the block: what was recorded under them goes)
                    _filters_changed()
        finally:
            _TURN.release()


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


#: Kinds of warning a run's summary tells apart (then ``"other"``).
MAX_WARNING_KINDS = 20


def tally_warnings(kinds: dict[str, list[Any]], path: str, found: list[str]) -> None:
    """Count one file's kept warnings into a run's ``kinds``: kind -> ``[files, example
    paths]`` (at most :data:`MAX_WARNING_KINDS` kinds, then ``"other"``; 3 paths each).

    Examples
    --------
    >>> kinds: dict = {}
    >>> tally_warnings(kinds, "a.dcm", ["(0020,0013) Invalid value for VR IS: '1A'"])
    >>> kinds
    {'Invalid value for VR IS': [1, ['a.dcm']]}
    """
    for kind in dict.fromkeys(warning_kind(w) for w in found):
        if kind not in kinds and len(kinds) >= MAX_WARNING_KINDS:
            kind = "other"
        held = kinds.setdefault(kind, [0, []])
        held[0] += 1
        if len(held[1]) < 3:
            held[1].append(path)
