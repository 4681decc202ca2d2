"""An index update costs what its commit touches, and answers as an index built afresh.

A commit of new instances must not look any of them up among all the indexed rows
(``last_update["sop_lookups"]``: none; only the data files holding the touched
series are read), a commit holding a twin of an indexed instance must (one
look-up), and after each one the server's QIDO-RS and ``/metadata`` answers are
those of a server whose index was built from scratch.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import pydicom
from deltalake import DeltaTable
from pydicom.uid import generate_uid

from corpus import copy_with_new_uids, sample_file
from pixels import Catalog
from pixels.table import CatalogTable
from pixels.web import create_app
from pixels.web.index import TableIndex, index_of
from web.conftest import running
from web.test_index import _state
from web.test_index_store import _fresh, catalog  # noqa: F401 - the fixture


def _answers(url: str) -> dict[str, Any]:
    """What the server answers: every study, series and instance search, every series'
    ``/metadata`` (the server's own URL replaced)."""
    out: dict[str, Any] = {}
    with httpx.Client(base_url=f"{url}/dicomweb", timeout=60) as http:

        def get(path: str, **params: str) -> Any:
            r = http.get(path, params=params)
            assert r.status_code == 200, (path, r.text)
            return json.loads(r.text.replace(url, "URL"))  # BulkDataURIs name the server

        out["studies"] = get("/studies", includefield="all")
        out["series"] = get("/series", includefield="all")
        out["instances"] = get("/instances")
        for s in out["series"]:
            study, series = s["0020000D"]["Value"][0], s["0020000E"]["Value"][0]
            out[series] = get(f"/studies/{study}/series/{series}/metadata")
    return out


def test_a_multi_series_commit_reads_only_its_files_and_answers_as_a_fresh_build(
    catalog: str,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    saved = TableIndex(CatalogTable(catalog))  # saved: the server resumes from it
    saved.current()
    saved.close()
    app = create_app(catalog, token="", storage_root=str(tmp_path / "stow"))
    index = index_of(app.state.pixels)
    assert index.path is not None and index.keys.ready() and len(index.keys) == 9
    # one commit: four new series in two new studies, and one more instance of a
    # series already indexed (its study and series sums change)
    copy_with_new_uids(sample_file("CT_small.dcm"), tmp_path / "new", 8, per_series=2)
    held = next(iter(sorted((tmp_path / "in1").rglob("*.dcm"))))
    ds = pydicom.dcmread(held)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.InstanceNumber = 99
    ds.save_as(tmp_path / "new" / "one_more.dcm")
    with running(app) as url:
        before = _answers(url)
        Catalog(catalog).catalog(str(tmp_path / "new"), workers=0)
        after = _answers(url)
        assert index.last_update["added_files"] == 1
        # no new instance looked up among all rows; the rows read are those of the new
        # file and of the one holding the series that grew
        assert index.last_update["sop_lookups"] == 0 and index.last_update["overlay"] is True
        index.merge()  # (answered from the overlay first, then merged)
        assert index.last_merge["sop_lookups"] == 0 and index.last_merge["files_read"] == 2
        assert len(after["studies"]) == len(before["studies"]) + 2
        assert len(after["instances"]) == len(before["instances"]) + 9

        # a copy of an indexed file at a second path: one instance, two rows
        twin = tmp_path / "twin"
        twin.mkdir()
        shutil.copyfile(held, twin / "copy.dcm")
        Catalog(catalog).catalog(str(twin), workers=0)
        twice = _answers(url)
        assert index.last_update["sop_lookups"] == 1
        assert len(twice["instances"]) == len(after["instances"])
    assert _state(index) == _fresh(catalog)
    # a server whose index is built from scratch (in memory: the saved one is held)
    fresh = create_app(catalog, token="", storage_root=str(tmp_path / "stow2"))
    assert index_of(fresh.state.pixels).path is None
    with running(fresh) as url:
        assert _answers(url) == twice


def test_a_twin_in_another_series_keeps_its_old_series_whole(
    catalog: str,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    """A commit of one instance already indexed, now under another series (a re-sent file
    whose SeriesInstanceUID changed): the new row stands for it, and the series it left
    keeps its other instances in every table (its sums counted from all its rows, not
    only the twin's), as in an index built from scratch; then the twin's file is
    removed again (the instance goes back to its first series), and a second commit
    touches the same series once more."""
    index = TableIndex(CatalogTable(catalog))
    index.current()
    held = sorted((tmp_path / "in1").rglob("*.dcm"))[0]
    ds = pydicom.dcmread(held)
    old_series = str(ds.SeriesInstanceUID)
    ds.SeriesInstanceUID = generate_uid()
    (tmp_path / "moved").mkdir()
    ds.save_as(tmp_path / "moved" / "moved.dcm")
    Catalog(catalog).catalog(str(tmp_path / "moved"), workers=0)
    state = _state(index)
    assert index.last_update["sop_lookups"] == 1
    assert state == _fresh(catalog)
    counts = {s["SeriesInstanceUID"]: s["n_inst"] for s in state["series"]}  # type: ignore[index, union-attr]
    assert counts[old_series] == 1 and counts[str(ds.SeriesInstanceUID)] == 1

    DeltaTable(catalog).delete(f"path = '{tmp_path / 'moved' / 'moved.dcm'}'")
    state = _state(index)
    assert state == _fresh(catalog)
    counts = {s["SeriesInstanceUID"]: s["n_inst"] for s in state["series"]}  # type: ignore[index, union-attr]
    assert counts[old_series] == 2 and str(ds.SeriesInstanceUID) not in counts

    # two more instances of that series, in two commits
    for k in (1, 2):
        ds.SeriesInstanceUID = old_series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        (tmp_path / f"more{k}").mkdir()
        ds.save_as(tmp_path / f"more{k}" / "more.dcm")
        Catalog(catalog).catalog(str(tmp_path / f"more{k}"), workers=0)
        index.current()
        assert index.last_update["sop_lookups"] == 0, index.last_update
        assert _state(index) == _fresh(catalog)
    index.close()


def test_an_update_answers_before_its_checkpoint_which_follows_in_a_thread(
    catalog: str,  # noqa: F811 - the fixture
    tmp_path: Path,
    monkeypatch: Any,
) -> None:
    """The checkpoint due after an update (its rows compressed into the saved file) runs
    once the new version answers, in a thread of its own; then the write-ahead log is
    empty and the saved index, opened again, is the table's."""
    from pixels.web import index as index_mod

    monkeypatch.setattr(index_mod, "_CHECKPOINT_ROWS", 1)
    index = TableIndex(CatalogTable(catalog))
    index.current()
    assert index.path is not None
    copy_with_new_uids(sample_file("MR_small.dcm"), tmp_path / "more", 2, per_series=2)
    Catalog(catalog).catalog(str(tmp_path / "more"), workers=0)
    version = index.current().version
    checkpointer = index._checkpointer
    assert checkpointer is not None
    checkpointer.join(timeout=60)
    assert not checkpointer.is_alive()
    wal = Path(index.path + ".wal")
    assert not wal.exists() or wal.stat().st_size == 0
    assert _state(index) == _fresh(catalog)
    index.close()
    again = TableIndex(CatalogTable(catalog))
    assert again.current().version == version
    assert again.last_update["added_files"] == 0
    assert _state(again) == _fresh(catalog)
    again.close()
