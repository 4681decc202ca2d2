"""Each series' first row per data file, with the study/series part of its header.

The index's ``ffirst`` table holds, per data file and series, the row with the
smallest SOP Instance UID and ``qmeta``: the attributes QIDO-RS returns at the
study and series levels (:data:`QMETA_TAGS`), with ``StudyID`` and
``ReferringPhysicianName``. Computing it parses one ``meta`` per series and file;
the rows of a local table's data file are saved next to the table
(``_pixels/index/{file}.v1.arrow``) so that an index built again skips that.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import pyarrow as pa

from pixels.dicom.qmeta import QMETA_TAGS, qmeta

__all__ = [
    "FFIRST",
    "FFIRST_SCHEMA",
    "QMETA_TAGS",
    "Sidecars",
    "firsts_table",
    "parsed_firsts_table",
    "qmeta",
]


#: Columns of ``ffirst``.
FFIRST = ("fid", "SeriesInstanceUID", "sop", "path", "qmeta", "StudyID", "ReferringPhysicianName")
FFIRST_SCHEMA = pa.schema(
    [pa.field("fid", pa.int32())] + [pa.field(n, pa.string()) for n in FFIRST[1:]]
)
#: Version of the saved ``ffirst`` rows of a data file (``_pixels/index/{file}.v1.arrow``).
_SIDECAR_VERSION = "v1"


def firsts_table(rows: list[tuple[Any, ...]], metas: dict[int, str | None]) -> pa.Table:
    """``ffirst`` rows from ``(fid, series, sop, path, ...)`` and the ``meta`` of each (by position)."""
    return parsed_firsts_table(rows, {i: qmeta(m) for i, m in metas.items()})


def parsed_firsts_table(
    rows: list[tuple[Any, ...]], parsed: dict[int, tuple[str | None, str | None, str | None]]
) -> pa.Table:
    """``ffirst`` rows from ``(fid, series, sop, path, ...)`` and the :func:`qmeta` of
    each one's header (by position; none: no attributes)."""
    out: dict[str, list[Any]] = {k: [] for k in FFIRST}
    none = (None, None, None)
    for i, (f, series, sop, path, *_) in enumerate(rows):
        for k, v in zip(FFIRST, (f, series, sop, path, *parsed.get(i, none)), strict=True):
            out[k].append(v)
    return pa.table(out, schema=FFIRST_SCHEMA)


class Sidecars:
    """The saved ``ffirst`` rows of a local table's data files (in ``folder``; None: none)."""

    def __init__(self, folder: str | None):
        self.folder = folder

    def _path(self, uri: str) -> str | None:
        if self.folder is None:
            return None
        name = os.path.basename(uri.rstrip("/"))
        return os.path.join(self.folder, f"{name}.{_SIDECAR_VERSION}.arrow")

    def get(self, uri: str, fid: int) -> pa.Table | None:
        """The ``ffirst`` rows of data file ``uri`` saved earlier, as file ``fid`` (None: none)."""
        path = self._path(uri)
        if path is None or not os.path.exists(path):
            return None
        try:
            with pa.memory_map(path) as src:
                table = pa.ipc.open_file(src).read_all()
        except (OSError, pa.ArrowInvalid):
            return None
        if not table.schema.equals(FFIRST_SCHEMA.remove(0)):
            return None
        return table.add_column(
            0, FFIRST_SCHEMA.field(0), pa.array([fid] * table.num_rows, pa.int32())
        )

    def put(self, uri: str, table: pa.Table) -> None:
        """Save a data file's ``ffirst`` rows (best effort: a read-only table is fine)."""
        path = self._path(uri)
        if path is None:
            return
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"
            with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_file(sink, FFIRST_SCHEMA.remove(0)) as w:
                w.write_table(table.remove_column(0))
            os.replace(tmp, path)
        except OSError:
            return

    def drop(self, uris: list[str]) -> None:
        """Forget the saved rows of data files removed from the table."""
        for uri in uris:
            path = self._path(uri)
            if path is not None:
                with contextlib.suppress(OSError):
                    os.remove(path)
