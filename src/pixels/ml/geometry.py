"""Slice geometry of a series, from catalog metadata alone (no pixel data read).

A series is a list of 2-D slices: one per single-frame instance, one per frame of
an enhanced multi-frame instance (positions from the per-frame functional groups
(5200,9230), orientation and spacing from the per-frame or shared (5200,9229)
groups). :func:`plan_series` checks that they form one regular volume and sorts
them along the slice normal:

- orientation (0020,0037) the same on every slice (to 1e-4);
- rows, columns and pixel spacing (0028,0030) the same on every slice;
- positions (0020,0032) on one line (a gantry tilt is kept: the third axis of the
  affine is the real step between slices, not the normal);
- no two slices at the same position (several phases or echoes in one series);
- steps between neighbours equal to within 5 % + 0.01 mm (a missing slice, a
  gap or mixed slice spacings is reported, never stacked).

Any violation raises :class:`~pixels.errors.SeriesError` naming the series, the
reason and, where it is one file's fault, that file.

The volume's voxel ``(i, j, k)`` is column ``i`` and row ``j`` of slice ``k``
(MONAI/ITK order: an array ``[X, Y, Z]``). Its position in patient coordinates
(LPS, DICOM) is ``origin + i * dc * row_dir + j * dr * col_dir + k * step`` where
``row_dir``/``col_dir`` are the two halves of (0020,0037) and ``dr, dc`` the
two values of (0028,0030). :attr:`SeriesPlan.affine` is that map in RAS (the
convention of MONAI and NIfTI: ``diag(-1, -1, 1, 1) @ affine_lps``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pixels.errors import SeriesError

__all__ = ["LPS_TO_RAS", "SeriesPlan", "SliceRef", "plan_series", "slices_of_row"]

#: Multiply an LPS affine by this (on the left) to get the RAS affine.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

#: How far orientation cosines may differ between slices.
ORIENTATION_TOL = 1e-4
#: Relative and absolute tolerance on the step between slices.
STEP_RTOL = 0.05
STEP_ATOL_MM = 0.01


@dataclass(frozen=True, slots=True)
class SliceRef:
    """One 2-D slice: a frame of a file and where it lies in the patient.

    Attributes
    ----------
    path : str
        The file (its catalog ``path``).
    frame : int
        Frame in that file (from 0).
    row : int
        Index of the file's row in the rows given to :func:`plan_series`.
    position : tuple of 3 float or None
        Image Position (Patient) of the first pixel, mm, LPS.
    orientation : tuple of 6 float or None
        Image Orientation (Patient): row direction then column direction.
    pixel_spacing : tuple of 2 float or None
        Pixel Spacing: between rows, then between columns (mm).
    rows, columns : int
        Frame size.
    thickness : float or None
        Slice Thickness (0018,0050).
    sop_uid : str or None
        SOP Instance UID (0008,0018) of the file (the same instance twice is named so).
    """

    path: str
    frame: int
    row: int
    position: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None
    pixel_spacing: tuple[float, float] | None
    rows: int
    columns: int
    thickness: float | None = None
    sop_uid: str | None = None


@dataclass(frozen=True)
class SeriesPlan:
    """The slices of one series in volume order, and the volume's geometry.

    Attributes
    ----------
    series_uid : str
        Series Instance UID.
    slices : tuple of SliceRef
        Sorted along the slice normal (increasing ``k``).
    shape : tuple of 3 int
        ``(X, Y, Z)``: columns, rows, slices.
    spacing : tuple of 3 float
        Voxel size in mm along ``i``, ``j``, ``k``.
    affine : numpy.ndarray
        4x4 voxel -> patient RAS (mm).
    warnings : list of str
        What was assumed (a single slice's thickness taken as its spacing, ...).
    """

    series_uid: str
    slices: tuple[SliceRef, ...]
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    affine: np.ndarray
    warnings: list[str] = field(default_factory=list)

    @property
    def affine_lps(self) -> np.ndarray:
        """The affine in DICOM's LPS patient coordinates."""
        return LPS_TO_RAS @ self.affine

    @property
    def paths(self) -> list[str]:
        """The files of the series, each once, in volume order of their first slice."""
        return list(dict.fromkeys(s.path for s in self.slices))


# --------------------------------------------------------------------------- JSON helpers


def _values(meta: Mapping[str, Any] | None, tag: str) -> list[Any]:
    el = meta.get(tag) if meta else None
    if not isinstance(el, dict):
        return []
    return list(el.get("Value") or [])


def _item(meta: Mapping[str, Any] | None, tag: str, index: int = 0) -> Mapping[str, Any] | None:
    v = _values(meta, tag)
    return v[index] if len(v) > index and isinstance(v[index], dict) else None


def _floats(meta: Mapping[str, Any] | None, tag: str, n: int) -> tuple[float, ...] | None:
    v = _values(meta, tag)
    if len(v) != n:
        return None
    try:
        out = tuple(float(x) for x in v)
    except (TypeError, ValueError):
        return None
    return out if all(np.isfinite(out)) else None


def _int(meta: Mapping[str, Any], tag: str, default: int) -> int:
    v = _values(meta, tag)
    try:
        return int(v[0]) if v else default
    except (TypeError, ValueError):
        return default


def functional(meta: Mapping[str, Any], frame: int, seq: str) -> Mapping[str, Any] | None:
    """Item of functional group ``seq`` for ``frame``: per-frame (5200,9230), else shared (5200,9229)."""
    per = _item(meta, "52009230", frame)
    got = _item(per, seq) if per is not None else None
    if got is not None:
        return got
    shared = _item(meta, "52009229")
    return _item(shared, seq) if shared is not None else None


def slices_of_row(meta: Mapping[str, Any] | str, path: str, row: int = 0) -> list[SliceRef]:
    """The slices of one file (one per frame) from its DICOM JSON.

    Parameters
    ----------
    meta : dict or str
        The catalog's ``meta`` (DICOM JSON).
    path : str
        The file, recorded in the slices and named in errors.
    row : int
        Recorded in the slices (:attr:`SliceRef.row`).
    """
    js = json.loads(meta) if isinstance(meta, str) else meta
    rows = _int(js, "00280010", 0)
    cols = _int(js, "00280011", 0)
    n = max(_int(js, "00280008", 1), 1)
    enhanced = "52009229" in js or "52009230" in js
    sop_uid = next((str(v) for v in _values(js, "00080018")), None)
    out = []
    for f in range(n):
        if enhanced:
            pos_item = functional(js, f, "00209113")
            ori_item = functional(js, f, "00209116")
            pm_item = functional(js, f, "00289110")
            position = _floats(pos_item, "00200032", 3)
            orientation = _floats(ori_item, "00200037", 6)
            spacing = _floats(pm_item, "00280030", 2)
            thick = _floats(pm_item, "00180050", 1)
        else:
            position = _floats(js, "00200032", 3)
            orientation = _floats(js, "00200037", 6)
            spacing = _floats(js, "00280030", 2)
            thick = _floats(js, "00180050", 1)
        out.append(
            SliceRef(
                path=path,
                frame=f,
                row=row,
                position=position,  # type: ignore[arg-type]
                orientation=orientation,
                pixel_spacing=spacing,  # type: ignore[arg-type]
                rows=rows,
                columns=cols,
                thickness=thick[0] if thick else None,
                sop_uid=sop_uid,
            )
        )
    return out


# --------------------------------------------------------------------------- planning


def _fail(series: str, reason: str, path: str | None = None) -> SeriesError:
    return SeriesError(f"series {series}: {reason}", path)


def plan_series(series_uid: str, slices: Sequence[SliceRef], *, min_slices: int = 1) -> SeriesPlan:
    """Check that ``slices`` form one regular volume and sort them along the normal.

    Parameters
    ----------
    series_uid : str
        Named in errors and recorded in the plan.
    slices : sequence of SliceRef
        In any order (file names, instance numbers do not matter).
    min_slices : int
        Fewer slices than this is an error (a model that needs a volume).

    Raises
    ------
    SeriesError
        The reason, naming the series and, where one file is at fault, that file.
    """
    if not slices:
        raise _fail(series_uid, "no image slices")
    if len(slices) < min_slices:
        raise _fail(series_uid, f"{len(slices)} slice(s), fewer than the {min_slices} required")
    first = slices[0]
    for s in slices:
        if s.rows <= 0 or s.columns <= 0:
            raise _fail(series_uid, "no Rows (0028,0010) / Columns (0028,0011)", s.path)
        if s.orientation is None:
            raise _fail(series_uid, "no Image Orientation (Patient) (0020,0037)", s.path)
        if s.position is None:
            raise _fail(series_uid, "no Image Position (Patient) (0020,0032)", s.path)
        if s.pixel_spacing is None:
            raise _fail(series_uid, "no Pixel Spacing (0028,0030)", s.path)
    orientation, pixel_spacing = first.orientation, first.pixel_spacing
    assert orientation is not None and pixel_spacing is not None
    for s in slices:
        assert s.orientation is not None and s.pixel_spacing is not None
        if (s.rows, s.columns) != (first.rows, first.columns):
            raise _fail(
                series_uid,
                f"mixed slice sizes: {s.rows}x{s.columns} (Rows (0028,0010) x Columns "
                f"(0028,0011)) in this file, "
                f"{first.rows}x{first.columns} in {first.path}",
                s.path,
            )
        if max(abs(a - b) for a, b in zip(s.orientation, orientation, strict=True)) > (
            ORIENTATION_TOL
        ):
            raise _fail(
                series_uid,
                f"inconsistent orientation (0020,0037): {list(s.orientation)} here, "
                f"{list(orientation)} in {first.path}",
                s.path,
            )
        if not np.allclose(s.pixel_spacing, pixel_spacing, rtol=1e-4, atol=1e-6):
            raise _fail(
                series_uid,
                f"mixed pixel spacing (0028,0030): {list(s.pixel_spacing)} here, "
                f"{list(pixel_spacing)} in {first.path}",
                s.path,
            )
    row_dir = np.asarray(orientation[:3], dtype=np.float64)
    col_dir = np.asarray(orientation[3:], dtype=np.float64)
    if not (
        abs(np.linalg.norm(row_dir) - 1) < 1e-3
        and abs(np.linalg.norm(col_dir) - 1) < 1e-3
        and abs(row_dir @ col_dir) < 1e-3
    ):
        raise _fail(
            series_uid,
            f"Image Orientation (Patient) (0020,0037) {list(orientation)} is not two "
            "orthogonal unit vectors",
            first.path,
        )
    normal = np.cross(row_dir, col_dir)
    positions = np.asarray([s.position for s in slices], dtype=np.float64)
    dist = positions @ normal
    order = np.argsort(dist, kind="stable")
    ordered = [slices[i] for i in order]
    pos = positions[order]
    d = dist[order]
    dr, dc = (float(v) for v in pixel_spacing)
    warnings: list[str] = []
    if len(ordered) == 1:
        dz = first.thickness if first.thickness and first.thickness > 0 else 1.0
        if not first.thickness:
            warnings.append("one slice without Slice Thickness (0018,0050): spacing 1 mm assumed")
        step = normal * dz
    else:
        gaps = np.diff(d)
        dup = np.flatnonzero(gaps < STEP_ATOL_MM)
        if dup.size:
            a, b = ordered[dup[0]], ordered[dup[0] + 1]
            if a.sop_uid is not None and (a.sop_uid, a.frame) == (b.sop_uid, b.frame):
                raise _fail(
                    series_uid,
                    f"the same instance twice, SOP Instance UID (0008,0018) {a.sop_uid}: "
                    f"{a.path} and {b.path} (a copy cataloged again, or received again "
                    "over DICOMweb or DIMSE into the storage root): keep one, removing "
                    "the other's file and row (Catalog(table).table.remove_paths([path]))",
                    b.path,
                )
            raise _fail(
                series_uid,
                f"two slices at the same position {d[dup[0]]:.3f} mm along the normal "
                f"({a.path} frame {a.frame} and {b.path} frame {b.frame}): several "
                "acquisitions, phases or echoes in one series",
                b.path,
            )
        median = float(np.median(gaps))
        bad = np.flatnonzero(np.abs(gaps - median) > STEP_RTOL * median + STEP_ATOL_MM)
        if bad.size:
            k = int(bad[0])
            raise _fail(
                series_uid,
                f"irregular slice spacing: {gaps[k]:.3f} mm between {ordered[k].path} and "
                f"{ordered[k + 1].path} where the series' usual step is {median:.3f} mm "
                f"({bad.size} irregular step(s): a missing slice, a gap or mixed spacing)",
                ordered[k + 1].path,
            )
        step = (pos[-1] - pos[0]) / (len(ordered) - 1)
        expected = pos[0] + np.outer(np.arange(len(ordered)), step)
        off = np.linalg.norm(pos - expected, axis=1)
        worst = int(np.argmax(off))
        if off[worst] > STEP_RTOL * median + 0.1:
            raise _fail(
                series_uid,
                f"slice positions (0020,0032) are not on one line: {ordered[worst].path} "
                f"is {off[worst]:.2f} mm off",
                ordered[worst].path,
            )
        dz = float(np.linalg.norm(step))
    lps = np.eye(4)
    lps[:3, 0] = row_dir * dc
    lps[:3, 1] = col_dir * dr
    lps[:3, 2] = step
    lps[:3, 3] = pos[0]
    return SeriesPlan(
        series_uid=series_uid,
        slices=tuple(ordered),
        shape=(first.columns, first.rows, len(ordered)),
        spacing=(dc, dr, float(dz)),
        affine=LPS_TO_RAS @ lps,
        warnings=warnings,
    )
