"""Read-ahead of a task's local files: the disk reads the next files while one is parsed.

A catalog worker reads small local files whole, one after the other (one ``read``
each). When they are not in the page cache, each read waits for the disk alone, so
the worker stalls on every file while the disk serves one small request at a time.
:class:`ReadAhead` opens the next :data:`READ_AHEAD_FILES` files of a task and asks
the kernel for their bytes at once (``posix_fadvise(POSIX_FADV_WILLNEED)``, which
queues the reads and returns): the disk gets many requests together (adjacent files
merge into larger reads) and the parser finds most files already in memory. The
worker then reads each file through the descriptor opened ahead: the read-ahead
costs one ``posix_fadvise`` per file, no extra ``open``.

Memory stays bounded: at most :data:`READ_AHEAD_FILES` descriptors, and pages the
kernel may drop like any other cached page.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence

from pixels.sources.local import os_path
from pixels.sources.ref import FileRef

#: Files opened and advised ahead of the one being read.
READ_AHEAD_FILES = 32

_WILLNEED = getattr(os, "POSIX_FADV_WILLNEED", None)


class ReadAhead:
    """Descriptors of the next files of ``refs``, opened with their reads already queued.

    Parameters
    ----------
    refs : sequence of FileRef
        The files of a task, in the order they are read.
    wanted : callable
        Whether a ref is a local file read whole (the others are left to their opener).
    depth : int
        Files opened ahead of the one taken.

    Examples
    --------
    >>> with ReadAhead(refs, lambda r: r.local_path is not None) as ahead:  # doctest: +SKIP
    ...     for i, ref in enumerate(refs):
    ...         fd = ahead.take(i)   # an open descriptor at offset 0, or None
    ...         ...                  # read it, then os.close(fd)
    """

    def __init__(
        self,
        refs: Sequence[FileRef],
        wanted: Callable[[FileRef], bool],
        depth: int = READ_AHEAD_FILES,
    ) -> None:
        self.refs = refs
        self.wanted = wanted
        self.depth = max(0, depth)
        self._fds: dict[int, int] = {}
        self._next = 0  # next index to open
        self._fill(-1)  # files 0 .. depth - 1

    def _fill(self, current: int) -> None:
        """Open and advise the files up to ``current + depth``."""
        end = min(len(self.refs), current + 1 + self.depth)
        while self._next < end:
            i = self._next
            self._next += 1
            ref = self.refs[i]
            if ref.error or ref.local_path is None or not self.wanted(ref):
                continue
            try:
                fd = os.open(os_path(ref.local_path), os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue  # its reader opens it again and names what is wrong
            if _WILLNEED is not None:
                with contextlib.suppress(OSError):  # advice only
                    os.posix_fadvise(fd, 0, 0, _WILLNEED)
            self._fds[i] = fd

    def take(self, i: int) -> int | None:
        """The open descriptor of file ``i`` (the caller closes it), or None; queues the next.

        None when the file is not wanted or could not be opened ahead: its reader
        opens it as it would without read-ahead.
        """
        fd = self._fds.pop(i, None)
        self._fill(i)
        return fd

    def close(self) -> None:
        """Close the descriptors not taken (a task that ended early)."""
        fds, self._fds = self._fds, {}
        for fd in fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
