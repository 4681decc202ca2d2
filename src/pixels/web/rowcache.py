"""Catalog rows of recent WADO-RS ``/metadata`` requests, kept per table version.

A ``/metadata`` request of a small series spends most of its time finding and
reading its few rows (a DuckDB query over the index, a Parquet row group read),
more than Orthanc takes to read and encode the instance's file. The rows of one
table version never change (:class:`~pixels.web.index.Snapshot` is immutable), so
the rows of recent requests are kept, least recently used first out, up to a
bound on the characters of ``meta`` held; the next version's snapshot starts
empty (the cache belongs to the snapshot object and goes with it).
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

__all__ = ["DEFAULT_BUDGET", "RowCache", "cached_rows"]

#: Characters of ``meta`` (about bytes: DICOM JSON is mostly ASCII) kept per snapshot.
DEFAULT_BUDGET = 64 << 20

Key = tuple[str, str | None, str | None, str]
Rows = list[dict[str, Any]]


def _size(rows: Rows) -> int:
    return sum(len(r.get("meta") or "") + 256 for r in rows)


class RowCache:
    """A least-recently-used map ``key -> rows`` bounded by :func:`_size` (thread safe).

    Rows are handed out as they were stored: callers must not change them
    (``/metadata`` only reads them).
    """

    def __init__(self, budget: int = DEFAULT_BUDGET):
        self.budget = budget
        self.size = 0
        self._items: OrderedDict[Key, tuple[Rows, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Key, load: Callable[[], Rows]) -> Rows:
        """The rows of ``key``, from ``load()`` when not held (then kept if they fit)."""
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit[0]
        rows = load()
        size = _size(rows)
        if size > self.budget // 4:  # one large series must not flush all others
            return rows
        with self._lock:
            if key not in self._items:
                self._items[key] = (rows, size)
                self.size += size
                while self.size > self.budget:
                    _, (_, dropped) = self._items.popitem(last=False)
                    self.size -= dropped
        return rows

    def __len__(self) -> int:
        return len(self._items)


_CACHES: weakref.WeakKeyDictionary[Any, RowCache] = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def cached_rows(snapshot: Any, key: Key, load: Callable[[], Rows]) -> Rows:
    """The rows of ``key`` in ``snapshot``'s cache (made on first use), loading them if needed."""
    cache = _CACHES.get(snapshot)
    if cache is None:
        with _CACHES_LOCK:
            cache = _CACHES.get(snapshot)
            if cache is None:
                cache = _CACHES[snapshot] = RowCache()
    return cache.get(key, load)
