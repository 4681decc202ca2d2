"""Pixels: a SQL-queryable catalog of medical image files.

>>> from pixels import Catalog
>>> cat = Catalog("./catalog")                      # doctest: +SKIP
>>> cat.catalog("/data/dicom")                      # doctest: +SKIP
>>> cat.sql("SELECT Modality, count(*) FROM object_catalog GROUP BY 1")  # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
