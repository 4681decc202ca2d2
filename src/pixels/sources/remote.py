"""Listing fsspec URLs (``s3://bucket/prefix``, ``gs://``, ``memory://``, ...).

The walk is depth-first with an explicit stack, one directory listing per level,
following the ordering and skip rules of :mod:`pixels.sources.local`.

Memory trade-off
----------------
``fs.find`` returns the whole tree as one list; instead each directory is listed on
its own, so memory grows with the widest directory, not the whole tree. For
``s3://`` the listing goes one step further: the pages of ``ListObjectsV2`` (1,000
keys each) are consumed as they arrive, each page sorted on its own, which keeps
S3's global key order (pages are contiguous in key order) and holds one page per
level, even for a flat prefix with millions of keys. Other protocols hold one
directory's ``ls`` result at a time.

fsspec filesystems cache listings (``dircache``) on a cached instance that lives
for the process; the walk drops each directory's entry before and after listing
it, so a second listing sees new files and the cache does not grow with the tree.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import fsspec
from fsspec.asyn import sync

from pixels.sources.local import EPOCH, is_hidden_dir, is_skipped_name, make_ref, matches
from pixels.sources.ref import FileRef

_MTIME_KEYS = ("LastModified", "mtime", "last_modified", "updated", "modified", "created", "time")


def url_to_fs(url: str, storage_options: dict[str, Any] | None = None) -> tuple[Any, str]:
    """The filesystem and protocol-less path for an fsspec URL."""
    return fsspec.core.url_to_fs(url, **(storage_options or {}))


def info_mtime(info: dict[str, Any]) -> datetime:
    """Modification time from an fsspec info dict, as aware UTC (epoch when absent)."""
    for key in _MTIME_KEYS:
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, datetime):
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if isinstance(value, int | float):
            return datetime.fromtimestamp(value, tz=UTC)
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    return EPOCH


def info_version(info: dict[str, Any]) -> str | None:
    """The version tag of an fsspec info dict: ``etag:...``, else ``version:...``, else None.

    The ETag changes whenever the bytes do (S3, GCS, Azure); a version id also
    changes when identical bytes are written again, so it is used only without an ETag.
    """
    for key in ("ETag", "etag", "e_tag"):
        value = info.get(key)
        if value:
            return "etag:" + str(value).strip('"')
    for key in ("VersionId", "version_id", "generation"):
        value = info.get(key)
        if value and value != "null":
            return f"version:{value}"
    return None


def remote_ref(fs: Any, info: dict[str, Any], relative_path: str) -> FileRef:
    """FileRef for one file of an fsspec filesystem (``path`` is the full URL)."""
    url = fs.unstrip_protocol(info["name"])
    return make_ref(
        url,
        info_mtime(info),
        int(info.get("size") or 0),
        relative_path,
        local_path=None,
        version_tag=info_version(info),
    )


def _basename(name: str) -> str:
    return name.rstrip("/").rsplit("/", 1)[-1]


def _is_dir(info: dict[str, Any]) -> bool:
    return info.get("type") == "directory"


def _filtered_sorted(entries: list[dict[str, Any]], parent: str) -> list[dict[str, Any]]:
    """Drop the directory itself, hidden and temp names; sort as S3 does (dirs as ``name/``)."""
    out = []
    for e in entries:
        name = e["name"].rstrip("/")
        if name == parent or not name:
            continue
        base = _basename(name)
        if is_hidden_dir(base) if _is_dir(e) else is_skipped_name(base):
            continue
        if e.get("type") not in ("file", "directory"):
            continue
        out.append(e)
    out.sort(key=lambda e: _basename(e["name"]) + ("/" if _is_dir(e) else ""))
    return out


def _iter_s3_dir(fs: Any, path: str) -> Iterator[dict[str, Any]]:
    """Entries of one S3 "directory", page by page, without holding the whole listing."""
    bucket, key, _ = fs.split_path(path)
    prefix = key.rstrip("/") + "/" if key else ""
    agen: AsyncIterator[dict[str, Any]] = fs._list_pages(
        "list_objects_v2", Bucket=bucket, Prefix=prefix, Delimiter="/", **fs.req_kw
    )
    try:
        while True:
            try:
                page = sync(fs.loop, agen.__anext__)
            except StopAsyncIteration:
                return
            entries = []
            for p in page.get("CommonPrefixes", []):
                entries.append(
                    {"name": f"{bucket}/{p['Prefix'].rstrip('/')}", "type": "directory", "size": 0}
                )
            for c in page.get("Contents", []):
                if c["Key"].endswith("/"):
                    continue  # zero-byte "folder" marker
                entries.append(
                    {"name": f"{bucket}/{c['Key']}", "type": "file", "size": c["Size"],
                     "LastModified": c["LastModified"], "ETag": c.get("ETag")}
                )  # fmt: skip
            yield from _filtered_sorted(entries, path)
    finally:
        aclose = getattr(agen, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):  # best-effort cleanup
                sync(fs.loop, aclose)


def _iter_dir(fs: Any, path: str) -> Iterator[dict[str, Any]]:
    """Entries of one directory, filtered and in deterministic order."""
    protocols = fs.protocol if isinstance(fs.protocol, tuple | list) else (fs.protocol,)
    if "s3" in protocols and hasattr(fs, "_list_pages") and not getattr(fs, "version_aware", False):
        yield from _iter_s3_dir(fs, path)
        return
    fs.invalidate_cache(path)
    entries = fs.ls(path, detail=True)
    fs.invalidate_cache(path)
    yield from _filtered_sorted(entries, path)


def iter_fs_dir(
    fs: Any,
    root: str,
    *,
    recursive: bool = True,
    pattern: str | None = None,
    relative_prefix: str = "",
) -> Iterator[FileRef]:
    """Walk a directory of an fsspec filesystem, yielding one FileRef per file.

    Parameters
    ----------
    fs : fsspec.AbstractFileSystem
        The filesystem.
    root : str
        Protocol-less path of an existing directory (``bucket/prefix``).
    recursive : bool
        Descend into subdirectories.
    pattern : str, optional
        Glob on the file name, or on ``relative_path`` when it contains ``/``.
    relative_prefix : str
        Prepended to every ``relative_path``.
    """
    root = root.rstrip("/") or root
    stack: list[tuple[str, Iterator[dict[str, Any]]]] = [(relative_prefix, _iter_dir(fs, root))]
    try:
        while stack:
            prefix, entries = stack[-1]
            entry = next(entries, None)
            if entry is None:
                stack.pop()
                continue
            base = _basename(entry["name"])
            rel = prefix + base
            if _is_dir(entry):
                if recursive:
                    stack.append((rel + "/", _iter_dir(fs, entry["name"].rstrip("/"))))
            elif matches(pattern, base, rel):
                yield remote_ref(fs, entry, rel)
    finally:
        for _, entries in reversed(stack):
            close = getattr(entries, "close", None)
            if close is not None:
                close()
