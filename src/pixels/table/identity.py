"""The identity rule both writers follow: one row per path, at its latest version.

A row's identity is ``(path, length, modificationTime, version_tag)``
(:data:`pixels.schema.IDENTITY`, compared by :func:`pixels.schema.same_version`).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Collection, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pixels.scan import TableScan
from pixels.sources.ref import FileRef, RefBatch

if TYPE_CHECKING:
    from pixels.table.catalog_table import CatalogTable

_NO_TIME = datetime.min.replace(tzinfo=UTC)


def sql_string(value: str) -> str:
    """Quote ``value`` as a SQL string literal (single quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


def one_per_path(data: pa.Table) -> pa.Table:
    """``data`` with one row per ``path``; rows keep their order.

    Part of the identity rule (:func:`split_by_identity`): the row with the newest
    ``modificationTime`` wins, then the one with the greater ``length``, then the
    later row. (The Spark engine applies the same order to DataFrames, which
    have no row order: :func:`pixels.engines.spark.catalog.one_row_per_path`.)
    """
    paths = data["path"]
    if len(pc.unique(paths)) == data.num_rows:
        return data
    lengths = data["length"].to_pylist() if "length" in data.column_names else [None] * len(paths)
    best: dict[str, tuple[int, tuple[Any, ...]]] = {}
    for i, (p, t, n) in enumerate(
        zip(paths.to_pylist(), data["modificationTime"].to_pylist(), lengths, strict=True)
    ):
        rank = (t is not None, t or _NO_TIME, n is not None, n or 0)
        held = best.get(p)
        if held is None or rank >= held[1]:
            best[p] = (i, rank)
    return data.take(pa.array(sorted(i for i, _ in best.values()), pa.int64()))


def split_by_identity(
    data: pa.Table,
    existing: pa.Table | None,
    *,
    keep: Collection[str] = (),
    keep_errors: bool = False,
) -> tuple[pa.Table, list[str]]:
    """Rows of ``data`` to write, and the paths among them whose old row they replace.

    The identity rule both writers follow: one row per path, always. Within
    ``data`` the row with the newest ``modificationTime`` (then the later row)
    stands for its path (:func:`one_per_path`). ``existing`` is a
    :meth:`CatalogTable.lookup` of ``data``'s paths (None: nothing held). A row
    whose identity (path, length, modificationTime, version_tag:
    :func:`~pixels.schema.same_version`) the table holds is dropped unless its
    path is in ``keep`` or, with ``keep_errors``, the held row has an error; a
    row whose path the table holds otherwise replaces it.
    """
    data = one_per_path(data)
    if existing is None or existing.num_rows == 0:
        return data, []
    n = data.num_rows
    tags = data["version_tag"] if "version_tag" in data.column_names else pa.nulls(n, pa.string())
    listed = pa.table(
        {
            "i": pa.array(range(n), pa.int64()),
            "path": data["path"],
            "length": data["length"],
            "ms": _floor_ms(data["modificationTime"]),
            "tag": tags,
        }
    )
    # every (row, held version) pair of a path: a table may hold several rows of one path
    pairs = listed.join(existing, "path", join_type="inner", right_suffix="_held")
    same = _same_version(
        pairs, pairs["length_held"], _floor_ms(pairs["modificationTime"]), pairs["version_tag"]
    )
    if keep_errors:
        same = pc.and_(same, pc.invert(pairs["has_error"]))
    if keep:
        same = pc.and_(same, pc.invert(pc.is_in(pairs["path"], pa.array(list(keep), pa.string()))))
    dropped = pc.unique(pairs["i"].filter(same))
    rows = pc.invert(pc.is_in(listed["i"], dropped))
    held = pc.is_in(data["path"], existing["path"])
    replace = data["path"].filter(pc.and_(rows, held)).to_pylist()
    return data.filter(rows), replace


def _floor_ms(times: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Timestamps as whole milliseconds since 1970, floored (before 1970 too); nulls kept."""
    us = pc.cast(times, pa.timestamp("us", times.type.tz)).cast(pa.int64())
    valid = pc.is_valid(us).to_numpy(zero_copy_only=False)
    ms = np.floor_divide(pc.fill_null(us, 0).to_numpy(zero_copy_only=False), 1000)
    return pa.array(ms, pa.int64(), mask=~valid)


def _equal(a: Any, b: Any) -> pa.Array:
    """``a == b`` element-wise where null equals null (as ``None == None``), never null."""
    eq = pc.equal(a, b)
    return pc.if_else(pc.is_null(eq), pc.and_(pc.is_null(a), pc.is_null(b)), eq)


def _same_version(listed: Any, held_length: Any, held_ms: Any, held_tag: Any) -> pa.Array:
    """:func:`~pixels.schema.same_version` on whole columns: ``listed``'s ``length``,
    ``ms`` and ``tag`` against the held ones, row by row (no Python object per row)."""
    tag = listed["tag"]
    tags_agree = pc.or_(
        pc.or_(pc.is_null(held_tag), pc.is_null(tag)), pc.fill_null(pc.equal(held_tag, tag), False)
    )
    return pc.and_(
        pc.and_(_equal(listed["length"], held_length), _equal(listed["ms"], held_ms)), tags_agree
    )


def iter_new(
    table: CatalogTable,
    refs: Iterable[FileRef | RefBatch],
    *,
    chunk: int = 5000,
    retry_errors: bool = False,
    snapshot: TableScan | Sequence[str] | None = None,
) -> Iterator[tuple[FileRef, bool]]:
    """Filter a stream of :class:`~pixels.sources.ref.FileRef` against the table.

    Yields ``(ref, changed)`` for refs not already in the table at the same
    identity; ``changed`` is True when the path is present with another identity
    (or, with ``retry_errors``, present with an error). ``refs`` may hold
    :class:`~pixels.sources.ref.RefBatch` columns (a listing): their entries are
    compared as columns and a FileRef is built only for those yielded. Works
    ``chunk`` entries at a time (at most ``chunk`` plus one batch of the listing
    held at once) so memory does not grow with the number of files; against an
    empty snapshot (a new table) entry by entry, with no look-up.
    ``snapshot`` pins the look-ups to a version (a :class:`TableScan`) or to those
    data files (default: the current version).
    """
    # the table as it was when the run started: rows this run adds come from this
    # same listing, so they never need looking up (an empty table: no look-ups)
    if snapshot is None:
        snapshot = table.scan()
    elif not isinstance(snapshot, TableScan):  # (read the log once, not at every look-up)
        snapshot = (
            table.scan().restricted(list(snapshot)) if snapshot else TableScan.empty(table.uri)
        )
    if snapshot.version is None or (snapshot.direct and not snapshot.files):
        # nothing to compare with (a new table): every entry is new, as it is listed,
        # without holding a group of the listing
        for item in refs:
            if isinstance(item, RefBatch):
                for ref in item.refs():
                    yield ref, False
            else:
                yield item, False
        return
    for group in _groups(refs, chunk):
        yield from _new_in(table, group, snapshot, retry_errors)


def _groups(refs: Iterable[FileRef | RefBatch], chunk: int) -> Iterator[list[RefBatch]]:
    """``refs`` as lists of batches of about ``chunk`` entries, in order."""
    group: list[RefBatch] = []
    loose: list[FileRef] = []
    size = 0
    for item in refs:
        if isinstance(item, RefBatch):
            if loose:
                group.append(RefBatch.of(loose))
                loose = []
            if len(item):
                group.append(item)
            size += len(item)
        else:
            loose.append(item)
            size += 1
        if size >= chunk:
            if loose:
                group.append(RefBatch.of(loose))
                loose = []
            yield group
            group, size = [], 0
    if loose:
        group.append(RefBatch.of(loose))
    if group:
        yield group


def _new_in(
    table: CatalogTable,
    group: list[RefBatch],
    snapshot: TableScan,
    retry_errors: bool,
) -> Iterator[tuple[FileRef, bool]]:
    """:func:`iter_new` for one group of batches: one look-up, one comparison."""
    chain = itertools.chain.from_iterable
    paths = pa.array(list(chain(b.paths for b in group)), pa.string())
    if snapshot.direct and len(paths):
        # only the data files whose path range (footer statistics, read once) meets the
        # group's: at 1M files the table has ~500 files, a listed group meets a few
        lo, hi = pc.min(paths).as_py(), pc.max(paths).as_py()
        snapshot = snapshot.restricted([u for u in snapshot.files if table._may_hold(u, lo, hi)])
    existing = table.lookup(paths, uris=snapshot)
    if existing.num_rows == 0:
        for b in group:
            for ref in b.refs():
                yield ref, False
        return
    # the held row of each listed entry (null where the path is not held)
    held = existing.take(pc.index_in(paths, value_set=existing["path"]))
    if all(b.version_tags is None for b in group):
        tags = pa.nulls(len(paths), pa.string())
    else:
        tags = pa.array(list(chain(b.version_tags or [None] * len(b) for b in group)), pa.string())
    listed = {
        "length": pa.array(list(chain(b.lengths for b in group)), pa.int64()),
        "ms": pa.array(list(chain(b.mtimes_ms for b in group)), pa.int64()),
        "tag": tags,
    }
    same = _same_version(
        listed, held["length"], _floor_ms(held["modificationTime"]), held["version_tag"]
    )
    found = pc.is_valid(held["path"])
    same = pc.and_(same, found)
    if retry_errors:
        same = pc.and_(same, pc.invert(pc.fill_null(held["has_error"], False)))
    todo = pc.indices_nonzero(pc.invert(same)).to_pylist()
    if not todo:
        return
    changed = found.take(pa.array(todo, pa.int64())).to_pylist()
    starts = list(itertools.accumulate((len(b) for b in group), initial=0))
    for i, was_held in zip(todo, changed, strict=True):
        k = bisect.bisect_right(starts, i) - 1
        yield group[k].ref(i - starts[k]), was_held


__all__ = ["iter_new", "one_per_path", "split_by_identity", "sql_string"]
