"""The Delta log of a local table read without delta-rs: what ``pixels sql`` needs to start fast.

A Delta table's current version is its log replayed: the newest checkpoint (Parquet,
read here by DuckDB) and the JSON commits after it. :func:`read_log` replays a log
that holds nothing it does not fully handle, and answers None for anything else, so
the caller reads the table with delta-rs (:class:`pixels.sql.TableReader`) as before:

* a checkpoint in parts or in the V2 format (sidecars), a missing commit;
* a reader protocol above 3, deletion vectors on a file, data files named by absolute
  URIs, statistics kept only as structs (``stats_parsed``).

What makes a version's rows differ from its files (deletion vectors, column mapping,
partition columns, other reader features) is decided by :func:`features_of` for both
readers: :func:`pixels.scan.protocol_features` calls it with what delta-rs read.

Nothing here imports pyarrow, deltalake or the ``duckdb`` package: the connection is
passed in (``execute(...).fetchall()`` is all that is used).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

__all__ = ["DIRECT_FEATURES", "LogSnapshot", "features_of", "parquet_source", "read_log"]

#: Reader features that leave a version's rows exactly the rows of its files.
DIRECT_FEATURES = frozenset({"timestampNtz", "v2Checkpoint", "vacuumProtocolCheck"})

_COMMIT = re.compile(r"^(\d{20})\.json$")
_CHECKPOINT = re.compile(r"^(\d{20})\.checkpoint\.parquet$")
_ANY_CHECKPOINT = re.compile(r"^\d{20}\.checkpoint\.")


def features_of(
    reader_features: Iterable[str] | None,
    configuration: Mapping[str, Any] | None,
    partition_columns: Sequence[str] | None,
) -> list[str]:
    """What makes the rows of a version differ from its Parquet files, in words.

    Empty for tables whose files are read as they are (every table Pixels writes).
    """
    features = set(reader_features or ())
    mode = (configuration or {}).get("delta.columnMapping.mode", "none")
    found: list[str] = []
    if "deletionVectors" in features:
        found.append("deletion vectors (reader feature deletionVectors)")
    if mode != "none":
        found.append(f"column mapping (delta.columnMapping.mode = {mode})")
    if partition_columns:
        found.append("partition columns (" + ", ".join(partition_columns) + ")")
    other = features - DIRECT_FEATURES - {"deletionVectors", "columnMapping"}
    if other:
        found.append("reader features " + ", ".join(sorted(other)))
    return found


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def parquet_source(files: Sequence[str], uniform: bool) -> str:
    """The ``read_parquet`` of a direct scan over ``files`` (from the log, never a request).

    ``uniform``: every file holds exactly the table's columns, read by name without
    ``union_by_name`` (which reads every footer to bind).
    """
    listed = "[" + ", ".join(_sql_string(u) for u in files) + "]"
    return f"read_parquet({listed}, union_by_name={'false' if uniform else 'true'})"


class LogSnapshot(NamedTuple):
    """One version of a local table, as its log says.

    Attributes
    ----------
    version : int
        The version (the newest commit).
    files : tuple of str
        Its data files (absolute paths), in the order delta-rs lists them.
    features : list of str
        :func:`features_of` this version (empty: its files hold its rows).
    description : str or None
        The table's description.
    columns : tuple of str
        The table schema's top-level column names.
    string_columns : frozenset of str
        The columns of Delta type ``string``.
    minimums, maximums : tuple of dict
        Per file (as :attr:`files`), the ``minValues``/``maxValues`` of its statistics
        for the string columns.
    """

    version: int
    files: tuple[str, ...]
    features: list[str]
    description: str | None
    columns: tuple[str, ...]
    string_columns: frozenset[str]
    minimums: tuple[dict[str, Any], ...]
    maximums: tuple[dict[str, Any], ...]


class _UnhandledError(Exception):
    """Something in the log that only delta-rs reads."""


def _unquote(path: str) -> str:
    from urllib.parse import unquote  # here: ~10 ms to import (ipaddress), for few paths

    return unquote(path)


def _commit_actions(path: str) -> Iterable[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def read_log(root: str, con: Any) -> LogSnapshot | None:
    """The current version of the local table at ``root``; None where delta-rs must read it.

    ``con`` is a DuckDB connection (it reads the checkpoint's Parquet).
    """
    log = os.path.join(root, "_delta_log")
    try:
        names = os.listdir(log)
    except OSError:
        return None
    commits = {int(m[1]) for n in names if (m := _COMMIT.match(n))}
    checkpoints = {int(m[1]) for n in names if (m := _CHECKPOINT.match(n))}
    if any(_ANY_CHECKPOINT.match(n) and not _CHECKPOINT.match(n) for n in names):
        return None  # a checkpoint in parts or a V2 checkpoint
    if not commits:
        return None
    latest = max(commits)
    start = max((c for c in checkpoints if c <= latest), default=-1)
    if any(v not in commits for v in range(start + 1, latest + 1)):
        return None
    try:
        return _replay(root, log, start, latest, con)
    except (_UnhandledError, OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    except Exception as e:  # DuckDB's errors (its module is not imported here)
        if type(e).__module__.split(".")[0] in ("duckdb", "_duckdb"):
            return None
        raise


def _replay(root: str, log: str, start: int, latest: int, con: Any) -> LogSnapshot:
    # newest first, as delta-rs replays: the first action seen for a path decides it,
    # and the files are listed in the order their adds are first seen
    seen: set[str] = set()
    live: dict[str, dict[str, Any]] = {}
    protocol: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None

    def take(action: dict[str, Any]) -> None:
        nonlocal protocol, metadata
        if action.get("sidecar") is not None or action.get("checkpointMetadata") is not None:
            raise _UnhandledError("a V2 checkpoint")
        if (p := action.get("protocol")) is not None and protocol is None:
            protocol = p
        if (m := action.get("metaData")) is not None and metadata is None:
            metadata = m
        for kind in ("add", "remove"):
            act = action.get(kind)
            if act is None:
                continue
            if act.get("deletionVector") is not None:
                raise _UnhandledError("deletion vectors")
            path = act["path"]
            if path in seen:
                continue
            seen.add(path)
            if kind == "add":
                live[path] = act

    for v in range(latest, start, -1):
        for action in _commit_actions(os.path.join(log, f"{v:020d}.json")):
            take(action)
    if start >= 0:
        checkpoint = os.path.join(log, f"{start:020d}.checkpoint.parquet")
        rows = con.execute("SELECT to_json(t) FROM read_parquet(?) t", [checkpoint]).fetchall()
        for (row,) in rows:
            take(json.loads(row))
    if protocol is None or metadata is None:
        raise _UnhandledError("no protocol or metadata")
    if int(protocol.get("minReaderVersion", 1)) > 3:
        raise _UnhandledError("reader version")
    fields = json.loads(metadata["schemaString"])["fields"]
    strings = frozenset(f["name"] for f in fields if f.get("type") == "string")
    base = root.rstrip("/") + "/"
    files, mins, maxs = [], [], []
    for path, add in live.items():
        if "://" in path or path.startswith("/") or ":" in path.split("/")[0]:
            raise _UnhandledError("an absolute file URI")
        if add.get("stats") is None and add.get("stats_parsed") is not None:
            raise _UnhandledError("statistics as structs only")
        stats = json.loads(add["stats"]) if add.get("stats") else {}
        files.append(base + (_unquote(path) if "%" in path else path))
        mins.append({k: v for k, v in (stats.get("minValues") or {}).items() if k in strings})
        maxs.append({k: v for k, v in (stats.get("maxValues") or {}).items() if k in strings})
    return LogSnapshot(
        version=latest,
        files=tuple(files),
        features=features_of(
            protocol.get("readerFeatures"),
            metadata.get("configuration"),
            metadata.get("partitionColumns"),
        ),
        description=metadata.get("description"),
        columns=tuple(f["name"] for f in fields),
        string_columns=strings,
        minimums=tuple(mins),
        maximums=tuple(maxs),
    )
