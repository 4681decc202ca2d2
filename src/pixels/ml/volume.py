"""Series -> volume: query the catalog once, read each slice through the frame index.

:func:`select_series` runs one SQL query over the catalog and groups the rows
by series; :func:`plan_series` (from :mod:`pixels.ml.geometry`) checks and sorts
the slices from metadata alone; :func:`read_volume` then opens each file once
and reads only its frames (one ranged read per frame, or per fragment of a
compressed frame) at the offsets of the row's frame index, decodes them with the
codec registry (:func:`pixels.dicom.decode.decode_frame`) and applies the
modality LUT (:func:`pixels.dicom.display.modality_lut`: Hounsfield units for
CT). Nothing parses a file again; a file whose row has no frame index (deflated
transfer syntax) is the one exception and is decoded whole.

The volume is ``float32`` ``[X, Y, Z]`` (columns, rows, slices), allocated once
and filled slice by slice (each frame written contiguously; the array is the
``[X, Y, Z]`` view of that memory), linear rescales computed in ``float32`` in
place: peak memory is the volume plus one decoded frame.

Examples
--------
>>> from pixels import Catalog                                   # doctest: +SKIP
>>> from pixels.ml.volume import select_series, read_volume      # doctest: +SKIP
>>> found = select_series(Catalog("./catalog"), "Modality = 'CT'")  # doctest: +SKIP
>>> vol = read_volume(found.series[0])                           # doctest: +SKIP
>>> vol.array.shape, vol.plan.spacing                            # doctest: +SKIP
((512, 512, 40), (0.48, 0.48, 5.0))
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from pixels.dicom.display import modality_lut
from pixels.dicom.notices import on_behalf
from pixels.errors import PixelsError, QueryError, SeriesError
from pixels.ml.geometry import SeriesPlan, SliceRef, plan_series, slices_of_row
from pixels.row_pixels import PIXEL_COLUMNS, RowPixels

if TYPE_CHECKING:
    from pixels.catalog import Catalog

__all__ = [
    "ROW_COLUMNS",
    "Selection",
    "SeriesRows",
    "Volume",
    "default_threads",
    "read_volume",
    "select_rows",
    "select_series",
    "to_modality",
]

#: Catalog columns the datasets read (the query selects only these): what reading a row's
#: pixels needs (:data:`pixels.row_pixels.PIXEL_COLUMNS`) and the series keys.
ROW_COLUMNS = (
    *PIXEL_COLUMNS,
    "error",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPClassUID",
    "Modality",
    "InstanceNumber",
    "Rows",
    "Columns",
    "NumberOfFrames",
)

#: Columns a ``where`` clause may use besides the catalog's own: read from ``meta``.
DERIVED_COLUMNS = {
    "SliceThickness": "00180050",
    "SpacingBetweenSlices": "00180088",
    "KVP": "00180060",
    "ConvolutionKernel": "00181210",
    "ImageType": "00080008",
}


def _derived_sql() -> str:
    parts = []
    for name, tag in DERIVED_COLUMNS.items():
        expr = f"json_extract_string(meta, '$.\"{tag}\".Value[0]')"
        if name in ("SliceThickness", "SpacingBetweenSlices", "KVP"):
            expr = f"TRY_CAST({expr} AS DOUBLE)"
        parts.append(f"{expr} AS {name}")
    return ", ".join(parts)


def select_rows(
    catalog: Catalog, where: str | None = None, *, columns: Sequence[str] = ROW_COLUMNS
) -> list[dict[str, Any]]:
    """Catalog rows matching ``where`` (one DuckDB query), as dicts.

    ``where`` may also use the columns of :data:`DERIVED_COLUMNS`
    (``SliceThickness <= 2.5``), read from each row's ``meta``.

    Raises
    ------
    QueryError
        DuckDB's message for an invalid ``where``.
    """
    cols = ", ".join(f'"{c}"' for c in columns)
    cond = f"WHERE ({where})" if where and where.strip() else ""
    sql = (
        f"SELECT {cols} FROM (SELECT *, {_derived_sql()} FROM object_catalog) {cond} "
        "ORDER BY SeriesInstanceUID, path"
    )
    try:
        return catalog.sql_arrow(sql).to_pylist()
    except QueryError as e:
        raise QueryError(f"where {where!r}: {e}") from e


@dataclass
class SeriesRows:
    """The catalog rows of one series and its plan (None when it has a problem).

    Attributes
    ----------
    series_uid : str
        Series Instance UID.
    rows : list of dict
        Catalog rows (:data:`ROW_COLUMNS`) of its image instances.
    plan : SeriesPlan or None
        Its geometry; None when ``problem`` is set.
    problem : str or None
        Why it cannot be one volume (naming the file), else None.
    """

    series_uid: str
    rows: list[dict[str, Any]]
    plan: SeriesPlan | None = None
    problem: str | None = None

    @property
    def first(self) -> dict[str, Any]:
        """The first row (for study-level attributes)."""
        return self.rows[0]


@dataclass
class Selection:
    """Series found by :func:`select_series`: usable ones and the ones with a problem."""

    series: list[SeriesRows] = field(default_factory=list)
    problems: list[SeriesRows] = field(default_factory=list)


def _is_image_row(row: Mapping[str, Any]) -> bool:
    return bool(row.get("error")) or bool(row.get("Rows"))


def plan_rows(series_uid: str, rows: list[dict[str, Any]], *, min_slices: int = 1) -> SeriesRows:
    """Plan one series from its catalog rows; a problem is recorded, not raised."""
    found = SeriesRows(series_uid, rows)
    bad = [r for r in rows if r.get("error")]
    if bad:
        found.problem = (
            f"series {series_uid}: {bad[0]['path']} could not be cataloged: {bad[0]['error']}"
        )
        return found
    slices: list[SliceRef] = []
    for i, r in enumerate(rows):
        try:
            slices.extend(slices_of_row(r["meta"], r["path"], i))
        except (ValueError, TypeError) as e:
            found.problem = f"series {series_uid}: {r['path']}: unreadable meta: {e}"
            return found
    try:
        found.plan = plan_series(series_uid, slices, min_slices=min_slices)
    except SeriesError as e:
        found.problem = str(e)
    return found


def select_series(catalog: Catalog, where: str | None = None, *, min_slices: int = 1) -> Selection:
    """Group the image rows matching ``where`` by series and plan each one.

    Rows that are not images (no Rows, no error) are left out. A series whose
    rows carry a catalog error, or whose slices do not form one regular volume,
    goes to :attr:`Selection.problems` with the reason.
    """
    rows = [r for r in select_rows(catalog, where) if _is_image_row(r)]
    groups: dict[str, list[dict[str, Any]]] = {}
    orphans = []
    for r in rows:
        uid = r.get("SeriesInstanceUID")
        if uid:
            groups.setdefault(uid, []).append(r)
        else:
            orphans.append(r)
    out = Selection()
    for uid, members in groups.items():
        found = plan_rows(uid, members, min_slices=min_slices)
        (out.problems if found.problem else out.series).append(found)
    for r in orphans:
        reason = r.get("error") or "no Series Instance UID (0020,000E)"
        out.problems.append(SeriesRows("", [r], problem=f"{r['path']}: {reason}"))
    return out


@dataclass
class Volume:
    """One series as a volume.

    Attributes
    ----------
    array : numpy.ndarray
        ``float32`` ``[X, Y, Z]`` in modality units (Hounsfield units for CT): a view of
        slice-contiguous memory (Fortran order), like the arrays MONAI's readers return.
    plan : SeriesPlan
        Geometry: :attr:`SeriesPlan.affine` (RAS), spacing, sorted slices.
    rows : list of dict
        The catalog rows of the series.
    """

    array: np.ndarray
    plan: SeriesPlan
    rows: list[dict[str, Any]]

    @property
    def affine(self) -> np.ndarray:
        """Voxel -> RAS mm."""
        return self.plan.affine

    @property
    def first(self) -> dict[str, Any]:
        """First row in volume order."""
        return self.rows[self.plan.slices[0].row]


def linear_rescale(meta: Mapping[str, Any], frame: int) -> tuple[float, float] | None:
    """``(slope, intercept)`` when the modality LUT is linear (no LUT sequence), else None.

    The same choice as :func:`pixels.dicom.display.modality_lut`: the frame's Pixel Value
    Transformation (functional groups), else Rescale Slope/Intercept.
    """
    from pixels.ml.geometry import functional

    pvt = functional(meta, frame, "00289145")
    if pvt is None and meta.get("00283000"):
        return None
    src = pvt if pvt is not None else meta

    def first(tag: str, default: float) -> float:
        values = (src.get(tag) or {}).get("Value") or [None]
        try:
            return float(values[0]) if values[0] is not None else default
        except (TypeError, ValueError):
            return default

    return first("00281053", 1.0) or 1.0, first("00281052", 0.0)


def to_modality(arr: np.ndarray, meta: Mapping[str, Any], frame: int, slot: np.ndarray) -> None:
    """Write ``arr``'s modality values into ``slot`` (a ``float32`` ``(rows, cols)`` array).

    A linear rescale is computed in ``float32`` in place; a Modality LUT Sequence
    goes through :func:`pixels.dicom.display.modality_lut`.
    """
    linear = linear_rescale(meta, frame)
    if linear is None:
        slot[...] = modality_lut(arr, meta, frame=frame)
        return
    slope, intercept = linear
    if slope == 1.0:  # one pass: cast and add
        np.add(arr, np.float32(intercept), out=slot, casting="unsafe")
        return
    np.multiply(arr, np.float32(slope), out=slot, casting="unsafe")
    if intercept != 0.0:
        slot += np.float32(intercept)


def _read_file_slices(
    row: Mapping[str, Any],
    slices: list[tuple[int, SliceRef]],
    out: np.ndarray,
    storage_options: dict[str, Any] | None,
    threaded: bool,
) -> None:
    px = RowPixels.of(row)
    if px.info.samples_per_pixel != 1:
        raise PixelsError(f"{px.info.samples_per_pixel} samples per pixel: not a greyscale volume")
    if px.index is not None and px.index.bit_offsets is not None:
        raise PixelsError("1-bit pixel data is not a greyscale volume")
    where = {s.frame: (k, s) for k, s in slices}
    frames = px.frames(
        [s.frame for _, s in slices], storage_options=storage_options, threaded=threaded
    )
    for frame, arr in frames:
        k, s = where[frame]
        if arr.shape[:2] != (s.rows, s.columns):
            raise PixelsError(
                f"frame {s.frame} decodes to {arr.shape[0]}x{arr.shape[1]}, "
                f"the header says {s.rows}x{s.columns}"
            )
        to_modality(arr, px.meta, s.frame, out[k])


def default_threads() -> int:
    """Threads :func:`read_volume` decodes with by default: the CPUs this process may use
    (at most 8), or 1 inside a ``torch.utils.data.DataLoader`` worker (the workers are the
    parallelism there)."""
    # asked of the module that holds the worker state, only when it is fully imported: torch
    # may be half-imported by another thread (a server loading models in the background)
    worker = sys.modules.get("torch.utils.data._utils.worker")
    get_info = getattr(worker, "get_worker_info", None)
    if callable(get_info) and get_info() is not None:
        return 1
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


def read_volume(
    series: SeriesRows,
    *,
    storage_options: dict[str, Any] | None = None,
    threads: int | None = None,
) -> Volume:
    """Read the volume of a planned series.

    Parameters
    ----------
    series : SeriesRows
        From :func:`select_series` (its ``plan`` set).
    storage_options : dict, optional
        fsspec options for files on object stores.
    threads : int, optional
        Files read and decoded at once (default :func:`default_threads`). Each thread
        decodes into its own slices of the one output array; JPEG 2000 frames then go to
        a codec that releases the GIL (the system openjpeg), so they decode in parallel.

    Raises
    ------
    SeriesError
        The series has a problem, or a file cannot be read or decoded (the message
        names the series, the file and the reason).
    """
    plan = series.plan
    if plan is None:
        raise SeriesError(series.problem or f"series {series.series_uid}: not planned")
    # slices contiguous in memory (each frame written in one pass); the volume is the
    # [X, Y, Z] view of it, as MONAI's readers return
    x, y, z = plan.shape
    out = np.empty((z, y, x), dtype=np.float32)
    by_row: dict[int, list[tuple[int, SliceRef]]] = {}
    for k, s in enumerate(plan.slices):
        by_row.setdefault(s.row, []).append((k, s))
    n = max(1, min(threads or default_threads(), len(by_row)))

    def read(item: tuple[int, list[tuple[int, SliceRef]]]) -> None:
        row = series.rows[item[0]]
        try:
            _read_file_slices(row, item[1], out, storage_options, n > 1)
        except Exception as e:
            reason = e.reason if isinstance(e, PixelsError) else f"{type(e).__name__}: {e}"
            raise SeriesError(
                f"series {plan.series_uid}: cannot read {row['path']}: {reason}"
            ) from e

    if n == 1:
        for item in by_row.items():
            read(item)
    else:
        with ThreadPoolExecutor(n, thread_name_prefix="pixels-volume") as pool:
            # (a file's warnings raised in the pool are its own: kept_warnings keeps them)
            for _ in pool.map(on_behalf(read), by_row.items()):  # the first error, in file order
                pass
    return Volume(out.transpose(2, 1, 0), plan, series.rows)
