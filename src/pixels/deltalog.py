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
from typing import Any

__all__ = ["DIRECT_FEATURES", "LogSnapshot", "features_of", "parquet_source", "read_log"]

#: Reader features that leave a version's rows exactly the rows of its files.
DIRECT_FEATURES = frozenset({"timestampNtz", "v2Checkpoint", "vacuumProtocolCheck"})


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


class LogSnapshot:
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
    stats : tuple of (str or None)
        Per file (as :attr:`files`), the JSON ``stats`` of its add action (read by
        :meth:`bounds` when a query's pruning asks for them).
    """

    __slots__ = (
        "columns",
        "description",
        "features",
        "files",
        "stats",
        "string_columns",
        "version",
    )

    def __init__(
        self,
        version: int,
        files: tuple[str, ...],
        features: list[str],
        description: str | None,
        columns: tuple[str, ...],
        string_columns: frozenset[str],
        stats: tuple[str | None, ...],
    ) -> None:
        self.version = version
        self.files = files
        self.features = features
        self.description = description
        self.columns = columns
        self.string_columns = string_columns
        self.stats = stats

    def bounds(self, columns: Iterable[str]) -> dict[str, tuple[list[Any], list[Any]]]:
        """Per lower-case column name of ``columns`` (string columns only), the
        ``minValues`` and ``maxValues`` of each file's statistics (as :attr:`files`;
        None where a file has none): what :func:`pixels.sql.files_holding` reads.

        Raises
        ------
        ValueError
            When a file's ``stats`` is not JSON (or not an object of objects).
        """
        by_lower = {c.lower(): c for c in self.string_columns}
        names = {c.lower(): by_lower[c.lower()] for c in columns if c.lower() in by_lower}
        out: dict[str, tuple[list[Any], list[Any]]] = {c: ([], []) for c in names}
        for text in self.stats:
            parsed = json.loads(text) if text else {}
            if not isinstance(parsed, dict):
                raise ValueError("file statistics that are not a JSON object")
            lo, hi = parsed.get("minValues") or {}, parsed.get("maxValues") or {}
            for lower, name in names.items():
                out[lower][0].append(lo.get(name))
                out[lower][1].append(hi.get(name))
        return out


class _UnhandledError(Exception):
    """Something in the log that only delta-rs reads."""


def _unquote(path: str) -> str:
    from urllib.parse import unquote  # here: ~10 ms to import (ipaddress), for few paths

    return unquote(path)


def read_log(root: str, con: Any) -> LogSnapshot | None:
    """The current version of the local table at ``root``; None where delta-rs must read it.

    ``con`` is a DuckDB connection (it reads the checkpoint's Parquet).
    """
    log = os.path.join(root, "_delta_log")
    try:
        names = os.listdir(log)
    except OSError:
        return None
    commit, checkpoint = re.compile(r"^(\d{20})\.json$"), re.compile(r"^(\d{20})\.checkpoint\.")
    commits, checkpoints = set(), set()
    for n in names:
        if (m := commit.match(n)) is not None:
            commits.add(int(m[1]))
        elif (m := checkpoint.match(n)) is not None:
            if n[m.end() :] != "parquet":
                return None  # a checkpoint in parts or a V2 checkpoint
            checkpoints.add(int(m[1]))
    if not commits:
        return None
    latest = max(commits)
    start = max((c for c in checkpoints if c <= latest), default=-1)
    if any(v not in commits for v in range(start + 1, latest + 1)):
        return None
    try:
        return _Replay(root).run(log, start, latest, con)
    except (_UnhandledError, OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    except Exception as e:  # DuckDB's errors (its module is not imported here)
        if _is_duckdb_error(e):
            return None
        raise


def _is_duckdb_error(e: BaseException) -> bool:
    return type(e).__module__.split(".")[0] in ("duckdb", "_duckdb")


#: The checkpoint columns :func:`read_log` reads, as delta-rs writes them (struct
#: fields per top-level column); a checkpoint without one of them is read by what it has.
_USUAL = {
    "add": frozenset({"path", "stats", "deletionVector"}),
    "remove": frozenset({"path", "deletionVector"}),
    "protocol": frozenset({"minReaderVersion", "readerFeatures"}),
    "metaData": frozenset({"schemaString", "description", "configuration", "partitionColumns"}),
    "sidecar": frozenset(),
}
#: The other top-level columns of delta-rs' checkpoints: the usual query reads every
#: column besides these too, so that a column it does not know (a V2 checkpoint's
#: ``checkpointMetadata``) is seen without a DESCRIBE first.
_USUAL_OTHERS = ("txn", "domainMetadata")


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _checkpoint_sql(have: Mapping[str, frozenset[str]], rest: Sequence[str] = ()) -> str:
    """The query of a checkpoint's actions, one row each, reading the columns ``have``
    (top-level column -> its struct fields) names; NULL (or false) for the rest.

    Its columns: add path, stats, stats_parsed set, deletion vector set; remove path,
    deletion vector set; protocol set, minReaderVersion, readerFeatures; metaData set,
    schemaString, description, configuration, partitionColumns; a V2 action set; then,
    with ``rest`` (the top-level columns known not to matter), every column but those
    and ``have``'s.
    """

    def field(col: str, name: str, test: bool = False) -> str:
        if name not in have.get(col, ()):
            return "false" if test else "NULL"
        expr = f"{_ident(col)}.{_ident(name)}"
        return f"({expr} IS NOT NULL)" if test else expr

    def present(col: str) -> str:
        return f"({_ident(col)} IS NOT NULL)" if col in have else "false"

    v2 = [present(c) for c in ("sidecar", "checkpointMetadata") if c in have]
    columns = [
        field("add", "path"),
        field("add", "stats"),
        field("add", "stats_parsed", test=True),
        field("add", "deletionVector", test=True),
        field("remove", "path"),
        field("remove", "deletionVector", test=True),
        present("protocol"),
        field("protocol", "minReaderVersion"),
        field("protocol", "readerFeatures"),
        present("metaData"),
        field("metaData", "schemaString"),
        field("metaData", "description"),
        field("metaData", "configuration"),
        field("metaData", "partitionColumns"),
        " OR ".join(v2) if v2 else "false",
    ]
    # each named: DuckDB names an unnamed expression by printing it, which builds its
    # keyword table on first use (~4 ms)
    named = [f"{c} AS c{i}" for i, c in enumerate(columns)]
    if rest:
        named.append("* EXCLUDE (" + ", ".join(map(_ident, [*have, *rest])) + ")")
    return "SELECT " + ", ".join(named) + " FROM read_parquet(?)"


def _struct_fields(duck_type: str) -> frozenset[str] | None:
    """The field names of a DuckDB ``STRUCT(...)`` type as DuckDB writes it (names
    double-quoted where needed); None for any other type."""
    if not duck_type.startswith("STRUCT(") or not duck_type.endswith(")"):
        return None
    body, names, depth, i = duck_type[7:-1], set(), 0, 0
    expect_name = True
    while i < len(body):
        c = body[i]
        if expect_name:
            while i < len(body) and body[i] == " ":
                i += 1
            if i < len(body) and body[i] == '"':
                j, name = i + 1, []
                while j < len(body):
                    if body[j] == '"':
                        if body[j + 1 : j + 2] == '"':
                            name.append('"')
                            j += 2
                            continue
                        break
                    name.append(body[j])
                    j += 1
                names.add("".join(name))
                i = j + 1
            else:
                j = body.find(" ", i)
                if j < 0:
                    return None
                names.add(body[i:j])
                i = j
            expect_name = False
            continue
        if c == '"':  # a quoted name inside a nested type
            j = i + 1
            while j < len(body) and not (body[j] == '"' and body[j + 1 : j + 2] != '"'):
                j += 2 if body[j] == '"' else 1
            i = j + 1
            continue
        if c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        elif c == "," and depth == 0:
            expect_name = True
        i += 1
    return frozenset(names)


#: The columns of :func:`_checkpoint_sql` (without its ``rest``).
_CHECKPOINT_COLUMNS = 15


def _checkpoint_rows(path: str, con: Any) -> list[tuple[Any, ...]]:
    """The actions of the checkpoint at ``path`` (:func:`_checkpoint_sql`'s columns)."""
    try:  # the columns delta-rs writes: one query
        cursor = con.execute(_checkpoint_sql(_USUAL, _USUAL_OTHERS), [path])
        others = [str(d[0]) for d in cursor.description][_CHECKPOINT_COLUMNS:]
        rows = cursor.fetchall()
    except Exception as e:
        if not _is_duckdb_error(e):
            raise
    else:
        if "checkpointMetadata" in others:
            at = _CHECKPOINT_COLUMNS + others.index("checkpointMetadata")
            if any(row[at] is not None for row in rows):
                raise _UnhandledError("a V2 checkpoint")
        return [row[:_CHECKPOINT_COLUMNS] for row in rows] if others else list(rows)
    # another writer's (Spark's, an older delta-rs'): read by what the file has
    have: dict[str, frozenset[str]] = {}
    for name, duck_type, *_ in con.execute(
        "DESCRIBE SELECT * FROM read_parquet(?)", [path]
    ).fetchall():
        fields = _struct_fields(str(duck_type))
        have[str(name)] = frozenset() if fields is None else fields
    if "path" not in have.get("add", ()) and "add" in have:
        raise _UnhandledError("add actions without a path")
    return list(con.execute(_checkpoint_sql(have), [path]).fetchall())


class _Replay:
    """The actions of a log, newest first, as delta-rs replays them: the first action
    seen for a path decides it, and the files are listed in the order their adds are
    first seen."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.seen: set[str] = set()
        self.live: dict[str, str | None] = {}  # path -> its stats (JSON)
        self.protocol: tuple[Any, Any] | None = None  # minReaderVersion, readerFeatures
        self.metadata: dict[str, Any] | None = None

    def add(self, path: str, stats: str | None, parsed: bool, dv: bool) -> None:
        if dv:
            raise _UnhandledError("deletion vectors")
        if path in self.seen:
            return
        self.seen.add(path)
        if stats is None and parsed:
            raise _UnhandledError("statistics as structs only")
        self.live[path] = stats

    def remove(self, path: str, dv: bool) -> None:
        if dv:
            raise _UnhandledError("deletion vectors")
        self.seen.add(path)

    def action(self, action: dict[str, Any]) -> None:
        """One action of a JSON commit."""
        if action.get("sidecar") is not None or action.get("checkpointMetadata") is not None:
            raise _UnhandledError("a V2 checkpoint")
        if (p := action.get("protocol")) is not None and self.protocol is None:
            self.protocol = (p.get("minReaderVersion", 1), p.get("readerFeatures"))
        if (m := action.get("metaData")) is not None and self.metadata is None:
            self.metadata = m
        if (a := action.get("add")) is not None:
            self.add(
                a["path"],
                a.get("stats") or None,
                a.get("stats_parsed") is not None,
                a.get("deletionVector") is not None,
            )
        if (r := action.get("remove")) is not None:
            self.remove(r["path"], r.get("deletionVector") is not None)

    def checkpoint(self, row: tuple[Any, ...]) -> None:
        """One row of :func:`_checkpoint_sql`."""
        (add, stats, parsed, add_dv, rm, rm_dv, has_p, reader, features) = row[:9]
        has_m, schema, description, configuration, partitions, v2 = row[9:]
        if v2:
            raise _UnhandledError("a V2 checkpoint")
        if has_p and self.protocol is None:
            self.protocol = (1 if reader is None else reader, features)
        if has_m and self.metadata is None:
            self.metadata = {
                "schemaString": schema,
                "description": description,
                "configuration": configuration,
                "partitionColumns": partitions,
            }
        if add is not None:
            self.add(add, stats or None, parsed, add_dv)
        if rm is not None:
            self.remove(rm, rm_dv)

    def run(self, log: str, start: int, latest: int, con: Any) -> LogSnapshot:
        for v in range(latest, start, -1):
            with open(os.path.join(log, f"{v:020d}.json"), encoding="utf-8") as fh:
                for line in fh:
                    if line.strip():
                        self.action(json.loads(line))
        if start >= 0:
            for row in _checkpoint_rows(os.path.join(log, f"{start:020d}.checkpoint.parquet"), con):
                self.checkpoint(row)
        protocol, metadata = self.protocol, self.metadata
        if protocol is None or metadata is None:
            raise _UnhandledError("no protocol or metadata")
        if int(protocol[0]) > 3:
            raise _UnhandledError("reader version")
        fields = json.loads(metadata["schemaString"])["fields"]
        strings = frozenset(f["name"] for f in fields if f.get("type") == "string")
        base = self.root.rstrip("/") + "/"
        files = []
        for path in self.live:
            if "://" in path or path.startswith("/") or ":" in path.split("/")[0]:
                raise _UnhandledError("an absolute file URI")
            files.append(base + (_unquote(path) if "%" in path else path))
        return LogSnapshot(
            version=latest,
            files=tuple(files),
            features=features_of(
                protocol[1], metadata.get("configuration"), metadata.get("partitionColumns")
            ),
            description=metadata.get("description"),
            columns=tuple(f["name"] for f in fields),
            string_columns=strings,
            stats=tuple(self.live.values()),
        )
