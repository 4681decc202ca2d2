"""Private elements under de-identification: removed, but for the Retain Safe Private list.

PS3.15's pattern row for private attributes (odd groups) is ``X``; the Retain Safe Private
Option (113111) keeps the ones known to be safe, here :data:`pixels.deid.profile.SAFE_PRIVATE`
(numeric acquisition parameters), and only where each holds what the list says
(:func:`safe_value`), with the private creator of their block. Every other private element,
and every creator whose block keeps nothing, is removed.

Examples
--------
>>> from pydicom.dataset import Dataset
>>> from pixels.deid.private import remove_private
>>> ds = Dataset()
>>> ds.add_new(0x00090010, "LO", "ACME 1.0")
>>> ds.add_new(0x00091001, "LO", "Smith^John")
>>> remove_private(ds, keep_safe=True), len(ds)
((2, 0), 0)
"""

from __future__ import annotations

import re
from typing import Any

from pixels.deid.profile import SAFE_PRIVATE, SAFE_PRIVATE_TERMS, SAFE_PRIVATE_VR

__all__ = ["remove_private", "safe_value"]


def remove_private(ds: Any, *, keep_safe: bool) -> tuple[int, int]:
    """Remove the private elements of ``ds`` (this level), keeping the safe list if asked.

    Returns how many elements were removed and how many kept (creators not counted as kept).
    """
    private = [int(t) for t in ds.keys() if int(t) >> 16 & 1]  # noqa: SIM118 - tags, not elements
    if not private:
        return 0, 0
    creators: dict[tuple[int, int], str] = {}
    for t in private:
        group, el = t >> 16, t & 0xFFFF
        if 0x10 <= el <= 0xFF:
            creators[(group, el)] = str(ds[t].value or "").strip()
    used: set[tuple[int, int]] = set()
    removed = kept = 0
    for t in private:
        group, el = t >> 16, t & 0xFFFF
        if el < 0x1000:
            continue
        block = (group, el >> 8)
        creator = creators.get(block)
        safe = (creator or "", group, el & 0xFF)
        if keep_safe and creator is not None and safe in SAFE_PRIVATE and safe_value(ds, t, safe):
            used.add(block)
            kept += 1
            continue
        del ds[t]
        removed += 1
    for t in private:
        group, el = t >> 16, t & 0xFFFF
        if el < 0x1000 and (group, el) not in used:
            del ds[t]
            removed += 1
    return removed, kept


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def safe_value(ds: Any, tag: int, safe: tuple[str, int, int]) -> bool:
    """Whether a Retain Safe Private element holds what the list says, nothing else.

    Its VR must be the listed one (or UN, read as the listed one), an IS/DS value numbers
    only, a CS value one of the defined terms, an FL/FD value whole floats: a vendor (or
    anyone) writing a name where a b-value belongs does not get it through, nor a value
    that cannot be read as its VR.
    """
    try:
        elem = ds[tag]
    except Exception:  # the bytes do not fit the dictionary's VR (a name in an FD)
        return False
    want = SAFE_PRIVATE_VR[safe]
    vr = elem.VR
    if vr not in (want, "UN") and {vr, want} != {"IS", "DS"}:
        return False
    value = elem.value
    if want in ("FD", "FL"):
        size = 8 if want == "FD" else 4
        if isinstance(value, bytes | bytearray):
            return len(value) % size == 0
        multi = isinstance(value, list | tuple) or type(value).__name__ == "MultiValue"
        values = value if multi else [value]
        return all(isinstance(v, int | float) for v in values)
    if isinstance(value, bytes | bytearray):
        try:
            text = bytes(value).decode("ascii").rstrip("\x00 ")
        except UnicodeDecodeError:
            return False
    elif isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        text = "\\".join(str(v) for v in value)
    else:
        text = "" if value is None else str(value)
    parts = [p.strip() for p in text.split("\\")]
    if want == "CS":
        terms = SAFE_PRIVATE_TERMS.get(safe, frozenset())
        return all(p in terms for p in parts if p)
    return all(_NUMBER.fullmatch(p) for p in parts if p)
