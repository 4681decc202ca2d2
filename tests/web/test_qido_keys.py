"""QIDO-RS matching as the index's study keys and LIKE patterns run it: ModalitiesInStudy
with other keys at every level (a condition on the whole study, joined by the study's
key), and values with the characters SQL patterns give a meaning to (``_``, ``%``).
"""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.uid import generate_uid

from pixels import Catalog
from pixels.web import create_app
from web.conftest import running

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


def _write(folder: Path, name: str, template: str, study: str, patient: str, **attrs: str) -> str:
    """A real file with fresh series and SOP UIDs in ``study``; its SOP Instance UID."""
    ds = pydicom.dcmread(pydicom.data.get_testdata_file(template, download=False))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.PatientName = patient
    for key, value in attrs.items():
        setattr(ds, key, value)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    (folder / name).write_bytes(buf.getvalue())
    return str(ds.SOPInstanceUID)


def _uids(r: httpx.Response, tag: str) -> list[str]:
    assert r.status_code == 200, r.text
    return sorted(s[tag]["Value"][0] for s in r.json())


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("keys")
    folder = tmp / "in"
    folder.mkdir()
    mixed, ct_only, other = generate_uid(), generate_uid(), generate_uid()
    sops = {
        "mixed_ct": _write(folder, "a.dcm", "CT_small.dcm", mixed, "Under_Score^Mixed"),
        "mixed_mr": _write(folder, "b.dcm", "MR_small.dcm", mixed, "Under_Score^Mixed"),
        "ct_only": _write(folder, "c.dcm", "CT_small.dcm", ct_only, "UnderXScore^Ct"),
        "other": _write(
            folder, "d.dcm", "MR_small.dcm", other, "Per%Cent^Mr", StudyDescription="50%_off"
        ),
    }
    catalog = str(tmp / "catalog")
    Catalog(catalog).catalog(str(folder), workers=0)
    app = create_app(catalog, token="", storage_root=str(tmp / "stow"), viewer=False)
    with running(app) as url, httpx.Client(base_url=f"{url}/dicomweb", timeout=60) as http:
        yield http, {"mixed": mixed, "ct_only": ct_only, "other": other}, sops


def test_modalities_in_study_with_other_keys_at_every_level(served) -> None:  # type: ignore[no-untyped-def]
    http, st, sops = served
    study, sop = "0020000D", "00080018"
    assert _uids(http.get("/studies", params={"ModalitiesInStudy": "MR"}), study) == sorted(
        [st["mixed"], st["other"]]
    )
    # a study matches when one of its series has the modality, whatever the others have
    found = http.get("/studies", params={"ModalitiesInStudy": "MR", "PatientName": "Under*"})
    assert _uids(found, study) == [st["mixed"]]
    assert found.json()[0]["00080061"]["Value"] == ["CT", "MR"]
    # with a series-level key: the CT series of a study that also holds an MR series
    both = {"ModalitiesInStudy": "MR", "Modality": "CT"}
    assert _uids(http.get("/studies", params=both), study) == [st["mixed"]]
    ct_series = http.get("/series", params=both)
    assert len(ct_series.json()) == 1 and ct_series.json()[0]["00080060"]["Value"] == ["CT"]
    assert len(http.get("/series", params={"ModalitiesInStudy": "MR"}).json()) == 3
    # instance-level keys match on instances (another query), with the same meaning
    by_class = {"ModalitiesInStudy": "MR", "SOPClassUID": CT_IMAGE}
    assert _uids(http.get("/studies", params=by_class), study) == [st["mixed"]]
    assert _uids(http.get("/instances", params=by_class), sop) == [sops["mixed_ct"]]
    assert _uids(
        http.get(f"/studies/{st['mixed']}/instances", params={"ModalitiesInStudy": "MR"}), sop
    ) == sorted([sops["mixed_ct"], sops["mixed_mr"]])
    assert http.get("/studies", params={"ModalitiesInStudy": "MR", "Modality": "US"}).json() == []
    assert _uids(http.get("/studies", params={"ModalitiesInStudy": "CT,US"}), study) == sorted(
        [st["mixed"], st["ct_only"]]
    )


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"PatientName": "Under_*"}, ["mixed"]),  # "_" is a character, not any one
        ({"PatientName": "Under?Score*"}, ["ct_only", "mixed"]),
        ({"PatientName": "under_score"}, ["mixed"]),  # family name alone, any case
        ({"PatientName": "Per%*"}, ["other"]),
        ({"PatientName": "Per*"}, ["other"]),
        ({"PatientName": "P%*"}, []),
        ({"StudyDescription": "50%_*"}, ["other"]),
        ({"StudyDescription": "50_*"}, []),
        ({"StudyDescription": "50?_OFF"}, ["other"]),
    ],
)
def test_sql_pattern_characters_in_values_are_plain_characters(
    served,  # type: ignore[no-untyped-def]
    params: dict[str, str],
    expected: list[str],
) -> None:
    http, st, _ = served
    r = http.get("/studies", params=params)
    assert _uids(r, "0020000D") == sorted(st[k] for k in expected)
