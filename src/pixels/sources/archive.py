"""Zip archives: expanding one archive into one FileRef per member, safely.

An archive is treated as a zip when its name ends ``.zip`` *and* it starts with
the zip magic (``PK\\x03\\x04``, or ``PK\\x05\\x06`` for an empty archive); a
``.zip`` without the magic is listed as a plain file.

Members are listed in central-directory order (deterministic for a given archive),
directories and hidden or temporary names (``__MACOSX/``, ``._x``) skipped. Names
with ``.`` or empty components (``./x.dcm``, ``d/./z.dcm``, ``d//z.dcm``) are listed
under their normal form (:func:`normal_member_name`) in ``relative_path``; ``path``
keeps the stored name, which opens the member. Unsafe
members are **not** skipped: they become rows with ``error`` set, naming the member,
the archive and the rule broken (see :func:`member_problem`). An archive whose
central directory cannot be read becomes one row, for the archive, with ``error``.

A member's ``modificationTime`` is the UTC time of its extended timestamp extra
field when it has one, else its DOS date and time read as UTC (they carry no
zone): never this machine's zone, so identities agree across machines.

Reading a member never trusts its header: :func:`copy_member` counts the bytes as
they are decompressed and stops past :attr:`ArchiveLimits.max_member_bytes`.

Memory: :class:`zipfile.ZipFile` parses the whole central directory, so listing an
archive holds one ``ZipInfo`` per member (a few hundred bytes each) while it is
expanded; that is the one place the listing's memory grows with a count of entries.
"""

from __future__ import annotations

import os
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

import fsspec

from pixels.errors import SourceError, UnsafeArchiveMemberError
from pixels.sources.local import (
    error_ref,
    is_hidden_dir,
    is_skipped_name,
    is_url,
    make_ref,
    matches,
    os_path,
    stored_path,
)
from pixels.sources.ref import FileRef

_MiB = 1 << 20
_GiB = 1 << 30
_CHUNK = _MiB
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_DRIVE = re.compile(r"^[A-Za-z]:")
#: Block size for reading archives over fsspec (central directory, then members).
REMOTE_BLOCK_SIZE = 2 * _MiB


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    """Limits that protect against zip bombs and oversized archives.

    Attributes
    ----------
    max_member_bytes : int
        Largest uncompressed member accepted (declared size, and actual bytes while
        decompressing). Default 2 GiB.
    max_total_bytes : int
        Largest total uncompressed size accepted per archive; once reached, later
        members are refused. Default 64 GiB.
    max_ratio : float
        Largest compression ratio (uncompressed / compressed) accepted for members
        over 1 MiB. Default 200.
    max_members : int
        Most file members accepted per archive; later ones are refused. Default 1,000,000.
    """

    max_member_bytes: int = 2 * _GiB
    max_total_bytes: int = 64 * _GiB
    max_ratio: float = 200.0
    max_members: int = 1_000_000


#: The default limits (a module-level instance, shared as a default argument).
DEFAULT_LIMITS = ArchiveLimits()


def is_zip_name(name: str) -> bool:
    """Whether a file name has the ``.zip`` extension (case-insensitive)."""
    return name.lower().endswith(".zip")


def has_zip_magic(head: bytes) -> bool:
    """Whether ``head`` starts like a zip archive (local header or empty-archive record)."""
    return head[:4] in _ZIP_MAGICS


def member_url(member: str, archive: str) -> str:
    """The chained fsspec URL of a member: ``zip://{member}::{archive}``."""
    return f"zip://{member}::{archive}"


def parse_member_url(path: str) -> tuple[str, str]:
    """Split ``zip://{member}::{archive}`` into ``(member, archive)``."""
    if not path.startswith("zip://") or "::" not in path:
        raise SourceError("not a zip member URL (zip://member::archive)", path)
    member, archive = path[len("zip://") :].split("::", 1)
    return member, archive


class _OwningZipFile(zipfile.ZipFile):
    """A ZipFile over a file object it owns and closes (fsspec files)."""

    def __init__(self, fileobj: IO[bytes]) -> None:
        self._owned = fileobj
        try:
            super().__init__(fileobj)
        except BaseException:
            fileobj.close()
            raise

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._owned.close()


def open_zip(archive: str, storage_options: dict[str, Any] | None = None) -> zipfile.ZipFile:
    """Open an archive given as a local path or an fsspec URL.

    Raises
    ------
    zipfile.BadZipFile
        The central directory cannot be read.
    OSError
        The archive cannot be opened.
    """
    if not is_url(archive) or archive.startswith("file://"):
        path = archive[len("file://") :] if archive.startswith("file://") else archive
        return zipfile.ZipFile(os_path(path))
    fs, path = fsspec.core.url_to_fs(archive, **(storage_options or {}))
    fobj = fs.open(path, "rb", block_size=REMOTE_BLOCK_SIZE, cache_type="readahead")
    return _OwningZipFile(fobj)


def member_problem(info: zipfile.ZipInfo, limits: ArchiveLimits) -> str | None:
    """The rule a member breaks on its own (name, encryption, declared size, ratio), or None."""
    name = info.filename
    parts = re.split(r"[/\\]", name)
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        return "absolute member name"
    if ".." in parts:
        return "'..' in member name (path traversal)"
    if info.flag_bits & 0x1:
        return "encrypted member"
    if info.file_size > limits.max_member_bytes:
        return (
            f"uncompressed size {info.file_size} exceeds max_member_bytes={limits.max_member_bytes}"
        )
    if info.file_size > _MiB and (
        info.compress_size <= 0 or info.file_size / info.compress_size > limits.max_ratio
    ):
        ratio = info.file_size / info.compress_size if info.compress_size > 0 else float("inf")
        return f"compression ratio {ratio:.0f} exceeds max_ratio={limits.max_ratio:g}"
    return None


def normal_member_name(name: str) -> str:
    """A member name without ``.`` and empty components: ``./a//./b.dcm`` -> ``a/b.dcm``.

    Used for ``relative_path``, ``path_tags`` and extraction; the row's ``path``
    keeps the name as stored, which is what opens the member.
    """
    return "/".join(p for p in name.split("/") if p not in ("", "."))


def _is_skipped_member(name: str) -> bool:
    parts = name.split("/")
    return any(is_hidden_dir(p) for p in parts[:-1]) or is_skipped_name(parts[-1])


#: Header ID of the extended timestamp extra field ("UT", Info-ZIP): Unix mtime, UTC.
_EXTENDED_TIMESTAMP = 0x5455


def _unix_mtime(extra: bytes) -> int | None:
    """The UTC modification time (Unix seconds) of an extended timestamp field in ``extra``."""
    i = 0
    while i + 4 <= len(extra):
        tag = int.from_bytes(extra[i : i + 2], "little")
        size = int.from_bytes(extra[i + 2 : i + 4], "little")
        data = extra[i + 4 : i + 4 + size]
        if tag == _EXTENDED_TIMESTAMP and len(data) >= 5 and data[0] & 1:
            return int.from_bytes(data[1:5], "little", signed=True)
        i += 4 + size
    return None


def _member_mtime(info: zipfile.ZipInfo, fallback: datetime) -> datetime:
    """A member's modification time, the same on every machine whatever its time zone.

    The extended timestamp extra field (0x5455, written by Info-ZIP ``zip`` and
    most Unix tools) holds the true time in UTC: used when present. Otherwise the
    DOS date and time, which carry no zone (the writer's local time, 2 s steps),
    are read *as UTC*: never converted with this machine's zone, so a member's
    identity (path, size, modification time, CRC-32) never depends on the zone
    of the machine running the catalog.
    """
    unix = _unix_mtime(info.extra)
    if unix is not None:
        try:
            return datetime.fromtimestamp(unix, UTC)
        except (OverflowError, OSError, ValueError):
            pass
    try:
        return datetime(*info.date_time, tzinfo=UTC)
    except ValueError:
        return fallback


def copy_member(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, out: IO[bytes], limits: ArchiveLimits, label: str
) -> int:
    """Decompress one member into ``out``, enforcing the limits while reading.

    Parameters
    ----------
    zf, info
        The open archive and the member.
    out : binary file
        Where the bytes go.
    limits : ArchiveLimits
        ``max_member_bytes`` is enforced on the bytes actually produced.
    label : str
        The member's URL, used in error messages.

    Returns
    -------
    int
        Number of bytes written.

    Raises
    ------
    UnsafeArchiveMemberError
        Encrypted member, declared or actual size over ``max_member_bytes``.
    SourceError
        The member's data is corrupt (bad CRC, truncated stream).
    """
    if info.flag_bits & 0x1:
        raise UnsafeArchiveMemberError("refused: encrypted member", label)
    if info.file_size > limits.max_member_bytes:
        raise UnsafeArchiveMemberError(
            f"refused: declared size {info.file_size} exceeds max_member_bytes="
            f"{limits.max_member_bytes}",
            label,
        )
    total = 0
    try:
        with zf.open(info) as src:
            while True:
                chunk = src.read(_CHUNK)
                if not chunk:
                    break
                total += len(chunk)
                if total > limits.max_member_bytes:
                    raise UnsafeArchiveMemberError(
                        f"refused: decompressed past max_member_bytes={limits.max_member_bytes}"
                        " (header size lies)",
                        label,
                    )
                out.write(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as e:
        raise SourceError(f"cannot read zip member: {e}", label) from e
    if total != info.file_size:
        raise SourceError(f"member produced {total} bytes, header declares {info.file_size}", label)
    return total


def _crc32(path: str) -> int:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            crc = zlib.crc32(chunk, crc)
    return crc


def _extract(
    zf: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    name: str,
    root: str,
    mtime: datetime,
    limits: ArchiveLimits,
    label: str,
) -> str:
    """Extract a (name-checked) member to ``root/name``; returns the file's path (as stored).

    The destination is checked after resolving links, so a planted symlink cannot
    lead outside ``root``; bytes go to a ``.part`` file renamed when complete. A file
    already there with the member's size, time and CRC-32 is reused (a re-listing
    reads it instead of decompressing and writing it again).
    """
    real_root = os.path.realpath(root)
    dest = os.path.join(root, *name.split("/"))
    real_dest = os.path.realpath(dest)
    if os.path.commonpath([real_root, real_dest]) != real_root or real_dest == real_root:
        raise UnsafeArchiveMemberError(f"refused: extraction would leave {root}", label)
    ts = mtime.timestamp()
    try:
        st = os.stat(dest)
        if (
            st.st_size == info.file_size
            and int(st.st_mtime) == int(ts)
            and _crc32(dest) == info.CRC
        ):
            return stored_path(dest)
    except OSError:
        pass
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = f"{dest}.{os.getpid()}.part"
    try:
        with open(tmp, "wb") as out:
            copy_member(zf, info, out, limits, label)
        os.utime(tmp, (ts, ts))
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return stored_path(dest)


def expand_zip(
    archive: FileRef,
    *,
    pattern: str | None = None,
    archive_matches: bool = False,
    nested: bool = True,
    limits: ArchiveLimits = DEFAULT_LIMITS,
    extract_dir: str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> Iterator[FileRef]:
    """Yield one FileRef per file member of a zip archive.

    Parameters
    ----------
    archive : FileRef
        The archive as listed (local file or URL).
    pattern : str, optional
        Glob applied to members (name, or member path when it contains ``/``),
        unless ``archive_matches``.
    archive_matches : bool
        The archive itself matched ``pattern``: every member is listed.
    nested : bool
        The archive was found under the listed root: member relative paths are
        ``{archive relative_path}/{member}``; otherwise just ``{member}``.
    limits : ArchiveLimits
        Refusal rules.
    extract_dir : str, optional
        Extract accepted members to ``extract_dir/{archive relative path without
        .zip}/{member}`` and set ``local_path``.
    storage_options : dict, optional
        fsspec options for archives given as URLs.

    Yields
    ------
    FileRef
        Members; refused ones with ``error`` set. A corrupt archive yields one row,
        for the archive, with ``error`` set.
    """
    source = archive.local_path or archive.path
    try:
        zf = open_zip(source, storage_options)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        msg = f"corrupt zip archive {archive.path}: {e}"
        yield error_ref(archive.path, archive.relative_path, msg, archive.modificationTime)
        return
    extract_root = None
    if extract_dir is not None:
        stem = (
            archive.relative_path[:-4]
            if is_zip_name(archive.relative_path)
            else archive.relative_path
        )
        extract_root = os.path.join(os.path.abspath(extract_dir), *os_path(stem).split("/"))
    prefix = archive.relative_path + "/" if nested else ""
    count = 0
    total = 0
    over_total = False
    with zf:
        for info in zf.infolist():
            name = info.filename
            if info.is_dir():
                continue
            if zf.getinfo(name) is not info:
                continue  # a later member of the same name shadows it: only that one opens by name
            problem = member_problem(info, limits)
            clean = name if problem is not None else normal_member_name(name)
            if not clean:
                problem, clean = "empty member name", name
            rel = prefix + clean
            if not archive_matches and not matches(pattern, clean.rsplit("/", 1)[-1], rel):
                continue
            url = member_url(name, archive.path)
            mtime = _member_mtime(info, archive.modificationTime)
            fields: dict[str, Any] = {
                "original_path": archive.path,
                "member": name,
                "version_tag": f"crc32:{info.CRC:08x}",
            }
            if problem is None and _is_skipped_member(clean):
                continue
            if problem is None:
                count += 1
                if count > limits.max_members:
                    problem = f"more than max_members={limits.max_members} members"
            if problem is None:
                if over_total or total + info.file_size > limits.max_total_bytes:
                    over_total = True
                    problem = (
                        f"total uncompressed size exceeds max_total_bytes={limits.max_total_bytes}"
                    )
                else:
                    total += info.file_size
            local_path = None
            if problem is None and extract_root is not None:
                try:
                    local_path = _extract(zf, info, clean, extract_root, mtime, limits, url)
                except (SourceError, OSError) as e:
                    problem = f"extraction failed: {e}"
            if problem is not None:
                msg = f"refused member {name!r} of archive {archive.path}: {problem}"
                yield make_ref(
                    url, mtime, info.file_size, rel, local_path=None, error=msg, **fields
                )
            else:
                yield make_ref(url, mtime, info.file_size, rel, local_path=local_path, **fields)
