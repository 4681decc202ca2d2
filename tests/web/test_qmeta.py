"""``qmeta``: the study/series part of a header, from any ``meta`` a table may hold."""

from __future__ import annotations

import json

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
