"""Opening the bytes behind any FileRef as a seekable binary file.

- ``local_path`` set (local files, extracted members): :func:`open`.
- fsspec URL: files under :data:`SMALL_FILE_BYTES` are fetched whole with one
  request into :class:`io.BytesIO`; larger ones are opened lazily with
  :data:`BLOCK_SIZE` read-ahead blocks (a header read costs one block, not the file).
- zip member (``zip://member::archive``): the member is decompressed into memory,
  enforcing :attr:`ArchiveLimits.max_member_bytes` while reading.

Open archives are kept in a small per-process LRU (:data:`ZIP_CACHE_SIZE`), because
workers read many members of one archive. The cache is emptied in a forked child
(an inherited file descriptor shares its offset with the parent), and a local
archive whose size or mtime changed is reopened.
"""

from __future__ import annotations

import io
import json
import os
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

from pixels.errors import SourceError, SourceNotFoundError
from pixels.sources.archive import (
    DEFAULT_LIMITS,
    ArchiveLimits,
    copy_member,
    open_zip,
    parse_member_url,
)
from pixels.sources.local import is_url, os_path
from pixels.sources.ref import FileRef
from pixels.sources.remote import url_to_fs

#: fsspec files smaller than this are fetched whole, in one request.
SMALL_FILE_BYTES = 4 << 20
#: Block size for larger fsspec files.
BLOCK_SIZE = 2 << 20
#: Number of open archives kept per process.
ZIP_CACHE_SIZE = 8

_zip_cache: OrderedDict[tuple[Any, ...], zipfile.ZipFile] = OrderedDict()
_zip_lock = threading.Lock()


def clear_zip_cache() -> None:
    """Close and forget every cached open archive."""
    with _zip_lock:
        while _zip_cache:
            _, zf = _zip_cache.popitem()
            zf.close()


def _forget_after_fork() -> None:
    global _zip_lock
    _zip_lock = threading.Lock()
    _zip_cache.clear()  # do not close: the parent still uses the shared descriptors


os.register_at_fork(after_in_child=_forget_after_fork)


def _cache_key(archive: str, storage_options: dict[str, Any] | None) -> tuple[Any, ...]:
    if is_url(archive) and not archive.startswith("file://"):
        return (archive, json.dumps(storage_options or {}, sort_keys=True, default=repr))
    st = os.stat(os_path(archive.removeprefix("file://")))
    return (archive, st.st_size, st.st_mtime_ns, st.st_ino)


def _cached_zip(archive: str, storage_options: dict[str, Any] | None) -> zipfile.ZipFile:
    key = _cache_key(archive, storage_options)
    with _zip_lock:
        zf = _zip_cache.get(key)
        if zf is not None:
            _zip_cache.move_to_end(key)
            return zf
    zf = open_zip(archive, storage_options)
    with _zip_lock:
        _zip_cache[key] = zf
        while len(_zip_cache) > ZIP_CACHE_SIZE:
            _, old = _zip_cache.popitem(last=False)
            old.close()  # members already open keep the file alive (zipfile refcounts it)
    return zf


def _read_member(
    ref: FileRef, storage_options: dict[str, Any] | None, limits: ArchiveLimits
) -> io.BytesIO:
    if ref.member is not None and ref.original_path is not None:
        member, archive = ref.member, ref.original_path
    else:
        member, archive = parse_member_url(ref.path)
    try:
        zf = _cached_zip(archive, storage_options)
    except FileNotFoundError as e:
        raise SourceNotFoundError(f"archive {archive} not found", ref.path) from e
    except (zipfile.BadZipFile, OSError) as e:
        raise SourceError(f"cannot open archive {archive}: {e}", ref.path) from e
    try:
        info = zf.getinfo(member)
    except KeyError as e:
        raise SourceNotFoundError(f"no member {member!r} in archive {archive}", ref.path) from e
    buf = io.BytesIO()
    copy_member(zf, info, buf, limits, ref.path)
    buf.seek(0)
    return buf


@contextmanager
def open_file(
    ref: FileRef,
    *,
    storage_options: dict[str, Any] | None = None,
    limits: ArchiveLimits = DEFAULT_LIMITS,
) -> Iterator[BinaryIO]:
    """Open the bytes of a FileRef as a seekable binary file.

    Parameters
    ----------
    ref : FileRef
        A row from :func:`pixels.sources.iter_files`.
    storage_options : dict, optional
        fsspec options (credentials, endpoint) for URLs and archives on URLs.
    limits : ArchiveLimits
        Limits enforced while decompressing zip members.

    Yields
    ------
    BinaryIO
        A seekable file, closed when the ``with`` block ends.

    Raises
    ------
    SourceNotFoundError
        The file, archive or member does not exist.
    UnsafeArchiveMemberError
        An encrypted member, or one larger than ``max_member_bytes`` (declared or
        actually decompressed).
    SourceError
        Any other failure to open or read; the message names the path.

    Examples
    --------
    >>> from pixels.sources import iter_files, open_file  # doctest: +SKIP
    >>> for ref in iter_files("s3://bucket/study", pattern="*.dcm"):  # doctest: +SKIP
    ...     with open_file(ref) as f:
    ...         head = f.read(512)
    """
    f: BinaryIO
    try:
        if ref.local_path is not None:
            f = open(os_path(ref.local_path), "rb")  # noqa: SIM115 - closed below
        elif ref.path.startswith("zip://"):
            f = _read_member(ref, storage_options, limits)
        elif ref.path.startswith("file://") or not is_url(ref.path):
            f = open(os_path(ref.path.removeprefix("file://")), "rb")  # noqa: SIM115
        else:
            fs, path = url_to_fs(ref.path, storage_options)
            if 0 < ref.length < SMALL_FILE_BYTES:
                f = io.BytesIO(fs.cat_file(path))
            else:
                f = fs.open(path, "rb", block_size=BLOCK_SIZE, cache_type="readahead")
    except SourceError:
        raise
    except FileNotFoundError as e:
        raise SourceNotFoundError("file not found", ref.path) from e
    except OSError as e:
        raise SourceError(f"cannot open: {e}", ref.path) from e
    with f:
        yield f
