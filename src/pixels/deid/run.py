"""De-identify every file of a catalog into a folder, catalog the result, keep an audit.

:func:`deidentify_table` reads the source catalog's file columns (never ``meta``), one
Parquet batch at a time, opens each file through :mod:`pixels.sources` (local, zip
members, object stores), runs :func:`pixels.deid.file.deidentify_file` in worker
processes and writes ``OUT/<new StudyInstanceUID>/<new SeriesInstanceUID>/<new
SOPInstanceUID>.dcm`` (a temporary hidden name, then an atomic link that never replaces a
file: a second source of the same SOP instance is ``skipped`` as a duplicate). The output folder
is then cataloged into a new Delta table by the normal engine
(:func:`pixels.engines.local.run_catalog`).

The **audit** is a Delta table (and a CSV export of its latest row per source) kept beside
the key, never in the output: source path, length and time -> status (``written``,
``skipped``, ``failed``), reason, output path, new UIDs, action counts, key fingerprint
and options. Its de-identified side (output path, new UIDs, counts) holds no PHI; its
source side does (paths), which is why it lives with the key.

Re-running is idempotent and resumable: a source whose audit row (same path, length and
modification time) says ``skipped``, or ``written`` with its output file in the output
folder, is not read again (a new output folder with the same key gets every file); a
``failed`` one is tried again; outputs are a pure function of input, key and options, so a file written
twice is written identically. An audit made with another key or other options is refused.
Memory does not grow with the number of files: the sources stream in batches, the
finished ones are found by one DuckDB anti-join, and at most ``2 x workers`` chunks are in
flight.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from pixels.deid.file import BURNED_IN_PREFIX, DeidOptions, deidentify_file, error_text
from pixels.deid.keys import DeidKey, load_or_create_key
from pixels.dicom.notices import kept_warnings, tally_warnings
from pixels.errors import DeidError, PixelsError
from pixels.sources import FileRef, open_file
from pixels.table import CatalogTable

__all__ = ["AUDIT_SCHEMA", "DeidStats", "deidentify_table"]

#: The source columns read from the catalog (never ``meta``).
_SOURCE_COLUMNS = [
    "path",
    "modificationTime",
    "length",
    "relative_path",
    "local_path",
    "extension",
    "original_path",
    "version_tag",
]

#: Key of a :func:`deid_rows` row holding the file's kept warnings (not an audit column).
WARNINGS = "_warnings"

#: One row per source file and attempt.
AUDIT_SCHEMA = pa.schema(
    [
        pa.field("source_path", pa.string(), nullable=False),
        pa.field("source_length", pa.int64()),
        pa.field("source_modified", pa.timestamp("us", tz="UTC")),
        pa.field("status", pa.string(), nullable=False),
        pa.field("reason", pa.string()),
        pa.field("output_path", pa.string()),
        pa.field("StudyInstanceUID", pa.string()),
        pa.field("SeriesInstanceUID", pa.string()),
        pa.field("SOPInstanceUID", pa.string()),
        pa.field("transfer_syntax", pa.string()),
        pa.field("actions", pa.int64()),
        pa.field("actions_detail", pa.string()),
        pa.field("key_fingerprint", pa.string(), nullable=False),
        pa.field("options", pa.string(), nullable=False),
    ]
)


@dataclass
class DeidStats:
    """What one :func:`deidentify_table` run did."""

    listed: int = 0
    done_before: int = 0
    written: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    key_created: bool = False
    audit_table: str = ""
    audit_csv: str = ""
    out_table: str = ""
    catalog: Any = None
    skipped_reasons: dict[str, int] = field(default_factory=dict)
    """Skipped files by reason: the whole reason for burned-in text (which rule made the file
    suspect: ``possible burned-in text: modality CR commonly has...``), the part before the
    first colon otherwise (``duplicate SOP Instance UID``)."""
    skipped_examples: dict[str, str] = field(default_factory=dict)
    """One source path per reason of :attr:`skipped_reasons` (the first met)."""
    error_samples: list[str] = field(default_factory=list)
    warned: int = 0
    """Files whose reading or cleaning raised warnings (pydicom: a value invalid for its VR...)."""
    warning_kinds: dict[str, list[Any]] = field(default_factory=dict)
    """Kind of warning -> ``[files, example paths]`` (:func:`pixels.dicom.notices.tally_warnings`)."""


def _reason_group(reason: str) -> str:
    """The reason a skipped file is counted under (:attr:`DeidStats.skipped_reasons`).

    A burned-in reason names the rule, never a value of the file (:func:`burned_in_reason`),
    and is kept whole; any other is cut at its first colon (a duplicate's names its output).
    """
    return reason if reason.startswith(BURNED_IN_PREFIX) else reason.split(":")[0]


def _inside(path: str, folder: str) -> bool:
    p, f = os.path.realpath(path), os.path.realpath(folder)
    return p == f or p.startswith(f.rstrip(os.sep) + os.sep)


def _write_once(target: str, data: bytes) -> bool:
    """Write ``target`` whole or not at all; False when it holds other bytes already.

    The bytes go to a hidden temporary file that is then hard-linked to the name, which
    fails when the name exists: two sources of one SOP Instance UID never overwrite each
    other, and a file written again with the same bytes (a re-run) is left as it is.
    """
    folder = os.path.dirname(target)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".tmp-{os.getpid()}-{os.path.basename(target)}")
    with open(tmp, "wb") as f:
        f.write(data)
    try:
        os.link(tmp, target)
        return True
    except FileExistsError:
        with open(target, "rb") as f:
            return f.read() == data
    finally:
        os.unlink(tmp)


def deid_rows(
    rows: list[dict[str, Any]],
    secret: bytes,
    options: DeidOptions,
    out_dir: str,
    storage_options: dict[str, Any] | None,
) -> list[dict[str, Any]]:
    """De-identify catalog rows' files into ``out_dir``; one audit row each (runs in workers).

    Any error becomes a ``failed`` audit row naming the file; the others go on.
    """
    key = DeidKey(secret)
    out = []
    for row in rows:
        rec: dict[str, Any] = {
            "source_path": row["path"],
            "source_length": row.get("length"),
            "source_modified": row.get("modificationTime"),
            "key_fingerprint": key.fingerprint,
            "options": options.describe(),
        }
        try:
            ref = FileRef.from_row(row)
            with open_file(ref, storage_options=storage_options) as f:
                data = f.read()
            # pydicom's and highdicom's warnings name no file: kept for the run's summary
            with kept_warnings() as kept:
                res = deidentify_file(data, key, options, path=row["path"])
            if kept:
                rec[WARNINGS] = list(kept)
            rec["status"] = res.status
            rec["reason"] = res.reason
            rec["actions"] = sum(res.actions.values())
            rec["actions_detail"] = json.dumps(dict(res.actions), sort_keys=True)
            if res.status == "written":
                assert res.data is not None
                rel = f"{res.study_uid or 'no-study'}/{res.series_uid or 'no-series'}/{res.sop_uid}.dcm"
                if not _write_once(os.path.join(out_dir, rel), res.data):
                    rec["status"] = "skipped"
                    rec["reason"] = (
                        f"duplicate SOP Instance UID: {rel} holds another source's version "
                        "of the same instance"
                    )
                    out.append(rec)
                    continue
                rec.update(
                    output_path=rel,
                    StudyInstanceUID=res.study_uid,
                    SeriesInstanceUID=res.series_uid,
                    SOPInstanceUID=res.sop_uid,
                    transfer_syntax=res.transfer_syntax,
                )
        except PixelsError as e:
            rec["status"], rec["reason"] = "failed", str(e)
        except Exception as e:  # a bug or an unexpected library error: still one row
            rec["status"], rec["reason"] = "failed", f"{row['path']}: {error_text(e)}"
        out.append(rec)
    return out


class _Audit:
    """The audit Delta table: appended in commits, queried for what is done."""

    def __init__(self, uri: str):
        self.uri = uri
        self.pending: list[dict[str, Any]] = []
        self.last = time.monotonic()

    def exists(self) -> bool:
        return os.path.isdir(os.path.join(self.uri, "_delta_log"))

    def files(self) -> list[str]:
        from deltalake import DeltaTable

        return DeltaTable(self.uri).file_uris() if self.exists() else []

    def check_same(self, fingerprint: str, options: str) -> None:
        files = self.files()
        if not files:
            return
        import duckdb

        con = duckdb.connect()
        try:
            got = con.execute(
                "SELECT DISTINCT key_fingerprint, options FROM read_parquet(?)", [files]
            ).fetchall()
        finally:
            con.close()
        for fp, opts in got:
            if fp != fingerprint or opts != options:
                raise DeidError(
                    f"the audit was made with key {fp} and options {opts!r}, this run uses key "
                    f"{fingerprint} and {options!r}: write to another output folder and audit",
                    self.uri,
                )

    def add(self, rows: list[dict[str, Any]], commit_rows: int) -> None:
        self.pending.extend(rows)
        if len(self.pending) >= commit_rows or time.monotonic() - self.last > 30:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        from deltalake import write_deltalake

        # the audit holds source paths (often a patient's name or number): owner-only, like
        # the key and the CSV export (delta-rs writes its files 0644 inside)
        os.makedirs(self.uri, mode=0o700, exist_ok=True)
        if os.stat(self.uri).st_mode & 0o077:
            os.chmod(self.uri, 0o700)
        write_deltalake(
            self.uri, pa.Table.from_pylist(self.pending, schema=AUDIT_SCHEMA), mode="append"
        )
        self.pending = []
        self.last = time.monotonic()

    def export_csv(self, path: str) -> None:
        import duckdb

        files = self.files()
        if not files:
            return
        tmp = path + ".tmp"
        con = duckdb.connect()
        try:
            con.execute(
                "COPY (SELECT * FROM read_parquet(?) QUALIFY row_number() OVER "
                "(PARTITION BY source_path ORDER BY CASE status WHEN 'failed' THEN 1 ELSE 0 END, "
                "source_modified DESC, output_path) = 1 "
                f"ORDER BY source_path) TO '{tmp.replace(chr(39), chr(39) * 2)}' (HEADER, DELIMITER ',')",
                [files],
            )
        finally:
            con.close()
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)


def _todo(
    source: CatalogTable, audit: _Audit, out: str, batch_rows: int
) -> Iterator[list[dict[str, Any]]]:
    """Source rows not done before, in batches.

    Done: an audit row (same path, length and time) says ``skipped``, or says ``written``
    and its output file is in ``out``. A run into another output folder with the same key
    (and so the same audit) writes every file there, instead of finding them all done.
    """
    import duckdb

    files = source.file_uris()
    if not files:
        return
    con = duckdb.connect()
    try:
        cols = ", ".join(f's."{c}"' for c in _SOURCE_COLUMNS)
        sql = f"SELECT {cols}, NULL::VARCHAR AS _written FROM read_parquet(?, union_by_name=true) s"
        params: list[Any] = [files]
        done = audit.files()
        if done:
            sql = (
                f"SELECT {cols}, a.written AS _written FROM read_parquet(?, union_by_name=true) s "
                "LEFT JOIN (SELECT source_path, source_length, source_modified, "
                "bool_or(status = 'skipped') AS skipped, "
                "max(output_path) FILTER (WHERE status = 'written') AS written "
                "FROM read_parquet(?) WHERE status IN ('written', 'skipped') GROUP BY ALL) a "
                "ON s.path = a.source_path AND "
                "s.length IS NOT DISTINCT FROM a.source_length AND "
                "s.modificationTime IS NOT DISTINCT FROM a.source_modified "
                "WHERE a.skipped IS NOT TRUE"
            )
            params.append(done)
        reader: Any = con.sql(sql + " ORDER BY s.path", params=params).to_arrow_reader(batch_rows)
        for batch in reader:
            # only the written paths are looked at (and only the rows left made dicts): a
            # re-run of a catalog written whole makes no row at all
            left = [
                not (w and os.path.isfile(os.path.join(out, w)))
                for w in batch.column("_written").to_pylist()
            ]
            if any(left):
                kept = batch if all(left) else batch.filter(pa.array(left))
                yield kept.drop_columns(["_written"]).to_pylist()
    finally:
        con.close()


def deidentify_table(
    source_table: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    key_file: str | os.PathLike[str] = "pixels-deid.key",
    options: DeidOptions | None = None,
    out_table: str | os.PathLike[str] | None = None,
    audit: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    storage_options: dict[str, Any] | None = None,
    table_storage_options: dict[str, str] | None = None,
    catalog: bool = True,
    chunk_rows: int = 16,
    commit_rows: int = 500,
    progress: Callable[[DeidStats], None] | None = None,
) -> DeidStats:
    """De-identify every file of a catalog into ``out_dir`` and catalog the result.

    Parameters
    ----------
    source_table : str or path-like
        The catalog (Delta table) whose files are read.
    out_dir : str or path-like
        Local folder for the de-identified files (created).
    key_file : str or path-like
        The secret key; generated (mode 0600) when the file does not exist. Must not be
        inside ``out_dir``.
    options : DeidOptions, optional
        Profile options, descriptors to keep, blackout rules.
    out_table : str or path-like, optional
        The new catalog of the output (default ``OUT/.catalog``: hidden, so never listed
        as a file to catalog).
    audit : str or path-like, optional
        Audit Delta table (default beside the key: ``<key file>.audit``); its CSV export
        is ``<audit>.csv``. Must not be inside ``out_dir``.
    workers : int, optional
        Worker processes (default: CPUs; 0 = this process).
    storage_options : dict, optional
        fsspec options to open the source files (S3 credentials, endpoint).
    table_storage_options : dict, optional
        Object-store options of the source table.
    catalog : bool
        Catalog ``out_dir`` into ``out_table`` when done.
    chunk_rows, commit_rows : int
        Files per worker task; audit rows per Delta commit.
    progress : callable, optional
        Called with the running :class:`DeidStats`.

    Returns
    -------
    DeidStats

    Raises
    ------
    DeidError
        The key or the audit is inside the output, the key file is unusable, or the audit
        was made with another key or options.
    """
    from pixels.engines.pool import start_pool

    t0 = time.perf_counter()
    opts = options or DeidOptions()
    out = os.path.abspath(os.fspath(out_dir))
    key_path = os.path.abspath(os.fspath(key_file))
    audit_uri = os.path.abspath(os.fspath(audit)) if audit else key_path + ".audit"
    for what, p in (("key file", key_path), ("audit", audit_uri)):
        if _inside(p, out):
            raise DeidError(f"the {what} must be kept outside the de-identified output {out}", p)
    key, created = load_or_create_key(key_path)
    os.makedirs(out, exist_ok=True)
    stats = DeidStats(key_created=created, audit_table=audit_uri, audit_csv=audit_uri + ".csv")
    source = CatalogTable(source_table, storage_options=table_storage_options)
    if not source.exists():
        raise DeidError("no catalog table there", source.uri)
    log = _Audit(audit_uri)
    log.check_same(key.fingerprint, opts.describe())

    def take(rows: list[dict[str, Any]]) -> None:
        for r in rows:
            found = r.pop(WARNINGS, None)
            if found:
                stats.warned += 1
                tally_warnings(stats.warning_kinds, str(r["source_path"]), found)
            if r["status"] == "written":
                stats.written += 1
            elif r["status"] == "skipped":
                stats.skipped += 1
                why = _reason_group(str(r["reason"]))
                stats.skipped_reasons[why] = stats.skipped_reasons.get(why, 0) + 1
                stats.skipped_examples.setdefault(why, str(r["source_path"]))
            else:
                stats.failed += 1
                if len(stats.error_samples) < 10:
                    stats.error_samples.append(str(r["reason"]))
        log.add(rows, commit_rows)
        if progress:
            stats.seconds = time.perf_counter() - t0
            progress(stats)

    total = source.count()
    n_workers = (os.cpu_count() or 1) if workers is None else workers
    args = (key.secret, opts, out, storage_options)
    try:
        if n_workers <= 0:
            for batch in _todo(source, log, out, 256):
                stats.listed += len(batch)
                take(deid_rows(batch, *args))
        else:
            _run_pool(source, log, n_workers, chunk_rows, args, stats, take, start_pool)
    finally:
        log.flush()
    stats.done_before = max(0, total - stats.listed)
    log.export_csv(stats.audit_csv)
    if catalog:
        from pixels.catalog import Catalog

        target = os.fspath(out_table) if out_table else os.path.join(out, ".catalog")
        stats.out_table = target
        stats.catalog = Catalog(target).catalog(out, workers=workers)
    stats.seconds = time.perf_counter() - t0
    return stats


def _run_pool(
    source: CatalogTable,
    log: _Audit,
    n_workers: int,
    chunk_rows: int,
    args: tuple[Any, ...],
    stats: DeidStats,
    take: Callable[[list[dict[str, Any]]], None],
    start_pool: Callable[..., Any],
) -> None:
    """Chunks of rows to a process pool, at most ``2 x workers`` in flight."""
    pool = start_pool(n_workers)
    inflight: dict[Future[list[dict[str, Any]]], list[dict[str, Any]]] = {}

    def drain(limit: int) -> None:
        nonlocal pool
        while len(inflight) > limit:
            fut = next(iter(inflight))
            chunk = inflight.pop(fut)
            try:
                take(fut.result())
            except BrokenProcessPool:
                # a worker died (killed, out of memory, a decoder crash): its chunk fails,
                # named file by file; a fresh pool takes the rest
                take([_died(r, args) for r in chunk])
                for other, rows in list(inflight.items()):
                    inflight.pop(other)
                    take([_died(r, args) for r in rows])
                pool.shutdown(wait=False, cancel_futures=True)
                pool = start_pool(n_workers)

    try:
        for batch in _todo(source, log, args[2], 256):
            stats.listed += len(batch)
            for i in range(0, len(batch), chunk_rows):
                chunk = batch[i : i + chunk_rows]
                inflight[pool.submit(deid_rows, chunk, *args)] = chunk
                drain(2 * n_workers)
        drain(0)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _died(row: dict[str, Any], args: tuple[Any, ...]) -> dict[str, Any]:
    key = DeidKey(args[0])
    return {
        "source_path": row["path"],
        "source_length": row.get("length"),
        "source_modified": row.get("modificationTime"),
        "status": "failed",
        "reason": f"{row['path']}: the worker process died while de-identifying this chunk",
        "key_fingerprint": key.fingerprint,
        "options": args[1].describe(),
    }
