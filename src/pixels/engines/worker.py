"""What a catalog worker process imports: the per-file work and nothing else.

Kept apart from :mod:`pixels.engines.local` so workers never load deltalake,
DuckDB or the writer (tens of MB each).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from pixels.dicom.record import RecordOptions, catalog_batch, thumbnail_rows
from pixels.sources.ref import FileRef


class NoPandas:
    """Import hook that refuses pandas (see :func:`init`)."""

    @staticmethod
    def find_spec(name: str, path: object = None, target: object = None) -> None:
        """Refuse ``pandas`` and its submodules; let every other import through."""
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("pandas is not loaded in pixels catalog processes")


def block_pandas() -> None:
    """Keep pandas out of this process.

    pyarrow imports pandas (~50 MB) on its first ``pa.array`` call only to test
    whether the input is a pandas object; catalog workers never build one.
    """
    if "pandas" not in sys.modules and not any(isinstance(f, NoPandas) for f in sys.meta_path):
        sys.meta_path.insert(0, NoPandas())


def init() -> None:
    """Process-pool initializer."""
    block_pandas()


def run(refs: Sequence[FileRef], options: RecordOptions) -> pa.RecordBatch:
    """Catalog one chunk of files (the task a worker runs)."""
    return catalog_batch(refs, options)


def thumbnails(rows: Sequence[dict[str, Any]], options: RecordOptions) -> list[dict[str, Any]]:
    """Thumbnail columns for a chunk of catalog rows (the task of a thumbnail pass)."""
    return thumbnail_rows(rows, options)
