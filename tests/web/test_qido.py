"""QIDO-RS through dicomweb-client against a real server."""

from __future__ import annotations

import os

import pydicom
import pytest
from dicomweb_client import DICOMwebClient

from pixels.web import create_app
from web.conftest import Server, running

CT_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"


@pytest.fixture(scope="module")
def client(server: Server) -> DICOMwebClient:
    return DICOMwebClient(url=f"{server.url}/dicomweb")


def _v(ds: dict, tag: str):
    return (ds.get(tag) or {}).get("Value", [None])[0]


def test_all_studies_once_each(client: DICOMwebClient, server: Server) -> None:
    studies = client.search_for_studies()
    uids = [_v(s, "0020000D") for s in studies]
    expected = {
        pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID for p in server.files.values()
    }
    assert sorted(uids) == sorted(expected)  # the CT cataloged twice is one study, one instance
    ct = next(s for s in studies if _v(s, "0020000D") == CT_STUDY)
    assert _v(ct, "00201206") == 1 and _v(ct, "00201208") == 1
    assert ct["00080061"]["Value"] == ["CT"]
    assert _v(ct, "00100010")["Alphabetic"] == "CompressedSamples^CT1"
    assert _v(ct, "00081190").endswith(f"/dicomweb/studies/{CT_STUDY}")
    assert _v(ct, "00080056") == "ONLINE"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"PatientName": "compressed*"}, 3),
        ({"PatientName": "*CT?"}, 1),
        ({"PatientName": "compressedsamples"}, 3),  # family name alone, any case
        ({"PatientID": "1CT1"}, 1),
        ({"StudyDate": "20040826"}, 2),
        ({"StudyDate": "20040101-20041231"}, 3),
        ({"StudyDate": "-20031231"}, 1),
        ({"StudyDate": "20100101-"}, 1),
        ({"ModalitiesInStudy": "MR"}, 2),
        ({"ModalitiesInStudy": "NM,US"}, 2),
        ({"StudyInstanceUID": CT_STUDY + "\\1.2.3"}, 1),
        ({"PatientID": "20?"}, 1),
        ({"AccessionNumber": "nothing"}, 0),
        ({"PatientName": "nobody"}, 0),
    ],
)
def test_study_matching(client: DICOMwebClient, params: dict, expected: int) -> None:
    assert len(client.search_for_studies(search_filters=params)) == expected


def test_limit_offset_and_includefield(client: DICOMwebClient) -> None:
    first = client.search_for_studies(limit=2)
    rest = client.search_for_studies(offset=2)
    assert len(first) == 2 and len(first) + len(rest) == len(client.search_for_studies())
    res = client.search_for_studies(
        search_filters={"StudyInstanceUID": CT_STUDY}, fields=["00180050", "Manufacturer"]
    )
    assert "00180050" in res[0] and "00080070" in res[0]
    everything = client.search_for_studies(
        search_filters={"StudyInstanceUID": CT_STUDY}, fields=["all"]
    )
    # the study's attributes (CT_small has a PatientWeight), not the instance's header
    assert "00101030" in everything[0] and "00280010" not in everything[0]


def test_series_and_instances(client: DICOMwebClient, server: Server) -> None:
    series = client.search_for_series(CT_STUDY)
    assert len(series) == 1 and _v(series[0], "00080060") == "CT"
    assert _v(series[0], "00201209") == 1
    mr_series = client.search_for_series(search_filters={"Modality": "MR"})
    assert len(mr_series) == 2
    emri = pydicom.dcmread(server.files["emri"], stop_before_pixels=True)
    inst = client.search_for_instances(emri.StudyInstanceUID, emri.SeriesInstanceUID)
    assert [_v(i, "00080018") for i in inst] == [emri.SOPInstanceUID]
    assert _v(inst[0], "00280008") == 10
    assert len(client.search_for_instances()) == 6
    assert len(client.search_for_instances(CT_STUDY)) == 1
    found = client.search_for_instances(search_filters={"SOPInstanceUID": emri.SOPInstanceUID})
    assert _v(found[0], "0020000E") == emri.SeriesInstanceUID
    assert client.search_for_series(search_filters={"SeriesNumber": emri.SeriesNumber})
    assert client.search_for_instances(search_filters={"InstanceNumber": 999999}) == []


def test_study_answers_of_every_real_file_read_as_ohif_reads_them(
    everything_catalog: tuple[str, dict[str, set[str]]],
) -> None:
    """Every study is listed with its instance count; no computed attribute is left empty.

    OHIF's study list reads ``ModalitiesInStudy.Value.length``: a study none of whose
    instances has a Modality must leave the attribute out, not answer it with no Value.
    """
    catalog, studies = everything_catalog
    with running(create_app(catalog, token="")) as url:
        client = DICOMwebClient(url=f"{url}/dicomweb")
        found = client.search_for_studies()
        by_study = {_v(s, "0020000D"): s for s in found}
        assert len(found) == len(by_study) == len(studies)
        assert {k: _v(s, "00201208") for k, s in by_study.items()} == {
            k: len(v) for k, v in studies.items()
        }
        generated = os.path.join(os.path.dirname(catalog), "generated", "no-modality.dcm")
        no_modality = pydicom.dcmread(generated, stop_before_pixels=True).StudyInstanceUID
        assert "00080061" not in by_study[no_modality]
        for k, s in by_study.items():
            for tag in ("00080061", "00201206", "00201208", "00080056", "00081190"):
                if tag in s:
                    assert s[tag]["Value"] and all(s[tag]["Value"]), (k, tag, s[tag])
