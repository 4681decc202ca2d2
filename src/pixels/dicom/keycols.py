"""Key column values of a catalog row, from a header's DICOM JSON model.

:func:`key_values` maps every :data:`pixels.schema.KEY_COLUMNS` keyword to its
typed value (``str``, ``int``, ``datetime.date``, ``datetime.time``): text
values joined with ``\\`` (person names as their ``=``-joined groups), DA and
TM values parsed (:func:`parse_da`, :func:`parse_tm`), ``None`` when absent,
empty, invalid or written as ``UN``.
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import Any

from pydicom.datadict import dictionary_VR

from pixels.schema import KEY_COLUMNS

__all__ = ["TIME_COLUMNS", "key_values", "parse_da", "parse_tm"]


_DA = re.compile(r"(\d{4})\.?(\d{2})\.?(\d{2})")
_TM = re.compile(r"(\d{2})(?::?(\d{2})(?::?(\d{2})(?:\.(\d{1,6}))?)?)?")


def parse_da(s: str) -> _dt.date | None:
    """Parse a DA value (``YYYYMMDD``, or ACR-NEMA ``YYYY.MM.DD``); None when invalid."""
    m = _DA.fullmatch(s.strip())
    if m is None:
        return None
    try:
        return _dt.date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return None


def parse_tm(s: str) -> _dt.time | None:
    """Parse a TM value (``HH[MM[SS[.F{1,6}]]]``, ``HH:MM:SS`` too); None when invalid.

    A leap second (``SS == 60``) is read as 59, as pydicom does.
    """
    m = _TM.fullmatch(s.strip())
    if m is None:
        return None
    h, mi, sec, frac = m[1], m[2], m[3], m[4]
    try:
        return _dt.time(
            int(h),
            int(mi or 0),
            min(int(sec or 0), 59),
            int((frac or "0").ljust(6, "0")),
        )
    except ValueError:
        return None


_PN_KEYS = ("Alphabetic", "Ideographic", "Phonetic")


def _as_text(entry: dict[str, Any] | None) -> str | None:
    if not entry or entry.get("vr") == "UN":
        return None
    values = entry.get("Value")
    if not values:
        return None
    parts = []
    for v in values:
        if v is None:
            parts.append("")
        elif isinstance(v, dict):  # a person name: groups by position, "=" between them
            groups = [v.get(k) or "" for k in _PN_KEYS]
            while groups and not groups[-1]:
                groups.pop()
            parts.append("=".join(groups))
        else:
            parts.append(str(v))
    return "\\".join(parts)


def _first(entry: dict[str, Any] | None) -> Any:
    if not entry or entry.get("vr") == "UN":
        return None
    values = entry.get("Value")
    return values[0] if values else None


def _kind(tag: int) -> str:
    """How a key column is typed, from its DICOM VR (not its Arrow type)."""
    if tag == 0x00020010:
        return "ts"
    vr = dictionary_VR(tag)
    if vr in ("DA", "TM"):
        return vr
    return "int" if vr in ("IS", "US", "UL", "SS", "SL") else "str"


#: (keyword, JSON key, kind) for every key column.
_KEY_SPECS: tuple[tuple[str, str, str], ...] = tuple(
    (c.name, f"{c.tag:08X}", _kind(c.tag)) for c in KEY_COLUMNS if c.tag is not None
)

#: The key columns of VR TM: :func:`key_values` gives them as ``datetime.time``.
TIME_COLUMNS: tuple[str, ...] = tuple(name for name, _, kind in _KEY_SPECS if kind == "TM")


#: Per key column: the value of a model entry, by the entry's ``id`` (with the entry, which
#: keeps the id its own): the fast parser shares the entries of elements seen before between
#: files (read-only), so most are typed once. At most :data:`MEMO_ENTRIES` per column.
_MEMOS: tuple[dict[int, tuple[dict[str, Any], Any]], ...] = tuple({} for _ in _KEY_SPECS)
MEMO_ENTRIES = 2_000


#: The key columns read from the model (all but ``TransferSyntaxUID``), with their memo.
_READ: tuple[tuple[str, str, str, dict[int, tuple[dict[str, Any], Any]]], ...] = tuple(
    (name, key, kind, memo)
    for (name, key, kind), memo in zip(_KEY_SPECS, _MEMOS, strict=True)
    if kind != "ts"
)
#: Every key column as None, in :data:`_KEY_SPECS` order.
_NONE: dict[str, Any] = dict.fromkeys(name for name, _, _ in _KEY_SPECS)
_TS_NAMES = tuple(name for name, _, kind in _KEY_SPECS if kind == "ts")


def key_values(js: dict[str, Any], transfer_syntax: str | None) -> dict[str, Any]:
    """Every key column's typed value from the model ``js`` (``TransferSyntaxUID``: ``transfer_syntax``)."""
    keys = _NONE.copy()
    for name in _TS_NAMES:
        keys[name] = transfer_syntax
    get = js.get
    for name, key, kind, memo in _READ:
        entry = get(key)
        if entry is None:
            continue
        known = memo.get(id(entry))
        if known is not None and known[0] is entry:
            keys[name] = known[1]
            continue
        value: Any = None
        if kind == "str":
            value = _as_text(entry)
        else:
            v = _first(entry)
            if kind == "DA":
                value = parse_da(v) if isinstance(v, str) else None
            elif kind == "TM":
                value = parse_tm(v) if isinstance(v, str) else None
            elif isinstance(v, int) and not isinstance(v, bool):
                value = v
        keys[name] = value
        if len(memo) >= MEMO_ENTRIES:
            memo.clear()
        memo[id(entry)] = (entry, value)
    return keys
