"""Per-file DICOM work: header -> DICOM JSON, frame index, decoding, display, thumbnails.

Public helpers (imported lazily so worker processes load only what they use):

>>> from pixels.dicom import read_frames, thumbnail
>>> frames = read_frames("CT_small.dcm", frames=[0])          # doctest: +SKIP
>>> thumb = thumbnail("CT_small.dcm", max_size=256)            # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pixels.dicom.decode import PixelInfo, decode_frame, read_frames
    from pixels.dicom.display import to_display
    from pixels.dicom.meta import Header, read_header
    from pixels.dicom.thumb import Thumbnail, thumbnail
    from pixels.transformers import (
        DicomAnonymizerExtractor,
        DicomMetaAnonymizerExtractor,
        DicomMetaExtractor,
        DicomPatcher,
        DicomPillowThumbnailExtractor,
        DicomPlot,
        DicomThumbnailExtractor,
        PathExtractor,
        PresidioTransformer,
        Redactor,
        StowProcessor,
        TagExtractor,
        VLMPhiExtractor,
    )

_LAZY = {
    "read_frames": "pixels.dicom.decode",
    "decode_frame": "pixels.dicom.decode",
    "PixelInfo": "pixels.dicom.decode",
    "to_display": "pixels.dicom.display",
    "read_header": "pixels.dicom.meta",
    "Header": "pixels.dicom.meta",
    "thumbnail": "pixels.dicom.thumb",
    "Thumbnail": "pixels.dicom.thumb",
    "DicomAnonymizerExtractor": "pixels.transformers",
    "DicomMetaAnonymizerExtractor": "pixels.transformers",
    "DicomMetaExtractor": "pixels.transformers",
    "DicomPatcher": "pixels.transformers",
    "DicomPillowThumbnailExtractor": "pixels.transformers",
    "DicomPlot": "pixels.transformers",
    "DicomThumbnailExtractor": "pixels.transformers",
    "PathExtractor": "pixels.transformers",
    "PresidioTransformer": "pixels.transformers",
    "Redactor": "pixels.transformers",
    "StowProcessor": "pixels.transformers",
    "TagExtractor": "pixels.transformers",
    "VLMPhiExtractor": "pixels.transformers",
}
#: The names ``from dbx.pixels.dicom import *`` gives, with the same meaning
#: (de-identification ones raise NotImplementedError naming ``pixels deid``).
DBX_NAMES = tuple(name for name, module in _LAZY.items() if module == "pixels.transformers")

__all__ = [
    "DicomAnonymizerExtractor",
    "DicomMetaAnonymizerExtractor",
    "DicomMetaExtractor",
    "DicomPatcher",
    "DicomPillowThumbnailExtractor",
    "DicomPlot",
    "DicomThumbnailExtractor",
    "Header",
    "PathExtractor",
    "PixelInfo",
    "PresidioTransformer",
    "Redactor",
    "StowProcessor",
    "TagExtractor",
    "Thumbnail",
    "VLMPhiExtractor",
    "decode_frame",
    "read_frames",
    "read_header",
    "thumbnail",
    "to_display",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pixels.dicom' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
