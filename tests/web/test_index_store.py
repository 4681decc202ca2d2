"""The server's index saved next to a local table (``_pixels/index/index.duckdb``).

A server started again must open the saved index and apply only the versions
committed since (start-up must not grow with the table); a first build goes in
chunks of data files, each committed with the files it indexed, so a build that
stopped resumes where it was; an index that cannot be saved (the file held by
another index, a damaged or older file) still answers, built in memory or again.
Every case ends equal to an index built from scratch in memory.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable

from corpus import copy_with_new_uids, sample_file
from pixels import Catalog
from pixels.table import CatalogTable
from pixels.web import index as index_mod
from pixels.web.index import INDEX_FILE, TableIndex
from web.test_index import _state


def _fresh(catalog: str) -> dict[str, object]:
    return _state(TableIndex(CatalogTable(catalog), persist=False))


def _saved(catalog: str) -> Path:
    return Path(catalog) / "_pixels" / "index" / INDEX_FILE


@pytest.fixture()
def catalog(tmp_path: Path) -> str:
    """A table of three data files (three catalog runs of real files with fresh UIDs)."""
    out = str(tmp_path / "catalog")
    for k, name in enumerate(("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm")):
        copy_with_new_uids(sample_file(name), tmp_path / f"in{k}", 3, per_series=2)
        Catalog(out).catalog(str(tmp_path / f"in{k}"), workers=0)
    assert len(DeltaTable(out).file_uris()) == 3
    return out


def test_a_restart_opens_the_saved_index_and_applies_only_new_commits(
    catalog: str, tmp_path: Path
) -> None:
    first = TableIndex(CatalogTable(catalog))
    assert first.path == str(_saved(catalog))
    assert _state(first) == _fresh(catalog)
    assert first.last_update["added_files"] == 3
    first.close()

    again = TableIndex(CatalogTable(catalog))
    assert again.path == str(_saved(catalog))
    snap = again.current()
    assert snap.version == DeltaTable(catalog).version()
    # nothing read from the table's files: the saved tables stand for this version
    assert again.last_update["added_files"] == again.last_update["removed_files"] == 0
    assert _state(again) == _fresh(catalog)
    again.close()

    # a commit while no server ran: the next start adds that file only
    copy_with_new_uids(sample_file("CT_small.dcm"), tmp_path / "later", 2, per_series=2)
    Catalog(catalog).catalog(str(tmp_path / "later"), workers=0)
    third = TableIndex(CatalogTable(catalog))
    assert _state(third) == _fresh(catalog)
    assert third.last_update["added_files"] == 1
    assert third.last_update["removed_files"] == 0
    # an optimize: every file removed and added again, followed by the open index
    Catalog(catalog).optimize()
    assert _state(third) == _fresh(catalog)
    assert third.last_update["removed_files"] == 4
    third.close()

    # a copy of the table (its saved index with it) opens the copy's index as saved
    copy = str(tmp_path / "copy")
    shutil.copytree(catalog, copy)
    copied = TableIndex(CatalogTable(copy))
    assert copied.path == str(_saved(copy))
    assert _state(copied) == _fresh(copy)
    assert copied.last_update["added_files"] == 0
    assert {p for p in copied._fids} == set(DeltaTable(copy).file_uris())
    copied.close()


def test_a_first_build_commits_chunks_and_resumes_where_it_stopped(
    catalog: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index_mod, "_CHUNK_ROWS", 1)  # one data file per chunk
    index = TableIndex(CatalogTable(catalog))
    scan = index.table.scan()
    assert index._chunks(list(scan.files)) == [[u] for u in scan.files]
    # a build stopped after its first chunk (as a killed server leaves it)
    index._commit(scan, [scan.files[0]], [], last=False)
    index.close()

    resumed = TableIndex(CatalogTable(catalog))
    assert resumed._version is None and list(resumed._fids) == [scan.files[0]]
    assert _state(resumed) == _fresh(catalog)
    assert resumed.last_update["added_files"] == 2
    assert resumed.last_update["chunks"] == 2
    resumed.close()
    assert TableIndex(CatalogTable(catalog)).current().version == scan.version


def test_an_index_that_cannot_be_saved_still_answers(catalog: str) -> None:
    held = TableIndex(CatalogTable(catalog))
    held.current()
    # the file is held (by another server on the same table): this one is in memory
    other = TableIndex(CatalogTable(catalog))
    assert other.path is None
    assert _state(other) == _state(held) == _fresh(catalog)
    held.close()
    other.close()

    # a saved index of another layout is built again
    import duckdb

    con = duckdb.connect(str(_saved(catalog)))
    con.execute("UPDATE state SET format = format + 100")
    con.close()
    rebuilt = TableIndex(CatalogTable(catalog))
    assert rebuilt.path == str(_saved(catalog))
    assert _state(rebuilt) == _fresh(catalog)
    assert rebuilt.last_update["added_files"] == 3
    rebuilt.close()

    # a damaged file (not a DuckDB database) is made again
    os.remove(_saved(catalog))
    _saved(catalog).write_bytes(b"not an index " * 500)
    remade = TableIndex(CatalogTable(catalog))
    assert remade.path == str(_saved(catalog))
    assert _state(remade) == _fresh(catalog)
    remade.close()

    # a table whose folder cannot be written: in memory
    shutil.rmtree(Path(catalog) / "_pixels")
    (Path(catalog) / "_pixels").write_text("a file where the folder would be")
    plain = TableIndex(CatalogTable(catalog))
    assert plain.path is None
    assert _state(plain) == _fresh(catalog)


def test_the_update_for_many_touched_uids_matches_a_fresh_build(
    catalog: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above ``_INLINE`` touched UIDs (a bulk commit) the update finds the touched rows by
    joins (the series' rows in the files holding them): the same answers as a fresh build
    after an added series, a copy of a cataloged file at a second path (one SOP instance,
    two rows), deleted rows and an optimize."""
    from pixels.web import index_tables

    monkeypatch.setattr(index_tables, "_INLINE", 0)
    index = TableIndex(CatalogTable(catalog), persist=False)
    assert _state(index) == _fresh(catalog)
    copy_with_new_uids(sample_file("MR_small.dcm"), tmp_path / "more", 3, per_series=3)
    dup = tmp_path / "more" / "again"
    dup.mkdir()
    first = next((tmp_path / "in0").rglob("*.dcm"))
    shutil.copyfile(first, dup / "copy.dcm")
    Catalog(catalog).catalog(str(tmp_path / "more"), workers=0)
    assert _state(index) == _fresh(catalog)
    assert index.last_update["added_files"] == 1
    DeltaTable(catalog).delete(f"path = '{first}'")  # the copy now stands for the instance
    assert _state(index) == _fresh(catalog)
    Catalog(catalog).optimize()
    assert _state(index) == _fresh(catalog)
    index.close()


@pytest.mark.parametrize("fmt", [1, 2, 3])
def test_an_index_saved_in_the_previous_layout_is_upgraded_in_place(
    catalog: str, tmp_path: Path, fmt: int
) -> None:
    """An index saved before the study keys (``sk`` of ``grp`` and ``study_sum``, format
    1), before the series keys of the updates (``seh`` of ``ffirst`` and
    ``series_sum``, ``sk`` of ``series_sum``: format 2) or before the study search table
    (``qs``, ``qs_new``: format 3) is turned into the current
    layout when opened, without reading the table again, and answers and follows
    commits as a fresh build does."""
    import duckdb

    from pixels.web import index_tables

    first = TableIndex(CatalogTable(catalog))
    first.current()
    first.close()
    con = duckdb.connect(str(_saved(catalog)))  # the older layout
    con.execute("DROP TABLE qs")
    con.execute("DROP TABLE qs_new")
    if fmt == 3:  # only the study search table missing
        con.execute("UPDATE state SET format = 3")
        con.close()
    else:
        _format_1_or_2(con, fmt)
    assert fmt in index_tables.UPGRADES

    old = TableIndex(CatalogTable(catalog))
    assert old.path == str(_saved(catalog))
    assert _state(old) == _fresh(catalog)
    assert old.last_update["added_files"] == 0  # opened: nothing indexed again
    (now,) = old.con.execute("SELECT format FROM ix.state").fetchone() or (None,)
    assert now == index_tables.FORMAT
    copy_with_new_uids(sample_file("MR_small.dcm"), tmp_path / "more", 2, per_series=2)
    Catalog(catalog).catalog(str(tmp_path / "more"), workers=0)
    assert _state(old) == _fresh(catalog)
    assert old.last_update["added_files"] == 1
    old.close()


def _format_1_or_2(con: Any, fmt: int) -> None:
    """Turn a saved index of format 3 less its study search into format ``fmt``."""
    con.execute("ALTER TABLE ffirst DROP COLUMN seh")
    con.execute("ALTER TABLE series_sum DROP COLUMN seh")
    con.execute("ALTER TABLE series_sum DROP COLUMN sk")
    if fmt == 1:  # no study keys either
        con.execute("DROP VIEW sgrp")
        con.execute("ALTER TABLE grp DROP COLUMN sk")
        con.execute("ALTER TABLE study_sum DROP COLUMN sk")
        con.execute(
            "CREATE VIEW sgrp AS SELECT g.*, s.StudyID, s.ReferringPhysicianName "
            "FROM grp g JOIN series_sum s USING (SeriesInstanceUID) WHERE g.n > 0"
        )
    con.execute("UPDATE state SET format = ?", [fmt])
    con.close()
