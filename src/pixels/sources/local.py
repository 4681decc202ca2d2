"""Listing a local folder, plus the naming rules every source shares.

The walk streams: it keeps an explicit stack of open directory listings (one per
level of depth), so memory grows with the depth and width of the tree, never with
the total number of files. The set of visited directories (for symlink loops) holds
one ``(st_dev, st_ino)`` pair per directory, not per file.

Rules (shared with the fsspec and zip sources)
----------------------------------------------
- Order is deterministic: entries are sorted within each directory, directories
  sorting as ``name/`` (the order S3 lists keys in), and the walk is depth-first.
- Hidden entries (name starting with ``.``) are skipped, files and directories;
  so are temporary or partial files (``~``, ``.tmp``, ``.part``, ``.crdownload``,
  ``.swp`` suffixes, ``Thumbs.db``, ``.DS_Store``). A source named explicitly is
  never skipped.
- ``pattern`` is matched case-insensitively with :func:`fnmatch.fnmatchcase`
  against the file name, or against ``relative_path`` when it contains ``/``.
- ``extension`` is the lower-cased last suffix without the dot, except for the
  double suffixes in :data:`DOUBLE_SUFFIXES` (``scan.nii.gz`` -> ``nii.gz``).

File names that are not UTF-8
-----------------------------
Names are bytes on Linux; Python gives undecodable bytes as surrogate escapes,
which no UTF-8 column can hold. Local paths are stored with :func:`stored_path`:
each byte that is not UTF-8 as ``\\xNN`` and a backslash as ``\\\\`` (lossless, so two
files never share a path); :func:`os_path` gives the name back to open the file.
Paths without a backslash or a bad byte (nearly all) are stored unchanged.

Symbolic links (local only)
---------------------------
Links are followed, to files and to directories. A file reached through a link is
listed under the link's path (``path`` is ``os.path.abspath``, not resolved), so two
links to one file give two rows. A directory is descended at most once: the walk
remembers ``(st_dev, st_ino)`` of every directory it entered, so a loop (a link to
a parent) ends. Dangling links are skipped with a logged warning (there is nothing
to catalog); an entry whose ``stat`` fails otherwise, or a directory that cannot be
listed, becomes a row with ``error`` set naming the path.
"""

from __future__ import annotations

import errno
import fnmatch
import logging
import os
import re
import stat
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

from pixels.schema import mtime_ms
from pixels.sources.ref import FileRef, RefBatch, ms_since_epoch

log = logging.getLogger(__name__)

#: Double suffixes kept whole in ``extension``.
DOUBLE_SUFFIXES = ("nii.gz", "tar.gz", "tar.bz2", "tar.xz")
_TEMP_SUFFIXES = ("~", ".tmp", ".part", ".crdownload", ".swp")
_TEMP_NAMES = frozenset({"thumbs.db", ".ds_store"})
#: Timestamp used when a source reports no modification time.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


_UNESCAPE = re.compile(rb"\\(\\|x[0-9a-f]{2})")


def stored_path(path: str) -> str:
    """A local path (or name) as the table stores it: valid UTF-8, lossless.

    Undecodable bytes (surrogate escapes from :func:`os.fsdecode`) become ``\\xNN``
    and a backslash becomes ``\\\\``; :func:`os_path` reverses it.

    Examples
    --------
    >>> stored_path(os.fsdecode(b"/d/bad_\\xff.dcm")), stored_path("/d/ok.dcm")
    ('/d/bad_\\\\xff.dcm', '/d/ok.dcm')
    """
    if "\\" not in path:
        try:
            path.encode("utf-8")
            return path
        except UnicodeEncodeError:
            pass
    raw = os.fsencode(path).replace(b"\\", b"\\\\")
    return raw.decode("utf-8", "backslashreplace")


def os_path(stored: str) -> str:
    """The path to open for a path as stored (inverse of :func:`stored_path`).

    Examples
    --------
    >>> os.fsencode(os_path("/d/bad_\\\\xff.dcm"))
    b'/d/bad_\\xff.dcm'
    """
    if "\\" not in stored:
        return stored

    def one(m: re.Match[bytes]) -> bytes:
        code = m.group(1)
        return b"\\" if code == b"\\" else bytes([int(code[1:], 16)])

    return os.fsdecode(_UNESCAPE.sub(one, stored.encode("utf-8")))


def is_skipped_name(name: str) -> bool:
    """True for hidden, temporary or partial files (see the module docstring)."""
    lower = name.lower()
    return name.startswith(".") or lower in _TEMP_NAMES or lower.endswith(_TEMP_SUFFIXES)


def is_hidden_dir(name: str) -> bool:
    """True for directories the walk does not enter (hidden, ``__MACOSX``)."""
    return name.startswith(".") or name == "__MACOSX"


def extension_of(name: str) -> str:
    """Lower-cased extension without the dot; ``nii.gz`` style for known double suffixes.

    Examples
    --------
    >>> extension_of("IM0001.DCM"), extension_of("t1.nii.gz"), extension_of("README")
    ('dcm', 'nii.gz', '')
    """
    base = name.rsplit("/", 1)[-1].lower().lstrip(".")
    for double in DOUBLE_SUFFIXES:
        if base.endswith("." + double):
            return double
    return base.rsplit(".", 1)[1] if "." in base else ""


def matches(pattern: str | None, name: str, relative_path: str) -> bool:
    """Whether a file passes ``pattern`` (None passes everything)."""
    if pattern is None:
        return True
    target = relative_path if "/" in pattern else name
    return fnmatch.fnmatchcase(target.lower(), pattern.lower())


def is_url(source: str) -> bool:
    """True for fsspec URLs (``s3://b/k``, ``memory://x``, chained ``a::b``), False for paths."""
    return "://" in source or "::" in source


def to_utc(timestamp: float) -> datetime:
    """POSIX timestamp to an aware UTC datetime (FileRefs keep milliseconds: :func:`make_ref`)."""
    return datetime.fromtimestamp(timestamp, tz=UTC)


def mtime_of(st: os.stat_result) -> datetime:
    """A file's modification time in whole milliseconds, cut from the nanoseconds.

    As Spark's file source (``File.lastModified``) gives it: the float ``st_mtime``
    rounds to microseconds and can cross into the next millisecond.
    """
    return EPOCH + timedelta(milliseconds=st.st_mtime_ns // 1_000_000)


#: A separator ending a word of a path, as dbx.pixels splits ``path_tags``.
_TAG_BREAK = re.compile(r"([0-9A-Za-z])[_./:@]")
_TAG_SEPARATORS = str.maketrans("_./:@", ",,,,,")
_ALNUM = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
#: dbx.pixels keeps the last words of a catalog path.
PATH_TAGS_KEPT = 5


def path_tags_of(relative_path: str, keep: int | None = PATH_TAGS_KEPT) -> tuple[str, ...]:
    """``path_tags`` as dbx.pixels makes them: words split at ``_ . / : @`` after a letter or digit.

    ``keep``: only the last words (dbx.pixels' catalog keeps 5; its PathExtractor all).

    >>> path_tags_of("benigns/patient0007/0007.LEFT_MLO.dcm")
    ('patient0007', '0007', 'LEFT', 'MLO', 'dcm')
    """
    if "," not in relative_path:  # (one pass of C string methods, not a regex per separator)
        split = relative_path.translate(_TAG_SEPARATORS).split(",")
        joined = "".join(split)
        if ("" not in split and joined.isascii() and joined.isalnum()) or all(
            w and w[-1] in _ALNUM for w in split[:-1]
        ):  # every separator follows a letter or digit: each one breaks a word
            words = tuple(split)
            return words[-keep:] if keep else words
    words = tuple(_TAG_BREAK.sub(r"\1,", relative_path).split(","))
    return words[-keep:] if keep else words


def make_ref(path: str, mtime: datetime, length: int, relative_path: str, **kw: object) -> FileRef:
    """Build a FileRef, deriving ``extension`` and ``path_tags`` from the relative path."""
    name = relative_path.rsplit("/", 1)[-1]
    return FileRef(
        path=path,
        modificationTime=mtime_ms(mtime),  # one precision for every source and engine
        length=length,
        relative_path=relative_path,
        extension=extension_of(name),
        path_tags=path_tags_of(relative_path),
        **kw,  # type: ignore[arg-type]
    )


def error_ref(path: str, relative_path: str, message: str, mtime: datetime = EPOCH) -> FileRef:
    """A row for an entry the source could not handle; ``message`` should name the path."""
    return make_ref(path, mtime, 0, relative_path, local_path=None, error=message)


def _local_error_ref(
    path: str, relative_path: str, message: str, mtime: datetime = EPOCH
) -> FileRef:
    """:func:`error_ref` for a local path as the OS gives it (stored with :func:`stored_path`)."""
    return error_ref(stored_path(path), stored_path(relative_path), message, mtime)


def local_ref(path: str, st: os.stat_result, relative_path: str) -> FileRef:
    """FileRef for a local file from its (followed) ``stat`` result.

    ``path`` and ``relative_path`` are as the OS gives them; the ref holds them as
    stored (:func:`stored_path`), ``local_path`` included (:func:`os_path` opens it).
    """
    stored = stored_path(path)
    return make_ref(stored, mtime_of(st), st.st_size, stored_path(relative_path), local_path=stored)


_COMPRESSED = frozenset({"gz", "bz2", "xz"})  # last suffixes of the double ones


def _plain_ref(path: str, length: int, mtime_ms: int, rel: str, name: str) -> FileRef:
    """:func:`local_ref` for a name that :func:`stored_path` keeps as it is (the common case).

    The same FileRef, built without the intermediate steps, from the size and the
    modification time in milliseconds (:meth:`RefBatch.ref` of a listed file).
    """
    ext = name.rpartition(".")[2].lower() if "." in name else ""
    if ext in _COMPRESSED or name.startswith("."):
        ext = extension_of(name)  # (nii.gz and the like)
    return FileRef(
        path=path,
        modificationTime=EPOCH + timedelta(milliseconds=mtime_ms),
        length=length,
        relative_path=rel,
        extension=ext,
        path_tags=path_tags_of(rel),
        local_path=path,
    )


def _plain(text: str) -> bool:
    """Whether :func:`stored_path` returns `text` unchanged without looking further."""
    return text.isascii() and "\\" not in text


def _sorted_entries(path: str, fd: int | None = None) -> list[tuple[str, os.DirEntry[str], bool]]:
    """Entries of one directory, filtered and sorted; each with whether it is a directory.

    ``fd``: the directory open (:func:`_open_dir`): the entries' ``stat`` then looks up
    their name in it (``fstatat``) instead of walking the whole path again, and ``fd``
    must stay open until they are stat'ed.
    """
    out = []
    with os.scandir(path if fd is None else fd) as it:
        for entry in it:
            name = entry.name
            try:
                is_dir = entry.is_dir()  # follows symlinks
            except OSError:
                is_dir = False
            if is_dir:
                if not is_hidden_dir(name):
                    out.append((name + "/", entry, True))
            elif not (  # (is_skipped_name, inline: one call less per file)
                name.startswith(".")
                or (lower := name.lower()) in _TEMP_NAMES
                or lower.endswith(_TEMP_SUFFIXES)
            ):
                out.append((name, entry, False))
    out.sort(key=_first)
    return out


def _open_dir(path: str) -> int:
    """``path`` open as a directory, for :func:`_sorted_entries` (the caller closes it)."""
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def _listed(path: str, fds: list[int]) -> Iterator[tuple[str, os.DirEntry[str], bool]]:
    """The sorted entries of directory ``path``; its open descriptor appended to ``fds``."""
    fd = _open_dir(path)
    try:
        entries = _sorted_entries(path, fd)
    except BaseException:
        os.close(fd)
        raise
    fds.append(fd)
    return iter(entries)


def _first(t: tuple[str, os.DirEntry[str], bool]) -> str:
    return t[0]


class _DirFiles:
    """The files of one directory found so far, as the columns of a :class:`RefBatch`."""

    __slots__ = ("dir", "lengths", "mtimes", "names", "paths", "plain", "rel", "special")

    def __init__(self, dir_path: str, rel_dir: str, plain: bool):
        self.dir = dir_path  # as the OS gives it, ending with "/"
        self.rel = rel_dir  # relative_path of the directory, ending with "/" (or "")
        self.plain = plain  # both stored as they are (:func:`_plain`)
        self.names: list[str] = []
        self.paths: list[str] = []
        self.lengths: list[int] = []
        self.mtimes: list[int] = []
        self.special: dict[int, FileRef] = {}  # entries built as they were found

    def add_ref(self, ref: FileRef) -> None:
        self.special[len(self.paths)] = ref
        self.names.append("")
        self.paths.append(ref.path)
        self.lengths.append(ref.length)
        self.mtimes.append(ms_since_epoch(ref.modificationTime))

    def batch(self) -> RefBatch:
        names, paths, lengths, mtimes = self.names, self.paths, self.lengths, self.mtimes
        special, rel_dir = self.special, self.rel

        def make(i: int) -> FileRef:
            ref = special.get(i)
            return (
                ref
                if ref is not None
                else _plain_ref(paths[i], lengths[i], mtimes[i], rel_dir + names[i], names[i])
            )

        return RefBatch(paths, lengths, mtimes, make)


#: Most entries in one :class:`RefBatch` of a listing (a huge directory gives several).
BATCH_FILES = 4096


def iter_local_batches(
    root: str,
    *,
    pattern: str | None = None,
    recursive: bool = True,
    relative_prefix: str = "",
    keep_zips: bool = False,
) -> Iterator[RefBatch]:
    """Walk a local directory, yielding its files as :class:`RefBatch` columns.

    The files of :func:`iter_local_dir`, in the same order, without building a
    :class:`FileRef` per file: each batch holds the files of one directory found
    between two sub-directories (at most :data:`BATCH_FILES`), as lists of stored
    paths, sizes and modification times (``os.stat``: one system call per file,
    nothing opened); :meth:`RefBatch.ref` builds the ref of an entry on demand.

    ``keep_zips``: with ``pattern``, also keep ``.zip`` files that do not match it
    (their members may: :func:`pixels.sources.iter_files` expands them).
    Other parameters as :func:`iter_local_dir`.
    """
    root = os.path.abspath(root)
    root_st = os.stat(root)
    visited = {(root_st.st_dev, root_st.st_ino)}
    base = root if root.endswith("/") else root + "/"
    fds: list[int] = []  # the open directory of each level of the stack
    try:
        first = _listed(root, fds)
    except OSError as e:
        msg = f"cannot list directory {stored_path(root)}: {e.strerror or e}"
        failed = _DirFiles(base, relative_prefix, False)
        failed.add_ref(_local_error_ref(root, "", msg))
        yield failed.batch()
        return
    stack: list[tuple[str, Iterator[tuple[str, os.DirEntry[str], bool]]]] = [("", first)]
    # plain names (ASCII, no backslash) are stored as they are: no per-file checks
    plain_base = _plain(base) and _plain(relative_prefix)

    def fresh(prefix: str) -> _DirFiles:
        return _DirFiles(base + prefix, relative_prefix + prefix, plain_base and _plain(prefix))

    files = fresh("")
    try:
        yield from _walk(stack, fds, files, fresh, visited, pattern, recursive, keep_zips)
    finally:
        for fd in fds:
            os.close(fd)


def _walk(
    stack: list[tuple[str, Iterator[tuple[str, os.DirEntry[str], bool]]]],
    fds: list[int],
    files: _DirFiles,
    fresh: Callable[[str], _DirFiles],
    visited: set[tuple[int, int]],
    pattern: str | None,
    recursive: bool,
    keep_zips: bool,
) -> Iterator[RefBatch]:
    """The depth-first walk of :func:`iter_local_batches` (``fds``: one per ``stack`` level)."""
    while stack:
        prefix, entries = stack[-1]
        # the plain files of this directory go straight into the columns
        fast = pattern is None and files.plain
        add_name, add_path = files.names.append, files.paths.append
        add_length, add_mtime = files.lengths.append, files.mtimes.append
        dir_path = files.dir
        for _, entry, is_dir in entries:  # (a `break` leaves the rest for later)
            name = entry.name
            path = dir_path + name  # (os.path.join of the parts, without the splitting)
            try:
                st = entry.stat()  # follows symlinks
            except OSError as e:
                if entry.is_symlink() and e.errno in (errno.ENOENT, errno.ELOOP):
                    log.warning("skipping dangling symlink %s", stored_path(path))
                    continue
                if e.errno == errno.ENOENT:
                    continue  # removed while walking
                msg = f"cannot stat {stored_path(path)}: {e.strerror or e}"
                files.add_ref(_local_error_ref(path, files.rel + name, msg))
                continue
            if is_dir:
                if not recursive:
                    continue
                key = (st.st_dev, st.st_ino)
                if key in visited:
                    log.info("not descending %s again (symlink loop or second link)", path)
                    continue
                visited.add(key)
                try:
                    children = _listed(path, fds)
                except OSError as e:
                    msg = f"cannot list directory {stored_path(path)}: {e.strerror or e}"
                    files.add_ref(
                        _local_error_ref(path, files.rel + name, msg, to_utc(st.st_mtime))
                    )
                    continue
                if files.paths:  # this directory's files so far come before the sub-directory's
                    yield files.batch()
                stack.append((prefix + name + "/", children))
                files = fresh(prefix + name + "/")
                break
            if not stat.S_ISREG(st.st_mode):
                continue  # sockets, fifos, devices: not files to catalog
            if fast and name.isascii() and "\\" not in name:  # (stored as it is: _plain)
                add_name(name)
                add_path(path)
                add_length(st.st_size)
                add_mtime(st.st_mtime_ns // 1_000_000)
            else:
                rel = files.rel + name
                if (
                    pattern is None
                    or matches(pattern, stored_path(name), stored_path(rel))
                    or (keep_zips and name.lower().endswith(".zip"))
                ):
                    files.add_ref(local_ref(path, st, rel))
            if len(files.paths) >= BATCH_FILES:
                yield files.batch()
                files = fresh(prefix)
                break
        else:  # this directory is done
            stack.pop()
            os.close(fds.pop())
            if files.paths:
                yield files.batch()
            if stack:
                files = fresh(stack[-1][0])


def iter_local_dir(
    root: str, *, pattern: str | None = None, recursive: bool = True, relative_prefix: str = ""
) -> Iterator[FileRef]:
    """Walk a local directory, yielding one FileRef per file (see the module docstring).

    Parameters
    ----------
    root : str
        An existing directory; made absolute with :func:`os.path.abspath`.
    pattern : str, optional
        Glob on the file name, or on ``relative_path`` when it contains ``/``.
    recursive : bool
        Descend into subdirectories.
    relative_prefix : str
        Prepended to every ``relative_path`` (``"a/b/"`` when ``root`` is the
        sub-folder ``a/b`` of the folder being cataloged).

    Yields
    ------
    FileRef
        Files in depth-first, per-directory sorted order; rows with ``error`` set for
        directories that cannot be listed and entries whose ``stat`` fails.
    """
    for batch in iter_local_batches(
        root, pattern=pattern, recursive=recursive, relative_prefix=relative_prefix
    ):
        yield from batch.refs()
