"""A commit of new instances answers from the index's overlay before it is merged, and
the answers are those of an index built from scratch both before and after the merge.

The index (:class:`pixels.web.index.TableIndex`) puts a commit that only adds new
SOP instances into its overlay (:mod:`pixels.web.overlay`) and merges it into its
tables afterwards; ``merge=False`` holds the merge until :meth:`TableIndex.merge`,
so that each step is checked in both states: every QIDO-RS level with its keys,
``/metadata`` of every series and study, an instance, and C-FIND at the study,
series and image levels, against a server on a copy of the table whose index is
built from scratch. A commit the overlay cannot take (a twin of an indexed
instance, a delete) merges the overlay first. Readers during a merge see whole
answers; a server killed with commits in its overlay starts again without them
merged and applies them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pydicom
from deltalake import DeltaTable
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from corpus import copy_with_new_uids, sample_file
from pixels import Catalog
from pixels.dimse import summary
from pixels.dimse.query import find, parse_identifier
from pixels.table import CatalogTable
from pixels.web import create_app
from pixels.web import index as index_module
from pixels.web.index import TableIndex
from web.conftest import running
from web.test_index import _state
from web.test_index_store import _fresh, catalog  # noqa: F401 - the fixture

#: QIDO-RS searches asked at each step (path, parameters).
_SEARCHES: list[tuple[str, dict[str, str]]] = [
    ("/studies", {"includefield": "all"}),
    ("/studies", {"PatientName": "*samples*"}),
    ("/studies", {"PatientName": "Other*"}),
    ("/studies", {"StudyDate": "19000101-20301231"}),
    ("/studies", {"ModalitiesInStudy": "CT"}),
    ("/studies", {"ModalitiesInStudy": "MR\\OT"}),
    ("/studies", {"limit": "2", "offset": "1"}),
    ("/studies", {"PatientName": "*", "StudyDate": "-20301231", "limit": "3", "offset": "1"}),
    ("/studies", {"Modality": "CT", "includefield": "all"}),
    ("/series", {"includefield": "all"}),
    ("/series", {"Modality": "MR"}),
    ("/series", {"PatientName": "*samples*", "limit": "3", "offset": "2"}),
    ("/instances", {}),
    ("/instances", {"StudyDate": "19000101-20301231", "limit": "5", "offset": "3"}),
    ("/instances", {"includefield": "all", "PatientName": "Other*"}),
]


def _answers(url: str) -> dict[str, Any]:
    """What a server answers (its own URL replaced): the searches of :data:`_SEARCHES`,
    each series' and study's ``/metadata``, an instance of each study."""
    out: dict[str, Any] = {}
    with httpx.Client(base_url=f"{url}/dicomweb", timeout=60) as http:

        def get(path: str, **params: str) -> Any:
            r = http.get(path, params=params)
            assert r.status_code == 200, (path, r.text)
            return json.loads(r.text.replace(url, "URL"))

        for path, params in _SEARCHES:
            out[f"{path}?{sorted(params.items())}"] = get(path, **params)
        studies: dict[str, str] = {}
        for s in get("/series"):
            study, uid = s["0020000D"]["Value"][0], s["0020000E"]["Value"][0]
            out[uid] = get(f"/studies/{study}/series/{uid}/metadata")
            studies.setdefault(study, uid)
        for study, uid in studies.items():  # each study's, and an instance of it
            out[study] = get(f"/studies/{study}/metadata")
            sop = min(m["00080018"]["Value"][0] for m in out[uid])
            r = http.get(f"/studies/{study}/series/{uid}/instances/{sop}")
            assert r.status_code == 200, r.text
            boundary = re.search(r"boundary=\"?([^\";]+)", r.headers["content-type"])
            assert boundary is not None
            out[sop] = r.content.replace(boundary.group(1).encode(), b"B")
    return out


def _find(index: TableIndex) -> dict[str, list[str]]:
    """C-FIND answers (in process) at the study, series and image levels (the image
    level: every series named)."""
    series = [
        r["SeriesInstanceUID"]
        for r in index.current().rows("SELECT SeriesInstanceUID FROM series_sum ORDER BY 1", [])
    ]
    queries: dict[str, Dataset] = {}
    for name, level, keys in (
        ("study", "STUDY", {"PatientName": "*"}),
        ("study pn", "STUDY", {"PatientName": "Other*"}),
        ("study mods", "STUDY", {"ModalitiesInStudy": "CT"}),
        ("series", "SERIES", {"Modality": ""}),
        ("image", "IMAGE", {"SeriesInstanceUID": "\\".join(series)}),
    ):
        ds = Dataset()
        ds.QueryRetrieveLevel = level
        for kw in ("PatientName", "StudyInstanceUID", "StudyDate", "ModalitiesInStudy"):
            setattr(ds, kw, "")
        ds.NumberOfStudyRelatedInstances = ""
        if level != "STUDY":
            ds.SeriesInstanceUID = ds.Modality = ds.NumberOfSeriesRelatedInstances = ""
        if level == "IMAGE":
            ds.SOPInstanceUID = ds.InstanceNumber = ""
        for kw, value in keys.items():
            setattr(ds, kw, value)
        queries[name] = ds
    out = {}
    for name, ds in queries.items():
        got = find(index.current(), parse_identifier(ds, "STUDY"), "PIXELS", None, index)
        out[name] = sorted(a.to_json() for a in got)
    return out


class _Reference:
    """A server on a copy of the table, its index built from scratch each time."""

    def __init__(self, table: str, tmp_path: Path):
        self.table, self.tmp = table, tmp_path
        self.n = 0

    def answers(self) -> tuple[dict[str, Any], dict[str, list[str]], dict[str, object]]:
        """The HTTP answers, the C-FIND answers and the index's tables."""
        self.n += 1
        copy = self.tmp / f"copy{self.n}"
        shutil.copytree(self.table, copy, ignore=shutil.ignore_patterns("_pixels"))
        app = create_app(str(copy), token="", storage_root=str(self.tmp / f"stow{self.n}"))
        index = TableIndex(CatalogTable(str(copy)), persist=False)
        index_module._INDEXES[app.state.pixels] = index
        try:
            with running(app) as url:
                http = _answers(url)
            return http, _find(index), _state(index)
        finally:
            index.close()
            shutil.rmtree(copy)


def _commit(tmp_path: Path, name: str, catalog: str, files: dict[str, Dataset]) -> None:  # noqa: F811
    """Catalog ``files`` (name -> dataset) as one commit."""
    folder = tmp_path / name
    folder.mkdir()
    for fname, ds in files.items():
        ds.save_as(folder / fname)
    Catalog(catalog).catalog(str(folder), workers=0)


def _sop(ds: Dataset, uid: str | None = None) -> Dataset:
    """``ds`` as a new SOP instance (``uid``, else a fresh one)."""
    ds = pydicom.dcmread(ds.filename) if isinstance(ds.filename, str) else ds
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid or generate_uid()
    return ds


def test_overlay_answers_as_a_fresh_build_before_and_after_each_merge(
    catalog: str,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    app = create_app(catalog, token="", storage_root=str(tmp_path / "stow"))
    index = TableIndex(CatalogTable(catalog), merge=False)
    index_module._INDEXES[app.state.pixels] = index
    index.current()
    ref = _Reference(catalog, tmp_path)
    held = sorted((tmp_path / "in1").rglob("*.dcm"))  # MR_small copies: 2 series, 1 study
    first = pydicom.dcmread(held[0])
    assert not index.overlay.versions

    with running(app) as url:

        def check(step: str, *, overlaid: bool) -> None:
            assert bool(index.overlay.versions) == overlaid, step
            want_http, want_find, want_state = ref.answers()
            assert _state(index) == want_state, step
            got = _answers(url)
            assert got.keys() == want_http.keys(), step
            for k in want_http:
                assert got[k] == want_http[k], (step, k)
            assert _find(index) == want_find, step

        def overlay_step(step: str) -> None:
            index.current()
            assert index.last_update.get("overlay") is True, (step, index.last_update)
            check(step, overlaid=True)
            index.merge()
            assert not index.overlay.versions and not index.current().overlaid
            check(step + ", merged", overlaid=False)

        # new studies (two, three series)
        copy_with_new_uids(sample_file("CT_small.dcm"), tmp_path / "new", 5, per_series=2)
        Catalog(catalog).catalog(str(tmp_path / "new"), workers=0)
        overlay_step("new studies")

        # a new series in an indexed study, under another PatientName (a mixed study),
        # and another Modality (the study's modalities grow)
        ds = _sop(first)
        ds.SeriesInstanceUID = generate_uid()
        ds.PatientName = "Other^Name"
        ds.Modality = "OT"
        _commit(tmp_path, "series", catalog, {"a.dcm": ds})
        overlay_step("a new series in an indexed study")

        # an instance of an indexed series whose SOP Instance UID sorts first: the
        # series' and study's first instance (and ``qmeta``) change
        small = _sop(first, "1.1." + generate_uid()[8:])
        small.InstanceNumber = 77
        _commit(tmp_path, "smaller", catalog, {"b.dcm": small})
        index.current()
        assert index.last_update.get("overlay") is True
        check("a smaller first SOP", overlaid=True)

        # a commit holding one new SOP instance twice (two paths), on top of the last
        # one (not merged): the overlay holds two versions
        twice = _sop(first)
        _commit(tmp_path, "dup", catalog, {"c1.dcm": twice, "c2.dcm": twice})
        index.current()
        assert index.last_update.get("overlay") is True and len(index.overlay.versions) == 2
        check("a SOP instance twice in a commit", overlaid=True)

        # a twin of an indexed instance: not the overlay's; the overlay is merged first
        shutil.copytree(tmp_path / "smaller", tmp_path / "twin")
        Catalog(catalog).catalog(str(tmp_path / "twin"), workers=0)
        index.current()
        check("a twin", overlaid=False)
        assert not index.last_update.get("overlay") and index.last_update["sop_lookups"] == 1

        # a new commit in the overlay again, then a delete (files removed): merged first
        copy_with_new_uids(sample_file("CT_small.dcm"), tmp_path / "more", 2, per_series=2)
        Catalog(catalog).catalog(str(tmp_path / "more"), workers=0)
        index.current()
        check("more", overlaid=True)
        DeltaTable(catalog).delete(f"path = '{tmp_path / 'dup' / 'c1.dcm'}'")
        index.current()
        check("a delete", overlaid=False)
        assert index.last_update["removed_files"] >= 1
    index.close()


def test_readers_during_a_merge_see_whole_answers(
    catalog: str,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    """Requests looping while three held commits are merged and their overlay rows
    dropped see the same (complete) answer each time: no study missing, none twice."""
    index = TableIndex(CatalogTable(catalog), merge=False)
    index.current()
    for k in range(3):
        copy_with_new_uids(sample_file("CT_small.dcm"), tmp_path / f"n{k}", 3, per_series=2)
        Catalog(catalog).catalog(str(tmp_path / f"n{k}"), workers=0)
        index.current()
    assert len(index.overlay.versions) == 3

    def answer() -> tuple[Any, ...]:
        snap = index.current()
        return (
            snap.rows("SELECT StudyInstanceUID, count(*) AS n FROM inst GROUP BY 1 ORDER BY 1", []),
            snap.rows("SELECT * FROM study_sum ORDER BY StudyInstanceUID", []),
            snap.rows("SELECT * FROM series_sum ORDER BY SeriesInstanceUID", []),
            summary.study_rows(index, [], 100, 0),
            summary.series_rows(index, [], 100, 0),
        )

    want = answer()
    assert len(want[0]) == 3 + 3  # (the fixture: 3 studies; each commit: 1)
    # each reader keeps an answer in flight all through the merge (at least 0.5 s, its
    # drop delay): three readers give three answers during it, however slow the machine
    # (one reader counted the answers it finished during the merge: 33 here, 7 with two
    # busy loops beside it, where 3 were asked for)
    readers = 3
    seen: list[tuple[Any, ...]] = []
    spans: list[list[tuple[float, float]]] = [[] for _ in range(readers)]
    stop = threading.Event()
    errors: list[BaseException] = []
    merged = threading.Event()
    merge_span: list[float] = []

    def reader(k: int) -> None:
        try:
            while not stop.is_set():
                after = merged.is_set()
                start = time.monotonic()
                got = answer()
                spans[k].append((start, time.monotonic()))
                seen.append(got)
                if after:
                    return  # an answer begun after the merge too
        except BaseException as e:  # (told below)
            errors.append(e)

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(readers)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 120
        while not all(spans) and not errors:  # every reader answering before the merge
            assert time.monotonic() < deadline, "the readers did not answer"
            time.sleep(0.01)
        merge_span.append(time.monotonic())
        index.merge()
        merge_span.append(time.monotonic())
        merged.set()
        for t in threads:
            t.join(120)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    assert not index.overlay.versions and not index.current().overlaid
    start, end = merge_span
    for mine in spans:  # (the merge waits for queries in flight before the drop)
        assert any(a < end and b > start for a, b in mine), (merge_span, mine)
        assert mine[-1][0] > end  # and one after it
    assert all(a == want for a in seen)
    assert answer() == want
    assert _state(index) == _fresh(catalog)
    index.close()


_HOLD = textwrap.dedent(
    """
    import sys
    from pixels.table import CatalogTable
    from pixels.web.index import TableIndex
    index = TableIndex(CatalogTable(sys.argv[1]), merge=False)
    index.current()
    print("open", flush=True)
    sys.stdin.readline()
    snap = index.current()
    assert index.overlay.versions and snap.overlaid
    print("held", flush=True)
    sys.stdin.readline()
    """
)


def test_a_server_killed_with_commits_in_its_overlay_applies_them_again(
    catalog: str,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    """The overlay is not saved: the saved index stays at the last merged version, and a
    server started again applies the versions after it (answers as a fresh build)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, catalog],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "open"
        version = DeltaTable(catalog).version()
        copy_with_new_uids(sample_file("CT_small.dcm"), tmp_path / "new", 3, per_series=2)
        Catalog(catalog).catalog(str(tmp_path / "new"), workers=0)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "held"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    again = TableIndex(CatalogTable(catalog))
    assert again.path is not None
    assert again.con.execute("SELECT version FROM ix.state").fetchone() == (version,)
    snap = again.current()
    assert snap.version == version + 1
    assert again.last_update["added_files"] == 1 and not again.last_update.get("overlay")
    assert _state(again) == _fresh(catalog)
    again.close()


def test_a_snapshot_made_while_the_overlay_held_a_version_reads_on_after_its_drop(
    catalog: str,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    """A request takes its snapshot while the overlay holds a version, then the version is
    merged and its overlay rows dropped before the request's queries run (a C-FIND's
    pages, a QIDO search): the views then show the merged index, ``state`` included (it
    was empty, and the study search's flags read failed: clean-clone CI, a findscu right
    after a C-STORE)."""
    index = TableIndex(CatalogTable(catalog), merge=False)
    try:
        index.current()
        copy_with_new_uids(sample_file("CT_small.dcm"), tmp_path / "new", 3, per_series=1)
        Catalog(catalog).catalog(str(tmp_path / "new"), workers=0)
        snap = index.current()
        assert snap.overlaid and index.overlay.versions
        want = snap.rows("SELECT version, next_fid FROM state", [])
        studies = snap.rows("SELECT StudyInstanceUID, n_inst FROM study_sum ORDER BY 1", [])
        keys = parse_identifier(_identifier(), "STUDY").keys
        found = summary.study_rows(index, keys, 100, 0)
        index.merge()  # merged, and the overlay's rows dropped
        assert not index.overlay.versions
        assert snap.rows("SELECT version, next_fid FROM state", []) == want
        assert snap.rows("SELECT StudyInstanceUID, n_inst FROM study_sum ORDER BY 1", []) == studies
        assert summary.study_rows(index, keys, 100, 0) == found
    finally:
        index.close()


def _identifier() -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = ""
    ds.PatientName = "*"
    return ds


def test_series_and_studies_the_saved_index_holds_are_known_after_a_restart(
    catalog: str,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    """A commit of new series and studies skips looking up their current rows (there are
    none): the index's series and study hashes are read at start from the saved index,
    so a commit after a restart that adds a series to an indexed study, and an instance
    to an indexed series, still finds their current rows (answers as a fresh build)."""
    first = TableIndex(CatalogTable(catalog))
    first.current()
    first.close()
    index = TableIndex(CatalogTable(catalog), merge=False)
    index.current()  # (the saved index, as it is)
    held = sorted((tmp_path / "in1").rglob("*.dcm"))
    ds = _sop(pydicom.dcmread(held[0]))
    ds.SeriesInstanceUID = generate_uid()
    _commit(tmp_path, "series", catalog, {"a.dcm": ds, "b.dcm": _sop(pydicom.dcmread(held[1]))})
    threads = index.con.execute("SELECT current_setting('threads')").fetchone()
    index.current()
    assert index.last_update.get("overlay") is True
    # (the index runs on one DuckDB thread but for merges that are not the overlay's)
    assert threads == (1,)
    assert index.con.execute("SELECT current_setting('threads')").fetchone() == threads
    assert _state(index) == _fresh(catalog)
    index.merge()
    assert _state(index) == _fresh(catalog)
    index.close()
