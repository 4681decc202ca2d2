"""Pixels: a SQL-queryable catalog of medical image files.

>>> from pixels import Catalog
>>> cat = Catalog("./catalog")                      # doctest: +SKIP
>>> cat.catalog("/data/dicom")                      # doctest: +SKIP
>>> cat.sql("SELECT Modality, count(*) FROM object_catalog GROUP BY 1")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Catalog", "CatalogStats", "PathExtractor", "PixelsError", "TagExtractor", "__version__"]

if TYPE_CHECKING:
    from pixels.catalog import Catalog
    from pixels.engines.local import CatalogStats
    from pixels.errors import PixelsError
    from pixels.transformers import PathExtractor, TagExtractor
    from pixels.version import __version__


def __getattr__(name: str) -> Any:
    # lazy: `import pixels` stays cheap for worker processes and the CLI's --help
    if name == "Catalog":
        from pixels.catalog import Catalog

        return Catalog
    if name == "CatalogStats":
        from pixels.engines.local import CatalogStats

        return CatalogStats
    if name == "__version__":
        from pixels.version import __version__

        return __version__
    if name in ("PathExtractor", "TagExtractor"):  # top-level names of dbx.pixels
        import pixels.transformers

        return getattr(pixels.transformers, name)
    if name == "PixelsError":
        from pixels.errors import PixelsError

        return PixelsError
    raise AttributeError(f"module 'pixels' has no attribute {name!r}")
