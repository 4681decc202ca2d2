"""PS3.4 C.2.2.2 attribute matching of C-FIND keys against DICOM JSON values.

A key's value from the query identifier is matched against an entity's value:

- empty (or ``*`` alone): universal matching, everything matches;
- a UI value with ``\\``: list of UID matching, any of them;
- ``*`` / ``?`` in it: wildcard matching (``*`` any run, ``?`` one character);
- ``-`` in a DA, TM or DT value: range matching, either end open
  (``20200101-``, ``-20201231``); a TM / DT end with fewer components stands for
  the whole span it names (``-1015`` holds 10:15:59);
- else single value matching: equal values.

Person names match case-insensitively: a key without ``=`` any one component group
(alphabetic, ideographic, phonetic), a key with ``=`` group by group, its empty
groups matching any; other text matches case-sensitively, its
padding spaces ignored. A multi-valued attribute matches when one of its values
does. Numbers (IS, DS, US, ...) match numerically.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

__all__ = ["Key", "is_universal", "json_values", "matches"]

_RANGE_VRS = frozenset({"DA", "TM", "DT"})
_NUMBER_VRS = frozenset({"IS", "DS", "US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"})


class Key:
    """One matching key: its tag (``GGGGEEEE``), VR and the query's value (text)."""

    __slots__ = ("tag", "value", "vr")

    def __init__(self, tag: str, vr: str, value: str):
        self.tag = tag
        self.vr = vr
        self.value = value

    def __repr__(self) -> str:
        return f"Key({self.tag}, {self.vr}, {self.value!r})"


def is_universal(value: str) -> bool:
    """Whether ``value`` asks for universal matching (empty, or only ``*``)."""
    return value.strip(" ") == "" or value.strip(" ").strip("*") == ""


def json_values(element: dict[str, Any] | None) -> list[str]:
    """The values of a DICOM JSON element as text (person names joined by ``=``)."""
    if not element:
        return []
    out = []
    for v in element.get("Value") or []:
        if isinstance(v, dict):
            if element.get("vr") == "PN":
                groups = [v.get(g, "") for g in ("Alphabetic", "Ideographic", "Phonetic")]
                out.append("=".join(groups).rstrip("="))
            continue  # a sequence item: not matched
        out.append(str(v))
    return out


@lru_cache(maxsize=256)
def _wild(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    parts = [".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern]
    return re.compile("".join(parts), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _pad(value: str, vr: str, high: bool) -> str:
    """A DA / TM / DT range end as comparable text: missing components filled low or high."""
    v = value.strip()
    if vr == "DA":
        return v.ljust(8, "9" if high else "0")
    if vr == "TM":
        v = v.replace(":", "")
        whole, _, frac = v.partition(".")
        whole = whole.ljust(6, "9" if high else "0")
        if high and len(v.partition(".")[0]) < 6:
            frac = "999999"
        return whole + "." + frac.ljust(6, "9" if high and not frac else "0")
    # DT: YYYYMMDDHHMMSS.FFFFFF&ZZXX (the offset ignored)
    v = re.split(r"[+-]", v, maxsplit=1)[0] if len(v) > 4 else v
    whole, _, frac = v.partition(".")
    filled = whole.ljust(14, "9" if high else "0")
    return filled + "." + frac.ljust(6, "9" if high and not frac else "0")


def _norm(value: str, vr: str) -> str:
    """An entity's DA / TM / DT value as comparable text (its own precision kept)."""
    if vr == "DA":
        return value.strip().ljust(8, "0")
    if vr == "TM":
        v = value.strip().replace(":", "")
        whole, _, frac = v.partition(".")
        return whole.ljust(6, "0") + "." + frac.ljust(6, "0")
    v = value.strip()
    v = re.split(r"[+-]", v, maxsplit=1)[0] if len(v) > 4 else v
    whole, _, frac = v.partition(".")
    return whole.ljust(14, "0") + "." + frac.ljust(6, "0")


def _one(key: Key, wanted: str, have: str) -> bool:
    vr = key.vr
    if vr == "PN":
        groups = have.split("=")
        if "=" not in wanted:
            return any(_one_text(wanted, g, True) for g in groups if g or not wanted)
        # group by group: a Japanese modality's "Yamada^Tarou=山田^太郎" finds the
        # patient held with a phonetic group too; a key group left empty matches any
        given = [(w, groups[i] if i < len(groups) else "") for i, w in enumerate(wanted.split("="))]
        return all(_one_text(w, h, True) for w, h in given if not is_universal(w))
    if vr in _RANGE_VRS and "-" in wanted and not (vr == "DT" and _dt_offset_only(wanted)):
        lo, _, hi = wanted.partition("-")
        got = _norm(have, vr)
        if lo.strip() and got < _pad(lo, vr, False):
            return False
        return not (hi.strip() and got > _pad(hi, vr, True))
    if vr in _RANGE_VRS:
        if "*" in wanted or "?" in wanted:
            return _one_text(wanted, have, False)
        return _norm(have, vr) == _norm(wanted, vr)
    if vr in _NUMBER_VRS and "*" not in wanted and "?" not in wanted:
        try:
            return float(have) == float(wanted)
        except ValueError:
            return have.strip() == wanted.strip()
    return _one_text(wanted, have, False)


def _dt_offset_only(value: str) -> bool:
    """A DT value whose ``-`` is a UTC offset (``20200101120000-0500``), not a range."""
    head, _, tail = value.partition("-")
    return len(head) >= 8 and len(tail) == 4 and tail.isdigit() and value.count("-") == 1


def _one_text(wanted: str, have: str, ignore_case: bool) -> bool:
    w, h = wanted.strip(" "), have.strip(" ")
    if "*" in w or "?" in w:
        return _wild(w, ignore_case).fullmatch(h) is not None
    return w.lower() == h.lower() if ignore_case else w == h


def matches(key: Key, values: Sequence[str]) -> bool:
    """Whether an entity with ``values`` for ``key`` matches the key (module docstring)."""
    if is_universal(key.value):
        return True
    if key.vr == "UI":
        wanted = {u.strip() for u in key.value.split("\\") if u.strip()}
        return any(v.strip() in wanted for v in values)
    if key.vr == "SQ":
        return True  # sequence matching is not supported: the key is returned as held
    alternatives = key.value.split("\\") if key.vr not in ("PN",) else [key.value]
    return any(_one(key, w, v) for w in alternatives for v in values)
