"""Pixels: a SQL-queryable catalog of medical image files.

>>> from pixels import Catalog
>>> cat = Catalog("./catalog")                      # doctest: +SKIP
>>> cat.catalog("/data/dicom")                      # doctest: +SKIP
>>> cat.sql("SELECT Modality, count(*) FROM object_catalog GROUP BY 1")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Catalog", "CatalogStats", "PixelsError", "__version__"]

if TYPE_CHECKING:
    from pixels.catalog import Catalog
    from pixels.engines.local import CatalogStats
    from pixels.errors import PixelsError


def __getattr__(name: str) -> Any:
    # lazy: `import pixels` stays cheap for worker processes and the CLI's --help
    if name == "Catalog":
        from pixels.catalog import Catalog

        return Catalog
    if name == "CatalogStats":
        from pixels.engines.local import CatalogStats

        return CatalogStats
    if name == "PixelsError":
        from pixels.errors import PixelsError

        return PixelsError
    raise AttributeError(f"module 'pixels' has no attribute {name!r}")
