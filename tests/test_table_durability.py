"""A local table's writes are on disk when they return, and its writer lock is the open
file's (:mod:`pixels.table.durability`, :meth:`pixels.table.CatalogTable._writer_lock`).

``os.fsync`` is spied on (the real one runs): what a write syncs is read from the
descriptors it syncs, and what it should sync from the Delta log it wrote.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest

from corpus import copy_with_new_uids, sample_file
from fsyncs import record_fsyncs
from pixels.locks import lock_file, unlock_file
from pixels.schema import TIMESTAMP
from pixels.table import CatalogTable
from pixels.table.durability import added_files, log_entry


def _rows(files: list[Path], root: Path) -> pa.Table:
    from pixels.dicom.record import catalog_batch
    from pixels.sources import iter_files

    refs = [r for r in iter_files(str(root)) if r.path in {str(f) for f in files}]
    return pa.Table.from_batches([catalog_batch(refs)])


@pytest.fixture
def fsynced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths ``os.fsync`` is called on, in order (the real one runs)."""
    synced: list[str] = []
    record_fsyncs(monkeypatch, synced.append)
    return synced


def test_an_append_returns_once_its_commit_and_data_files_are_on_disk(
    tmp_path: Path, fsynced: list[str]
) -> None:
    """delta-rs syncs neither a commit's log entry nor its data files: a power loss after
    an append returned could lose the commit (a C-STORE journal already removed for it)
    or keep a log entry naming a data file never written. Now each append syncs its data
    files, their folder, its log entry and ``_delta_log`` (and, for a table it made,
    version 0 and the table's entry in its parent), the data before the log entry. The
    same for an append replacing a row (delta-rs' own overwrite writes the files)."""
    src = tmp_path / "src"
    rows = _rows(copy_with_new_uids(sample_file("CT_small.dcm"), src, 3), src)
    root = tmp_path / "new" / "cat"
    table = CatalogTable(root)
    assert table.append(rows.slice(0, 2)) == 2
    version = table.version()
    (data,) = added_files(str(root), version)
    log = str(root / "_delta_log")
    expected = {log_entry(str(root), 0), log_entry(str(root), version), data, log}
    expected |= {str(root), str(root.parent)}
    assert expected <= set(fsynced), expected - set(fsynced)
    assert fsynced.index(data) < fsynced.index(log_entry(str(root), version))

    fsynced.clear()  # row 0's file changed (another modificationTime): its row replaced
    changed = rows.slice(0, 1).set_column(
        1, "modificationTime", pa.array([dt.datetime(2030, 1, 1, tzinfo=dt.UTC)], TIMESTAMP)
    )
    assert table.append(pa.concat_tables([changed, rows.slice(2, 1)])) == 2
    commits = range(version + 1, table.version() + 1)
    written = {f for v in commits for f in added_files(str(root), v)}
    assert written and written <= set(fsynced), written - set(fsynced)
    assert {log_entry(str(root), v) for v in commits} | {log, str(root)} <= set(fsynced)


def test_the_writer_lock_is_held_by_its_open_file_not_by_the_process(tmp_path: Path) -> None:
    """On NFS a ``flock`` is a POSIX record lock: the process's, dropped when any of its
    descriptors of the file closes, never conflicting within the process (two writers of
    one server both "held" it). The table's writer lock is its open file's
    (:func:`pixels.locks.lock_file`): another descriptor of the process, opened and
    closed, leaves it held, another open of the file in the process cannot take it, and
    a second writer of the process waits for it."""
    src = tmp_path / "src"
    rows = _rows(copy_with_new_uids(sample_file("MR_small.dcm"), src, 2), src)
    table, other = CatalogTable(tmp_path / "cat"), CatalogTable(tmp_path / "cat")
    table.create()
    lock = str(tmp_path / "cat" / "_pixels" / "writer.lock")
    written: list[int] = []
    waiting = threading.Thread(target=lambda: written.append(other.append(rows)))
    with table._writer_lock():
        os.close(os.open(lock, os.O_RDWR))  # another descriptor of the file, closed
        fd = os.open(lock, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                lock_file(fd, wait=False)
        finally:
            os.close(fd)
        waiting.start()
        time.sleep(1.0)  # (not a timing assert: the writer must still be waiting after it)
        assert waiting.is_alive() and written == []
    waiting.join(timeout=120)
    assert written == [2]
    fd = os.open(lock, os.O_RDWR)  # released: free for anyone
    try:
        lock_file(fd, wait=False)
        unlock_file(fd)
    finally:
        os.close(fd)


def test_a_checkpoint_written_by_a_commit_is_synced_with_its_pointer(
    tmp_path: Path, fsynced: list[str]
) -> None:
    """delta-rs writes a checkpoint after every ``delta.checkpointInterval``-th commit and
    points readers at it (``_last_checkpoint``): both are synced with the commit, or a
    reader after a power loss could be pointed at a checkpoint that is not there."""
    src = tmp_path / "src"
    rows = _rows(copy_with_new_uids(sample_file("MR_small.dcm"), src, 2), src)
    root = tmp_path / "cat"
    table = CatalogTable(root)
    table.create()
    table.delta().alter.set_table_properties({"delta.checkpointInterval": "2"})
    table.append(rows.slice(0, 1))
    fsynced.clear()
    table.append(rows.slice(1, 1))  # version 3: (3 + 1) % 2 == 0, a checkpoint
    log = root / "_delta_log"
    checkpoint = log / f"{table.version():020d}.checkpoint.parquet"
    assert checkpoint.exists()
    assert {str(checkpoint), str(log / "_last_checkpoint")} <= set(fsynced)
