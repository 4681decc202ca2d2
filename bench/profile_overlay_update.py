"""The index overlay's update after a ~10k-row commit, statement by statement.

Usage (on a COPY of a big table: it commits to it)::

    python bench/profile_overlay_update.py /path/to/copy-of-t10m [rounds]

Each round commits ~10k generated rows (``make_big_table.Generator``, as
``bench_scale.py --only commit``), then times ``TableIndex.current()`` and the first
look-up, with every DuckDB statement of the update and its main functions timed (wall),
and the cycle collector's runs inside it; the overlay is merged between rounds. Prints
each part's median over the rounds, largest first. A copy of ``t10m`` can share its
data files by hard links; copy ``_delta_log`` and ``_pixels`` (the saved index). The
generator's pool of real files: ``PIXELS_BENCH_POOL`` (default ``/work/bigdata/pool``).
"""

from __future__ import annotations

import collections
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pixels.web.index as index_module
from make_big_table import Generator, Templates
from pixels.scan import TableScan
from pixels.table import CatalogTable
from pixels.web import index_tables, overlay, sopkeys

TIMES: dict[str, float] = collections.defaultdict(float)
COLLECTIONS: dict[int, list[float]] = {}
ON = [False]
_STARTED = [0.0]


def timed(name: str, f: Callable[..., Any]) -> Callable[..., Any]:
    """``f``, its wall time added to ``TIMES[name]`` while a round is measured."""

    def wrapper(*a: Any, **k: Any) -> Any:
        if not ON[0]:
            return f(*a, **k)
        t = time.perf_counter()
        try:
            return f(*a, **k)
        finally:
            TIMES[name] += time.perf_counter() - t

    return wrapper


class Cursor:
    """A DuckDB cursor whose statements are timed one by one."""

    def __init__(self, cur: Any):
        self._c = cur

    def execute(self, sql: str, *a: Any) -> Cursor:
        t = time.perf_counter()
        self._c.execute(sql, *a)
        if ON[0]:
            TIMES["SQL " + " ".join(sql.split())[:90]] += time.perf_counter() - t
        return self

    def __getattr__(self, name: str) -> Any:
        return getattr(self._c, name)


class Connection:
    """The index's connection, handing out timed cursors."""

    def __init__(self, con: Any):
        self._c = con

    def cursor(self) -> Cursor:
        return Cursor(self._c.cursor())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._c, name)


def _collected(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _STARTED[0] = time.perf_counter()
    elif ON[0]:
        got = COLLECTIONS.setdefault(info["generation"], [0, 0.0])
        got[0] += 1
        got[1] += time.perf_counter() - _STARTED[0]


def main() -> None:
    table = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    pool = Path(os.environ.get("PIXELS_BENCH_POOL", "/work/bigdata/pool"))
    index_tables.read_rows = timed("read_rows", index_tables.read_rows)
    index_tables._Firsts.result = timed("firsts.result", index_tables._Firsts.result)  # type: ignore[method-assign]
    sopkeys.SopKeys.maybe_held = timed("maybe_held", sopkeys.SopKeys.maybe_held)  # type: ignore[method-assign]
    for name in ("held", "_current", "_compute", "add"):
        setattr(overlay.Overlay, name, timed(f"ov.{name}", getattr(overlay.Overlay, name)))
    CatalogTable.scan = timed("table.scan", CatalogTable.scan)  # type: ignore[method-assign]
    TableScan.followed = timed("followed", TableScan.followed)  # type: ignore[method-assign]
    cls = index_module.TableIndex
    cls._overlay_update = timed("_overlay_update", cls._overlay_update)  # type: ignore[method-assign]
    gc.callbacks.append(_collected)

    ix = cls(CatalogTable(table), merge=False)
    ix.current()
    for keys in (ix.keys, ix.series_keys, ix.study_keys):
        keys.ready()
    ix.con = Connection(ix.con)  # type: ignore[assignment]
    gen = Generator(Templates(pool), pool, seed=int(time.time()))

    def commit(size: int) -> tuple[int, str]:
        parts, n = [], 0
        while n < size:
            rows = gen.rows(gen.study())
            parts.append(rows)
            n += rows.num_rows
        CatalogTable(table).append(pa.concat_tables(parts))
        return n, parts[-1]["StudyInstanceUID"][0].as_py()

    runs = []
    for r in range(rounds):
        n, last = commit(10_000)
        TIMES.clear()
        COLLECTIONS.clear()
        ON[0] = True
        t0, c0 = time.perf_counter(), time.process_time()
        snap = ix.current()
        t1 = time.perf_counter()
        found = snap.rows("SELECT n_inst FROM study_sum WHERE StudyInstanceUID = ?", [last])
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        TIMES["query"] += time.perf_counter() - t1
        ON[0] = False
        assert found, last
        print(
            f"round {r}: rows {n} total {dt * 1e3:.0f} ms cpu {cpu * 1e3:.0f} "
            f"overlay={ix.last_update.get('overlay')} load {os.getloadavg()[0]:.1f} "
            f"collections { ({g: (k, round(t * 1e3, 1)) for g, (k, t) in COLLECTIONS.items()}) }"
        )
        runs.append(dict(TIMES, total=dt))
        ix.merge()
    names = {k for run in runs for k in run}
    for k in sorted(names, key=lambda k: -statistics.median(run.get(k, 0) for run in runs)):
        v = [run.get(k, 0) * 1e3 for run in runs]
        print(f"{statistics.median(v):7.1f}  {' '.join(f'{x:6.1f}' for x in v)}  {k}")
    ix.close()


if __name__ == "__main__":
    main()
