"""``qmeta``: the study/series part of a header, from any ``meta`` a table may hold."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from pixels.web.firsts import qmeta


def test_qmeta_of_a_meta_that_is_not_a_json_object_is_empty() -> None:
    """Another writer's table may hold any text in ``meta``: valid JSON that is not an
    object (a list, a string, a number) made the index's build raise AttributeError."""
    for meta in ("[1, 2]", '"00080020"', "12", "null", "not json", ""):
        assert qmeta(meta) == (None, None, None), meta
    got = qmeta(
        '{"00080020": {"vr": "DA", "Value": ["20200101"]}, "00200010": {"vr": "SH", "Value": '
        '["S1"]}, "00080090": {"vr": "PN", "Value": [{"Alphabetic": "Ref^Doc"}]}, '
        '"7FE00010": {"vr": "OW", "BulkDataURI": "x"}, "00280010": {"vr": "US", "Value": [512]}}'
    )
    assert got[1:] == ("S1", "Ref^Doc")
    assert json.loads(got[0]) == {
        "00080020": {"vr": "DA", "Value": ["20200101"]},
        "00200010": {"vr": "SH", "Value": ["S1"]},
        "00080090": {"vr": "PN", "Value": [{"Alphabetic": "Ref^Doc"}]},
    }


def test_the_writers_copy_of_the_level_tags_is_the_levels_own() -> None:
    """:mod:`pixels.dicom.qmeta` holds the study and series level tags as plain strings
    (the table's writer does not import pydicom): the sets :mod:`pixels.web.levels` makes
    from the keywords of PS3.3's modules, exactly."""
    from pixels.dicom.qmeta import QMETA_TAGS
    from pixels.web.levels import SERIES_TAGS, STUDY_TAGS

    assert QMETA_TAGS == STUDY_TAGS | SERIES_TAGS


def test_the_writer_saves_the_parsed_study_and_series_part(tmp_path: Path) -> None:
    """The first rows the writer saves per series hold :func:`qmeta` of their header,
    parsed once when written: an index update reads them without parsing JSON."""
    from corpus import copy_with_new_uids, sample_file
    from pixels.dicom.record import catalog_batch
    from pixels.sources import iter_files
    from pixels.table import CatalogTable
    from pixels.table.firsts import read_firsts

    copy_with_new_uids(sample_file("CT_small.dcm"), tmp_path / "src" / "ct", 2)
    copy_with_new_uids(sample_file("MR_small.dcm"), tmp_path / "src" / "mr", 2)
    rows = pa.Table.from_batches([catalog_batch(list(iter_files(str(tmp_path / "src"))))])
    table = CatalogTable(str(tmp_path / "cat"))
    table.append(rows)
    (uri,) = table.file_uris()
    saved = read_firsts(str(tmp_path / "cat"), uri.removeprefix("file://"))
    assert saved is not None and saved.num_rows == 2  # (one series per source file)
    by_sop = {r["SOPInstanceUID"]: r["meta"] for r in rows.to_pylist()}
    for r in saved.to_pylist():
        assert (r["qmeta"], r["StudyID"], r["ReferringPhysicianName"]) == qmeta(by_sop[r["sop"]])
        assert json.loads(r["qmeta"])["0020000E"]["Value"] == [r["SeriesInstanceUID"]]
