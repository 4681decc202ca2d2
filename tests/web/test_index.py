"""The server's per-version index (:mod:`pixels.web.index`) and the text rewrite of BulkDataURIs.

The index is built over real catalogs of real files and then watched while the
table changes under it: new versions (a second catalog run, a STOW-like append)
must be seen by the next call, rows deleted from the table must disappear, and an
unchanged table must not be re-read.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pydicom
import pytest
from deltalake import DeltaTable

from corpus import copy_with_new_uids, sample_file
from pixels import Catalog
from pixels.table import CatalogTable
from pixels.web.index import TableIndex
from pixels.web.wado import meta_with_urls, rewrite_bulkdata


def _sops(index: TableIndex) -> list[str]:
    rows = index.current().rows("SELECT SOPInstanceUID FROM inst ORDER BY 1", [])
    return [r["SOPInstanceUID"] for r in rows]


def _uids(path: Path) -> tuple[str, str, str]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


@pytest.fixture()
def first(tmp_path: Path) -> tuple[str, dict[str, Path]]:
    """A catalog of three real files, one of them also at a second path, and a non-DICOM file."""
    data = tmp_path / "one"
    data.mkdir()
    files = {}
    for name in ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm"):
        files[name] = data / name
        shutil.copyfile(sample_file(name), files[name])
    (data / "again").mkdir()
    shutil.copyfile(files["CT_small.dcm"], data / "again" / "CT_small.dcm")
    (data / "notes.dcm").write_bytes(b"not DICOM " * 40)
    catalog = str(tmp_path / "catalog")
    Catalog(catalog).catalog(str(data), workers=0)
    return catalog, files


def test_index_lists_each_instance_once_with_its_counts(first: tuple[str, dict[str, Path]]) -> None:
    catalog, files = first
    index = TableIndex(CatalogTable(catalog))
    snap = index.current()
    assert snap.version == DeltaTable(catalog).version()
    assert _sops(index) == sorted(
        _uids(p)[2] for p in files.values()
    )  # the copy once, no error row
    studies = snap.rows("SELECT StudyInstanceUID, n_series, n_inst, mods FROM study_sum", [])
    expected = {}
    for p in files.values():
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        expected[str(ds.StudyInstanceUID)] = (1, 1, [ds.Modality])
    assert {r["StudyInstanceUID"]: (r["n_series"], r["n_inst"], r["mods"]) for r in studies} == (
        expected
    )
    # the meta of each study's first instance is held; others are read from the table
    ct = _uids(files["CT_small.dcm"])
    (row,) = snap.instance_rows(ct[0], ct[1], ct[2], "path, meta")
    meta = json.loads(snap.metas([row["path"]])[row["path"]])
    assert meta["00080018"]["Value"] == [ct[2]]
    # an unchanged table gives the same snapshot, not a rebuilt one
    assert index.current() is snap


def test_new_versions_are_seen_and_deleted_rows_disappear(
    first: tuple[str, dict[str, Path]], tmp_path: Path
) -> None:
    catalog, files = first
    index = TableIndex(CatalogTable(catalog))
    before = index.current()
    # a second catalog run adds a series of four copies with fresh UIDs
    added = copy_with_new_uids(sample_file("CT_small.dcm"), tmp_path / "two", 4, per_series=4)
    Catalog(catalog).catalog(str(tmp_path / "two"), workers=0)
    after = index.current()
    assert after is not before and after.version == DeltaTable(catalog).version()
    assert set(_sops(index)) == {_uids(p)[2] for p in [*files.values(), *added]}
    study, series, _ = _uids(added[0])
    rows = after.instance_rows(study, series, None, "InstanceNumber")
    assert [r["InstanceNumber"] for r in rows] == [1, 2, 3, 4]
    (summary,) = after.rows("SELECT n_inst FROM series_sum WHERE SeriesInstanceUID = ?", [series])
    assert summary["n_inst"] == 4
    # rows deleted from the table (by any writer) are gone from the next snapshot,
    # right after the commit (two commits may share the log folder's mtime)
    gone = files["MR_small.dcm"]
    DeltaTable(catalog).delete(f"path = '{gone}'")
    DeltaTable(catalog).delete(f"path = '{added[1]}'")
    deleted = index.current()
    assert deleted.version == DeltaTable(catalog).version() == after.version + 2
    left = set(_sops(index))
    assert _uids(gone)[2] not in left and _uids(added[1])[2] not in left
    assert len(left) == len(files) + len(added) - 2
    mr_study = _uids(gone)[0]
    assert deleted.rows("SELECT * FROM study_sum WHERE StudyInstanceUID = ?", [mr_study]) == []
    assert deleted.instance_rows(*_uids(gone), "path") == []
    assert str(gone) not in deleted.metas([str(gone)])
    (summary,) = deleted.rows("SELECT n_inst FROM series_sum WHERE SeriesInstanceUID = ?", [series])
    assert summary["n_inst"] == 3
    # a snapshot taken before (a request in flight) keeps answering, from the index's
    # latest whole version: the index is updated in place, never copied per version
    assert {r["SOPInstanceUID"] for r in before.rows("SELECT SOPInstanceUID FROM inst", [])} == left


def test_meta_with_urls_matches_the_json_rewrite() -> None:
    meta = {
        "00081110": {"vr": "SQ", "Value": [{"00420011": {"vr": "OB", "BulkDataURI": "bulkdata/00081110/0/00420011"}}]},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": 'He said "BulkDataURI":"bulkdata/x"'}]},
        "7FE00010": {"vr": "OW", "BulkDataURI": "bulkdata/7FE00010?offset=1606&length=8192"},
    }  # fmt: skip
    url = "http://127.0.0.1:1/dicomweb/studies/1.2/series/1.3/instances/1.4"
    text = json.dumps(meta, separators=(",", ":"))
    assert json.loads(meta_with_urls(text, url)) == rewrite_bulkdata(meta, url)
    spaced = json.dumps(meta)  # not compact: the JSON way
    assert json.loads(meta_with_urls(spaced, url)) == rewrite_bulkdata(meta, url)
    plain = json.dumps({"00080060": {"vr": "CS", "Value": ["CT"]}}, separators=(",", ":"))
    assert meta_with_urls(plain, url) == plain


def test_rows_read_from_their_files_equal_the_versions_rows(
    everything_catalog: tuple[str, dict[str, set[str]]],
) -> None:
    """Requests read their rows from the files that hold them: the same rows as the view's."""
    snap = TableIndex(CatalogTable(everything_catalog[0])).current()
    assert snap._located
    studies = [
        r["StudyInstanceUID"] for r in snap.rows("SELECT StudyInstanceUID FROM study_sum", [])
    ]
    assert len(studies) == len(everything_catalog[1])
    for columns in ("*", "StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID, meta"):
        for study in studies:
            snap._located = True
            located = snap.instance_rows(study, None, None, columns)
            snap._located = False
            scanned = snap.instance_rows(study, None, None, columns)
            snap._located = True
            assert located == scanned, study
            assert len(located) == len(everything_catalog[1][study])
    paths = [r["path"] for r in snap.rows("SELECT path FROM inst", [])]
    located_meta = snap.metas(paths)
    snap._located = False
    assert snap.metas(paths) == located_meta and len(located_meta) == len(paths)


def _state(index: TableIndex) -> dict[str, object]:
    """Everything the index answers from, in a comparable form (file ids left out)."""
    snap = index.current()
    return {
        "inst": snap.rows(
            "SELECT path, SOPInstanceUID, SeriesInstanceUID, StudyInstanceUID, PatientName, "
            "Modality, InstanceNumber, StudyID, ReferringPhysicianName FROM inst ORDER BY path",
            [],
        ),
        "groups": snap.rows("SELECT * EXCLUDE (gid) FROM sgrp ORDER BY ALL", []),
        "series": snap.rows("SELECT * FROM series_sum ORDER BY SeriesInstanceUID", []),
        "studies": snap.rows("SELECT * FROM study_sum ORDER BY StudyInstanceUID", []),
        # the study search: its sorted part and its new studies together
        "study_search": snap.rows(
            "SELECT * FROM (SELECT * FROM qs UNION ALL SELECT * FROM qs_new) "
            "ORDER BY StudyInstanceUID",
            [],
        ),
    }


def _fresh(catalog: str) -> dict[str, object]:
    return _state(TableIndex(CatalogTable(catalog), persist=False))


def test_incremental_index_matches_a_fresh_build_after_stow_catalog_optimize_and_changes(
    first: tuple[str, dict[str, Path]], tmp_path: Path
) -> None:
    """The served index follows each commit by its added and removed files only, and ends
    equal to an index built from scratch: after a STOW-RS request, a catalog run, an
    optimize (files compacted: all removed and added again) and a re-catalog of a changed
    file (its old row removed)."""
    import httpx

    from pixels.web import create_app
    from pixels.web.index import index_of
    from web.conftest import running

    catalog, files = first
    app = create_app(catalog, token="", storage_root=str(tmp_path / "stow"))
    index = index_of(app.state.pixels)
    assert _state(index) == _fresh(catalog)
    with running(app) as url, httpx.Client(base_url=f"{url}/dicomweb", timeout=60) as http:

        def studies() -> set[str]:
            r = http.get("/studies")
            assert r.status_code == 200
            return {s["0020000D"]["Value"][0] for s in r.json()}

        before = studies()
        # a STOW-RS request of two instances of one new study
        sent = copy_with_new_uids(sample_file("MR_small.dcm"), tmp_path / "sent", 2, per_series=2)
        boundary = "pixels-test-boundary"
        body = (
            b"".join(
                f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
                + p.read_bytes()
                + b"\r\n"
                for p in sent
            )
            + f"--{boundary}--\r\n".encode()
        )
        r = http.post(
            "/studies",
            content=body,
            headers={
                "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'
            },
        )
        assert r.status_code == 200, r.text
        stowed = _uids(sent[0])[0]
        assert studies() == before | {stowed}
        assert index.last_update["added_files"] == 1 and index.last_update["removed_files"] == 0
        # the STOW commit's writer saved the new file's first rows: no ``meta`` read back
        assert index.last_update["firsts_saved"] == 1
        assert _state(index) == _fresh(catalog)

        # a catalog run adding a series of three
        added = copy_with_new_uids(sample_file("CT_small.dcm"), tmp_path / "two", 3, per_series=3)
        Catalog(catalog).catalog(str(tmp_path / "two"), workers=0)
        assert _uids(added[0])[0] in studies()
        assert index.last_update["removed_files"] == 0
        assert _state(index) == _fresh(catalog)

        # optimize: the rows move to new files; the answers stay the same
        state = _state(index)
        n_files = len(DeltaTable(catalog).file_uris())
        Catalog(catalog).optimize()
        assert len(DeltaTable(catalog).file_uris()) < n_files
        after = _state(index)
        assert after == state == _fresh(catalog)
        assert index.last_update["removed_files"] == n_files

        # a file changed on disk (a new SOP Instance UID) and cataloged again: the
        # old instance disappears, the new one appears
        changed = files["MR_small.dcm"]
        old_sop = _uids(changed)[2]
        ds = pydicom.dcmread(changed)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.2.9"
        ds.save_as(changed)
        Catalog(catalog).catalog(str(changed.parent), workers=0)
        sops = set(_sops(index))
        assert old_sop not in sops and "1.2.826.0.1.3680043.2.9" in sops
        r = http.get("/instances", params={"SOPInstanceUID": old_sop})
        assert r.status_code == 200 and r.json() == []
        assert _state(index) == _fresh(catalog)


def test_a_request_does_not_wait_for_an_update_in_progress(
    first: tuple[str, dict[str, Path]], tmp_path: Path
) -> None:
    """While one thread updates the index (its lock held), another gets the last
    version at once; one that needs the newer version waits for it."""
    import threading

    catalog, _ = first
    index = TableIndex(CatalogTable(catalog))
    snap = index.current()
    copy_with_new_uids(sample_file("CT_small.dcm"), tmp_path / "two", 1)
    Catalog(catalog).catalog(str(tmp_path / "two"), workers=0)
    version = DeltaTable(catalog).version()
    assert version > snap.version
    with index._lock:  # an update in progress
        answered: list[object] = []
        reader = threading.Thread(target=lambda: answered.append(index.current()))
        reader.start()
        reader.join(10)
        assert not reader.is_alive() and answered == [snap]  # at once, the last version
        got: list[int | None] = []
        waiter = threading.Thread(target=lambda: got.append(index.current(version).version))
        waiter.start()
        waiter.join(0.5)
        assert waiter.is_alive() and got == []  # it needs the new version: it waits
    waiter.join(60)
    assert got == [version]
