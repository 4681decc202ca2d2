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
from typing import NamedTuple

import duckdb
import numpy as np
import numpy.typing as npt

__all__ = ["SopKeys"]

#: Additions held apart from the base array before they are merged into it.
_DELTA_MIN = 1 << 16
#: Hashes per bucket of the base array's directory, on average.
_PER_BUCKET = 8

Hashes = npt.NDArray[np.uint64]
Offsets = npt.NDArray[np.int64]


def _empty() -> Hashes:
    return np.empty(0, dtype=np.uint64)


def _buckets(hashes: Hashes, shift: int) -> npt.NDArray[np.intp]:
    """The bucket of each hash: its top ``64 - shift`` bits (all in bucket 0 for 64)."""
    if shift >= 64:
        return np.zeros(len(hashes), dtype=np.intp)
    return (hashes >> np.uint64(shift)).astype(np.intp)


class _Sorted(NamedTuple):
    """A sorted array of hashes and its directory: where each bucket of hashes sharing
    their top ``64 - shift`` bits starts (``starts[b]`` to ``starts[b + 1]``).

    A binary search over 10M hashes reads ~23 places of an 80 MB array, each a cache
    miss (~20 ms for a 10k-row commit); the directory narrows each search to one bucket
    of ~8 hashes (a cache line or two) first.
    """

    hashes: Hashes
    starts: Offsets
    shift: int

    @classmethod
    def of(cls, hashes: Hashes) -> _Sorted:
        """``hashes`` (sorted) with their directory."""
        bits = max(0, min(32, int(np.log2(max(1, len(hashes) // _PER_BUCKET)))))
        shift = 64 - bits
        counts = np.bincount(_buckets(hashes, shift), minlength=1 << bits)
        starts = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=starts[1:])
        return cls(hashes, starts, shift)

    def holds(self, hashes: Hashes) -> npt.NDArray[np.bool_]:
        """Per hash of ``hashes``: whether the array holds it."""
        arr, n = self.hashes, len(self.hashes)
        if n == 0 or len(hashes) == 0:
            return np.zeros(len(hashes), dtype=bool)
        bucket = _buckets(hashes, self.shift)
        lo, hi = self.starts[bucket], self.starts[bucket + 1]
        # the first place in its bucket whose hash is not below it (vectorised search)
        while True:
            active = lo < hi
            if not active.any():
                break
            mid = (lo + hi) >> 1
            below = active & (arr[np.minimum(mid, n - 1)] < hashes)
            lo = np.where(below, mid + 1, lo)
            hi = np.where(active & ~below, mid, hi)
        return arr[np.minimum(lo, n - 1)] == hashes


class SopKeys:
    """A superset of the SOP hashes (``sh``) in the index's ``inst_all`` (see the module),
    or of another hash column the query names (the index's series and study hashes:
    :attr:`pixels.web.index.TableIndex.series_keys`, ``study_keys``)."""

    def __init__(self, query: str = "SELECT sh FROM ix.inst_all") -> None:
        #: the query :meth:`load` reads the hashes with (its one column)
        self._query = query
        self._base = _Sorted.of(_empty())
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
        """Read every hash the query gives (``ix.inst_all``'s SOP hashes by default; in
        a thread of its own when ``background``).

        Callers must not commit to the index until :meth:`ready` returns (the update
        waits for it), so that the hashes read are all the committed ones.
        """
        self._ready.clear()
        self._failed = False
        cur = con.cursor()

        def run() -> None:
            try:
                got = cur.execute(self._query).fetchnumpy()
                column = np.asarray(next(iter(got.values())), dtype=np.uint64)
                base = _Sorted.of(np.sort(column))
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
        return len(self._base.hashes) + len(self._delta)

    def maybe_held(self, hashes: Hashes) -> npt.NDArray[np.bool_]:
        """Per hash: True when a row may hold it (always True when the load failed)."""
        if not self.ready():
            return np.ones(len(hashes), dtype=bool)
        with self._swap:
            base, delta = self._base, self._delta
        hashes = np.asarray(hashes, dtype=np.uint64)
        out = base.holds(hashes)
        if len(delta):
            pos = np.searchsorted(delta, hashes)
            pos[pos == len(delta)] = 0
            out |= delta[pos] == hashes
        return out

    def add(self, hashes: Hashes) -> None:
        """Hold ``hashes`` too (the rows of a commit; after a load in progress, which
        would replace them)."""
        if not len(hashes):
            return
        self._ready.wait()
        base, delta = self._base, np.sort(np.concatenate([self._delta, hashes.astype(np.uint64)]))
        if len(delta) > max(_DELTA_MIN, len(base.hashes) >> 4):
            merged = np.insert(base.hashes, np.searchsorted(base.hashes, delta), delta)
            base, delta = _Sorted.of(merged), _empty()
        with self._swap:
            self._base, self._delta = base, delta

    def removed(self, rows: int) -> bool:
        """Count ``rows`` removed from the index (their hashes stay); True when the stale
        hashes are more than a quarter of those held and the arrays should be made again."""
        self._stale += rows
        return self._stale > max(_DELTA_MIN, len(self) >> 2)
