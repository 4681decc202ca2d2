"""What to catalog and how: the options a batch run and a watch share, defined once.

:func:`pixels.engines.local.run_catalog` (one pass over a source),
:class:`pixels.engines.watch.Watcher` (``pixels catalog --watch``) and the
``pixels catalog`` command all take a :class:`CatalogOptions`; a new option is
added here, and both engines and the CLI have it. Each also keeps accepting
the options as keyword arguments (``run_catalog(src, table, workers=0)``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from pixels.dicom.record import RecordOptions

__all__ = ["CatalogOptions"]


@dataclass(frozen=True)
class CatalogOptions:
    """How to catalog a source, for both engines (batch and ``--watch``).

    Attributes
    ----------
    workers : int, optional
        Worker processes; default: the number of CPUs. ``0`` runs in this process.
    pattern : str, optional
        Glob on file names (``*.dcm``), or on relative paths if it holds ``/``.
    recursive : bool
        Descend into sub-folders.
    expand_archives : bool
        Catalog the members of zip archives.
    extract_dir : str, optional
        Extract zip members there (safely) instead of reading them in memory.
    record : RecordOptions
        Per-file options (bulk threshold, storage options, archive limits, thumbnails).
    retry_errors : bool
        Read again files whose row has an error, even when unchanged.
    worker_memory : int or None
        Data memory each worker may use, in bytes; past it the file being read
        gets a ``MemoryError`` row. ``-1`` (default): ``PIXELS_WORKER_MEMORY`` or
        90% of RAM shared by the workers; ``None``: no limit.
    commit_rows : int, optional
        Commit when this many rows wait (default: the engine's, 2000 batch, 500 watching).
    commit_seconds : float, optional
        Commit when the oldest row waited this long (default: 30 s batch, 2 s watching).

    Examples
    --------
    >>> CatalogOptions(workers=0).with_(pattern="*.dcm").pattern
    '*.dcm'
    """

    workers: int | None = None
    pattern: str | None = None
    recursive: bool = True
    expand_archives: bool = True
    extract_dir: str | None = None
    record: RecordOptions = field(default_factory=RecordOptions)
    retry_errors: bool = False
    worker_memory: int | None = -1
    commit_rows: int | None = None
    commit_seconds: float | None = None

    def with_(self, **changes: Any) -> CatalogOptions:
        """These options with ``changes`` (field names; ``options=`` is ``record``'s old name).

        Raises
        ------
        TypeError
            For a name that is not an option, listing the valid ones.
        """
        if "options" in changes:
            record = changes.pop("options")
            changes["record"] = record if record is not None else RecordOptions()
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise TypeError(
                f"unknown catalog option(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}"
            )
        return dataclasses.replace(self, **changes) if changes else self

    @property
    def n_workers(self) -> int:
        """:attr:`workers`, the CPU count for None."""
        import os

        return (os.cpu_count() or 1) if self.workers is None else self.workers
