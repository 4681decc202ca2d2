"""Sources: listing files to catalog, and opening their bytes.

:func:`iter_files` turns a folder, a file, a zip archive or any fsspec URL into a
stream of :class:`FileRef`; :func:`open_file` gives the bytes behind one of them.
The rules (ordering, hidden files, symlinks, extensions, zip safety) are described
in :mod:`pixels.sources.local`, :mod:`pixels.sources.remote` and
:mod:`pixels.sources.archive`.

Examples
--------
>>> from pixels.sources import iter_files, open_file
>>> for ref in iter_files("/data/study", pattern="*.dcm"):  # doctest: +SKIP
...     with open_file(ref) as f:
...         head = f.read(512)
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator
from typing import Any

from pixels.errors import SourceError, SourceNotFoundError
from pixels.sources.archive import (
    DEFAULT_LIMITS,
    ArchiveLimits,
    expand_zip,
    has_zip_magic,
    is_zip_name,
)
from pixels.sources.local import (
    BATCH_FILES,
    is_url,
    iter_local_batches,
    local_ref,
    matches,
    os_path,
)
from pixels.sources.magic import HEAD_BYTES, detect_file_type
from pixels.sources.opener import clear_zip_cache, open_file
from pixels.sources.ref import FileRef, RefBatch
from pixels.sources.remote import iter_fs_dir, remote_ref, url_to_fs

__all__ = [
    "HEAD_BYTES",
    "ArchiveLimits",
    "FileRef",
    "RefBatch",
    "clear_zip_cache",
    "detect_file_type",
    "expand_local",
    "iter_file_batches",
    "iter_files",
    "open_file",
]


def _zip_head(ref: FileRef, fs: Any | None) -> bytes:
    """First 4 bytes of a ``.zip`` candidate (b"" when unreadable: listed as a plain file)."""
    try:
        if ref.local_path is not None:
            with open(os_path(ref.local_path), "rb") as f:
                return f.read(4)
        if fs is not None:
            return bytes(fs.cat_file(fs._strip_protocol(ref.path), start=0, end=4))
    except OSError:
        pass
    return b""


def _with_archives(
    refs: Iterator[FileRef],
    fs: Any | None,
    *,
    pattern: str | None,
    nested: bool,
    expand_archives: bool,
    extract_dir: str | None,
    limits: ArchiveLimits,
    storage_options: dict[str, Any] | None,
) -> Iterator[FileRef]:
    """Apply ``pattern`` and expand zip archives in a stream of files."""
    for ref in refs:
        name = ref.relative_path.rsplit("/", 1)[-1]
        ok = ref.error is not None or matches(pattern, name, ref.relative_path)
        if (
            expand_archives
            and ref.error is None
            and is_zip_name(name)
            and has_zip_magic(_zip_head(ref, fs))
        ):
            yield from expand_zip(
                ref,
                pattern=pattern,
                archive_matches=ok and pattern is not None,
                nested=nested,
                limits=limits,
                extract_dir=extract_dir,
                storage_options=storage_options,
            )
        elif ok:
            yield ref


def expand_local(
    refs: Iterator[FileRef],
    *,
    pattern: str | None = None,
    expand_archives: bool = True,
    extract_dir: str | None = None,
    limits: ArchiveLimits = DEFAULT_LIMITS,
) -> Iterator[FileRef]:
    """Local files found one by one (as a folder's walk gives them), as :func:`iter_files`
    lists them: ``pattern`` applied, zip archives expanded (``pixels catalog --watch``)."""
    yield from _with_archives(
        refs,
        None,
        pattern=pattern,
        nested=True,
        expand_archives=expand_archives,
        extract_dir=extract_dir,
        limits=limits,
        storage_options=None,
    )


def iter_files(
    source: str,
    *,
    pattern: str | None = None,
    recursive: bool = True,
    expand_archives: bool = True,
    extract_dir: str | None = None,
    limits: ArchiveLimits = DEFAULT_LIMITS,
    storage_options: dict[str, Any] | None = None,
    relative_prefix: str = "",
) -> Iterator[FileRef]:
    """List the files under a source, as a stream of :class:`FileRef`.

    Parameters
    ----------
    source : str
        A local folder, file or ``.zip``; or an fsspec URL (``s3://bucket/prefix``,
        ``gs://...``, ``memory://...``) of a folder, file or zip. ``file://`` URLs
        are listed as local paths.
    pattern : str, optional
        Case-insensitive glob on the file name (``*.dcm``), or on ``relative_path``
        when it contains ``/``. Archives are expanded whatever their name; their
        members are filtered by the pattern unless the archive itself matches it.
    recursive : bool
        Descend into subfolders.
    expand_archives : bool
        List the members of ``.zip`` files (extension and magic) instead of the archive.
    extract_dir : str, optional
        Extract accepted zip members under this folder and set ``local_path``.
    limits : ArchiveLimits
        Zip bomb and traversal limits; refused members become rows with ``error``.
    storage_options : dict, optional
        fsspec options (credentials, ``client_kwargs``) for URLs.
    relative_prefix : str
        Prepended to the ``relative_path`` of everything under a folder
        ``source`` (the Spark engine lists sub-folders of one root in parallel).

    Yields
    ------
    FileRef
        One per file or archive member, streamed as the walk proceeds, in a
        deterministic order (sorted within each directory, depth-first).

    Raises
    ------
    SourceNotFoundError
        ``source`` does not exist.
    SourceError
        ``source`` exists but cannot be listed at all.

    Examples
    --------
    >>> refs = list(iter_files("tests/data", pattern="*.dcm"))  # doctest: +SKIP
    """
    batches = iter_file_batches(
        source,
        pattern=pattern,
        recursive=recursive,
        expand_archives=expand_archives,
        extract_dir=extract_dir,
        limits=limits,
        storage_options=storage_options,
        relative_prefix=relative_prefix,
        batch_files=1,  # a URL's or a zip's refs stream one by one, as before
    )
    for batch in batches:
        yield from batch.refs()


def iter_file_batches(
    source: str,
    *,
    pattern: str | None = None,
    recursive: bool = True,
    expand_archives: bool = True,
    extract_dir: str | None = None,
    limits: ArchiveLimits = DEFAULT_LIMITS,
    storage_options: dict[str, Any] | None = None,
    relative_prefix: str = "",
    batch_files: int = 1000,
) -> Iterator[RefBatch]:
    """The files of :func:`iter_files`, in the same order, as :class:`RefBatch` columns.

    A local folder is listed without building a :class:`FileRef` per file
    (:func:`pixels.sources.local.iter_local_batches`): a re-run that finds every
    file unchanged builds none. Other sources (URLs, a file, a zip) give their
    refs in batches of ``batch_files``. Parameters and errors as :func:`iter_files`.
    """
    options: dict[str, Any] = {
        "pattern": pattern,
        "expand_archives": expand_archives,
        "extract_dir": extract_dir,
        "limits": limits,
        "storage_options": storage_options,
    }
    refs: Iterator[FileRef]
    if is_url(source) and not source.startswith("file://"):
        refs = _iter_url(
            source, recursive=recursive, options=options, relative_prefix=relative_prefix
        )
    else:
        path = os.path.abspath(source.removeprefix("file://"))
        with _accessing(source):
            st = os.stat(path)
        if os.path.isdir(path):
            yield from _local_dir_batches(path, recursive, relative_prefix, options)
            return
        ref = local_ref(path, st, os.path.basename(path))
        refs = _with_archives(iter([ref]), None, nested=False, **options)
    while chunk := list(itertools.islice(refs, batch_files)):
        yield RefBatch.of(chunk)


@contextlib.contextmanager
def _accessing(source: str) -> Iterator[None]:
    """The OS or fsspec error of looking ``source`` up as a :class:`SourceError` naming it."""
    try:
        yield
    except FileNotFoundError as e:
        raise SourceNotFoundError("source not found", source) from e
    except OSError as e:
        raise SourceError(f"cannot access source: {e.strerror or e}", source) from e


def _local_dir_batches(
    path: str, recursive: bool, relative_prefix: str, options: dict[str, Any]
) -> Iterator[RefBatch]:
    """A local folder's batches, ``pattern`` applied and zip archives expanded."""
    pattern, expand = options["pattern"], options["expand_archives"]
    batches = iter_local_batches(
        path,
        pattern=pattern,
        recursive=recursive,
        relative_prefix=relative_prefix,
        keep_zips=expand,
    )
    for batch in batches:
        if not expand or ".zip\n" not in ("\n".join(batch.paths) + "\n").lower():
            yield batch  # (the listing applied the pattern)
            continue
        refs = _with_archives(batch.refs(), None, nested=True, **options)
        while chunk := list(itertools.islice(refs, BATCH_FILES)):
            yield RefBatch.of(chunk)


def _iter_url(
    source: str, *, recursive: bool, options: dict[str, Any], relative_prefix: str = ""
) -> Iterator[FileRef]:
    fs, path = url_to_fs(source, options["storage_options"])
    fs.invalidate_cache(path)
    with _accessing(source):
        info = fs.info(path)
    if info.get("type") == "directory":
        refs = iter_fs_dir(fs, path, recursive=recursive, relative_prefix=relative_prefix)
        yield from _with_archives(refs, fs, nested=True, **options)
    else:
        name = info["name"].rstrip("/").rsplit("/", 1)[-1]
        ref = remote_ref(fs, info, name)
        yield from _with_archives(iter([ref]), fs, nested=False, **options)
