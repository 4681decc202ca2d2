"""The character set a C-FIND answer is written in (PS3.4 C.4.1.1.3.1, PS3.5 6.1.2).

Each answer's identifier carries its own Specific Character Set (0008,0005). An answer
is written in the character set of the query when every text value of the answer can
be encoded in it (an SCU that asked in ISO_IR 100, or in ISO 2022 IR 87 with its escape
sequences, gets bytes it decodes); else in the character set the entity's instance is
held in; else in UTF-8 (ISO_IR 192), which holds any value. A query without
(0008,0005) asks in the default repertoire (ASCII): an answer that fits it carries no
(0008,0005) unless the query sent that key (empty).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pydicom.charset import (
    _encode_string_impl,
    _encode_string_parts,
    python_encoding,
)
from pydicom.dataset import Dataset

__all__ = ["UTF8", "answer_charset", "terms"]

UTF8 = ["ISO_IR 192"]

#: Value representations whose values (0008,0005) applies to (PS3.5 6.1.2.3).
_TEXT_VRS = frozenset({"PN", "SH", "LO", "ST", "LT", "UC", "UT"})
#: Terms naming the default repertoire: checked as ASCII (pydicom decodes them as Latin-1).
_DEFAULT = frozenset({"", "ISO_IR 6", "ISO 2022 IR 6"})


def terms(value: str | Sequence[str] | None) -> list[str]:
    """The defined terms of a (0008,0005) value (``\\``-joined text or its values);
    ``[]`` for the default repertoire, whose names in a list with code extensions are
    given as the empty first value."""
    if value is None:
        return []
    parts = value.split("\\") if isinstance(value, str) else [str(v) for v in value]
    # "ISO 2022 IR 6" (or nothing) first: ASCII in G0, written as the empty first value
    parts = ["" if p.strip() in _DEFAULT else p.strip() for p in parts]
    return [] if not any(parts) else parts


def _encodings(charset: list[str]) -> list[str] | None:
    """The Python encodings of known terms; None when a term is not one pydicom writes."""
    out = []
    for term in charset or [""]:
        if term in _DEFAULT:
            out.append("ascii")
        elif term in python_encoding:
            out.append(python_encoding[term])
        else:
            return None
    return out


def _fits(text: str, encodings: list[str]) -> bool:
    """Whether ``text`` can be written in ``encodings`` (as pydicom writes it: one
    encoding for the whole value, else parts with escape sequences)."""
    if text.isascii() and encodings[0] == "ascii":
        return True
    for encoding in encodings:
        try:
            _encode_string_impl(text, encoding)
            return True
        except (UnicodeError, ValueError):
            continue
    if len(encodings) > 1:
        try:
            _encode_string_parts(text, encodings)
            return True
        except (UnicodeError, ValueError):
            return False
    return False


def _texts(answer: Dataset) -> Iterable[str]:
    """The text values of an answer, its sequence items' included (a person name's groups
    one by one, as written)."""
    for elem in answer:
        if elem.VR == "SQ":
            for item in elem.value or []:
                if "SpecificCharacterSet" not in item:  # an item of its own is written so
                    yield from _texts(item)
            continue
        if elem.VR not in _TEXT_VRS or elem.value is None:
            continue
        values = list(elem.value) if elem.VM > 1 else [elem.value]
        for value in values:
            text = str(value)
            yield from (text.split("=") if elem.VR == "PN" else [text])


def answer_charset(answer: Dataset, asked: list[str], held: list[str]) -> list[str]:
    """The character set to write ``answer`` in: the query's (``asked``) when every text
    value fits it, else the instance's (``held``), else UTF-8 (module docstring)."""
    texts = [t for t in _texts(answer) if t]
    for charset in (asked, held):
        encodings = _encodings(charset)
        if encodings is not None and all(_fits(t, encodings) for t in texts):
            return charset
    return UTF8
