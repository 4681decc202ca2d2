"""The server's per-version index and the text rewrite of BulkDataURIs."""

from __future__ import annotations

import json

from pixels.web.wado import meta_with_urls, rewrite_bulkdata


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
