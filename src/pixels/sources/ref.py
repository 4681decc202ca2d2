"""The record every source produces: one file (or archive member) to catalog."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any


@dataclass(frozen=True, slots=True)
class FileRef:
    """One file found by a source, before any of its bytes are read.

    Attributes
    ----------
    path : str
        Where the file is: an absolute local path, an fsspec URL (``s3://b/k``),
        or for a zip member the chained fsspec URL ``zip://{member}::{archive}``.
        Together with ``length`` and ``modificationTime`` it identifies a row.
    modificationTime : datetime
        Last modification time, timezone-aware UTC (zip members: the member's
        stored date, taken as UTC).
    length : int
        Size in bytes (zip members: uncompressed size declared by the archive).
    relative_path : str
        Path relative to the root that was listed, ``/``-separated; for members of
        an archive found under the root, ``{archive relative path}/{member name}``.
    local_path : str or None
        A path on this machine that holds the bytes, when there is one
        (local files, extracted members); None for URLs and in-memory members.
    extension : str
        Lower-cased file extension without the dot (``dcm``), "" when none.
    path_tags : tuple of str
        ``relative_path`` split on separators, directories and file name.
    original_path : str or None
        The archive a member came from (its path or URL); None for plain files.
    member : str or None
        Name of the member inside ``original_path``; None for plain files.
    error : str or None
        Set when the source refused the entry (unsafe zip member, unreadable
        directory entry); the entry still becomes a row, with this error.
    version_tag : str or None
        What the listing says about the bytes without reading them, part of the
        identity: ``crc32:{8 hex}`` for zip members (DOS times have 2 s steps and
        no time zone), ``etag:{ETag}`` or ``version:{id}`` for objects in stores;
        None for local files.
    """

    path: str
    modificationTime: datetime
    length: int
    relative_path: str
    local_path: str | None
    extension: str
    path_tags: tuple[str, ...] = field(default_factory=tuple)
    original_path: str | None = None
    member: str | None = None
    error: str | None = None
    version_tag: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> FileRef:
        """Rebuild the ref of a catalog row (to read the file again without listing)."""
        path = row["path"]
        original = row.get("original_path")
        member = None
        if original and path.startswith("zip://") and path.endswith("::" + original):
            member = path[len("zip://") : len(path) - len(original) - 2]
        mtime = row.get("modificationTime")
        if isinstance(mtime, datetime):  # naive values (Spark rows) are UTC
            mtime = mtime.replace(tzinfo=UTC) if mtime.tzinfo is None else mtime.astimezone(UTC)
        return cls(
            path=path,
            modificationTime=mtime,  # type: ignore[arg-type]
            length=row.get("length") or 0,
            relative_path=row.get("relative_path") or "",
            local_path=row.get("local_path"),
            extension=row.get("extension") or "",
            path_tags=tuple(row.get("path_tags") or ()),
            original_path=original,
            member=member,
            version_tag=row.get("version_tag"),
        )


class RefBatch:
    """Files listed as columns: what the identity rule compares, FileRefs on demand.

    A listing of many files mostly finds files the table already holds; it gives
    them as columns (``paths``, ``lengths``, ``mtimes_ms``, ``version_tags``) and
    builds a :class:`FileRef` only for an entry that is asked for
    (:meth:`ref`), so a no-op re-run builds none.

    Attributes
    ----------
    paths : list of str
        ``FileRef.path`` of each entry, in listing order.
    lengths : list of int
        ``FileRef.length`` of each entry.
    mtimes_ms : list of int
        ``FileRef.modificationTime`` of each entry, in milliseconds since 1970 (UTC).
    version_tags : list of (str or None), or None
        ``FileRef.version_tag`` of each entry; None when no entry has one.
    """

    __slots__ = ("_make", "lengths", "mtimes_ms", "paths", "version_tags")

    def __init__(
        self,
        paths: list[str],
        lengths: list[int],
        mtimes_ms: list[int],
        make: Callable[[int], FileRef],
        version_tags: list[str | None] | None = None,
    ):
        self.paths = paths
        self.lengths = lengths
        self.mtimes_ms = mtimes_ms
        self.version_tags = version_tags
        self._make = make

    def __len__(self) -> int:
        return len(self.paths)

    def ref(self, i: int) -> FileRef:
        """The :class:`FileRef` of entry ``i`` (built now)."""
        return self._make(i)

    def refs(self) -> Iterator[FileRef]:
        """Every entry's :class:`FileRef`, in order."""
        return map(self._make, range(len(self.paths)))

    def take(self, indices: Sequence[int]) -> RefBatch:
        """The entries at ``indices`` (in that order), as a batch."""
        make = self._make
        idx = list(indices)
        tags = self.version_tags
        return RefBatch(
            [self.paths[i] for i in idx],
            [self.lengths[i] for i in idx],
            [self.mtimes_ms[i] for i in idx],
            lambda j: make(idx[j]),
            None if tags is None else [tags[i] for i in idx],
        )

    @classmethod
    def of(cls, refs: Sequence[FileRef]) -> RefBatch:
        """A batch of refs already built (any source)."""
        refs = list(refs)
        tags = [r.version_tag for r in refs]
        return cls(
            [r.path for r in refs],
            [r.length for r in refs],
            [ms_since_epoch(r.modificationTime) for r in refs],
            refs.__getitem__,
            tags if any(t is not None for t in tags) else None,
        )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ms_since_epoch(value: datetime) -> int:
    """Whole milliseconds since 1970 of an aware datetime (floored, before 1970 too).

    >>> ms_since_epoch(datetime(1970, 1, 1, 0, 0, 1, 999999, tzinfo=UTC))
    1999
    >>> ms_since_epoch(datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC))
    -1
    """
    return (value - _EPOCH) // _MS


_MS = timedelta(milliseconds=1)
