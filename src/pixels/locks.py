"""Exclusive locks held by an open file, not by the process: NFS-safe, as ``flock`` is locally.

Pixels locks files that several processes (or threads) of one table share: the spools and
journals of a storage root (:mod:`pixels.web.spool`) and a local table's writer lock
(:meth:`pixels.table.CatalogTable._writer_lock`). A ``flock`` would do on a local file
system, but on NFS Linux emulates ``flock`` with POSIX record locks, which are the
process's: closing *any* descriptor of the file in the process drops the lock, two
descriptors of one process never conflict (two writers of one process both "hold" it),
and an exclusive one on a descriptor opened read-only fails (``EBADF``).

So :func:`lock_file` takes an open file description lock (Linux ``F_OFD_SETLK``; a
``flock`` where the platform has none): one per open file description, as ``flock`` is
locally (conflicting within a process too, dropped with the last descriptor of that
open, or by :func:`unlock_file`), and shared with the other hosts of an NFS mount (NLM /
NFSv4 locks). The file must be open for writing. (On a local file system ``flock`` and
these locks do not see each other: a Pixels from before these locks, running on the
same files, must be stopped first.)

Examples
--------
>>> import os, tempfile
>>> fd, path = tempfile.mkstemp()
>>> lock_file(fd, wait=False)
>>> other = os.open(path, os.O_RDWR)
>>> try:
...     lock_file(other, wait=False)
... except BlockingIOError:
...     print("held")
held
>>> unlock_file(fd)
>>> lock_file(other, wait=False)
>>> for d in (fd, other):
...     os.close(d)
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import sys

__all__ = ["HELD", "lock_file", "unlock_file"]

#: ``struct flock`` of a lock of the whole file (64-bit Linux: l_type, l_whence, l_start,
#: l_len, l_pid 0 as open file description locks require).
_FLOCK = "hhqqi4x"
#: Open file description locks where this platform has them (non-blocking, blocking).
_OFD = (
    (fcntl.F_OFD_SETLK, fcntl.F_OFD_SETLKW)
    if sys.platform == "linux" and hasattr(fcntl, "F_OFD_SETLK") and struct.calcsize("P") == 8
    else None
)
#: What a lock taken by another gives (anything else: this file system cannot lock it).
HELD = frozenset({errno.EAGAIN, errno.EACCES})


def lock_file(fd: int, wait: bool = True) -> None:
    """Lock the file open (read-write) at ``fd`` exclusively, for that open file
    description (module docstring): until :func:`unlock_file` or its last descriptor is
    closed. ``wait`` False: raise :class:`BlockingIOError` at once when another holds it.

    Raises
    ------
    BlockingIOError
        ``wait`` False and another open file description holds a lock of the file.
    OSError
        No lock can be had here (``ENOLCK``: NFS without a lock manager; ``EBADF``: not
        open for writing).
    """
    if _OFD is None:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        return
    whole = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
    try:
        fcntl.fcntl(fd, _OFD[1] if wait else _OFD[0], whole)
    except OSError as e:
        if e.errno in HELD and not isinstance(e, BlockingIOError):
            raise BlockingIOError(e.errno, e.strerror) from e
        raise


def unlock_file(fd: int) -> None:
    """Drop the lock :func:`lock_file` took through ``fd`` (also for the other processes
    sharing its open file description: a child forked meanwhile)."""
    if _OFD is None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return
    fcntl.fcntl(fd, _OFD[0], struct.pack(_FLOCK, fcntl.F_UNLCK, os.SEEK_SET, 0, 0, 0))
