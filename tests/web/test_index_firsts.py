"""The index reads each data file's first rows from what its writer saved, and answers
exactly as an index built from the Parquet files alone.

The table's writer saves, before each commit, the first row per series of the
data file it wrote (``_pixels/firsts/``, :mod:`pixels.table.firsts`); an index
update uses it instead of decoding the file's ``meta`` (``last_update
["firsts_saved"]``). Files without it (written by delta-rs' delete or compaction,
another writer, a writer that died before saving it) or with a damaged or
foreign one are read from the Parquet file. The reference in every case is an
index built from scratch on a copy of the table without any ``_pixels`` folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pydicom
from deltalake import DeltaTable, write_deltalake

from corpus import copy_with_new_uids, sample_file
from pixels import Catalog
from pixels.dicom.qmeta import qmeta
from pixels.table import CatalogTable
from pixels.table.firsts import FIRSTS_DIR, read_firsts
from pixels.web.index import TableIndex
from web.test_index import _state
from web.test_index_store import catalog  # noqa: F401 - the fixture


def _rebuilt(table: str, tmp_path: Path) -> dict[str, object]:
    """The state of an index built from scratch on a copy of ``table`` without ``_pixels``
    (no saved first rows, no saved index)."""
    copy = tmp_path / f"rebuilt-{len(list(tmp_path.glob('rebuilt-*')))}"
    shutil.copytree(table, copy, ignore=shutil.ignore_patterns("_pixels"))
    index = TableIndex(CatalogTable(str(copy)), persist=False)
    try:
        return _state(index)
    finally:
        index.close()


def _saved(table: str) -> dict[str, Path]:
    """Data file name -> its saved first rows."""
    folder = Path(table) / FIRSTS_DIR
    if not folder.exists():
        return {}
    return {p.name.split(".v2.")[0]: p for p in folder.glob("*.v2.arrow")}


def _live(table: str) -> set[str]:
    return {os.path.basename(u) for u in DeltaTable(table).file_uris()}


def test_updates_use_the_writers_first_rows_and_answer_as_a_build_without_them(
    catalog: str,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    """Commits, a delete, an overwrite of a changed file and an optimize, each followed by
    the open index: equal to a build without saved first rows after each."""
    assert set(_saved(catalog)) == _live(catalog)  # the writer saved each file's
    for name in _saved(catalog):
        # per series of the file, its row with the smallest SOP Instance UID, and its header
        data = pq.read_table(os.path.join(catalog, name)).to_pylist()
        want = {}
        for k, r in sorted(enumerate(data), key=lambda kr: (kr[1]["SOPInstanceUID"], kr[0])):
            want.setdefault(
                r["SeriesInstanceUID"], (r["SOPInstanceUID"], r["path"], k, *qmeta(r["meta"]))
            )
        rows = read_firsts(catalog, os.path.join(catalog, name))
        assert rows is not None and len(want) == 2
        got = {r.pop("SeriesInstanceUID"): tuple(r.values()) for r in rows.to_pylist()}
        assert got == want
    index = TableIndex(CatalogTable(catalog))
    index.current()
    assert index.last_update["firsts_saved"] == 3
    assert _state(index) == _rebuilt(catalog, tmp_path)

    # a commit of two new series and one more instance of a series already indexed
    copy_with_new_uids(sample_file("CT_small.dcm"), tmp_path / "new", 4, per_series=2)
    held = sorted((tmp_path / "in1").rglob("*.dcm"))[0]
    ds = pydicom.dcmread(held)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.2.77"
    ds.save_as(tmp_path / "new" / "one_more.dcm")
    Catalog(catalog).catalog(str(tmp_path / "new"), workers=0)
    assert _state(index) == _rebuilt(catalog, tmp_path)
    assert index.last_update["added_files"] == 1 and index.last_update["firsts_saved"] == 1
    # (answered from the overlay first:) its merge reads the new file and the grown series'
    assert index.last_update["overlay"] is True
    index.merge()
    assert index.last_merge["files_read"] == 2 and index.last_merge["firsts_saved"] == 1

    # a delete (delta-rs rewrites the file without the row: no saved first rows)
    victim = sorted((tmp_path / "in0").rglob("*.dcm"))[0]
    DeltaTable(catalog).delete(f"path = '{victim}'")
    state = _state(index)
    assert index.last_update["removed_files"] == 1 and index.last_update["firsts_saved"] == 0
    assert state == _rebuilt(catalog, tmp_path)
    assert set(_saved(catalog)) < _live(catalog)  # the removed file's went with it

    # a changed file cataloged again: its old row overwritten
    changed = sorted((tmp_path / "in2").rglob("*.dcm"))[0]
    ds = pydicom.dcmread(changed)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.2.78"
    ds.SeriesDescription = "changed"
    ds.save_as(changed)
    Catalog(catalog).catalog(str(changed.parent), workers=0)
    assert _state(index) == _rebuilt(catalog, tmp_path)

    # optimize: every row removed and added again in compacted files
    n_files = len(_live(catalog))
    Catalog(catalog).optimize()
    assert _state(index) == _rebuilt(catalog, tmp_path)
    assert index.last_update["removed_files"] == n_files
    assert set(_saved(catalog)) <= _live(catalog)  # none left of the removed files
    index.close()


def test_a_table_of_another_writer_without_saved_first_rows(tmp_path: Path) -> None:
    """Data files written by another writer (delta-rs here, as Spark writes: no
    ``_pixels`` folder) are read from the Parquet files, first build and updates."""
    copy_with_new_uids(sample_file("MR_small.dcm"), tmp_path / "a", 4, per_series=2)
    copy_with_new_uids(sample_file("CT_small.dcm"), tmp_path / "b", 3, per_series=3)
    source = str(tmp_path / "source")
    Catalog(source).catalog(str(tmp_path / "a"), workers=0)
    Catalog(source).catalog(str(tmp_path / "b"), workers=0)
    table = DeltaTable(source).to_pyarrow_table().sort_by("path")
    other = str(tmp_path / "other")
    write_deltalake(other, table.slice(0, 4))
    index = TableIndex(CatalogTable(other))
    index.current()
    assert index.last_update["firsts_saved"] == 0
    # the second commit holds a row without a header: not an instance (the file's
    # statistics count its null, so the index looks at ``meta`` there)
    rest = table.slice(4)
    headless = rest["path"][0].as_py()
    metas = rest["meta"].to_pylist()
    rest = rest.set_column(
        rest.schema.get_field_index("meta"), "meta", pa.array([None, *metas[1:]], pa.string())
    )
    write_deltalake(other, rest, mode="append")
    state = _state(index)
    assert index.last_update["added_files"] == 1 and index.last_update["firsts_saved"] == 0
    assert not (Path(other) / FIRSTS_DIR).exists()
    assert state == _rebuilt(other, tmp_path)
    paths = [r["path"] for r in state["inst"]]  # type: ignore[attr-defined, index]
    assert headless not in paths and len(paths) == table.num_rows - 1
    index.close()


def test_damaged_or_foreign_first_rows_are_not_used(
    catalog: str,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    """A torn file, and another data file's rows under this file's name (its size
    written in): the file's own rows are read instead."""
    copy_with_new_uids(sample_file("CT_small.dcm"), tmp_path / "x", 2, per_series=2)
    copy_with_new_uids(sample_file("MR_small.dcm"), tmp_path / "y", 2, per_series=2)
    index = TableIndex(CatalogTable(catalog))
    index.current()
    Catalog(catalog).catalog(str(tmp_path / "x"), workers=0)
    before = _live(catalog)
    # the next commit's saved rows torn in half before the index reads them
    Catalog(catalog).catalog(str(tmp_path / "y"), workers=0)
    (new,) = _live(catalog) - before
    path = _saved(catalog)[new]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert _state(index) == _rebuilt(catalog, tmp_path)
    assert index.last_update["added_files"] == 2 and index.last_update["firsts_saved"] == 1

    # another file's rows, saved with this one's size: their series are not this file's
    copy_with_new_uids(sample_file("JPEG2000.dcm"), tmp_path / "z", 2, per_series=2)
    before = _live(catalog)
    Catalog(catalog).catalog(str(tmp_path / "z"), workers=0)
    (new,) = _live(catalog) - before
    # (a file whose saved rows are whole: not the one torn above)
    saved = [read_firsts(catalog, os.path.join(catalog, f)) for f in sorted(before)]
    foreign = next((t for t in saved if t is not None), None)
    assert foreign is not None
    size = str(os.stat(os.path.join(catalog, new)).st_size).encode()
    schema = foreign.schema.with_metadata({b"pixels.data_file_size": size})
    with pa.OSFile(str(_saved(catalog)[new]), "wb") as sink, pa.ipc.new_file(sink, schema) as w:
        w.write_table(foreign.replace_schema_metadata(schema.metadata))
    assert read_firsts(catalog, os.path.join(catalog, new)) is not None  # it looks valid
    assert _state(index) == _rebuilt(catalog, tmp_path)
    assert index.last_update["firsts_saved"] == 0
    index.close()


_CRASH = """
import os, sys
import pixels.table.catalog_table as ct
def crash(*args, **kwargs):
    os._exit(9)  # the process dies after the data file, before its first rows are saved
ct.write_firsts = crash
from pixels import Catalog
Catalog(sys.argv[1]).catalog(sys.argv[2], workers=0)
"""


def test_a_writer_dying_between_the_data_file_and_its_first_rows(
    catalog: str,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    """The data file is left unreferenced (no commit), the index answers the table as it
    was, and the same files cataloged again are indexed with their saved first rows."""
    index = TableIndex(CatalogTable(catalog))
    version = index.current().version
    copy_with_new_uids(sample_file("CT_small.dcm"), tmp_path / "late", 3, per_series=3)
    on_disk = set(os.listdir(catalog))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_CRASH), catalog, str(tmp_path / "late")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 9, run.stderr
    (orphan,) = {n for n in set(os.listdir(catalog)) - on_disk if n.endswith(".parquet")}
    assert orphan not in _live(catalog) and orphan not in _saved(catalog)
    assert DeltaTable(catalog).version() == version
    assert index.current().version == version
    assert _state(index) == _rebuilt(catalog, tmp_path)

    Catalog(catalog).catalog(str(tmp_path / "late"), workers=0)
    assert _state(index) == _rebuilt(catalog, tmp_path)
    assert index.last_update["added_files"] == 1 and index.last_update["firsts_saved"] == 1
    index.close()


def test_a_vacuum_removes_the_first_rows_of_the_files_it_deleted(
    catalog: str,  # noqa: F811 - the fixture
) -> None:
    """No index running: an optimize that vacuums at once deletes the compacted files and
    their saved first rows; none is left for a file not on disk."""
    before = set(_saved(catalog))
    assert len(before) == 3
    Catalog(catalog).optimize(retention_hours=0)
    on_disk = {n for n in os.listdir(catalog) if n.endswith(".parquet")}
    assert not before & on_disk  # the three files were vacuumed
    assert set(_saved(catalog)) <= on_disk and not set(_saved(catalog)) & before


def test_first_rows_an_older_pixels_saved_are_removed_not_read(
    catalog: str,  # noqa: F811 - the fixture
) -> None:
    """An older Pixels saved each file's whole header (``.v1.arrow``); those files are never
    read again (a v1 file beside a data file is not its first rows), and the cleanup of
    saved first rows removes them."""
    from pixels.table.firsts import drop_stale_firsts

    folder = Path(catalog) / FIRSTS_DIR
    name = next(iter(_saved(catalog)))
    old = folder / f"{name}.v1.arrow"
    shutil.copy(folder / f"{name}.v2.arrow", old)
    os.remove(folder / f"{name}.v2.arrow")
    assert read_firsts(catalog, os.path.join(catalog, name)) is None
    assert drop_stale_firsts(catalog) == [old.name]
    assert not old.exists() and len(_saved(catalog)) == 2
