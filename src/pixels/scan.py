"""Reading the catalog table: the one path every reader takes.

``pixels sql``, the identity look-ups of every writer and the DICOMweb server's
index all read one version of the table through a :class:`TableScan`, which
honours the Delta protocol in one of two ways, chosen from the version's protocol
and metadata:

* **direct**: the version's Parquet files are read by DuckDB (``read_parquet``;
  with ``union_by_name`` where files may lack columns added by a later schema, so
  those read as null: see :attr:`TableScan.uniform`).
  That is every table Pixels writes. Files on object stores are read through
  fsspec (no DuckDB extension to download), with the table's storage options.
* **through delta-rs**: a version whose files alone do not hold its rows, because
  of deletion vectors (rows deleted by Databricks / Spark without rewriting the
  file), column mapping (physical column names in the files), partition columns
  (values only in the log) or another reader feature, is read by delta-rs' own
  query engine (DataFusion), which applies them. Identity look-ups run there with
  their predicate; a SQL view gets the version's rows as an in-memory DuckDB table.
  A feature delta-rs cannot read either is refused with a
  :class:`~pixels.errors.TableError` naming it.

Examples
--------
>>> import duckdb                                           # doctest: +SKIP
>>> scan = CatalogTable("./catalog").scan()                 # doctest: +SKIP
>>> con = duckdb.connect(); scan.register(con)              # doctest: +SKIP
>>> con.sql("SELECT count(*) FROM object_catalog")          # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote

import duckdb
import pyarrow as pa
from deltalake import DeltaTable, QueryBuilder
from deltalake.exceptions import DeltaError
from duckdb.func import FunctionNullHandling, PythonUDFType

from pixels.deltalog import features_of, parquet_source
from pixels.errors import TableError
from pixels.schema import SCHEMA, VIEW_NAME, row_id
from pixels.storage import delta_options, fsspec_options, is_local

__all__ = ["LEGACY_ANON_SQL", "LOOKUP_SCHEMA", "TableScan", "legacy_columns", "protocol_features"]

#: Columns of an identity look-up (:meth:`TableScan.lookup`).
LOOKUP_SCHEMA = pa.schema(
    [
        pa.field("path", pa.string()),
        pa.field("length", pa.int64()),
        pa.field("modificationTime", SCHEMA.field("modificationTime").type),
        pa.field("version_tag", pa.string()),
        pa.field("has_error", pa.bool_()),
    ]
)

_DELTA_TABLE = "t"


def _plain_name(path: str) -> bool:
    """A data file's path in the log that names a file in the table's own folder."""
    return bool(path) and "/" not in path and ":" not in path and path not in (".", "..")


def protocol_features(dt: DeltaTable) -> list[str]:
    """What makes the rows of ``dt``'s current version differ from its Parquet files.

    Empty for tables whose files are read as they are (every table Pixels
    writes); else the features, in words, with their protocol names
    (:func:`pixels.deltalog.features_of`, which the log read without delta-rs uses too).
    """
    metadata = dt.metadata()
    return features_of(
        dt.protocol().reader_features, metadata.configuration, metadata.partition_columns
    )


#: ``is_anon`` of a row written before the column existed: true for local files, null
#: for URLs (as :func:`pixels.table.evolve.legacy_is_anon`).
#: (DuckDB and Spark SQL alike.)
LEGACY_ANON_SQL = "CASE WHEN instr(regexp_replace(path, '^.*::', ''), '://') = 0 THEN true END"


def _row_ids(paths: pa.Array) -> pa.Array:
    return pa.array([None if p is None else row_id(p) for p in paths.to_pylist()], pa.int64())


def legacy_columns(con: duckdb.DuckDBPyConnection, source: str) -> str:
    """The select list of a view over rows an older Pixels may have written.

    ``rowId`` and ``is_anon`` (null in such rows, or missing from every file)
    are derived from ``path`` where null: ``rowId`` is :func:`pixels.schema.row_id`
    (a DuckDB function ``pixels_row_id`` registered on ``con``), so the view
    shows what ``pixels upgrade`` will write. Other columns are as read.
    """
    with contextlib.suppress(duckdb.Error):  # registered already
        con.create_function(
            "pixels_row_id",
            _row_ids,
            ["varchar"],
            "bigint",
            type=PythonUDFType.ARROW,
            null_handling=FunctionNullHandling.SPECIAL,
            side_effects=False,
        )
    have = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    if "path" not in have:
        return "*"
    derived = {
        "rowId": "pixels_row_id(path)",
        "is_anon": LEGACY_ANON_SQL,
    }
    replace = [
        f"coalesce({_quote(c)}, {e}) AS {_quote(c)}" for c, e in derived.items() if c in have
    ]
    added = [f"{e} AS {_quote(c)}" for c, e in derived.items() if c not in have]
    select = "*" + (f" REPLACE ({', '.join(replace)})" if replace else "")
    return ", ".join([select, *added])


def _plain_type(t: pa.DataType) -> pa.DataType:
    """``t`` with view types (DataFusion's strings) as the plain types of the catalog schema."""
    if t == pa.string_view() or pa.types.is_large_string(t):
        return pa.string()
    if t == pa.binary_view() or pa.types.is_large_binary(t):
        return pa.binary()
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t):
        return pa.list_(t.value_field.with_type(_plain_type(t.value_type)))
    if pa.types.is_struct(t):
        return pa.struct([f.with_type(_plain_type(f.type)) for f in t])
    if pa.types.is_map(t):
        return pa.map_(_plain_type(t.key_type), _plain_type(t.item_type))
    return t


def _plain(table: pa.Table) -> pa.Table:
    schema = pa.schema([f.with_type(_plain_type(f.type)) for f in table.schema])
    return table if schema == table.schema else table.cast(schema)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class TableScan:
    """One version of the catalog table, read as the Delta protocol says.

    Build it with :meth:`pixels.table.CatalogTable.scan` (the current version) or
    :meth:`of` (a loaded :class:`deltalake.DeltaTable`).

    Attributes
    ----------
    uri : str
        The table.
    version : int or None
        The version read (None: no table yet, no rows).
    files : tuple of str
        The version's data files.
    features : list of str
        Protocol features that make delta-rs read this version (empty: DuckDB
        reads :attr:`files` directly).
    """

    def __init__(
        self,
        uri: str,
        version: int | None,
        files: Sequence[str],
        *,
        storage_options: Mapping[str, Any] | None = None,
        features: Sequence[str] = (),
        legacy: bool = False,
        uniform: bool = False,
    ):
        self.uri = uri
        self.version = version
        self.files = tuple(files)
        self.storage_options = dict(storage_options or {})
        self.features = list(features)
        #: rows an older Pixels wrote may be here: ``rowId``/``is_anon`` derived on read
        self.legacy = legacy
        #: every file holds exactly the table's columns (all written by this Pixels in
        #: the current schema): DuckDB reads them by name without ``union_by_name``,
        #: which reads every footer to bind and made scans of a 10M-row table 2-3x slower
        self.uniform = uniform

    @classmethod
    def of(
        cls,
        dt: DeltaTable,
        uri: str,
        storage_options: Mapping[str, Any] | None = None,
        *,
        legacy: bool = False,
        uniform: bool = False,
    ) -> TableScan:
        """The scan of ``dt``'s loaded version (its files and features read together).

        ``legacy``: rows written by an older Pixels may be in it (null ``rowId``,
        ``is_anon``): the view derives them from ``path`` (:func:`legacy_columns`).
        """
        return cls(
            uri,
            int(dt.version()),
            list(dt.file_uris()),
            storage_options=storage_options,
            features=protocol_features(dt),
            legacy=legacy,
            uniform=uniform,
        )

    @classmethod
    def empty(cls, uri: str) -> TableScan:
        """A scan with no rows (there is no table yet)."""
        return cls(uri, None, ())

    @property
    def direct(self) -> bool:
        """True when DuckDB reads the version's files as they are."""
        return not self.features

    def __repr__(self) -> str:
        how = "direct" if self.direct else "delta-rs: " + "; ".join(self.features)
        return f"TableScan({self.uri!r}, version={self.version}, files={len(self.files)}, {how})"

    def restricted(self, files: Sequence[str]) -> TableScan:
        """This scan limited to ``files`` (a snapshot taken earlier).

        A version read through delta-rs cannot be cut by files (their deleted rows
        live in the log): it stays whole.
        """
        if not self.direct:
            return self
        return TableScan(
            self.uri,
            self.version,
            files,
            storage_options=self.storage_options,
            features=(),
            legacy=self.legacy,
            uniform=self.uniform,
        )

    def followed(self) -> TableScan | None:
        """The table's newest version, from this one: for a local table read directly,
        the JSON commits after :attr:`version` replayed onto :attr:`files` (their adds
        and removes), without reading the whole log again (delta-rs' incremental update
        replays every commit since the last checkpoint: 20-80 ms at 10M rows, growing
        with each commit until the next checkpoint).

        ``self`` when no commit came. None where only a whole read can tell, and the
        caller reads the table (:meth:`pixels.table.CatalogTable.scan`): a commit
        changing the protocol or metadata (columns, description, features), deletion
        vectors, data files named by absolute URIs or in folders, a remove of a file
        this version does not hold, a commit that cannot be read, or commits already
        cleaned from the log (a newer checkpoint than this version).
        """
        if self.version is None or not self.direct or not is_local(self.uri):
            return None
        from pixels.storage import local_path

        root = local_path(self.uri).rstrip("/")
        log = os.path.join(root, "_delta_log")
        files = dict.fromkeys(self.files)
        version = self.version
        try:
            while True:
                try:
                    with open(os.path.join(log, f"{version + 1:020d}.json"), "rb") as fh:
                        lines = fh.read().splitlines()
                except FileNotFoundError:
                    break
                for line in lines:
                    if not line.strip():
                        continue
                    action = json.loads(line)
                    if not isinstance(action, dict) or "protocol" in action or "metaData" in action:
                        return None
                    for kind in ("add", "remove"):
                        act = action.get(kind)
                        if act is None:
                            continue
                        path = act["path"]
                        if act.get("deletionVector") is not None or not _plain_name(path):
                            return None
                        uri = f"{root}/{unquote(path)}"
                        if kind == "add":
                            files[uri] = None
                        elif uri in files:
                            del files[uri]
                        else:
                            return None
                version += 1
            if version == self.version:
                # (no next commit: unless the log was cleaned past this version)
                with open(os.path.join(log, "_last_checkpoint"), "rb") as fh:
                    if int(json.loads(fh.read())["version"]) > version:
                        return None
                return self
        except FileNotFoundError:
            return self  # (no checkpoint: nothing was cleaned)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        return TableScan(
            self.uri,
            version,
            list(files),
            storage_options=self.storage_options,
            features=(),
            legacy=self.legacy,
            uniform=self.uniform,
        )

    # ------------------------------------------------------------ DuckDB
    @property
    def union_by_name(self) -> str:
        """The ``union_by_name`` option of ``read_parquet`` for these files (see :attr:`uniform`)."""
        return "union_by_name=false" if self.uniform else "union_by_name=true"

    def prepare(self, con: duckdb.DuckDBPyConnection) -> None:
        """Let ``con`` read the table's files: fsspec for object stores (no extension download)."""
        if is_local(self.uri) or not self.direct:
            return
        from pixels.sources.remote import url_to_fs

        fs, _ = url_to_fs(self.uri, fsspec_options(self.uri, self.storage_options))
        protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
        if not any(con.filesystem_is_registered(p) for p in protocols):
            con.register_filesystem(fs)

    def register(self, con: duckdb.DuckDBPyConnection, name: str = VIEW_NAME) -> None:
        """Create the view ``name`` over this version's rows in ``con``.

        Direct: a view over ``read_parquet`` of :attr:`files` (read lazily, with
        projection and filter push-down). Through delta-rs: the version's rows are
        read once into a DuckDB table that the view selects from.
        """
        # rows held by DuckDB are a table, not a registered Arrow object: the view
        # then works from every cursor of ``con`` too
        if self.version is None or (self.direct and not self.files):
            self._hold(con, name, SCHEMA.empty_table())
            return
        if self.direct:
            self.prepare(con)
            # the file URIs come from the Delta log, never from a request
            source = parquet_source(self.files, self.uniform)
            select = legacy_columns(con, source) if self.legacy else "*"
            con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT {select} FROM {source}")
            return
        rows = self.through_delta(f"SELECT * FROM {_DELTA_TABLE}")
        if self.legacy:
            con.register("_pixels_legacy", rows)
            try:
                rows = con.sql(
                    f"SELECT {legacy_columns(con, '_pixels_legacy')} FROM _pixels_legacy"
                ).to_arrow_table()
            finally:
                con.unregister("_pixels_legacy")
        self._hold(con, name, rows)

    @staticmethod
    def _hold(con: duckdb.DuckDBPyConnection, name: str, rows: pa.Table) -> None:
        held = f"_pixels_rows_{name}"
        con.register("_pixels_arrow", rows)
        try:
            con.execute(f"CREATE OR REPLACE TABLE {held} AS SELECT * FROM _pixels_arrow")
        finally:
            con.unregister("_pixels_arrow")
        con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM {held}")

    # ---------------------------------------------------------- delta-rs
    def _delta(self) -> DeltaTable:
        try:
            return DeltaTable(
                self.uri,
                version=self.version,
                storage_options=delta_options(self.uri, self.storage_options),
            )
        except (DeltaError, OSError) as e:
            raise TableError(f"cannot read version {self.version}: {e}", self.uri) from e

    def through_delta(self, sql: str) -> pa.Table:
        """Run ``sql`` (DataFusion's dialect; the version is the table ``t``) with delta-rs.

        Raises
        ------
        TableError
            When delta-rs cannot read the version (a protocol feature it does not
            support), naming the features.
        """
        try:
            reader = QueryBuilder().register(_DELTA_TABLE, self._delta()).execute(sql)
            return _plain(pa.RecordBatchReader.from_stream(reader).read_all())
        except (DeltaError, OSError) as e:
            features = "; ".join(self.features) or "none"
            raise TableError(
                f"cannot read the table (protocol features: {features}): {e}", self.uri
            ) from e

    # ----------------------------------------------------------- identity
    def lookup(self, con: duckdb.DuckDBPyConnection, paths: pa.Array | list[str]) -> pa.Table:
        """``path, length, modificationTime, version_tag, has_error`` of rows whose path is in ``paths``.

        ``con`` is the DuckDB connection used for direct scans (a small one: the
        look-up streams the files' ``path`` column and skips row groups by their
        statistics).
        """
        import pyarrow.compute as pc  # here: `pixels sql` never needs it (~0.1-0.2 s to import)

        wanted = pa.array(paths, pa.string())
        wanted = wanted.filter(pc.is_valid(wanted))
        if self.version is None or len(wanted) == 0 or (self.direct and not self.files):
            return LOOKUP_SCHEMA.empty_table()
        lo = pc.min(wanted).as_py()
        hi = pc.max(wanted).as_py()
        if not self.direct:
            listed = ", ".join(_sql_string(p) for p in pc.unique(wanted).to_pylist())
            got = self.through_delta(
                'SELECT path, length, "modificationTime", version_tag, '
                "error IS NOT NULL AS has_error "
                f"FROM {_DELTA_TABLE} WHERE path >= {_sql_string(lo)} "
                f"AND path <= {_sql_string(hi)} AND path IN ({listed})"
            )
            return got.cast(LOOKUP_SCHEMA)
        self.prepare(con)
        con.register("_pixels_wanted", pa.table({"path": wanted}))
        try:
            # the range lets DuckDB skip row groups by their min/max statistics:
            # listings are ordered, and so are the rows each commit wrote
            sql = (
                "SELECT t.path, t.length, t.modificationTime, {tag} AS version_tag, "
                "t.error IS NOT NULL AS has_error "
                f"FROM read_parquet(?, {self.union_by_name}) t "
                "WHERE t.path BETWEEN ? AND ? AND t.path IN (SELECT path FROM _pixels_wanted)"
            )
            params = [list(self.files), lo, hi]
            try:
                rel = con.sql(sql.format(tag="t.version_tag"), params=params)
            except duckdb.BinderException:  # no file written since the column was added
                rel = con.sql(sql.format(tag="NULL::VARCHAR"), params=params)
            return rel.to_arrow_table().cast(LOOKUP_SCHEMA)
        finally:
            con.unregister("_pixels_wanted")
