"""C-FIND from the index's summaries (study search table, series and study sums) gives
the answers grouping every instance row gave; its answer cap ends with 0xFE00."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset

from dimse.conftest import dcmtk
from pixels.dimse.config import ServerConfig
from pixels.dimse.query import find, parse_identifier
from pixels.dimse.server import DimseServer
from pixels.table import CatalogTable
from pixels.web.index import TableIndex
from web.everything import build

CT_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
CT_SERIES = "1.3.6.1.4.1.5962.1.3.1.1.20040119072730.12322"
MR_SERIES = "1.3.6.1.4.1.5962.1.3.4.1.20040826185059.5457"

#: Keys every query asks for back (and the computed counts at each level).
_RETURN = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
    "StudyDate", "StudyTime", "AccessionNumber", "StudyDescription", "StudyID",
    "ModalitiesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
)  # fmt: skip
_SERIES_RETURN = ("SeriesInstanceUID", "Modality", "SeriesNumber", "NumberOfSeriesRelatedInstances")
_PATIENT_RETURN = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
    "NumberOfPatientRelatedStudies", "NumberOfPatientRelatedSeries",
    "NumberOfPatientRelatedInstances",
)  # fmt: skip


@pytest.fixture(scope="module")
def everything(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Every real test file cataloged (pydicom's, its character-set files, pydicom-data's,
    transcodes and mutations: :mod:`web.everything`)."""
    return build(tmp_path_factory.mktemp("everything"))[0]


@pytest.fixture(scope="module")
def index(everything: str) -> TableIndex:
    return TableIndex(CatalogTable(everything), persist=False)


def _identifier(level: str, keys: dict[str, str], returned: tuple[str, ...]) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for kw in returned:
        setattr(ds, kw, "")
    for kw, value in keys.items():
        setattr(ds, kw, value)
    return ds


def _answers(index: TableIndex, ds: Dataset, model: str, summary: bool) -> list[str]:
    query = parse_identifier(ds, model)
    got = find(index.current(), query, "PIXELS", None, index if summary else None)
    return sorted(a.to_json() for a in got)


@pytest.mark.parametrize(
    ("level", "keys"),
    [
        ("STUDY", {}),
        ("STUDY", {"PatientName": "*a*"}),
        ("STUDY", {"PatientName": "YAMADA*"}),
        ("STUDY", {"PatientName": "Wang^XiaoDong"}),
        ("STUDY", {"PatientName": "compressedsamples^ct1"}),
        ("STUDY", {"StudyDate": "20000101-20101231"}),
        ("STUDY", {"StudyDate": "-20031231", "PatientSex": "M"}),
        ("STUDY", {"StudyDate": "2004*"}),
        ("STUDY", {"PatientID": "*1*", "AccessionNumber": ""}),
        ("STUDY", {"ModalitiesInStudy": "MR\\CT"}),
        ("STUDY", {"ModalitiesInStudy": "M?"}),
        ("STUDY", {"StudyDescription": "*e*"}),
        ("STUDY", {"StudyTime": "0700-0800"}),
        ("STUDY", {"StudyInstanceUID": "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322\\1.2.3"}),
        ("SERIES", {}),
        ("SERIES", {"Modality": "M?"}),
        ("SERIES", {"SeriesNumber": "1\\2", "PatientName": "*^*"}),
        ("SERIES", {"StudyDate": "20040101-"}),
        ("IMAGE", {"SeriesInstanceUID": MR_SERIES}),
        ("IMAGE", {"SeriesInstanceUID": f"{MR_SERIES}\\{CT_SERIES}", "InstanceNumber": "1"}),
        ("PATIENT", {}),
        ("PATIENT", {"PatientName": "*S*"}),
        ("PATIENT", {"PatientBirthDate": "19000101-19801231"}),
    ],
)
def test_summary_answers_equal_the_instance_rows(
    index: TableIndex, level: str, keys: dict[str, str]
) -> None:
    returned = _RETURN if level == "STUDY" else _PATIENT_RETURN if level == "PATIENT" else (
        _RETURN + _SERIES_RETURN)  # fmt: skip
    if level == "IMAGE":
        returned = (*returned, "SOPInstanceUID", "SOPClassUID", "InstanceNumber")
    if level == "STUDY":
        returned = (*returned, "SOPClassesInStudy")
    models = ("PATIENT",) if level == "PATIENT" else ("STUDY", "PATIENT")
    for model in models:
        ds = _identifier(level, keys, returned)
        old = _answers(index, ds, model, summary=False)
        new = _answers(index, ds, model, summary=True)
        assert new == old, (model, keys)
    if level == "IMAGE":
        assert old  # the series are in the catalog
    if not keys:
        assert len(old) >= 10  # the catalog has many studies, series and patients


def test_find_limit_ends_with_matching_terminated(everything: str, tmp_path: Path) -> None:
    config = ServerConfig(port=0, timeout=5, find_limit=3)
    server = DimseServer(everything, config).start()
    try:
        found: dict[str, Any] = {}
        for cap_hit, keys in ((True, []), (False, [f"StudyInstanceUID={CT_STUDY}"])):
            out = tmp_path / f"cap{cap_hit}"
            out.mkdir()
            args = ["-v", "-S", "-aec", "PIXELS", "-X", "-od", str(out)]
            for k in ["QueryRetrieveLevel=STUDY", *(keys or ["StudyInstanceUID"])]:
                args += ["-k", k]
            res = dcmtk("findscu", *args, "127.0.0.1", str(server.port))
            assert res.returncode == 0, res.stderr
            log = res.stdout + res.stderr
            found[str(cap_hit)] = [pydicom.dcmread(out / f) for f in sorted(os.listdir(out))]
            if cap_hit:
                assert "Cancel: MatchingTerminatedDueToCancelRequest" in log, log
            else:
                assert "MatchingTerminated" not in log and "(Success)" in log, log
        assert len(found["True"]) == 3
        assert [d.StudyInstanceUID for d in found["False"]] == [CT_STUDY]
    finally:
        server.stop()
