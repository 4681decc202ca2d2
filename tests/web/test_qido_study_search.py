"""Study searches on the study search table (``qs`` in answer order, ``qs_new`` for the
studies updates touched): the same answers as matching every live group, for studies
whose series differ in a study-level attribute, person names of several component
groups, names that only match case-insensitively (non-ASCII ones too), studies without
a date or a modality, and pages that cross from the sorted studies to the new ones.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from pydicom.uid import generate_uid

from pixels import Catalog
from pixels.web import create_app, index_tables, qido, qido_answers
from pixels.web.index import index_of
from web.conftest import running


def _write(folder: Path, template: str, study: str, **attrs: Any) -> None:
    """A real file with a fresh series and SOP UID in ``study``, ``attrs`` set."""
    ds = pydicom.dcmread(pydicom.data.get_testdata_file(template, download=False))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8
    for key, value in attrs.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    (folder / f"{ds.SOPInstanceUID}.dcm").write_bytes(buf.getvalue())


#: Searches whose answers must not depend on the table they are answered from.
SEARCHES: list[dict[str, str]] = [
    {},
    {"PatientName": "m*"},
    {"PatientName": "MÜLLER*"},
    {"PatientName": "müller^jürgen"},
    {"PatientName": "çelik*"},
    {"PatientName": "çeli̇k*"},
    {"PatientName": "ÇELİK*"},
    {"PatientName": "yamada*"},
    {"PatientName": "山田*"},
    {"PatientName": "Yamada^Tarou=山田^太郎=やまだ^たろう"},
    {"PatientName": "smith"},
    {"PatientName": "*o?n*"},
    {"PatientName": "50%*"},
    {"StudyDescription": "head*"},
    {"StudyDescription": "BRAIN"},
    {"StudyDate": "20100101-"},
    {"StudyDate": "-20091231"},
    {"StudyDate": "20150505"},
    {"ModalitiesInStudy": "MR"},
    {"ModalitiesInStudy": "CT,MR"},
    {"ModalitiesInStudy": "MR\\US"},
    {"ModalitiesInStudy": "M"},
    {"ModalitiesInStudy": "O%T"},
    {"ModalitiesInStudy": "O%,T"},
    {"PatientName": "*", "ModalitiesInStudy": "CT", "StudyDate": "20000101-20201231"},
    {"PatientName": "s*", "StudyDate": "20100505"},
    {"PatientID": "P?", "ModalitiesInStudy": "CT"},
    {"AccessionNumber": "A1*"},
    {"PatientSex": "F", "PatientBirthDate": "19500101-"},
]


@pytest.fixture(scope="module", params=["special", "plain"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A server over real files in two catalog runs: the first run's studies sorted into
    ``qs``, the second's (a new study, a series added to an old one) left in
    ``qs_new`` (at most 2 there: ``_QS_NEW_MAX``). ``plain``: without the study whose
    series differ and the name of several groups (the searches' faster forms)."""
    special = request.param == "special"
    saved = index_tables._QS_NEW_MAX
    index_tables._QS_NEW_MAX = 2
    tmp = tmp_path_factory.mktemp("study_search")
    first, second = tmp / "in1", tmp / "in2"
    first.mkdir()
    second.mkdir()
    uids = {k: generate_uid() for k in ("mixed", "groups", "celik", "smith", "nodate", "x")}
    # a study whose series differ in StudyDescription (and in the name's case)
    _write(first, "CT_small.dcm", uids["mixed"], PatientName="Müller^Jürgen",
           StudyDescription="Head", StudyDate="20150505", PatientID="P1", PatientSex="M",
           PatientBirthDate="19700101", AccessionNumber="ACC1")  # fmt: skip
    _write(first, "MR_small.dcm", uids["mixed"], PatientName="MÜLLER^JÜRGEN" if special
           else "Müller^Jürgen", StudyDescription="Brain" if special else "Head",
           StudyDate="20150505", PatientID="P1", PatientSex="M", PatientBirthDate="19700101",
           AccessionNumber="ACC1")  # fmt: skip
    _write(first, "MR_small.dcm", uids["groups"], PatientName="Yamada^Tarou=山田^太郎=やまだ^たろう"
           if special else "Yamada^Tarou", StudyDate="20200101", PatientID="P2",
           AccessionNumber="A12")  # fmt: skip
    _write(first, "CT_small.dcm", uids["celik"], PatientName="ÇELİK^Ayşe", StudyDate="20080808",
           PatientSex="F", PatientBirthDate="19600101")  # fmt: skip
    _write(first, "CT_small.dcm", uids["smith"], PatientName="smith^john", StudyDate="20100505",
           PatientID="P3")  # fmt: skip
    _write(first, "MR_small.dcm", uids["nodate"], PatientName="Nodate^Only", StudyDate=None,
           Modality=None, StudyDescription="50% off")  # fmt: skip
    for k in range(3):  # same date: ordered by UID; a modality with a pattern character
        _write(first, "CT_small.dcm", generate_uid(), PatientName=f"Moon^{k}",
               StudyDate="20150505", AccessionNumber=f"A1{k}", Modality="O%T" if k else "CT")  # fmt: skip
    catalog = str(tmp / "catalog")
    Catalog(catalog).catalog(str(first), workers=0)
    try:
        app = create_app(catalog, token="", storage_root=str(tmp / "stow"), viewer=False)
        with running(app) as url, httpx.Client(base_url=f"{url}/dicomweb", timeout=60) as http:
            index = index_of(app.state.pixels)
            assert http.get("/studies").status_code == 200
            index._checkpointer.join()  # type: ignore[union-attr]  # sorted into qs
            _write(second, "MR_small.dcm", uids["x"], PatientName="Moon^New",
                   StudyDate="20150505")  # fmt: skip
            _write(second, "MR_small.dcm", uids["smith"], PatientName="smith^john",
                   StudyDate="20100505", PatientID="P3", Modality="US")  # fmt: skip
            Catalog(catalog).catalog(str(second), workers=0)
            assert http.get("/studies").status_code == 200  # the index follows
            index.merge()  # (from its overlay into its tables)
            yield http, index, uids, special
    finally:
        index_tables._QS_NEW_MAX = saved


def _answers(http: httpx.Client, params: dict[str, str]) -> list[dict[str, Any]]:
    r = http.get("/studies", params=params)
    assert r.status_code == 200, (params, r.text)
    return r.json()  # type: ignore[no-any-return]


def test_study_search_table_answers_as_the_groups_do(
    served: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every search, and every page of the plain study list, answers the same studies in
    the same order from the study search table as from the groups."""
    http, index, uids, special = served
    new = {r[0] for r in index.con.execute("SELECT StudyInstanceUID FROM ix.qs_new").fetchall()}
    assert new == {uids["x"], uids["smith"]}  # the second run's studies, not yet sorted in
    mixed = index.con.execute("SELECT StudyInstanceUID FROM ix.qs WHERE mixed").fetchall()
    assert mixed == ([(uids["mixed"],)] if special else [])
    pages = [{"limit": str(n), "offset": str(o)} for n in (1, 2, 3) for o in range(0, 11)]
    searches = SEARCHES + pages + [s | {"limit": "1", "offset": "1"} for s in SEARCHES]
    fast = [_answers(http, s | {"includefield": "all"}) for s in searches]
    # the groups' path, with no answer or result kept from the searches above
    monkeypatch.setattr(qido, "_STUDY_SEARCH", frozenset())
    monkeypatch.setattr(qido_answers, "_ANSWERS", type(qido_answers._ANSWERS)())
    slow = [_answers(http, s | {"includefield": "all"}) for s in searches]
    for params, a, b in zip(searches, fast, slow, strict=True):
        assert a == b, params
    counts = {str(s): len(a) for s, a in zip(SEARCHES, fast, strict=False)}
    assert counts[str({})] == 9
    if not special:
        assert counts[str({"PatientName": "MÜLLER*"})] == 1
        assert counts[str({"PatientName": "山田*"})] == 0
        assert counts[str({"StudyDescription": "BRAIN"})] == 0
        return
    assert counts[str({"PatientName": "m*"})] == 5  # Müller (both groups' cases), 4 Moons
    assert counts[str({"PatientName": "MÜLLER*"})] == 1
    assert counts[str({"PatientName": "ÇELİK*"})] == 1
    assert counts[str({"PatientName": "山田*"})] == 1
    assert counts[str({"PatientName": "smith"})] == 1
    assert counts[str({"StudyDescription": "BRAIN"})] == 1  # the mixed study's MR group
    assert counts[str({"ModalitiesInStudy": "MR\\US"})] == 4  # mixed, groups, smith, Moon^New
    assert counts[str({"ModalitiesInStudy": "O%T"})] == 2
    assert counts[str({"ModalitiesInStudy": "O%,T"})] == 0


def test_new_studies_are_sorted_in_and_answer_the_same(
    served: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sorting ``qs_new`` into ``qs`` (the checkpoint thread's work once enough studies
    are new) leaves no new study, ``qs`` in answer order, and the same answers, read
    from ``qs`` alone once the flags are read again (a sort keeps the version)."""
    http, index, _, _ = served
    before = [_answers(http, s) for s in SEARCHES]
    cur = index.con.cursor()
    try:
        cur.execute("BEGIN TRANSACTION")
        index_tables.sort_study_search(cur)
        cur.execute("COMMIT")
        assert cur.execute("SELECT count(*) FROM ix.qs_new").fetchone() == (0,)
        order = cur.execute("SELECT StudyInstanceUID FROM ix.qs").fetchall()
        by_order = cur.execute(
            f"SELECT StudyInstanceUID FROM ix.qs ORDER BY {index_tables.STUDY_ORDER}"
        ).fetchall()
        assert order == by_order and len(order) == 9
    finally:
        cur.close()
    # (another limit: not the answers kept before)
    assert [_answers(http, s | {"limit": "50"}) for s in SEARCHES] == before
    monkeypatch.setattr(qido, "_FLAGS", type(qido._FLAGS)())
    assert [_answers(http, s | {"limit": "49"}) for s in SEARCHES] == before
    assert qido._FLAGS[index][1].new is False  # qs alone
