"""The study and series level part of a header: what QIDO-RS answers above the instance.

:func:`qmeta` keeps, of a DICOM JSON header, the attributes of the study and series
levels (:data:`QMETA_TAGS`: the sets of :mod:`pixels.web.levels`, which a test
checks this copy against), with its Study ID and referring physician. The table's
writer saves it with each data file's first row per series
(:mod:`pixels.table.firsts`), and the DICOMweb server's index holds it per series
(``ffirst.qmeta``): the header is parsed once, when written, not in each index
update. Plain strings here: no pydicom (the writer's process does not import it).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["QMETA_TAGS", "qmeta"]

#: The study and series level attributes (``pixels.web.levels.STUDY_TAGS | SERIES_TAGS``).
QMETA_TAGS: frozenset[str] = frozenset(
    (
        '00080005', '00080020', '00080021', '00080030', '00080031', '00080050', '00080051',
        '00080054', '00080056', '00080060', '00080061', '00080062', '00080070', '00080080',
        '00080081', '00080090', '00080096', '0008009C', '0008009D', '00080201', '00081010',
        '00081030', '00081032', '0008103E', '0008103F', '00081040', '00081041', '00081048',
        '00081049', '00081050', '00081052', '00081060', '00081062', '00081070', '00081072',
        '00081080', '00081084', '00081090', '00081110', '00081111', '00081120', '00081190',
        '00081250', '00100010', '00100020', '00100021', '00100022', '00100024', '00100030',
        '00100032', '00100033', '00100034', '00100035', '00100040', '00100200', '00100212',
        '00100213', '00100216', '00100218', '00100219', '00100221', '00101000', '00101001',
        '00101002', '00101010', '00101020', '00101021', '00101022', '00101023', '00101024',
        '00101030', '00101100', '00102000', '00102110', '00102160', '00102180', '001021A0',
        '001021B0', '001021C0', '001021D0', '00102201', '00102202', '00102203', '00102210',
        '00102292', '00102293', '00102294', '00102297', '00102298', '00102299', '00104000',
        '00120010', '00120020', '00120021', '00120030', '00120031', '00120040', '00120042',
        '00120050', '00120051', '00120060', '00120062', '00120063', '00120064', '00120071',
        '00120072', '00120083', '00180015', '00181000', '00181002', '00181008', '0018100A',
        '0018100B', '00181020', '00181030', '00181050', '00181200', '00181201', '00185100',
        '0020000D', '0020000E', '00200010', '00200011', '00200052', '00200060', '00201040',
        '00201070', '00201206', '00201208', '00201209', '00280108', '00280109', '00280120',
        '00321034', '00380010', '00380014', '00380060', '00380062', '00380064', '00380500',
        '00400244', '00400245', '00400250', '00400251', '00400253', '00400254', '00400260',
        '00400275', '00400280', '00401012'
    )
)  # fmt: skip
_STUDY_ID, _REFERRING = "00200010", "00080090"


def qmeta(meta: str | None) -> tuple[str | None, str | None, str | None]:
    """The study/series level attributes of ``meta`` (DICOM JSON) as compact JSON, its
    Study ID and referring physician's name; Nones for no header, invalid JSON, or JSON
    that is not an object."""
    if meta is None:
        return None, None, None
    try:
        js = json.loads(meta)
    except ValueError:
        return None, None, None
    if not isinstance(js, dict):  # (another writer's table: not a DICOM JSON object)
        return None, None, None
    kept = {
        k: v
        for k, v in js.items()
        if k in QMETA_TAGS
        and isinstance(v, dict)
        and "BulkDataURI" not in v
        and "InlineBinary" not in v
    }
    study_id = _first_value(js, _STUDY_ID)
    ref = _first_value(js, _REFERRING)
    if isinstance(ref, dict):
        ref = ref.get("Alphabetic")
    return (
        json.dumps(kept, separators=(",", ":")),
        study_id if isinstance(study_id, str) else None,
        ref if isinstance(ref, str) else None,
    )


def _first_value(js: dict[str, Any], tag: str) -> Any:
    item = js.get(tag)
    if not isinstance(item, dict):
        return None
    values = item.get("Value") or [None]
    return values[0]
