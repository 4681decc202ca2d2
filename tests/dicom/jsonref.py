"""pydicom's DICOM JSON, brought to the PS3.18 F.2 rules Pixels follows where pydicom does not.

The tests compare :func:`pixels.dicom.meta.read_header` and
:func:`pixels.dicom.jsonenc.encode_json` with pydicom's ``Dataset.to_json_dict``
on real files. pydicom deviates from PS3.18 in three ways that Pixels does not,
and :func:`reference_json` undoes exactly those, nothing else:

* group length elements ``(gggg,0000)``: PS3.18 F.2 says they shall not be
  included; pydicom includes them;
* empty person name component groups: pydicom writes ``"Ideographic": ""``,
  Pixels leaves the key out (and a name with no group at all is ``null``);
* ``InlineBinary`` of OW/OF/OL/OD/OV from a big endian file: pydicom encodes the
  bytes as stored (big endian), the JSON model holds little endian.
"""

from __future__ import annotations

import base64
import warnings
from typing import Any

from pydicom.dataset import Dataset

from pixels.dicom.jsonenc import little_endian_value

PIXEL_TAGS = ("7FE00010", "7FE00008", "7FE00009")


def is_little(ds: Dataset) -> bool:
    """The byte order the dataset was read in (little endian when unknown)."""
    try:
        return ds.original_encoding[1] is not False
    except Exception:
        return True


def to_ps318(node: dict[str, Any], little: bool) -> dict[str, Any]:
    """pydicom's ``to_json_dict`` output with the three deviations undone."""
    out: dict[str, Any] = {}
    for key, entry in node.items():
        if key.endswith("0000"):
            continue
        entry = dict(entry)
        vr = entry.get("vr")
        if vr == "SQ" and "Value" in entry:
            entry["Value"] = [to_ps318(item, little) for item in entry["Value"]]
        elif vr == "PN" and "Value" in entry:
            values = []
            for v in entry["Value"]:
                if isinstance(v, dict):
                    v = {k: c for k, c in v.items() if c}
                values.append(v or None)
            entry["Value"] = values
        elif "InlineBinary" in entry and not little:
            raw = base64.b64decode(entry["InlineBinary"])
            swapped = little_endian_value(str(vr), raw, False)
            entry["InlineBinary"] = base64.b64encode(swapped).decode()
        out[key] = entry
    return out


def reference_json(ds: Dataset, bulk_threshold: int = 1024) -> dict[str, Any]:
    """pydicom's JSON of `ds` under Pixels' rules; bulk data as ``"BULK"``, no pixel data."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        js = ds.to_json_dict(
            bulk_data_threshold=bulk_threshold, bulk_data_element_handler=lambda e: "BULK"
        )
    return {k: v for k, v in to_ps318(js, is_little(ds)).items() if k not in PIXEL_TAGS}


def normalise(node: Any) -> Any:
    """Replace BulkDataURI values by ``"BULK"``."""
    if isinstance(node, dict):
        return {k: "BULK" if k == "BulkDataURI" else normalise(v) for k, v in node.items()}
    if isinstance(node, list):
        return [normalise(v) for v in node]
    return node


def without_pixels(js: dict[str, Any]) -> dict[str, Any]:
    """A JSON model without its pixel data elements."""
    return {k: v for k, v in js.items() if k not in PIXEL_TAGS}
