"""Which table a STOW-RS / C-STORE storage root belongs to: one table per folder.

The storage root holds the files STOW-RS and C-STORE received (``{Study}/{Series}/{SOP}.dcm``),
the request spools (``.incoming``, cleaned when a server starts) and the DIMSE journal of
rows not yet committed (``.dimse``, replayed into the table when a server starts); several
servers of one table may share it (each spool and journal is locked by its writer, and a
start-up takes only unlocked ones: :mod:`pixels.web.spool`). Two tables sharing one (the
default ``stow`` next to two table folders in one parent, or ``./stow`` for two table
URLs) would corrupt each other: a new version of an instance stored for one table
replaces the file the other's row describes, and a killed server's journal of one table
is replayed into the other. So the first write records the table in ``{root}/.pixels-table``
(:func:`claim`), and a server for another table refuses to start on that root
(:func:`check`), naming both and ``--storage-root``.
"""

from __future__ import annotations

import os

from pixels.durable import Durable
from pixels.errors import PixelsError

__all__ = ["OWNER_FILE", "StorageRootError", "check", "claim"]

#: The file in a storage root naming the table it belongs to (its URI, one line).
OWNER_FILE = ".pixels-table"


class StorageRootError(PixelsError):
    """The storage root belongs to another table."""


def _owner(root: str) -> str | None:
    try:
        with open(os.path.join(root, OWNER_FILE), encoding="utf-8") as fh:
            return fh.read().strip() or None
    except FileNotFoundError:
        return None


def check(root: str, table_uri: str) -> None:
    """Raise :class:`StorageRootError` when ``root`` belongs to a table other than
    ``table_uri`` (a root no table has claimed yet passes: nothing is written).

    Raises
    ------
    StorageRootError
        Naming the root, its table and this one.
    """
    try:
        owner = _owner(root)
    except OSError as e:
        raise StorageRootError(str(e), os.path.join(root, OWNER_FILE)) from e
    if owner is not None and owner != table_uri:
        raise StorageRootError(
            f"the storage root {root} holds the received files of the table {owner}, not "
            f"{table_uri}: give this table its own folder with --storage-root"
        )


def claim(root: str, table_uri: str) -> None:
    """Make ``root`` (if missing) and record ``table_uri`` as its table, unless it is
    recorded already (then :func:`check`); safe when several processes of one table
    claim it at once. The record is durable when this returns (its data, its entry in
    ``root`` and ``root``'s in its parent: :class:`pixels.durable.Durable`): after a
    power loss a root with received files still names its table.

    Raises
    ------
    StorageRootError
        When ``root`` belongs to another table.
    """
    marker = os.path.join(root, OWNER_FILE)
    if not os.path.exists(marker):
        os.makedirs(root, exist_ok=True)
        try:  # (never replaces another process' claim; one still writing reads as none)
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(table_uri + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            Durable(root).named(marker)
    check(root, table_uri)
