"""Keeping the table small and tidy: compaction, vacuum, orphaned data files, writers' leases."""

from __future__ import annotations

import contextlib
import json
import os
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import pyarrow.parquet as pq

from pixels.storage import is_local, local_path
from pixels.table.firsts import drop_stale_firsts

if TYPE_CHECKING:
    from pixels.table.catalog_table import CatalogTable

#: Folder of the table for Pixels' own files (writer lock, leases, scratch space).
LOCK_DIR = "_pixels"
#: Unreferenced data files younger than this are left alone (a live writer may commit them).
ORPHAN_MIN_AGE_HOURS = 24.0
#: A writer's lease not renewed for this long is a dead writer's.
LEASE_STALE_HOURS = 1.0
#: Delta's default ``delta.deletedFileRetentionDuration``: how long replaced files are kept.
DEFAULT_RETENTION_HOURS = 168
_LOCK_DIR = LOCK_DIR
_is_local = is_local
_local_path = local_path


def clean_orphans(table: CatalogTable, min_age_hours: float = ORPHAN_MIN_AGE_HOURS) -> list[str]:
    """Delete data files that no commit references, left by writers that died.

    A writer killed between writing a data file and committing it (``kill -9``,
    a lost Spark driver) leaves a ``*.parquet`` or ``*.parquet.tmp`` file in the
    table folder that no version will ever read. Such a file is deleted when

    * no ``add`` or ``remove`` action in the Delta log names it (files a
      version still holds, or held, stay: :meth:`optimize` vacuums those);
    * it was last written more than ``min_age_hours`` ago (a live writer of
      another process or machine may still commit it);
    * no live Spark save holds a lease on its name (``_pixels/writers/``,
      renewed while the job runs).

    Local tables: it runs under the writer lock, so no local writer is between
    writing and committing a file. Tables on object stores (``s3://`` ...,
    through fsspec with the table's storage options) have no lock and no lease:
    the age rule alone keeps a live writer's files, so ``min_age_hours`` must
    exceed the longest a writer takes from writing a file to committing it.

    Returns
    -------
    list of str
        Names of the deleted files.
    """
    if not table.exists():
        return []
    local = _is_local(table.uri)
    fs, root = table._fs()
    cutoff = time.time() - min_age_hours * 3600
    with table._writer_lock():
        if local:
            _drop_stale_leases(table.uri)
            # the first rows saved beside data files gone (vacuumed, or orphans before)
            drop_stale_firsts(_local_path(table.uri))
        old = []
        for info in fs.ls(root, detail=True):
            name = str(info["name"]).rstrip("/").rsplit("/", 1)[-1]
            if name.startswith(("_", ".")) or not name.endswith((".parquet", ".parquet.tmp")):
                continue
            mtime = _modified(info)
            if info.get("type") != "file" or mtime is None or mtime > cutoff:
                continue  # an unknown age is never old enough
            old.append(name)
        if not old:
            return []
        logged = _logged_files(root, fs)
        live = live_leases(table.uri, LEASE_STALE_HOURS)
        gone = []
        for name in old:
            if name in logged or name.removesuffix(".tmp") in logged:
                continue
            if any(name.startswith(f"part-{prefix}-") for prefix in live):
                continue
            try:
                fs.rm_file(f"{root}/{name}")
            except FileNotFoundError:
                continue
            gone.append(name)
    return gone


def optimize(
    table: CatalogTable,
    vacuum: bool = True,
    retention_hours: int | None = None,
    compact: bool = True,
) -> dict[str, Any]:
    """Compact small files into larger ones, then vacuum files replaced long enough ago.

    ``compact=False`` only vacuums (after :func:`pixels.cluster.cluster_table`,
    whose files compaction would merge into large row groups).

    Files a compaction (or a replaced row) took out of the table stay on disk for
    the retention period: readers holding an older version (a running
    ``pixels catalog``'s snapshot, Spark executors, the DICOMweb server's index)
    keep reading them, and time travel to those versions works.

    Parameters
    ----------
    vacuum : bool
        Delete data files that left the table more than ``retention_hours`` ago.
    retention_hours : int, optional
        Default: the table's ``delta.deletedFileRetentionDuration``, else Delta's
        default of :data:`DEFAULT_RETENTION_HOURS` (7 days). A shorter value is
        taken as asked (``0`` deletes every replaced file now: readers of older
        versions then fail, and time travel to them is lost).
    compact : bool
        Compact small files (delta-rs' ``optimize.compact``).

    Returns
    -------
    dict
        The compaction metrics from delta-rs, ``filesVacuumed`` and ``orphansDeleted``
        (:meth:`clean_orphans`).
    """
    if retention_hours is not None and retention_hours < 0:
        raise ValueError(f"retention_hours must be >= 0, not {retention_hours}")
    dt = table.delta()
    with table._writer_lock():
        metrics = dict(dt.optimize.compact()) if compact else {}
        if vacuum:
            deleted = dt.vacuum(
                retention_hours=retention_hours,
                enforce_retention_duration=retention_hours is None,
                dry_run=False,
            )
            metrics["filesVacuumed"] = len(deleted)
    if vacuum:
        metrics["orphansDeleted"] = len(table.clean_orphans())
    return metrics


def _modified(info: dict[str, Any]) -> float | None:
    """Last modification (Unix seconds) of an fsspec ``ls`` entry, None when unknown."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "mtime_ns"):
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, datetime):
            return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
        if isinstance(value, int | float):
            return value / 1e9 if key == "mtime_ns" else float(value)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
                return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    return None


def _logged_files(root: str, fs: Any = None) -> set[str]:
    """Every data file an ``add`` or ``remove`` action of the table's log names.

    ``root``: the table's folder on ``fs`` (an fsspec file system; default: local).
    """
    if fs is None:
        from pixels.sources.remote import url_to_fs

        fs, root = url_to_fs(root)
    out: set[str] = set()
    for path in fs.ls(f"{root}/_delta_log", detail=False):
        name = str(path).rstrip("/").rsplit("/", 1)[-1]
        if name.endswith(".json"):
            with fs.open(path, "rb") as fh:
                for line in fh.read().decode("utf-8").splitlines():
                    action = json.loads(line) if line.strip() else {}
                    for kind in ("add", "remove"):
                        if kind in action:
                            out.add(unquote(action[kind]["path"]))
        elif ".checkpoint" in name and name.endswith(".parquet"):
            with fs.open(path, "rb") as fh:
                checkpoint = pq.ParquetFile(fh)
                kinds = [k for k in ("add", "remove") if k in checkpoint.schema_arrow.names]
                data = checkpoint.read(columns=kinds)
            for kind in kinds:
                for item in data[kind].to_pylist():
                    if item and item.get("path"):
                        out.add(unquote(item["path"]))
    return out


def lease_path(uri: str, name: str) -> str | None:
    """Where a writer's lease on its data files named ``part-{name}-*`` lives (local tables)."""
    if not _is_local(uri):
        return None
    return os.path.join(_local_path(uri), _LOCK_DIR, "writers", name)


def _drop_stale_leases(uri: str) -> None:
    folder = os.path.join(_local_path(uri), _LOCK_DIR, "writers")
    live = live_leases(uri, LEASE_STALE_HOURS)
    with contextlib.suppress(FileNotFoundError):
        for e in os.scandir(folder):
            if e.name not in live:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(e.path)


def live_leases(uri: str, stale_hours: float = LEASE_STALE_HOURS) -> set[str]:
    """Names of the leases renewed within ``stale_hours`` (writers still running)."""
    if not _is_local(uri):
        return set()
    folder = os.path.join(_local_path(uri), _LOCK_DIR, "writers")
    cutoff = time.time() - stale_hours * 3600
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return set()
    out = set()
    for e in entries:
        try:
            if e.stat().st_mtime > cutoff:
                out.add(e.name)
        except OSError:
            continue
    return out


__all__ = [
    "DEFAULT_RETENTION_HOURS",
    "LEASE_STALE_HOURS",
    "LOCK_DIR",
    "ORPHAN_MIN_AGE_HOURS",
    "clean_orphans",
    "lease_path",
    "live_leases",
    "optimize",
]
