"""Spool files locked by the process writing them, and the clean-up that spares live ones.

What arrives by STOW-RS or C-STORE is written under ``{storage_root}/.incoming`` first
(a request body, a part, a received data set) and renamed into place or removed when
done; the DIMSE journal of rows not yet committed (``{storage_root}/.dimse``) likewise
lives until its commit is in. Several processes of one table may share a storage root
(``pixels serve`` and ``pixels dimse scp``, or two of either), and each cleans up at
start what a killed one left. So each such file is locked (exclusive) by the process
writing it from its creation (:func:`create`) until it is renamed away or removed
(:meth:`Spool.release`), and a clean-up takes only files it can lock itself
(:func:`locked_leftovers`, :func:`clean`): a live writer's lock stops it, a killed
writer's lock went with its process.

The lock is an open file description lock (:func:`pixels.locks.lock_file`: why not a
``flock``, which on NFS is the process's and would drop when the STOW path closes
another descriptor of a spooled body it mapped, or the sink one of a received file), so
the clean-up opens a file read-write to lock it. Where a lock cannot be taken for
another reason than another holder (``ENOLCK``: an NFS mount without a lock manager; a
file not ours to write, a read-only mount), the clean-up cannot tell a live writer's
file from a killed one's: it keeps the file and logs a warning naming it and the
error (:func:`locked_leftovers`). (A version of Pixels before these locks, running on
the same storage root, took ``flock`` locks: on a local file system the two kinds do
not see each other; stop it before starting this one.)
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import tempfile
from collections.abc import Iterator

from pixels.locks import HELD, lock_file

__all__ = ["INCOMING", "Spool", "clean", "create", "locked_leftovers"]

LOG = logging.getLogger("pixels.web")

#: The folder of a storage root that received data is spooled in before it is placed.
INCOMING = ".incoming"


#: Files the clean-up passes over without a word (gone, a link, a folder, a device).
_NOT_FILES = frozenset({errno.ENOENT, errno.ELOOP, errno.EISDIR, errno.ENXIO})


class Spool:
    """A new file locked by this process (:func:`create`): :attr:`fd` to write it (the
    caller's to close), :attr:`path`, and a lock held until :meth:`release`.

    Closing :attr:`fd` keeps the lock: it is held by a descriptor of its own.
    """

    def __init__(self, fd: int, path: str, lock: int):
        self.fd = fd
        self.path = path
        self._lock = lock

    def release(self) -> None:
        """Drop the lock (once the file was renamed away or removed); idempotent."""
        if self._lock >= 0:
            with contextlib.suppress(OSError):
                os.close(self._lock)
            self._lock = -1

    def discard(self) -> None:
        """Remove the file if it is still there, then :meth:`release`."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self.release()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def create(folder: str, *, prefix: str = "tmp", suffix: str = "") -> Spool:
    """A new file in ``folder`` (made if missing), named as :func:`tempfile.mkstemp` names
    one, locked before it is used: a clean-up that took the file between its creation
    and the lock has removed it, and another is made."""
    while True:
        try:
            fd, path = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=suffix)
        except FileNotFoundError:
            os.makedirs(folder, exist_ok=True)
            fd, path = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=suffix)
        lock = -1
        try:
            lock = os.dup(fd)  # (mkstemp's is read-write: the lock may be exclusive)
            lock_file(lock)
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return Spool(fd, path, lock)
        except FileNotFoundError:
            pass  # removed by a clean-up before the lock: try another
        except BaseException:  # (no descriptor left to lock with...): nothing stays
            _undo(fd, lock, path)
            raise
        _undo(fd, lock, None)


def _undo(fd: int, lock: int, path: str | None) -> None:
    """Close a spool's descriptors (``lock`` -1: none), removing ``path`` first when given
    (made but never locked: not left for a later clean-up)."""
    if path is not None:
        with contextlib.suppress(OSError):
            os.unlink(path)
    for held in (fd, lock):
        if held >= 0:
            with contextlib.suppress(OSError):
                os.close(held)


@contextlib.contextmanager
def locked_leftovers(folder: str, suffix: str = "") -> Iterator[list[tuple[str, int]]]:
    """The files in ``folder`` (ending in ``suffix``) no live process holds, each locked
    here while the block runs (path, a descriptor open for reading and writing), sorted
    by name; the locks are dropped after it. A missing folder has none. A file whose lock
    cannot be taken for another reason than a holder (module docstring) is left out
    and a warning names it: whether a live process writes it cannot be known."""
    held: list[tuple[str, int]] = []
    try:
        try:
            names = sorted(n for n in os.listdir(folder) if n.endswith(suffix))
        except FileNotFoundError:
            names = []
        for name in names:
            path = os.path.join(folder, name)
            try:  # (read-write: an exclusive lock of a read-only descriptor fails on NFS)
                fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError as e:
                _unsure(path, e)
                continue
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                continue
            try:
                lock_file(fd, wait=False)
            except OSError as e:  # a live writer holds it, or no lock can be had here
                os.close(fd)
                _unsure(path, e)
                continue
            held.append((path, fd))
        yield held
    finally:
        for _, fd in held:
            os.close(fd)


def _unsure(path: str, error: OSError) -> None:
    """Say why a file the clean-up could not lock is kept (silent for a live writer's
    lock and for what is no file of ours: gone, a link, a folder)."""
    if error.errno in HELD or error.errno in _NOT_FILES:
        return
    LOG.warning(
        "%s kept: it cannot be locked here (%s), so whether a live process still writes it "
        "is unknown; remove it by hand once no server of this table runs",
        path,
        error,
    )


def clean(folder: str) -> list[str]:
    """Remove the files in ``folder`` that no live process holds (what killed writers
    left); the removed paths. Files being written by live processes stay."""
    removed = []
    with locked_leftovers(folder) as leftovers:
        for path, _ in leftovers:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # (still locked here: no writer can be verifying it)
                removed.append(path)
    return removed
