"""``TableScan.followed``: the commits after a version replayed onto its files, as delta-rs
reads the whole log, or a clear "read the table" where it cannot tell."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable

from corpus import copy_with_new_uids, sample_file
from pixels import Catalog
from pixels.dicom.record import catalog_batch
from pixels.scan import TableScan
from pixels.sources import iter_files
from pixels.table import CatalogTable
from test_scan import delete_with_deletion_vector


def _rows(root: Path, n: int) -> pa.Table:
    copy_with_new_uids(sample_file("CT_small.dcm"), root, n)
    return pa.Table.from_batches([catalog_batch(list(iter_files(str(root))))])


def _same(followed: TableScan | None, table: CatalogTable) -> None:
    whole = table.scan()
    assert followed is not None
    assert followed.version == whole.version
    assert sorted(followed.files) == sorted(whole.files)
    assert (followed.features, followed.legacy, followed.uniform) == (
        whole.features,
        whole.legacy,
        whole.uniform,
    )


def test_appends_deletes_and_an_optimize_follow_as_the_whole_log_reads(tmp_path: Path) -> None:
    rows = _rows(tmp_path / "src", 8)
    table = CatalogTable(str(tmp_path / "cat"))
    table.append(rows.slice(0, 2))
    before = table.scan()
    assert before.followed() is before  # no commit since
    for i in range(2, 6):  # commits by another writer, several at once
        CatalogTable(str(tmp_path / "cat")).append(rows.slice(i, 1))
    _same(before.followed(), table)
    mid = table.scan()
    removed = table.remove_paths([rows["path"][2].as_py()])  # a file rewritten: remove + add
    assert removed == 1
    _same(mid.followed(), table)
    late = table.scan()
    Catalog(str(tmp_path / "cat")).optimize()  # compaction (dataChange false), then vacuum
    followed = late.followed()
    _same(followed, table)
    assert followed is not None and len(followed.files) == 1


def test_what_only_a_whole_read_can_tell(tmp_path: Path) -> None:
    """A commit changing the table's metadata, a deletion vector, or commits cleaned
    from the log past the version: None (the caller reads the table)."""
    rows = _rows(tmp_path / "src", 4)
    path = tmp_path / "cat"
    table = CatalogTable(str(path))
    table.append(rows.slice(0, 2))
    scan = table.scan()
    delete_with_deletion_vector(path, rows["path"][0].as_py())
    assert scan.followed() is None

    other = tmp_path / "other"
    CatalogTable(str(other)).append(rows.slice(0, 1))
    old = CatalogTable(str(other)).scan()
    DeltaTable(str(other)).alter.set_table_description("another description")
    assert old.followed() is None

    third = tmp_path / "third"
    CatalogTable(str(third)).append(rows.slice(0, 1))
    early = CatalogTable(str(third)).scan()
    for i in (1, 2, 3):
        CatalogTable(str(third)).append(rows.slice(i, 1))
    dt = DeltaTable(str(third))
    dt.create_checkpoint()
    log = third / "_delta_log"
    assert early.version is not None
    for v in range(early.version + 1, dt.version() + 1):  # as a log cleanup past a checkpoint
        os.remove(log / f"{v:020d}.json")
    assert early.followed() is None
