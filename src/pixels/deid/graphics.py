"""The Clean Graphics Option (PS3.15 E.3.3, CID 7050 ``113103``): graphics, text annotations
and overlays kept, with what identifies the patient taken out of them.

Table E.1-1 gives the option's ``C`` to four rows: Graphic Annotation Sequence (0070,0001),
Overlay Data (60xx,3000), Overlay Comments (60xx,4000) and Curve Data (50xx,xxxx). Without
the option (the Basic Profile) the first is kept with every text in it a dummy, and the
overlay and curve groups are removed whole. With it, :mod:`pixels.deid.file` does this:

* **Text annotations** (Graphic Annotation Sequence, a presentation state's or an image's):
  the items are kept, graphic objects as they are (geometry holds no identity), and each
  free text in them (Unformatted Text Value of a text object, any other unlisted SH, LO,
  ST, LT, UT or UC) is kept unless it :meth:`Identity.holds` something the profile removes
  from the header, then it is a dummy. Names anywhere (PN) stay dummies. Nested in a
  plain-``D`` sequence (a Content Sequence), or holding one, the dummy sequence's rule
  wins: its text is a dummy wherever it is.
* **Overlay planes** (60xx groups with Overlay Data, at the top level of an image or a
  presentation state): Overlay Data is a bitmap, and text drawn in it (a radiologist's typed
  note in a vendor's graphics overlay) cannot be read automatically; the standard says
  cleaning it "may require intervention of a human operator". A region-of-interest plane
  (Overlay Type ``R``: an area, no text) is kept; a graphics plane (``G``, or anything
  else) is kept only when a ``--blackout`` rule matches the file: an operator has looked at
  that kind of image, and the rule's rectangles are cleared in the overlay as in the pixels
  (:func:`black_out_overlays`; a rule with no rectangles says nothing needs to go). Overlay
  Label, Description and Comments are kept unless they hold an identity, then removed
  (Type 3). An unmatched graphics plane, an embedded overlay (no Overlay Data: its bits in
  Pixel Data are cleared anyway) and any 60xx element the dictionary cannot name are
  removed as without the option. So is a plane whose bitmap is not laid out as PS3.3
  C.9.2 says (:func:`overlay_problem`: Overlay Data shorter than Overlay Rows x Columns x
  Number of Frames in Overlay bits, Overlay Bits Allocated not 1, Bit Position not 0):
  its rectangles could not be cleared where they lie; the result's reason names the
  element. Bytes past a kept plane's last bit are cut (:func:`fit_overlays`).
* **Curves** (50xx, retired in 2004, in no current IOD) are removed whole, as without the
  option: stricter than ``C``, which removing always satisfies (E.3.3 note 1).

What counts as an identity (:func:`identity_of`, read from the source header before it is
cleaned): each part of every person name (PN, two letters or more; family and given names
also run together, ``SmithJohn`` and ``JohnSmith``), the whole value of
every text attribute the profile does not keep (Patient ID, Accession Number, Institution
Name, Station Name, descriptors...), and, whatever the options, anything that looks like a
date (``2024-03-01``, ``01.03.2024``, ``3/1/24``, ``1 Mar 2024``) or a run of six digits or
more (a date, an identifier, a phone number). E.3.3 note 2 allows this: what other options
retain in the header need not be retained in graphics. Matching is case-insensitive, on
whole words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pixels.deid.profile import Option, resolve, rule_for

__all__ = [
    "CHUNK_BITS",
    "OVERLAY_TEXT",
    "Identity",
    "black_out_overlays",
    "fit_overlays",
    "identity_of",
    "kept_overlay_groups",
    "overlay_action",
    "overlay_problem",
]

#: Overlay elements holding free text (element number in the 60xx group -> keyword).
OVERLAY_TEXT = {0x0022: "OverlayDescription", 0x1500: "OverlayLabel", 0x4000: "OverlayComments"}
_OVERLAY_DATA = 0x3000
_OVERLAY_TYPE = 0x0040
_OVERLAY_ORIGIN = 0x0050
_OVERLAY_FRAMES = 0x0015
#: Overlay bits unpacked at a time by :func:`black_out_overlays` (one byte each: 16 MiB).
CHUNK_BITS = 1 << 24
_TEXT_VRS = frozenset({"SH", "LO", "ST", "LT", "UT", "UC", "AE"})
_MONTHS = "JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC"
#: Dates and long digit runs: identifying in any annotation, whatever the options.
_PATTERNS = (
    r"(?<![0-9])\d{1,4}[-/.]\d{1,2}[-/.]\d{2,4}(?![0-9])",
    rf"(?<![0-9A-Z])\d{{1,2}}[ -]?(?:{_MONTHS})[A-Z]*\.?[ -]?\d{{2,4}}(?![0-9])",
    rf"(?<![A-Z])(?:{_MONTHS})[A-Z]*\.? \d{{1,2}},? \d{{4}}(?![0-9])",
    r"\d{6,}",
)


@dataclass(frozen=True)
class Identity:
    """What identifies the patient in a file's text: words and phrases from its header."""

    words: frozenset[str]
    #: The words by their first run of letters and digits; those that begin otherwise.
    _by_run: dict[str, list[str]] = field(init=False, repr=False, compare=False)
    _other: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # A word matches where it stands alone: no letter or digit (A-Z, 0-9, the text is
        # upper case) just before or after it. One regex alternating every word tried each
        # word at each position: a header with 5000 names and a 1 MB annotation took
        # minutes. A word beginning with a letter or digit can only begin where a run of
        # them does, and that run is the word's own first run: words are looked up by it.
        by_run: dict[str, list[str]] = {}
        other = []
        for w in sorted(self.words, key=len, reverse=True):
            head = _RUN.match(w)
            if head is not None:
                by_run.setdefault(head.group(), []).append(w)
            elif w:
                other.append(w)  # begins with another character (Ä, 山): found by search
        object.__setattr__(self, "_by_run", by_run)
        object.__setattr__(self, "_other", tuple(other))

    def holds(self, text: Any) -> bool:
        """Whether ``text`` (a value, a list of values, bytes) names any of it."""
        if text is None:
            return False
        if isinstance(text, bytes | bytearray):
            text = bytes(text).decode("latin-1")
        elif isinstance(text, list | tuple) or type(text).__name__ == "MultiValue":
            text = "\\".join(str(v) for v in text)
        text = " ".join(str(text).upper().split())
        if _PATTERN.search(text) is not None:
            return True
        if self._by_run:
            for run in _RUN.finditer(text):
                for w in self._by_run.get(run.group(), ()):
                    if text.startswith(w, run.start()) and _alone(text, run.start(), len(w)):
                        return True
        for w in self._other:
            at = text.find(w)
            while at >= 0:
                if _alone(text, at, len(w)):
                    return True
                at = text.find(w, at + 1)
        return False


_RUN = re.compile(r"[0-9A-Z]+")
_PATTERN = re.compile("|".join(_PATTERNS))


def _alone(text: str, at: int, size: int) -> bool:
    """Whether ``text[at:at + size]`` has no letter or digit (A-Z, 0-9) on either side."""
    end = at + size
    before = at == 0 or not ("0" <= text[at - 1] <= "9" or "A" <= text[at - 1] <= "Z")
    return before and (end == len(text) or not ("0" <= text[end] <= "9" or "A" <= text[end] <= "Z"))


def identity_of(ds: Any, on: Iterable[Option]) -> Identity:
    """The :class:`Identity` of ``ds`` (read before it is cleaned) with the options ``on``.

    Person names give each of their parts; any other text attribute whose action with ``on``
    is not ``K`` gives its whole value (3 characters or more). Private elements are not
    read (they are removed or hold numbers only).
    """
    options = frozenset(on)
    words: set[str] = set()

    def add(value: Any, minimum: int) -> None:
        text = " ".join(str(value).upper().replace("\x00", " ").split())
        if len(text) >= minimum:
            words.add(text)

    def walk(d: Any) -> None:
        for tag in list(d.keys()):
            if tag.is_private or tag.group == 0x0002:
                continue
            vr = _vr(d, tag)
            rule = rule_for(int(tag))
            if vr not in ("SQ", "PN") and (
                rule is None or vr not in _TEXT_VRS or resolve(rule.action(options), False) == "K"
            ):
                continue  # nothing read (nor converted) that cannot be an identity
            try:
                elem = d[tag]
            except Exception:
                continue  # a bad value: the walk names it
            if elem.VR == "SQ":
                for item in elem.value or ():
                    walk(item)
            elif elem.VR == "PN":
                for v in _values(elem.value):
                    for part in re.split(r"[\^=\s,]+", v):
                        add(part, 2)
                    add(v.replace("^", " "), 3)
                    for group in v.split("="):  # family and given names run together
                        family, _, rest = group.partition("^")
                        given = rest.partition("^")[0]
                        if family.strip() and given.strip():
                            add(family.strip() + given.strip(), 3)
                            add(given.strip() + family.strip(), 3)
            else:
                for v in _values(elem.value):
                    add(v, 3)

    walk(ds)
    return Identity(frozenset(words))


def _vr(ds: Any, tag: Any) -> str | None:
    """The VR of ``tag`` in ``ds`` without converting its value (the dictionary's if implicit)."""
    from pydicom.datadict import dictionary_VR

    vr = getattr(ds.get_item(tag), "VR", None)
    if vr is None or vr == "UN":
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            return None
    return str(vr)


def _values(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return [str(v).strip() for v in value if str(v).strip()]
    text = str(value).strip()
    return [text] if text else []


def kept_overlay_groups(
    ds: Any, matched_rule: bool, big_endian: bool = False
) -> tuple[frozenset[int], tuple[str, ...]]:
    """The 60xx groups of ``ds`` (top level) Clean Graphics keeps, and why others are not.

    A plane with its own Overlay Data whose Overlay Type is ``R`` (a region), or any such
    plane when a blackout rule matched the file (``matched_rule``), is kept when its bitmap
    can be read as the standard lays it out (:func:`overlay_problem`); one that cannot is
    removed as without the option, and the second value says why (naming the element).
    None from a big endian source (retired; its OW words would need swapping, which is not
    done: removed as without the option).
    """
    if big_endian:
        return frozenset(), ()
    kept = set()
    problems = []
    for group in range(0x6000, 0x6020, 2):
        if (group << 16 | _OVERLAY_DATA) not in ds:
            continue
        kind = ds.get(group << 16 | _OVERLAY_TYPE)
        region = kind is not None and str(kind.value or "").strip().upper() == "R"
        if not (region or matched_rule):
            continue
        problem = overlay_problem(ds, group)
        if problem is None:
            kept.add(group)
        else:
            problems.append(f"overlay plane {group:04X} removed: {problem}")
    return frozenset(kept), tuple(problems)


def overlay_problem(ds: Any, group: int) -> str | None:
    """Why the overlay plane ``group`` of ``ds`` cannot be kept, or None when it can.

    Its bitmap must be what PS3.3 C.9.2 lays out, one bit per overlay pixel: Overlay Rows
    and Columns and Number of Frames in Overlay (1 when absent) readable and positive,
    Overlay Bits Allocated 1 and Overlay Bit Position 0 (when present), and Overlay Data at
    least ``ceil(rows * columns * frames / 8)`` bytes long. Anything else cannot be cleared
    where a rectangle says, nor read by a viewer as the source's was.
    """
    size = _size(ds, group)
    if size is None:
        return f"({group:04X},0010/0011) Overlay Rows / Columns missing or not positive numbers"
    frames = _frames(ds, group)
    if frames is None:
        return f"({group:04X},0015) Number of Frames in Overlay is not a positive number"
    for el, name, want in (
        (0x0100, "Overlay Bits Allocated", 1),
        (0x0102, "Overlay Bit Position", 0),
    ):
        elem = ds.get(group << 16 | el)
        if elem is None:
            continue
        try:
            value = int(elem.value)
        except Exception:
            value = None
        if value != want:
            return f"({group:04X},{el:04X}) {name} is {str(elem.value)[:16]!r}, not {want}"
    data = ds[group << 16 | _OVERLAY_DATA].value
    have = len(data) if isinstance(data, bytes | bytearray) else 0
    need = _needed(size, frames)
    if have < need:
        rows, cols = size
        return (
            f"({group:04X},3000) Overlay Data holds {have} bytes, Overlay Rows x Columns x "
            f"Frames ({rows} x {cols} x {frames}) need {need}"
        )
    return None


def _frames(ds: Any, group: int) -> int | None:
    """Number of Frames in Overlay (1 when absent), None when unreadable or not positive."""
    elem = ds.get(group << 16 | _OVERLAY_FRAMES)
    if elem is None or elem.value in (None, ""):
        return 1
    try:
        frames = int(elem.value)
    except Exception:
        return None
    return frames if frames > 0 else None


def _needed(size: tuple[int, int], frames: int) -> int:
    """Bytes of Overlay Data a plane of ``size`` and ``frames`` needs (without padding)."""
    return -(-(size[0] * size[1] * frames) // 8)


def fit_overlays(ds: Any, groups: Iterable[int]) -> int:
    """Cut each kept plane's Overlay Data to what its size needs (padded to even length)
    and clear the bits past the plane in its last byte: what lies beyond is no overlay
    pixel, shown by no viewer and checked by no one. Returns how many bytes were cut."""
    cut = 0
    for group in groups:
        size, frames = _size(ds, group), _frames(ds, group)
        if size is None or frames is None:
            continue  # never kept (kept_overlay_groups)
        elem = ds[group << 16 | _OVERLAY_DATA]
        data = bytes(elem.value or b"")
        need = _needed(size, frames)
        keep = need + (need & 1)
        spare = need * 8 - size[0] * size[1] * frames  # bits past the plane in its last byte
        fitted = bytearray(data[:keep])
        if spare:
            fitted[need - 1] &= 0xFF >> spare
        fitted[need:] = b"\x00" * (len(fitted) - need)
        if bytes(fitted) != data:
            elem.value = bytes(fitted)
        cut += len(data) - len(fitted)
    return cut


def _size(ds: Any, group: int) -> tuple[int, int] | None:
    """Overlay Rows and Columns of the plane ``group``, or None when either is unreadable."""
    try:
        rows, cols = int(ds[group << 16 | 0x0010].value), int(ds[group << 16 | 0x0011].value)
    except Exception:
        return None
    return (rows, cols) if rows > 0 and cols > 0 else None


def _origin(ds: Any, group: int) -> tuple[int, int] | None:
    """Overlay Origin (row, column) from 0, (0, 0) when absent, None when unreadable."""
    elem = ds.get(group << 16 | _OVERLAY_ORIGIN)
    if elem is None:
        return (0, 0)
    try:
        row, col = (int(v) - 1 for v in elem.value)
    except Exception:
        return None
    return row, col


def overlay_action(elem: Any, identity: Identity) -> str:
    """``K`` or ``X`` for an element of a kept overlay plane."""
    from pydicom.datadict import keyword_for_tag

    el = int(elem.tag) & 0xFFFF
    if el in OVERLAY_TEXT:
        return "X" if identity.holds(elem.value) else "K"
    if el == _OVERLAY_DATA:
        return "K"
    return "K" if keyword_for_tag(int(elem.tag)) and elem.VR != "UN" else "X"


def black_out_overlays(
    ds: Any, groups: Iterable[int], rectangles: Iterable[tuple[int, int, int, int]]
) -> int:
    """Clear the bits of each kept overlay plane that fall in ``rectangles``.

    Rectangles are ``(x, y, width, height)`` in image pixels, as for Pixel Data; an overlay
    pixel (row r, column c, from 1) is the image's pixel at Overlay Origin + (r - 1, c - 1),
    in every frame of the overlay. An overlay whose origin cannot be read is cleared whole.
    The bitmap is unpacked a band of rows at a time (:data:`CHUNK_BITS` bits at most), so a
    huge overlay takes no more memory than a copy of its bytes. Returns how many bits were
    set and are now cleared.
    """
    rects = list(rectangles)
    cleared = 0
    for group in groups:
        size, frames = _size(ds, group), _frames(ds, group)
        if size is None or frames is None:
            continue  # never kept (kept_overlay_groups)
        rows, cols = size
        elem = ds[group << 16 | _OVERLAY_DATA]
        origin = _origin(ds, group)
        oy, ox = origin or (0, 0)
        boxes = rects if origin is not None else [(0, 0, cols, rows)]
        spans = []  # (first row, last row + 1, first column, last column + 1) in the plane
        for x, y, w, h in boxes:
            r0, r1 = max(0, y - oy), max(0, min(rows, y + h - oy))
            c0, c1 = max(0, x - ox), max(0, min(cols, x + w - ox))
            if r0 < r1 and c0 < c1:
                spans.append((r0, r1, c0, c1))
        if not spans:
            continue
        data = bytearray(elem.value)
        total = rows * frames  # rows of all frames, one after the other
        band = max(1, CHUNK_BITS // cols)
        for g0 in range(0, total, band):
            g1 = min(total, g0 + band)
            local = np.arange(g0, g1) % rows
            masks = [(r0 <= local) & (local < r1) for r0, r1, _, _ in spans]
            if not any(m.any() for m in masks):
                continue
            b0, b1 = g0 * cols // 8, -(-(g1 * cols) // 8)
            bits = np.unpackbits(np.frombuffer(data, np.uint8, b1 - b0, b0), bitorder="little")
            start = g0 * cols - b0 * 8
            plane = bits[start : start + (g1 - g0) * cols].reshape(g1 - g0, cols)
            for mask, (_, _, c0, c1) in zip(masks, spans, strict=True):
                cleared += int(plane[mask, c0:c1].sum())
                plane[mask, c0:c1] = 0
            data[b0:b1] = np.packbits(bits, bitorder="little").tobytes()
        elem.value = bytes(data)
    return cleared
