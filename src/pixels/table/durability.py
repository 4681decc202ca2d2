"""A local table's commits made durable before a write returns: log entries and data files.

delta-rs writes a commit's data files and then its log entry
(``_delta_log/{version:020}.json``, made by a rename or a link: an entry of
``_delta_log``) without ``fsync``-ing any of them. After a power loss a write that
returned may then be gone, or worse half there: a log entry naming a data file whose
bytes never reached the disk. What a caller acknowledges on the strength of a commit (the
C-STORE sink removes a batch's journal, :class:`pixels.dimse.receive.StoreSink`; STOW-RS
answers its request) must survive that. So :meth:`pixels.table.CatalogTable.append` (and
the table's other writes) hand each commit they made to :func:`sync_commits`, which
``fsync``-s, before returning:

* each data file the commits add (read from their log entries), then the folders naming
  them (the table's root, a partition's folder) and, once per table, the root's own entry
  in its parent (a table made by this write);
* each log entry, then ``_delta_log`` (its entries) and, once, ``_delta_log``'s in the root;
* a checkpoint delta-rs wrote for one of these versions and ``_last_checkpoint``, which
  points readers at it.

Data files come first: a log entry on disk names only files that are. The writer's own
scratch (``_pixels/firsts``, a cache its readers check and can do without) is not synced.

Object-store tables (``s3://``, ...) need none of this: a PUT is durable once it
succeeds (the store answers only after it holds the object), and delta-rs commits there
return only after their PUTs did.

Examples
--------
>>> from pixels.durable import Durable
>>> sync_commits("/data/catalog", Durable("/data/catalog"), 4, 5)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from urllib.parse import unquote

from pixels.durable import Durable, sync

__all__ = ["LOG_DIR", "added_files", "log_entry", "sync_commits"]

#: The folder of a Delta table holding its log.
LOG_DIR = "_delta_log"


def log_entry(root: str, version: int) -> str:
    """The path of the log entry (commit file) of ``version`` of the local table at ``root``."""
    return os.path.join(root, LOG_DIR, f"{version:020d}.json")


def added_files(root: str, version: int) -> list[str]:
    """The local paths of the data files ``version``'s commit adds (its ``add`` actions;
    none when its log entry is gone: expired, removed by another writer's log clean-up)."""
    files: list[str] = []
    try:
        fh = open(log_entry(root, version), encoding="utf-8")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return files
    with fh:
        for line in fh:
            if not line.strip():
                continue
            add = json.loads(line).get("add")
            if add and "://" not in add["path"]:  # (an absolute URI: not this table's file)
                files.append(os.path.join(root, unquote(add["path"])))
    return files


def sync_commits(root: str, durable: Durable, after: int, last: int) -> None:
    """Make the commits of the local table at ``root`` from version ``after + 1`` to
    ``last`` durable (module docstring); ``durable`` (rooted at ``root``) remembers the
    folders whose own entries are synced already. Nothing to do when ``last <= after``.

    Raises
    ------
    OSError
        An ``fsync`` that failed (the write is then not known to be durable), naming the file.
    """
    versions = range(after + 1, last + 1)
    if not versions:
        return
    data = [path for v in versions for path in added_files(root, v) if _synced(path)]
    for path in {os.path.dirname(p): p for p in data}.values():  # each folder once
        durable.named(path)
    log = os.path.join(root, LOG_DIR)
    entries = [path for v in versions if _synced(path := log_entry(root, v))]
    checkpoints = [
        path for v in versions if _synced(path := os.path.join(log, f"{v:020d}.checkpoint.parquet"))
    ]
    if checkpoints:  # and what points readers at it
        _synced(os.path.join(log, "_last_checkpoint"))
    if entries or checkpoints:
        durable.named(log_entry(root, last))  # _delta_log's entries (and, once, its own)


def _synced(path: str) -> bool:
    """``fsync`` the file at ``path``; False when there is none (a version's checkpoint
    delta-rs did not write; a file another writer removed since: nothing to keep)."""
    try:
        sync(path)
    except FileNotFoundError:
        return False
    return True
