"""QIDO-RS conformance (PS3.18 8.3.4, 10.6; PS3.4 C.2.2.2) over every real test file.

Found by running the same queries against Orthanc's DICOMweb plugin: universal
matching, ``includefield=all``, the counts each level carries, unknown query
parameters, paging limits and their warning, person name component groups, and
non-conformant UIDs that are listed and must be retrievable.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pydicom
import pytest
from pydicom.data import get_charset_files

from pixels.web import create_app
from pixels.web.levels import STUDY_TAGS
from web.conftest import running
from web.everything import HEX_UIDS


@pytest.fixture(scope="module")
def url(everything_catalog: tuple[str, dict[str, set[str]]]) -> Iterator[str]:
    with running(create_app(everything_catalog[0], token="")) as base:
        yield base + "/dicomweb"


def _get(url: str, path: str, **params: Any) -> list[dict[str, Any]]:
    r = httpx.get(url + path, params=params, timeout=60)
    assert r.status_code == 200, (path, params, r.text)
    out: list[dict[str, Any]] = r.json()
    return out


def _v(ds: dict[str, Any], tag: str) -> Any:
    return (ds.get(tag) or {}).get("Value", [None])[0]


def _uids(answer: list[dict[str, Any]], tag: str = "0020000D") -> list[str]:
    return sorted(_v(a, tag) for a in answer)


def test_star_is_universal_matching_with_empty_values_too(
    url: str, everything_catalog: tuple[str, dict[str, set[str]]]
) -> None:
    studies = _get(url, "/studies")
    everyone = _uids(studies)
    assert everyone == sorted(everything_catalog[1])
    for tag in ("00100010", "00100020", "00080050", "00080020"):
        # not vacuous: some studies have no value there
        assert any("Value" not in s.get(tag, {}) for s in studies), tag
    for key in (
        "PatientName",
        "PatientID",
        "AccessionNumber",
        "StudyDate",
        "StudyDescription",
        "ReferringPhysicianName",
        "ModalitiesInStudy",
        "StudyInstanceUID",
    ):
        assert _uids(_get(url, "/studies", **{key: "*"})) == everyone, key
    series = _uids(_get(url, "/series"), "0020000E")
    assert _uids(_get(url, "/series", Modality="*", SeriesNumber="*"), "0020000E") == series
    assert len(_get(url, "/instances", SOPClassUID="*")) == sum(
        len(s) for s in everything_catalog[1].values()
    )
    # a wildcard with more than "*" still needs a value
    assert len(_get(url, "/studies", PatientName="*a*")) < len(everyone)


def test_includefield_all_returns_the_query_levels_attributes(url: str) -> None:
    ct = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"), stop_before_pixels=True)
    q = {"StudyInstanceUID": ct.StudyInstanceUID, "includefield": "all"}
    (study,) = _get(url, "/studies", **q)
    assert "00101030" in study and "00101010" in study  # PatientWeight, PatientAge
    assert "00081190" in study and "00201208" in study  # computed ones still there
    assert set(study) <= STUDY_TAGS  # no series or instance attribute, no private tag
    (series,) = _get(url, "/series", **q)
    assert {"00101030", "00080070", "00080060", "0020000E", "00201209"} <= set(series)
    assert "00280010" not in series and "00200032" not in series  # Rows, ImagePosition
    (instance,) = _get(url, "/instances", **q)
    assert {"00101030", "00080070", "00280010", "00200032", "00080018"} <= set(instance)
    for answer in (study, series, instance):
        for tag, value in answer.items():
            assert int(tag[3], 16) % 2 == 0 and not tag.endswith("0000"), tag
            assert "BulkDataURI" not in value and "InlineBinary" not in value, tag
    assert len(study) < len(series) < len(instance)


def test_series_and_instances_carry_their_counts(
    url: str, everything_catalog: tuple[str, dict[str, set[str]]]
) -> None:
    sops = everything_catalog[1]
    studies = {_v(s, "0020000D"): s for s in _get(url, "/studies")}
    series = _get(url, "/series")
    per_series: dict[str, int] = {}
    for s in series:
        study = _v(s, "0020000D")
        assert _v(s, "00201208") == len(sops[study])
        assert _v(s, "00201206") == _v(studies[study], "00201206")
        per_series[_v(s, "0020000E")] = _v(s, "00201209")
    assert sum(per_series.values()) == sum(len(v) for v in sops.values())
    instances = _get(url, "/instances")
    assert len(instances) == sum(per_series.values())
    for i in instances:
        assert _v(i, "00201209") == per_series[_v(i, "0020000E")]
        assert _v(i, "00201208") == len(sops[_v(i, "0020000D")])
        assert _v(i, "00201206") == _v(studies[_v(i, "0020000D")], "00201206")
    # nested: the enclosing level's attributes are not repeated
    study = next(iter(studies))
    nested = _get(url, f"/studies/{study}/series")
    assert nested and all("00201208" not in s and "00201209" in s for s in nested)


@pytest.mark.parametrize(
    "params",
    [
        {"FooBar": "1"},
        {"00991234": "x"},
        {"Manufacturer": "nobody"},
        {"ProcedureCodeSequence.CodeValue": "x"},
    ],
)
def test_unknown_query_parameters_are_ignored_with_a_warning(url: str, params: dict) -> None:
    everyone = _uids(_get(url, "/studies"))
    r = httpx.get(url + "/studies", params=params)
    assert r.status_code == 200 and _uids(r.json()) == everyone
    warning = r.headers["Warning"]
    assert warning.startswith("299 ") and next(iter(params)) in warning and "ignored" in warning


def test_answers_cut_at_the_limit_say_so(url: str) -> None:
    everyone = _uids(_get(url, "/studies"))
    n = len(everyone)
    cut = httpx.get(url + "/studies", params={"limit": 5})
    assert len(cut.json()) == 5
    assert cut.headers["Warning"] == (
        f'299 {cut.url.netloc.decode()}: "There are additional results that can be requested"'
    )
    whole = httpx.get(url + "/studies", params={"limit": n})
    assert len(whole.json()) == n and "Warning" not in whole.headers
    tail = httpx.get(url + "/studies", params={"limit": 5, "offset": n - 2})
    assert len(tail.json()) == 2 and "Warning" not in tail.headers
    far = httpx.get(url + "/studies", params={"offset": 10**15})
    assert far.status_code == 200 and far.json() == []


def test_person_names_match_each_component_group(url: str) -> None:
    def study_of(name: str) -> str:
        (path,) = get_charset_files(name)
        return str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)

    h31, h32 = study_of("chrH31.dcm"), study_of("chrH32.dcm")  # Yamada / ﾔﾏﾀﾞ, both 山田
    jap = study_of("chrJapMulti.dcm")  # やまだ^たろう alone (alphabetic)
    for value, expected in (
        ("Yamada^Tarou", [h31]),
        ("yamada^tarou", [h31]),
        ("Yamada", [h31]),
        ("Yamada*", [h31]),
        ("山田^太郎", sorted([h31, h32])),
        ("やまだ^たろう", sorted([h31, h32, jap])),
        ("やまだ", sorted([h31, h32, jap])),
        ("山田", sorted([h31, h32])),
        ("Yamada^Tarou=山田^太郎=やまだ^たろう", [h31]),
        ("Tarou", []),
        ("Yamada^Tar", []),
    ):
        assert _uids(_get(url, "/studies", PatientName=value)) == expected, value


def test_listed_non_conformant_uids_are_retrievable(url: str) -> None:
    study, series, sop = HEX_UIDS
    (found,) = _get(url, "/studies", StudyInstanceUID=study)
    retrieve = _v(found, "00081190")
    assert retrieve.endswith(f"/dicomweb/studies/{study}")
    (s,) = httpx.get(retrieve + "/series").json()
    assert _v(s, "0020000E") == series
    (i,) = httpx.get(_v(s, "00081190") + "/instances").json()
    assert _v(i, "00080018") == sop
    r = httpx.get(_v(i, "00081190") + "/metadata")
    assert r.status_code == 200 and _v(r.json()[0], "00080018") == sop
    r = httpx.get(f"{url}/studies/{study}/series/{series}/instances/{sop}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("multipart/related")


def test_pages_as_ohif_and_dcm4che_clients_ask_for_them(url: str) -> None:
    """Pages (``limit``/``offset``) of study and series searches, with the control
    parameters OHIF (``fuzzymatching=false``, ``includefield`` lists) and dcm4che's
    web clients (``fuzzymatching=true``, ``includefield=all``) send, put together are
    the whole answer in its order; the control parameters raise no warning."""
    for path, tag in (("/studies", "0020000D"), ("/series", "0020000E")):
        whole = _get(url, path, includefield="00081030,00080060", fuzzymatching="false")
        order = [_v(a, tag) for a in whole]
        assert len(order) > 6, path
        paged: list[str] = []
        for offset in range(0, len(order) + 5, 5):
            r = httpx.get(
                url + path,
                params={
                    "limit": "5",
                    "offset": str(offset),
                    "fuzzymatching": "true",
                    "includefield": "all",
                },
                timeout=60,
            )
            assert r.status_code == 200, r.text
            assert "ignored" not in r.headers.get("Warning", ""), r.headers
            paged += [_v(a, tag) for a in r.json()]
        assert paged == order, path
    # a study search on a name's ideographic group (names of several groups are split)
    one = _get(url, "/studies", PatientName="山田*", fuzzymatching="true")
    assert one and all("山田" in str(a["00100010"]) for a in one)
