"""Listing for the Spark engine: the local engine's listing, split across executors.

Batch listing: the driver walks only the first levels of the source folder to
cut it into *units* (a folder listed alone, or a folder listed recursively);
executors list the units with :func:`pixels.sources.iter_files` — the same
rules as the local engine (hidden and temporary files, symlink loops, zip
archives expanded safely in memory, error rows) — and drop files the table
already holds at the same identity. No file content enters Spark.

Streaming listing: Spark's file source over the folder (``binaryFile`` with
only ``path``, ``modificationTime`` and ``length`` selected); executors apply
the same name rules and zip expansion to what it finds.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC
from typing import Any

import pyarrow as pa

from pixels.rows import refs_to_batch, uri_to_path
from pixels.sources import ArchiveLimits, iter_files
from pixels.sources.archive import expand_zip, has_zip_magic, is_zip_name
from pixels.sources.local import (
    is_hidden_dir,
    is_skipped_name,
    is_url,
    make_ref,
    matches,
)
from pixels.sources.ref import FileRef

#: A unit of listing work: folder (or file), relative path prefix, recursive.
UNIT_SCHEMA = pa.schema(
    [
        pa.field("unit_path", pa.string()),
        pa.field("unit_prefix", pa.string()),
        pa.field("unit_recursive", pa.bool_()),
    ]
)

#: Rows per Arrow batch produced by listing tasks.
BATCH_ROWS = 512


@dataclasses.dataclass(frozen=True)
class ListOptions:
    """What the listing tasks need (pickled into the Spark tasks)."""

    pattern: str | None = None
    expand_archives: bool = False
    extract_dir: str | None = None
    limits: ArchiveLimits = dataclasses.field(default_factory=ArchiveLimits)
    storage_options: dict[str, Any] | None = None
    table_uri: str | None = None
    table_storage_options: dict[str, str] | None = None
    snapshot: tuple[str, ...] = ()
    retry_errors: bool = False
    only_changed: bool = False
    #: Compare with the table's version at listing time (streams) rather than ``snapshot``.
    live: bool = False


# ------------------------------------------------------------------ planning
def _local_children(path: str) -> tuple[list[str], bool]:
    """Visible sub-folders of ``path`` (sorted), and whether it could be listed."""
    try:
        with os.scandir(path) as it:
            dirs = []
            for e in it:
                try:
                    if e.is_dir() and not is_hidden_dir(e.name):
                        dirs.append(e.name)
                except OSError:
                    continue
    except OSError:
        return [], False
    return sorted(dirs), True


def _fs_children(fs: Any, path: str) -> tuple[list[str], bool]:
    from pixels.sources.remote import _basename, _is_dir, _iter_dir

    try:
        names = [
            _basename(e["name"])
            for e in _iter_dir(fs, path)
            if _is_dir(e) and not is_hidden_dir(_basename(e["name"]))
        ]
    except OSError:
        return [], False
    return sorted(names), True


def plan_units(
    source: str,
    *,
    recursive: bool = True,
    storage_options: dict[str, Any] | None = None,
    target: int = 64,
    max_depth: int = 4,
) -> list[tuple[str, str, bool]]:
    """Cut ``source`` into listing units ``(path, relative prefix, recursive)``.

    The driver lists only folders, breadth first, until there are ``target``
    folders to hand out (or ``max_depth`` levels): folders above that level are
    listed alone (their files), folders at it recursively. A file or a
    non-recursive listing is one unit.
    """
    from pixels.errors import SourceNotFoundError

    children: Callable[[str], tuple[list[str], bool]]
    join: Callable[[str, str], str]
    as_unit_path: Callable[[str], str]
    remote = is_url(source) and not source.startswith("file://")
    if remote:
        from pixels.sources.remote import url_to_fs

        fs, root = url_to_fs(source, storage_options)
        try:
            info = fs.info(root)
        except FileNotFoundError as e:
            raise SourceNotFoundError("source not found", source) from e
        if info.get("type") != "directory" or not recursive:
            return [(source, "", recursive)]
        protocol = source.split("://", 1)[0]
        children = lambda p: _fs_children(fs, p)  # noqa: E731
        join = lambda p, name: p.rstrip("/") + "/" + name  # noqa: E731
        as_unit_path = lambda p: f"{protocol}://{p}"  # noqa: E731
        start = root.rstrip("/")
    else:
        path = os.path.abspath(source.removeprefix("file://"))
        if not os.path.exists(path):
            raise SourceNotFoundError("source not found", source)
        if not os.path.isdir(path) or not recursive:
            return [(path, "", recursive)]
        children = _local_children
        join = os.path.join
        as_unit_path = str
        start = path

    units: list[tuple[str, str, bool]] = []
    frontier: list[tuple[str, str]] = [(start, "")]
    seen: set[str] = set() if remote else {os.path.realpath(start)}
    depth = 0
    while frontier and len(frontier) < target and depth < max_depth:
        nxt: list[tuple[str, str]] = []
        for p, rel in frontier:
            names, ok = children(p)
            if not ok:  # the unit's own listing reports the error row
                units.append((as_unit_path(p), rel, True))
                continue
            units.append((as_unit_path(p), rel, False))
            for name in names:
                child = join(p, name)
                if seen:
                    real = os.path.realpath(child)
                    if real in seen:
                        continue
                    seen.add(real)
                nxt.append((child, rel + name + "/"))
        frontier = nxt
        depth += 1
    units.extend((as_unit_path(p), rel, True) for p, rel in frontier)
    return units


# ------------------------------------------------------------ executor side
def _chunked(refs: Iterable[FileRef], size: int = BATCH_ROWS) -> Iterator[list[FileRef]]:
    buf: list[FileRef] = []
    for r in refs:
        buf.append(r)
        if len(buf) >= size:
            yield buf
            buf = []
    if buf:
        yield buf


def _not_in_table(refs: Iterable[FileRef], opts: ListOptions) -> Iterator[FileRef]:
    """Drop refs the table holds at the same identity (the local engine's rule)."""
    own = (
        os.path.join(opts.table_uri, "") if opts.table_uri and "://" not in opts.table_uri else None
    )
    if own is not None:
        refs = (r for r in refs if not r.path.startswith(own))
    if opts.table_uri is None or not (opts.snapshot or opts.live):
        if opts.only_changed:
            return
        yield from refs
        return
    from pixels.table import CatalogTable, iter_new

    table = CatalogTable(opts.table_uri, storage_options=opts.table_storage_options)
    snapshot = list(opts.snapshot) if opts.snapshot else table.scan()
    for ref, changed in iter_new(
        table, refs, chunk=5000, retry_errors=opts.retry_errors, snapshot=snapshot
    ):
        if changed or not opts.only_changed:
            yield ref


def list_units(opts: ListOptions) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The ``mapInArrow`` function listing units (rows of :data:`UNIT_SCHEMA`)."""

    def refs(batches: Iterator[pa.RecordBatch]) -> Iterator[FileRef]:
        for batch in batches:
            for unit in batch.to_pylist():
                yield from iter_files(
                    unit["unit_path"],
                    pattern=opts.pattern,
                    recursive=bool(unit["unit_recursive"]),
                    expand_archives=opts.expand_archives,
                    extract_dir=opts.extract_dir,
                    limits=opts.limits,
                    storage_options=opts.storage_options,
                    relative_prefix=unit["unit_prefix"],
                )

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        # all units of the task through one identity filter: one look-up per 5,000
        # files, not one per folder
        for chunk in _chunked(_not_in_table(refs(batches), opts)):
            yield refs_to_batch(chunk, opts.storage_options)

    return run


def stream_refs(
    root: str, opts: ListOptions
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The ``mapInArrow`` function turning Spark file-source rows into listing rows.

    Applies the local engine's rules that Spark's source does not: hidden
    folders, temporary files, ``pattern`` on relative paths, zip expansion.
    """
    root_path, _ = uri_to_path(root) if ":" in root.split("/", 1)[0] else (root, None)
    root_prefix = root_path.rstrip("/") + "/"

    def refs(batch: pa.RecordBatch) -> Iterator[FileRef]:
        for row in batch.to_pylist():
            path, local = uri_to_path(row["path"])
            rel = path[len(root_prefix) :] if path.startswith(root_prefix) else path.rsplit("/")[-1]
            parts = rel.split("/")
            if any(is_hidden_dir(p) for p in parts[:-1]) or is_skipped_name(parts[-1]):
                continue
            mtime = row["modificationTime"]
            mtime = mtime.replace(tzinfo=UTC) if mtime.tzinfo is None else mtime.astimezone(UTC)
            ref = make_ref(path, mtime, int(row["length"]), rel, local_path=local)
            name = parts[-1]
            ok = matches(opts.pattern, name, rel)
            if opts.expand_archives and is_zip_name(name) and _zip_magic(ref, opts):
                yield from expand_zip(
                    ref,
                    pattern=opts.pattern,
                    archive_matches=ok and opts.pattern is not None,
                    nested=True,
                    limits=opts.limits,
                    extract_dir=opts.extract_dir,
                    storage_options=opts.storage_options,
                )
            elif ok:
                yield ref

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for chunk in _chunked(_not_in_table(refs(batch), opts)):
                yield refs_to_batch(chunk, opts.storage_options)

    return run


def _zip_magic(ref: FileRef, opts: ListOptions) -> bool:
    from pixels.sources import open_file

    try:
        with open_file(ref, storage_options=opts.storage_options) as f:
            return has_zip_magic(f.read(4))
    except OSError:
        return False
