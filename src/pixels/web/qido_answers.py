"""QIDO-RS answers kept per index and table version (:mod:`pixels.web.qido`): a whole
answer by its request, and each result's JSON by the search's shape and its row."""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from typing import Any

from pixels.web.index import TableIndex

__all__ = ["Answers", "answers_of"]


class Answers:
    """The latest search answers of one index, for the table version they were made at.

    QIDO-RS clients repeat the same searches (a study list refreshed, OHIF asking for
    the same study several times): at the same version the answer is the same bytes.
    Different searches return the same studies: each result's JSON is kept too, by the
    search's shape (level, URL base, returned tags) and the row it was made of. A new
    version drops them all; the oldest go first past :data:`_ANSWERS_BYTES` (each).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._version: int | None = None
        self._kept: OrderedDict[tuple[Any, ...], tuple[bytes, dict[str, str] | None]] = (
            OrderedDict()
        )
        self._bytes = 0
        #: the JSON of single results, by search shape and result row (same version)
        self._items: OrderedDict[tuple[Any, ...], str] = OrderedDict()
        self._item_bytes = 0

    def items(
        self, version: int | None, shape: tuple[Any, ...], idents: list[tuple[Any, ...]]
    ) -> list[str | None]:
        """The kept JSON of each result (None: not kept) of a search of ``shape``."""
        with self._lock:
            if version is None or version != self._version:
                return [None] * len(idents)
            return [self._items.get((shape, i)) for i in idents]

    def keep_item(
        self, version: int | None, shape: tuple[Any, ...], ident: tuple[Any, ...], text: str
    ) -> None:
        with self._lock:
            if version is None or not self._at(version):
                return
            key = (shape, ident)
            if key not in self._items:
                self._items[key] = text
                self._item_bytes += len(text)
            while self._item_bytes > _ANSWERS_BYTES:
                _, dropped = self._items.popitem(last=False)
                self._item_bytes -= len(dropped)

    def _at(self, version: int) -> bool:
        """Make ``version`` the kept one (dropping what older versions left); False when
        ``version`` is older than it (nothing is kept for it)."""
        if self._version == version:
            return True
        if self._version is not None and version < self._version:
            return False
        self._kept.clear()
        self._items.clear()
        self._bytes = self._item_bytes = 0
        self._version = version
        return True

    def get(self, key: tuple[Any, ...]) -> tuple[bytes, dict[str, str] | None] | None:
        with self._lock:
            found = self._kept.get(key)
            if found is not None:
                self._kept.move_to_end(key)
            return found

    def put(self, key: tuple[Any, ...], body: bytes, headers: dict[str, str] | None) -> None:
        if len(body) > _ANSWER_MAX_BYTES:
            return
        with self._lock:
            if not self._at(key[0]):
                return  # made from a snapshot older than the kept answers
            old = self._kept.pop(key, None)
            if old is not None:
                self._bytes -= len(old[0])
            self._kept[key] = (body, headers)
            self._bytes += len(body)
            while self._bytes > _ANSWERS_BYTES:
                _, (dropped, _) = self._kept.popitem(last=False)
                self._bytes -= len(dropped)


#: Bytes of answers kept per index, and the largest answer kept.
_ANSWERS_BYTES = 32 << 20
_ANSWER_MAX_BYTES = 4 << 20
_ANSWERS: weakref.WeakKeyDictionary[TableIndex, Answers] = weakref.WeakKeyDictionary()
_ANSWERS_LOCK = threading.Lock()


def answers_of(index: TableIndex) -> Answers:
    with _ANSWERS_LOCK:
        found = _ANSWERS.get(index)
        if found is None:
            found = _ANSWERS[index] = Answers()
        return found
