"""Which SOP Instance UIDs the server's index may already hold: a sorted array of hashes.

An index update (:func:`pixels.web.index_tables.apply`) must find the rows already
indexed that share a SOP Instance UID with a commit's new rows (one row then
stands for the instance). Looking each up in the index's ``inst_all`` reads a
hash column of every indexed row (a second at 10M rows); a commit of new files
has none. :class:`SopKeys` answers "maybe held" or "surely not" per hash with a
binary search, so only the maybe-held ones are looked up: an update's cost grows
with the commit, not with the table.

It holds a superset of the hashes of ``inst_all`` (8 bytes per row, in NumPy
arrays: nothing per row in Python objects): hashes are added with their rows and
not removed with them (a stale hash only costs a look-up that finds nothing), and
the arrays are made again from the table when stale ones pile up. A sorted base
array and a small sorted one for recent additions, merged when the latter grows.
"""

from __future__ import annotations

import threading

import duckdb
import numpy as np
import numpy.typing as npt

__all__ = ["SopKeys"]

#: Additions held apart from the base array before they are merged into it.
_DELTA_MIN = 1 << 16

Hashes = npt.NDArray[np.uint64]


def _empty() -> Hashes:
    return np.empty(0, dtype=np.uint64)


class SopKeys:
    """A superset of the SOP hashes (``sh``) in the index's ``inst_all`` (see the module)."""

    def __init__(self) -> None:
        self._base = _empty()
        self._delta = _empty()
        self._stale = 0
        self._ready = threading.Event()
        self._ready.set()  # an empty index: nothing held, complete
        self._failed = False
        self._thread: threading.Thread | None = None
        #: held while the arrays are replaced (an index merges in a thread of its own
        #: while its next update asks :meth:`maybe_held`)
        self._swap = threading.Lock()

    def load(self, con: duckdb.DuckDBPyConnection, *, background: bool) -> None:
        """Read every hash of ``ix.inst_all`` (in a thread of its own when ``background``).

        Callers must not commit to the index until :meth:`ready` returns (the update
        waits for it), so that the hashes read are all the committed ones.
        """
        self._ready.clear()
        self._failed = False
        cur = con.cursor()

        def run() -> None:
            try:
                got = cur.execute("SELECT sh FROM ix.inst_all").fetchnumpy()["sh"]
                base = np.sort(np.asarray(got, dtype=np.uint64))
                with self._swap:
                    self._base, self._delta = base, _empty()
                self._stale = 0
            except Exception:  # every hash is then a maybe: looked up by a scan, as before
                self._failed = True
            finally:
                cur.close()
                self._ready.set()

        if background:
            self._thread = threading.Thread(target=run, name="pixels-sop-keys", daemon=True)
            self._thread.start()
        else:
            run()

    def ready(self) -> bool:
        """Wait for a load in progress; whether the hashes can be trusted."""
        self._ready.wait()
        return not self._failed

    def __len__(self) -> int:
        return len(self._base) + len(self._delta)

    def maybe_held(self, hashes: Hashes) -> npt.NDArray[np.bool_]:
        """Per hash: True when a row may hold it (always True when the load failed)."""
        if not self.ready():
            return np.ones(len(hashes), dtype=bool)
        out = np.zeros(len(hashes), dtype=bool)
        with self._swap:
            arrays = (self._base, self._delta)
        for arr in arrays:
            if len(arr):
                pos = np.searchsorted(arr, hashes)
                pos[pos == len(arr)] = 0
                out |= arr[pos] == hashes
        return out

    def add(self, hashes: Hashes) -> None:
        """Hold ``hashes`` too (the rows of a commit)."""
        if not len(hashes):
            return
        base, delta = self._base, np.sort(np.concatenate([self._delta, hashes.astype(np.uint64)]))
        if len(delta) > max(_DELTA_MIN, len(base) >> 4):
            base, delta = np.insert(base, np.searchsorted(base, delta), delta), _empty()
        with self._swap:
            self._base, self._delta = base, delta

    def removed(self, rows: int) -> bool:
        """Count ``rows`` removed from the index (their hashes stay); True when the stale
        hashes are more than a quarter of those held and the arrays should be made again."""
        self._stale += rows
        return self._stale > max(_DELTA_MIN, len(self) >> 2)
