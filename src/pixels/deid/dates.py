"""Moving DA and DT values by a whole number of days (Retain Longitudinal Temporal
Information with Modified Dates).

Every date of a patient moves by the same offset, so intervals between studies stay true.
The offset is whole days: times of day (TM) do not change, and a DT keeps its time and
time-zone suffix. Partial values keep their precision (``2019`` stays a year, ``201903`` a
month: the first day of the period is shifted and cut back to that precision). Multiple
values (``\\``) and ranges (``A-B``, open at either end) are shifted value by value.
A value that is not a date raises :class:`ValueError` naming it (the caller removes it).

Examples
--------
>>> shift_da("20200301", -1)
'20200229'
>>> shift_da("20200101-20200301", -1)
'20191231-20200229'
>>> shift_dt("20200301101500.5+0100", -1)
'20200229101500.5+0100'
"""

from __future__ import annotations

import re
from datetime import date, timedelta

__all__ = ["shift_da", "shift_dt"]

_DATE = re.compile(r"^(\d{4})(\d{2})?(\d{2})?$")


def _shift_date_part(text: str, days: int) -> str:
    """``YYYY[MM[DD]]`` (or ACR-NEMA ``YYYY.MM.DD``) moved by ``days``, same precision."""
    plain = text.replace(".", "") if len(text) == 10 and text[4] == "." else text
    m = _DATE.match(plain)
    if not m:
        raise ValueError(f"not a date: {text!r}")
    year, month, day = int(m[1]), int(m[2] or 1), int(m[3] or 1)
    try:
        moved = date(year, month, day) + timedelta(days=days)
    except (ValueError, OverflowError) as e:
        raise ValueError(f"not a date: {text!r}") from e
    full = f"{moved.year:04d}{moved.month:02d}{moved.day:02d}"
    return full[: len(plain)]


def _range(value: str, days: int) -> str:
    """Shift one value that may be a range ``A-B``, ``A-`` or ``-B``."""
    if "-" in value:
        lo, _, hi = value.partition("-")
        return "-".join(_shift_date_part(p, days) if p else "" for p in (lo, hi))
    return _shift_date_part(value, days)


def shift_da(value: str, days: int) -> str:
    """A DA value (possibly multi-valued or a range) moved by ``days``."""
    parts = []
    for v in value.split("\\"):
        v = v.strip()
        parts.append(_range(v, days) if v else "")
    return "\\".join(parts)


def _shift_one_dt(value: str, days: int) -> str:
    # the date is the first 4/6/8 digits; time, fraction and time-zone offset stay as they are
    m = re.match(r"^(\d{4}(?:\d{2}(?:\d{2})?)?)(.*)$", value)
    if not m:
        raise ValueError(f"not a date-time: {value!r}")
    head, rest = m[1], m[2]
    if rest and not re.match(r"^(\d{2,6}(\.\d{1,6})?)?([+-]\d{4})?$", rest):
        raise ValueError(f"not a date-time: {value!r}")
    if len(head) < 8 and rest and rest[0].isdigit():
        raise ValueError(f"not a date-time: {value!r}")
    return _shift_date_part(head, days) + rest


def _is_zone(head: str, tail: str) -> bool:
    """Whether ``head-tail`` is one value with a UTC offset rather than a range.

    After a time, four digits are an offset; after a date alone (``20200301-0500``, a valid
    DT), they are one when they read as an offset (hours 00-14, minutes 00-59) and, read as
    a year, would end the range before it starts.
    """
    if len(head) > 8:
        return True
    hours, minutes = int(tail[:2]), int(tail[2:])
    return hours <= 14 and minutes < 60 and int(tail) < int(head[:4])


def shift_dt(value: str, days: int) -> str:
    """A DT value (possibly multi-valued or a range) moved by ``days``.

    A range's ``-`` is told from a time-zone offset's by position: a time-zone offset
    follows a time (or a date, when the four digits cannot be the year ending a range), a
    range separator follows a complete value or starts an open range.
    """
    out = []
    for v in value.split("\\"):
        v = v.strip()
        if not v:
            out.append("")
            continue
        m = re.match(
            r"^(\d{4,14}(?:\.\d{1,6})?(?:[+-]\d{4})?)?-(\d{4,14}(?:\.\d{1,6})?(?:[+-]\d{4})?)?$", v
        )
        zone = m is not None and bool(m[1]) and len(m[2] or "") == 4 and _is_zone(m[1], m[2])
        if m and (m[1] or m[2]) and not zone:
            out.append("-".join(_shift_one_dt(p, days) if p else "" for p in (m[1], m[2])))
        else:
            out.append(_shift_one_dt(v, days))
    return "\\".join(out)
