"""``fsync`` of what is acknowledged: a file and the folder entries naming it.

A file survives a power loss only when its data (``fsync`` of the file) and its name
(``fsync`` of the folder holding it: a rename or a creation is an entry of that folder)
are on disk, and a folder made for it only when its own entry in its parent is too. The
C-STORE sink (:class:`pixels.dimse.receive.StoreSink`) calls :meth:`Durable.placed` for
each stored file and its journal before the success status is sent; a local catalog
table (:mod:`pixels.table.durability`) for each commit's log entry and data files
before :meth:`pixels.table.CatalogTable.append` returns. (A ground-layer module: the
table and the receive paths above it share it.)

Examples
--------
>>> import os, tempfile
>>> root = tempfile.mkdtemp()
>>> os.makedirs(os.path.join(root, "study", "series"))
>>> path = os.path.join(root, "study", "series", "a.dcm")
>>> open(path, "wb").close()
>>> durable = Durable(root)
>>> durable.placed(path)  # the file, series/, then (once each) study/, the root, its parent
"""

from __future__ import annotations

import os

__all__ = ["Durable", "sync"]


def sync(path: str, folder: bool = False) -> None:
    """``fsync`` the file (or, ``folder``, the folder) at ``path``: its data, or its entries.

    Raises
    ------
    OSError
        Naming ``path`` (an ``fsync`` error alone names no file).
    """
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if folder else 0))
    try:
        os.fsync(fd)
    except OSError as e:
        raise OSError(e.errno, f"fsync failed: {e.strerror}", path) from e
    finally:
        os.close(fd)


class Durable:
    """Makes files placed under ``root`` durable: each file, the folder naming it, and once
    per folder its entry in its parent, up to ``root``'s own entry (a folder of a study
    made meanwhile, or the root made at the first write, is named by its parent only once
    that parent is synced). Thread-safe: a folder counts as
    done only after its parent's ``fsync`` returned (two threads may both sync it)."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        self._done: set[str] = set()

    def placed(self, path: str, *, synced: bool = False) -> None:
        """Make the file at ``path`` durable (its data unless ``synced``: the caller did,
        on its own descriptor), then :meth:`named`."""
        if not synced:
            sync(path)
        self.named(path)

    def named(self, path: str) -> None:
        """Make the entry naming ``path`` durable: its folder, and that folder's own entries
        up to :attr:`root`'s in its parent (each once)."""
        folder = os.path.dirname(os.path.abspath(path))
        sync(folder, folder=True)
        while folder not in self._done and (
            folder == self.root or folder.startswith(self.root + os.sep)
        ):
            parent = os.path.dirname(folder)
            sync(parent, folder=True)
            self._done.add(folder)
            folder = parent
