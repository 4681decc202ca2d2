"""Clean Graphics' identity matching on hostile input: many names, a long annotation.

    nice -n 10 python bench/bench_deid_identity.py

pydicom's CT_small given ``n`` Other Patient Names (each a family and a given name: five
identity words each), and an annotation text of ``kb`` kB naming none of them (the worst
case: every word is looked for everywhere). Reported: the time of
:meth:`pixels.deid.graphics.Identity.holds` and of the matcher it replaced (one regex
alternating every word, :func:`whole_regex`, the baseline, same run), as a ratio; both
must give the same answer.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pydicom
from pydicom.data import get_testdata_file

from pixels.deid.graphics import _PATTERNS, identity_of


def whole_regex(words: frozenset[str]) -> re.Pattern[str]:
    """The matcher before: every word, longest first, between non-alphanumerics."""
    alts = [rf"(?<![0-9A-Z]){re.escape(w)}(?![0-9A-Z])" for w in sorted(words, key=len)[::-1]]
    return re.compile("|".join([*alts, *_PATTERNS]))


def _best(fn: Callable[[str], object], text: str, repeat: int = 3) -> float:
    """The best of ``repeat`` timings of ``fn(text)``, in seconds."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(text)
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for n, kb in ((50, 20), (500, 20), (2000, 20), (5000, 20), (5000, 1000)):
        ds.OtherPatientNames = [f"Fam{i:05d}^Giv{i:05d}" for i in range(n)]
        ident = identity_of(ds, frozenset())
        text = ("lorem ipsum dolor sit amet 12.5 mm " * (kb * 1024 // 35 + 1))[: kb * 1024]
        new = _best(ident.holds, text)
        assert not ident.holds(text)
        if kb > 20:
            print(f"{n:5d} names, {kb:5d} kB: holds {new * 1e3:8.1f} ms (whole regex not run)")
            continue
        regex = whole_regex(ident.words)
        t0 = time.perf_counter()
        assert regex.search(" ".join(text.upper().split())) is None  # the same answer
        old = time.perf_counter() - t0
        print(
            f"{n:5d} names, {kb:5d} kB: holds {new * 1e3:8.1f} ms, whole regex "
            f"{old * 1e3:9.1f} ms: {old / new:8.0f}x"
        )


if __name__ == "__main__":
    main()
