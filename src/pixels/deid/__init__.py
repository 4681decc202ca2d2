"""De-identification of DICOM files: PS3.15 Annex E Basic Application Level Confidentiality
Profile with options, consistent across a catalog through one secret key.

Per file (pure, :mod:`pixels.deid.file`): :func:`deidentify_file`. Over a catalog
(:mod:`pixels.deid.run`, uses the engines): :func:`deidentify_table`. The action table is
data in :mod:`pixels.deid.profile`; what an object's IOD requires of it in
:mod:`pixels.deid.iod`; private elements in :mod:`pixels.deid.private`; the key in
:mod:`pixels.deid.keys`.
"""

from __future__ import annotations

from typing import Any

from pixels.deid.file import DeidOptions, DeidResult, deidentify_dataset, deidentify_file
from pixels.deid.keys import DeidKey, load_or_create_key
from pixels.deid.pixelclean import BlackoutRule, load_rules
from pixels.deid.profile import STANDARD, Option

__all__ = [
    "STANDARD",
    "BlackoutRule",
    "DeidKey",
    "DeidOptions",
    "DeidResult",
    "DeidStats",
    "Option",
    "deidentify_dataset",
    "deidentify_file",
    "deidentify_table",
    "load_or_create_key",
    "load_rules",
]


def __getattr__(name: str) -> Any:
    # the over-a-catalog part sits above the engines: imported on use only
    if name in ("deidentify_table", "DeidStats"):
        from pixels.deid.run import DeidStats, deidentify_table

        return {"deidentify_table": deidentify_table, "DeidStats": DeidStats}[name]
    raise AttributeError(f"module 'pixels.deid' has no attribute {name!r}")
