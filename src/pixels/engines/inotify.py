"""Linux inotify through ctypes: which files of a folder tree changed, as they change.

No dependency: ``inotify_init1``/``inotify_add_watch``/``inotify_rm_watch`` from the
C library, events read from the descriptor. :func:`available` says whether this
platform has it. Used by :mod:`pixels.engines.watch`, which polls where there is
no inotify (other systems, network mounts whose changes made elsewhere no local
kernel sees).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import select
import struct
import sys
from dataclasses import dataclass

from pixels.errors import PixelsError

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_ISDIR = 0x40000000

#: What a watched folder reports: files written, moved in or out, created, deleted.
WATCH_MASK = (
    IN_MODIFY
    | IN_ATTRIB
    | IN_CLOSE_WRITE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_CREATE
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_MOVE_SELF
    | IN_ONLYDIR
)

_EVENT = struct.Struct("iIII")
_NONBLOCK = 0o4000
_CLOEXEC = 0o2000000


class WatchLimitError(PixelsError):
    """The kernel refused another watch (``fs.inotify.max_user_watches``)."""


@dataclass(frozen=True, slots=True)
class Event:
    """One inotify event: the watch, what happened, and the entry's name (bytes)."""

    wd: int
    mask: int
    cookie: int
    name: bytes


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.inotify_init1  # noqa: B018 - raises AttributeError where absent
    except (OSError, AttributeError):
        return None
    return libc


def available() -> bool:
    """Whether this platform has inotify (Linux with a C library that exports it)."""
    return _libc() is not None


class Inotify:
    """One inotify instance: add and remove folder watches, read events.

    Raises
    ------
    PixelsError
        When inotify is not available or the instance cannot be created.
    """

    def __init__(self) -> None:
        libc = _libc()
        if libc is None:
            raise PixelsError("inotify is not available on this platform")
        self._libc = libc
        fd = libc.inotify_init1(_NONBLOCK | _CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise PixelsError(f"inotify_init1 failed: {os.strerror(err)}")
        self.fd: int = fd

    def add(self, path: str) -> int | None:
        """Watch folder ``path``; its watch descriptor, or None when it is gone or not a folder.

        Raises
        ------
        WatchLimitError
            When the kernel's limit on watches is reached.
        """
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(path), WATCH_MASK)
        if wd >= 0:
            return int(wd)
        err = ctypes.get_errno()
        if err == errno.ENOSPC:
            raise WatchLimitError(
                f"{path}: the kernel's limit on inotify watches is reached "
                "(fs.inotify.max_user_watches)"
            )
        return None  # ENOENT, ENOTDIR, EACCES: nothing to watch there

    def remove(self, wd: int) -> None:
        """Stop watching ``wd`` (no error when the kernel dropped it already)."""
        self._libc.inotify_rm_watch(self.fd, wd)

    def read(self, timeout: float) -> list[Event]:
        """Events that arrive within ``timeout`` seconds (an empty list when none)."""
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if not ready:
            return []
        try:
            data = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return []
        out = []
        pos = 0
        while pos + _EVENT.size <= len(data):
            wd, mask, cookie, size = _EVENT.unpack_from(data, pos)
            pos += _EVENT.size
            name = data[pos : pos + size].rstrip(b"\0")
            pos += size
            out.append(Event(wd, mask, cookie, name))
        return out

    def close(self) -> None:
        """Close the descriptor (every watch goes with it)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
