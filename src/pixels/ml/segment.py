"""Batch segmentation: every series matching a query -> one DICOM SEG per series and model, cataloged.

:func:`segment_one` is the per-series work (pure: rows in, a SEG file and a
:class:`SeriesResult` out) that both engines call: the local processes of
:func:`run_segment` (``pixels segment``) and the Spark tasks of
:class:`pixels.ml.spark.SegmentationTransformer`.

:func:`run_segment`:

1. one query selects the series (SEG instances themselves are left out) and
   plans them from metadata; a series that cannot be one volume is an error
   result naming it and the reason;
2. series that already have a SEG by this model in the catalog are skipped
   unless ``force`` (:func:`pixels.ml.seg.segmentations`);
3. worker processes read, segment and write each series (a series whose
   modality or size the model refuses, or that fails, is an error result; the
   run goes on);
4. each SEG is cataloged as soon as it is written, so SQL and DICOMweb see it at
   once. A run killed at any point loses nothing: a SEG written but not yet
   cataloged is written again to the same path (its UIDs are derived from the
   series and the model) and cataloged by the next run; no SEG is ever doubled.

GPU: models built on torch use CUDA when ``torch.cuda.is_available()``.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from pixels.dicom.notices import kept_warnings, tally_warnings
from pixels.errors import PixelsError
from pixels.ml.models import Model, check_input, get_model
from pixels.ml.seg import SEG_SOP_CLASSES, build_seg, default_root, segmentations, write_seg
from pixels.ml.volume import SeriesRows, read_volume, select_series

if TYPE_CHECKING:
    from pixels.catalog import Catalog

__all__ = ["SegmentStats", "SeriesResult", "run_segment", "segment_one"]


@dataclass
class SeriesResult:
    """What happened to one series.

    ``status`` is ``segmented``, ``skipped`` (it has a SEG by this model) or
    ``error`` (``message`` names the series and the reason). ``volumes_ml``: the
    volume of each segment in mL. ``warnings``: what pydicom and highdicom warned about
    while reading the series and writing its SEG (kept, not printed).
    """

    series_uid: str
    status: str
    path: str | None = None
    message: str | None = None
    seconds: float = 0.0
    volumes_ml: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass
class SegmentStats:
    """What a segmentation run did."""

    series: int = 0
    segmented: int = 0
    skipped: int = 0
    errors: int = 0
    seconds: float = 0.0
    results: list[SeriesResult] = field(default_factory=list)
    warned: int = 0
    """Series with :attr:`SeriesResult.warnings`."""
    warning_kinds: dict[str, list[Any]] = field(default_factory=dict)
    """Kind of warning -> ``[series, example series]`` (:func:`~pixels.dicom.notices.tally_warnings`)."""

    def add(self, r: SeriesResult) -> None:
        """Count one result."""
        self.results.append(r)
        if r.warnings:
            self.warned += 1
            tally_warnings(self.warning_kinds, f"series {r.series_uid}", r.warnings)
        if r.status == "segmented":
            self.segmented += 1
        elif r.status == "skipped":
            self.skipped += 1
        else:
            self.errors += 1


_MODELS: dict[str, Model] = {}


def _model(spec: str) -> Model:
    """One model object per process and spec (bundles load their weights once)."""
    if spec not in _MODELS:
        _MODELS[spec] = get_model(spec)
    return _MODELS[spec]


def segment_one(
    series: SeriesRows,
    model: str | Model,
    root: str,
    *,
    labelmap: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> SeriesResult:
    """Read, segment and write the SEG of one series; never raises for bad input.

    Parameters
    ----------
    series : SeriesRows
        From :func:`pixels.ml.volume.select_series` (a ``problem`` becomes an error result).
    model : str or Model
        A registry name / ``bundle:PATH`` (loaded once per process) or a model object.
    root : str
        Folder or URL the SEG goes under.
    labelmap : bool
        Label Map SEG instead of binary.
    storage_options : dict, optional
        fsspec options for the source files and ``root``.
    """
    t0 = time.perf_counter()
    uid = series.series_uid
    kept: list[str] = []
    try:
        # pydicom's and highdicom's warnings (a source value invalid for its VR, a
        # one-part person name...) name no series: kept for the run's summary
        with kept_warnings() as kept:
            m = _model(model) if isinstance(model, str) else model
            if series.plan is None:
                raise PixelsError(series.problem or "not planned")
            refused = check_input(m, series.first.get("Modality"), len(series.plan.slices))
            if refused:
                raise PixelsError(f"series {uid}: {refused}")
            vol = read_volume(series, storage_options=storage_options)
            predict = getattr(m, "predict", None)  # models that use the orientation (bundles)
            labels = np.asarray(
                predict(vol.array, vol.plan.affine)
                if callable(predict)
                else m(vol.array, vol.plan.spacing)
            )
            seg = build_seg(vol, labels, m, labelmap=labelmap)
            path = write_seg(seg, root, storage_options)
            volumes = _volumes_ml(m, labels, float(np.prod(vol.plan.spacing)) / 1000.0)
    except Exception as e:
        message = str(e)
        if uid and uid not in message:
            message = f"series {uid}: {message}"
        return SeriesResult(
            uid, "error", message=message, seconds=time.perf_counter() - t0, warnings=list(kept)
        )
    return SeriesResult(
        uid,
        "segmented",
        path,
        seconds=time.perf_counter() - t0,
        volumes_ml=volumes,
        warnings=list(kept),
    )


def _volumes_ml(model: Model, labels: np.ndarray, voxel_ml: float) -> dict[str, float]:
    """Millilitres of each segment of ``model`` in ``labels``: one histogram of the labels
    (unsigned 8/16-bit maps), not one pass over the volume per segment."""
    if labels.dtype in (np.uint8, np.uint16):
        counts = np.bincount(labels.ravel(order="K"))
        voxels = {
            s.name: int(sum(counts[v] for v in (s.includes or (s.label,)) if 0 <= v < counts.size))
            for s in model.segments
        }
    else:
        voxels = {s.name: int(s.mask(labels).sum()) for s in model.segments}
    return {name: round(n * voxel_ml, 3) for name, n in voxels.items()}


def _where_images(where: str | None) -> str:
    classes = ", ".join(f"'{c}'" for c in SEG_SOP_CLASSES)
    cond = f"(SOPClassUID IS NULL OR SOPClassUID NOT IN ({classes}))"
    return f"{cond} AND ({where})" if where and where.strip() else cond


def _pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


def _results(
    todo: list[SeriesRows],
    model: str | Model,
    root: str,
    labelmap: bool,
    storage_options: dict[str, Any] | None,
    workers: int,
) -> Iterator[SeriesResult]:
    if workers <= 0 or len(todo) <= 1 or not isinstance(model, str):
        for s in todo:
            yield segment_one(s, model, root, labelmap=labelmap, storage_options=storage_options)
        return
    with _pool(min(workers, len(todo))) as pool:
        pending: set[Future[SeriesResult]] = set()
        queue: Iterable[SeriesRows] = iter(todo)
        for s in queue:
            pending.add(
                pool.submit(
                    segment_one, s, model, root, labelmap=labelmap, storage_options=storage_options
                )
            )
            if len(pending) >= 2 * workers:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (f.result() for f in done)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            yield from (f.result() for f in done)


def run_segment(
    catalog: Catalog,
    model: str | Model = "ct-tissue",
    *,
    where: str | None = None,
    force: bool = False,
    workers: int | None = None,
    output: str | None = None,
    labelmap: bool = False,
    storage_options: dict[str, Any] | None = None,
    progress: Callable[[SegmentStats, SeriesResult], None] | None = None,
) -> SegmentStats:
    """Segment every series matching ``where`` with ``model``; write and catalog one SEG each.

    Parameters
    ----------
    catalog : Catalog
        The catalog; the SEGs are added to it.
    model : str or Model
        ``ct-tissue``, ``bundle:PATH``, a registered name, or a model object.
    where : str, optional
        SQL predicate selecting the source rows (``"Modality = 'CT'"``).
    force : bool
        Segment again series that already have a SEG by this model (the SEG is replaced).
    workers : int, optional
        Processes (default: CPUs, at most 4; 0 = this process).
    output : str, optional
        Folder or URL for the SEGs (default ``seg`` next to the table).
    labelmap : bool
        Label Map SEGs instead of binary ones.
    storage_options : dict, optional
        fsspec options for the source files and ``output``.
    progress : callable, optional
        Called after each series with the running stats and its result.

    Returns
    -------
    SegmentStats
        Counts and one :class:`SeriesResult` per series.
    """
    import os

    t0 = time.perf_counter()
    m = get_model(model) if isinstance(model, str) else model  # fail early: unknown model, deps
    root = output or default_root(catalog.table.uri)
    stats = SegmentStats()
    found = select_series(catalog, _where_images(where))
    stats.series = len(found.series) + len(found.problems)
    done = set() if force else set(segmentations(catalog, m.name)["ReferencedSeriesInstanceUID"])

    def report(r: SeriesResult) -> None:
        stats.add(r)
        if progress is not None:
            stats.seconds = time.perf_counter() - t0
            progress(stats, r)

    for p in found.problems:
        report(SeriesResult(p.series_uid, "error", message=p.problem))
    todo = []
    for s in found.series:
        if s.series_uid in done:
            report(SeriesResult(s.series_uid, "skipped", message=f"has a {m.name} SEG"))
        else:
            todo.append(s)
    n_workers = min(os.cpu_count() or 1, 4) if workers is None else workers
    for r in _results(todo, model, root, labelmap, storage_options, n_workers):
        if r.status == "segmented" and r.path:
            try:
                catalog.catalog(r.path, workers=0, storage_options=storage_options)
            except Exception as e:  # the SEG is written; the next run catalogs it
                r = SeriesResult(
                    r.series_uid,
                    "error",
                    r.path,
                    f"series {r.series_uid}: SEG written to {r.path} but not cataloged: {e}",
                    r.seconds,
                )
        report(r)
    stats.seconds = time.perf_counter() - t0
    return stats
