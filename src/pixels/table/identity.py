"""The identity rule both writers follow: one row per path, at its latest version.

A row's identity is ``(path, length, modificationTime, version_tag)``
(:data:`pixels.schema.IDENTITY`, compared by :func:`pixels.schema.same_version`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from pixels.scan import LOOKUP_SCHEMA, TableScan
from pixels.schema import same_version

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
    held: dict[str, list[tuple[Any, Any, Any]]] = {}
    for p, n, t, v, e in zip(
        existing["path"].to_pylist(),
        existing["length"].to_pylist(),
        existing["modificationTime"].to_pylist(),
        existing["version_tag"].to_pylist(),
        existing["has_error"].to_pylist(),
        strict=True,
    ):
        kept_versions = held.setdefault(p, [])
        if not (keep_errors and e):
            kept_versions.append((n, t, v))
    rows: list[int] = []
    replace: list[str] = []
    tags = (
        data["version_tag"].to_pylist()
        if "version_tag" in data.column_names
        else [None] * data.num_rows
    )
    for i, (p, n, t, v) in enumerate(
        zip(
            data["path"].to_pylist(),
            data["length"].to_pylist(),
            data["modificationTime"].to_pylist(),
            tags,
            strict=True,
        )
    ):
        versions = held.get(p)
        if versions is None:
            rows.append(i)
            continue
        if p not in keep and any(same_version(h, (n, t, v)) for h in versions):
            continue
        rows.append(i)
        replace.append(p)
    return data.take(pa.array(rows, pa.int64())), replace


def iter_new(
    table: CatalogTable,
    refs: Iterable[Any],
    *,
    chunk: int = 5000,
    retry_errors: bool = False,
    snapshot: TableScan | Sequence[str] | None = None,
) -> Iterator[tuple[Any, bool]]:
    """Filter a stream of :class:`~pixels.sources.ref.FileRef` against the table.

    Yields ``(ref, changed)`` for refs not already in the table at the same
    identity; ``changed`` is True when the path is present with another identity
    (or, with ``retry_errors``, present with an error). Works chunk by chunk so
    memory does not grow with the number of files. ``snapshot`` pins the look-ups
    to a version (a :class:`TableScan`) or to those data files (default: the
    current version).
    """
    # the table as it was when the run started: rows this run adds come from this
    # same listing, so they never need looking up (an empty table: no look-ups)
    if snapshot is None:
        snapshot = table.scan()
    buf: list[Any] = []

    def flush(buf: list[Any]) -> Iterator[tuple[Any, bool]]:
        paths = pa.array([r.path for r in buf], pa.string())
        existing = table.lookup(paths, uris=snapshot)
        if existing.num_rows == 0:
            for r in buf:
                yield r, False
            return
        # the identity rule (same_version) on whole columns: no Python object per held row
        held = existing.take(pc.index_in(paths, value_set=existing["path"]))
        lengths = pa.array([r.length for r in buf], pa.int64())
        times = pa.array([r.modificationTime for r in buf], LOOKUP_SCHEMA.field(2).type)
        tags = pa.array([r.version_tag for r in buf], pa.string())
        held_us, listed_us = held["modificationTime"].cast(pa.int64()), times.cast(pa.int64())
        if (pc.min(held_us).as_py() or 0) < 0 or (pc.min(listed_us).as_py() or 0) < 0:
            yield from _flush_rows(buf, existing, retry_errors)  # (before 1970: floor in Python)
            return
        held_tag = held["version_tag"]
        same = pc.and_kleene(
            pc.and_kleene(
                pc.equal(held["length"], lengths),
                pc.equal(pc.divide(held_us, 1000), pc.divide(listed_us, 1000)),
            ),
            pc.or_kleene(
                pc.or_kleene(pc.is_null(held_tag), pc.is_null(tags)), pc.equal(held_tag, tags)
            ),
        )
        if retry_errors:
            same = pc.and_kleene(same, pc.invert(held["has_error"]))
        found = pc.is_valid(held["path"])
        todo = pc.invert(pc.fill_null(same, False))
        changed = found.to_pylist()
        for i in pc.indices_nonzero(todo).to_pylist():
            yield buf[i], changed[i]

    for ref in refs:
        buf.append(ref)
        if len(buf) >= chunk:
            yield from flush(buf)
            buf = []
    if buf:
        yield from flush(buf)


def _flush_rows(
    buf: list[Any], existing: pa.Table, retry_errors: bool
) -> Iterator[tuple[Any, bool]]:
    """:func:`iter_new`'s comparison row by row (:func:`same_version`), for times before 1970."""
    index: dict[str, tuple[tuple[Any, Any, Any], bool]] = {}
    for p, n, t, v, e in zip(
        existing["path"].to_pylist(),
        existing["length"].to_pylist(),
        existing["modificationTime"].to_pylist(),
        existing["version_tag"].to_pylist(),
        existing["has_error"].to_pylist(),
        strict=True,
    ):
        index[p] = ((n, t, v), e)
    for r in buf:
        hit = index.get(r.path)
        if hit is None:
            yield r, False
            continue
        same = same_version(hit[0], (r.length, r.modificationTime, r.version_tag))
        if same and not (retry_errors and hit[1]):
            continue
        yield r, True


__all__ = ["iter_new", "one_per_path", "split_by_identity", "sql_string"]
