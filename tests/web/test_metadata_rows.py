"""WADO-RS ``/metadata`` rows: their order, and the per-version cache of recent requests.

On real files (copies of CT_small with their SeriesNumber / InstanceNumber set or
removed), through the server's app: the answer's order is the index's documented
order (series number, series UID, instance number, SOP UID, nulls last), and rows
kept by :mod:`pixels.web.rowcache` never outlive their table version.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.uid import generate_uid
from starlette.testclient import TestClient

from corpus import sample_file
from pixels import Catalog
from pixels.web import create_app
from pixels.web.index import index_of
from pixels.web.rowcache import RowCache

META = "application/dicom+json"


def _write(out: Path, study: str, series: str, series_no: int | None, inst_no: int | None) -> str:
    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    for keyword, value in (("SeriesNumber", series_no), ("InstanceNumber", inst_no)):
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    out.mkdir(parents=True, exist_ok=True)
    ds.save_as(out / f"{ds.SOPInstanceUID}.dcm")
    return str(ds.SOPInstanceUID)


def _client(catalog: str) -> TestClient:
    return TestClient(create_app(catalog, token="", viewer=False), base_url="http://127.0.0.1")


def _sops(client: TestClient, path: str) -> list[str]:
    r = client.get(path, headers={"accept": META})
    assert r.status_code == 200, r.text
    return [m["00080018"]["Value"][0] for m in r.json()]


def test_study_metadata_order_puts_missing_numbers_last(tmp_path: Path) -> None:
    study = generate_uid()
    s_none, s_two, s_ten = generate_uid(), generate_uid(), generate_uid()
    data = tmp_path / "data"
    # written out of order; expected: series 2, series 10, the series without a
    # number; inside each, instance numbers ascending, instances without one last
    # (by SOP Instance UID)
    ten = [_write(data, study, s_ten, 10, n) for n in (2, None, 1)]
    none = [_write(data, study, s_none, None, n) for n in (None, 5)]
    two = [_write(data, study, s_two, 2, n) for n in (-1, None, None, 7)]
    catalog = str(tmp_path / "catalog")
    Catalog(catalog).catalog(str(data), workers=0)
    expected = [
        two[0],
        two[3],
        *sorted(two[1:3]),
        ten[2],
        ten[0],
        ten[1],
        none[1],
        none[0],
    ]
    with _client(catalog) as client:
        assert _sops(client, f"/dicomweb/studies/{study}/metadata") == expected
        # the same through the cache (second request) and for one series
        assert _sops(client, f"/dicomweb/studies/{study}/metadata") == expected
        assert _sops(client, f"/dicomweb/studies/{study}/series/{s_two}/metadata") == (expected[:4])


def test_cached_metadata_rows_end_with_their_table_version(tmp_path: Path) -> None:
    study, series = generate_uid(), generate_uid()
    first = [_write(tmp_path / "one", study, series, 1, n) for n in (1, 2)]
    catalog = str(tmp_path / "catalog")
    Catalog(catalog).catalog(str(tmp_path / "one"), workers=0)
    path = f"/dicomweb/studies/{study}/series/{series}/metadata"
    with _client(catalog) as client:
        assert _sops(client, path) == first
        assert _sops(client, path) == first  # from the cache
        index = index_of(client.app.state.pixels)  # type: ignore[attr-defined]
        before = index.current()
        # a new version (a second catalog run) adds an instance to the same series
        added = _write(tmp_path / "two", study, series, 1, 3)
        Catalog(catalog).catalog(str(tmp_path / "two"), workers=0)
        assert _sops(client, path) == [*first, added]
        assert index.current() is not before
        # the instance level too, and a 404 is not kept
        sop_path = f"{path[: -len('/metadata')]}/instances/{added}/metadata"
        assert _sops(client, sop_path) == [added]
        missing = f"/dicomweb/studies/{study}/series/{generate_uid()}/metadata"
        assert client.get(missing, headers={"accept": META}).status_code == 404


def test_row_cache_is_bounded_and_least_recently_used_goes_first() -> None:
    meta = Path(sample_file("CT_small.dcm")).read_bytes()[:2000].hex()  # 4,000 characters
    rows = [{"meta": meta}]
    size = len(meta) + 256
    cache = RowCache(budget=4 * size)
    loads: list[str] = []

    def loader(name: str) -> list[dict[str, str]]:
        loads.append(name)
        return rows

    for name in ("a", "b", "c", "d"):
        assert cache.get((name, None, None, "meta"), lambda n=name: loader(n)) is rows
    assert cache.size == 4 * size and len(cache) == 4
    cache.get(("a", None, None, "meta"), lambda: loader("a"))  # a hit: "a" is now newest
    cache.get(("e", None, None, "meta"), lambda: loader("e"))  # "b" leaves
    assert loads == ["a", "b", "c", "d", "e"]
    cache.get(("b", None, None, "meta"), lambda: loader("b"))
    cache.get(("a", None, None, "meta"), lambda: loader("a"))
    assert loads == ["a", "b", "c", "d", "e", "b"]
    assert cache.size <= cache.budget
    # rows larger than a quarter of the budget are answered, not kept
    big = [{"meta": meta * 2}]
    assert cache.get(("big", None, None, "meta"), lambda: big) is big
    assert ("big", None, None, "meta") not in cache._items
