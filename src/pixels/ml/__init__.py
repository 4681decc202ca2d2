"""Deep learning on the catalog: datasets from SQL, segmentation models, DICOM SEG output.

Needs the ``ml`` extra (``pip install 'pixels-lake[ml]'``: torch, monai, scipy,
scikit-image, highdicom); the names are imported lazily so ``import pixels.ml``
works without it and the first use says what is missing.

>>> from pixels import Catalog                                        # doctest: +SKIP
>>> from pixels.ml import SeriesDataset, FrameDataset, PatchDataset   # doctest: +SKIP
>>> ds = SeriesDataset(Catalog("./catalog"), where="Modality = 'CT'")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "EncodedFrame",
    "FrameDataset",
    "FrameDecoder",
    "PatchDataset",
    "SeriesDataset",
    "Volume",
    "read_volume",
    "select_series",
]

_WHERE = {
    "EncodedFrame": "pixels.ml.gpudecode",
    "FrameDecoder": "pixels.ml.gpudecode",
    "FrameDataset": "pixels.ml.datasets",
    "PatchDataset": "pixels.ml.datasets",
    "SeriesDataset": "pixels.ml.datasets",
    "Volume": "pixels.ml.volume",
    "read_volume": "pixels.ml.volume",
    "select_series": "pixels.ml.volume",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'pixels.ml' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
