"""Interactive segmentation from clicks: a region grown in 3-D from foreground points.

:func:`grow` is what MONAI Label's clients call a *deepgrow* model, without
weights: the voxels whose value lies within ``tolerance`` of the values under
the foreground clicks, connected (6-neighbourhood) to a foreground click, and
nearer (in mm) to a foreground click than to any background click. Background
clicks therefore cut the region: each one claims the voxels closer to it.

Clicks come one at a time on the same volume, and nothing here scans the whole
volume for a click:

- the region of a value window is found by labelling (:func:`scipy.ndimage.label`)
  the window's voxels in a box around the clicks, the box grown (each side that
  the picked components reach doubled) until they reach no side of the box that is
  not a side of the volume: the cost is that of the region's box;
- for the last :data:`KEPT` volumes (held by weak reference, so a volume dropped by
  its cache frees its entry too), the regions of the last :data:`WINDOWS` value
  windows and the last cut are kept. A foreground click in the same window adds the
  components of the new clicks that the region does not hold yet (none when they fall
  in it: the same answer, the same array); a click on a new value widens the window,
  and the search starts from the kept region's box; a background click added to the
  earlier ones removes from the last cut only the voxels nearer to it than to every
  foreground click (found in a box that shrinks with each foreground click compared),
  then labels what is left around them (the whole cut's box only when a piece there
  may have lost its way to a foreground click).

Memory: per kept volume, at most ``WINDOWS + 1`` masks of one byte per voxel (the
volume itself is the caller's), and while a click is computed, labels (4 bytes per
voxel) over a box. The answers are those of a from-scratch computation (``KEPT = 0``),
voxel for voxel. An answer is a read-only array, and the same array when nothing
changed (so a server can reuse its encoding).

>>> import numpy as np
>>> v = np.zeros((8, 8, 3), np.float32); v[:4] = 1000.0
>>> int(grow(v, (1.0, 1.0, 1.0), [[1, 1, 1]]).sum())  # the bright half: 4 x 8 x 3
96
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

__all__ = ["DEFAULT_TOLERANCE", "KEPT", "WINDOWS", "ClickError", "forget", "grow"]

#: Half-width of the value window around the clicked values (Hounsfield units for CT).
DEFAULT_TOLERANCE = 100.0
#: Volumes whose regions are kept for the next click (0: none, every click from scratch).
KEPT = 2
#: Value windows whose region is kept per volume (the last ones clicked).
WINDOWS = 2
#: Voxels added on each side of the clicks' box before the first labelling.
MARGIN = 16

Box = tuple[tuple[int, int], ...]
Order = Literal["C", "F"]
Point = tuple[int, int, int]


class ClickError(ValueError):
    """Click points that cannot be used (outside the volume, not [x, y, z])."""


@dataclass(frozen=True, eq=False)
class _Mask:
    """A full-size, read-only mask, the box of its voxels (None when empty), its ``uint8`` view."""

    mask: np.ndarray
    box: Box | None
    answer: np.ndarray

    @classmethod
    def of(cls, sub: np.ndarray, box: Box, shape: tuple[int, ...], order: Order) -> _Mask:
        """The mask that is ``sub`` over ``box`` and empty elsewhere."""
        inner = _box(sub)
        full = np.zeros(shape, bool, order=order)
        if inner is not None:
            full[_slices(box)] = sub
            inner = tuple((lo + a, lo + b) for (lo, _), (a, b) in zip(box, inner, strict=True))
        full.flags.writeable = False
        return cls(full, inner, full.view(np.uint8))


@dataclass(frozen=True, eq=False)
class _Window:
    """The region (components holding ``seeds``) of one value window."""

    bounds: tuple[float, float]
    seeds: frozenset[Point]
    region: _Mask


@dataclass(frozen=True, eq=False)
class _Cut:
    """``region`` less what the background clicks ``bg`` claim, for the foreground ``fg``."""

    region: _Mask
    fg: frozenset[Point]
    bg: frozenset[Point]
    result: _Mask


@dataclass(eq=False)
class _State:
    """What is kept for one volume (compared by identity, never field by field)."""

    ref: weakref.ReferenceType[np.ndarray] | None
    windows: list[_Window] = field(default_factory=list)  # most recently used last
    cut: _Cut | None = None


_KEPT: list[_State] = []  # most recently used last
_KEPT_LOCK = threading.Lock()


def forget() -> None:
    """Drop every kept region (the next click on any volume starts from scratch)."""
    with _KEPT_LOCK:
        _KEPT.clear()


def _state(volume: np.ndarray) -> _State:
    """The kept state of ``volume`` (a new one, kept unless :data:`KEPT` is 0)."""
    if KEPT <= 0:
        return _State(None)
    with _KEPT_LOCK:
        _KEPT[:] = [s for s in _KEPT if s.ref is not None and s.ref() is not None]
        for s in _KEPT:
            if s.ref is not None and s.ref() is volume:
                _KEPT.remove(s)
                _KEPT.append(s)
                return s
        state = _State(weakref.ref(volume))
        _KEPT.append(state)
        del _KEPT[: max(0, len(_KEPT) - KEPT)]
        return state


def _window_of(state: _State, bounds: tuple[float, float]) -> _Window | None:
    with _KEPT_LOCK:
        for w in reversed(state.windows):
            if w.bounds == bounds:
                return w
    return None


def _keep_window(state: _State, window: _Window) -> None:
    with _KEPT_LOCK:
        state.windows[:] = [w for w in state.windows if w.bounds != window.bounds]
        state.windows.append(window)
        del state.windows[: max(0, len(state.windows) - WINDOWS)]


def _points(points: Sequence[Sequence[float]], shape: tuple[int, ...], what: str) -> np.ndarray:
    out = np.asarray([[round(float(c)) for c in p] for p in points], np.int64).reshape(-1, 3)
    bad = (out < 0) | (out >= np.asarray(shape))
    if bad.any():
        p = out[bad.any(axis=1)][0].tolist()
        raise ClickError(f"{what} point {p} lies outside the volume of sizes {list(shape)}")
    return out


def _slices(box: Box) -> tuple[slice, ...]:
    return tuple(slice(lo, hi) for lo, hi in box)


def _box(mask: np.ndarray) -> Box | None:
    """The smallest box holding every set voxel of a 3-D ``mask`` (None when there is none).

    From projections (np.nonzero took 3.3 s for a 5.5-million-voxel region of a
    512x512x100 CT, allocating three index arrays of that length): the slices holding a
    voxel, then the plane of ``x, y`` over those slices.
    """
    z = np.flatnonzero(mask.any(axis=(0, 1)))
    if not len(z):
        return None
    plane = np.asarray(mask[:, :, z[0] : z[-1] + 1].any(axis=2))
    x = np.flatnonzero(plane.any(axis=1))
    y = np.flatnonzero(plane.any(axis=0))
    return ((int(x[0]), int(x[-1]) + 1), (int(y[0]), int(y[-1]) + 1), (int(z[0]), int(z[-1]) + 1))


def _around(points: Iterable[Point], shape: tuple[int, ...], box: Box | None = None) -> Box:
    """The box of ``points`` (and of ``box``), :data:`MARGIN` voxels wider on each side."""
    pts = np.asarray(list(points), np.int64).reshape(-1, 3)
    lo, hi = pts.min(axis=0), pts.max(axis=0) + 1
    if box is not None:
        lo = np.minimum(lo, [b[0] for b in box])
        hi = np.maximum(hi, [b[1] for b in box])
    return tuple(
        (max(0, int(a) - MARGIN), min(n, int(b) + MARGIN))
        for a, b, n in zip(lo, hi, shape, strict=True)
    )


def _in_window(sub: np.ndarray, bounds: tuple[float, float], order: Order) -> np.ndarray:
    """``(sub >= lo) & (sub <= hi)``, a slab at a time (the temporaries stay in cache)."""
    out = np.empty(sub.shape, bool, order=order)
    axis = 2 if order == "F" else 0  # the slowest-varying axis
    n = sub.shape[axis]
    step = max(1, (1 << 20) // max(1, sub.size // max(1, n)))
    lo, hi = bounds  # Python floats: compared in the volume's type, as `sub >= lo` does
    for start in range(0, n, step):
        part = tuple(slice(start, start + step) if a == axis else slice(None) for a in range(3))
        o, v = out[part], sub[part]
        np.greater_equal(v, lo, out=o)
        o &= v <= hi
    return out


def _label(mask: np.ndarray) -> np.ndarray:
    """6-connected component labels of ``mask`` (labelled in its memory order: Fortran-ordered
    masks through their transpose, 2-3x faster than across the strides)."""
    from scipy import ndimage

    footprint = ndimage.generate_binary_structure(3, 1)
    if mask.flags.f_contiguous and not mask.flags.c_contiguous:
        labels, _ = ndimage.label(mask.T, footprint)
        return np.asarray(labels).T
    labels, _ = ndimage.label(mask, footprint)
    return np.asarray(labels)


def _pick(labels: np.ndarray, wanted: Iterable[int]) -> np.ndarray:
    """The voxels whose label is one of ``wanted`` (0, the background, never)."""
    chosen = sorted({int(v) for v in wanted} - {0})
    if not chosen:
        return np.zeros(labels.shape, bool)
    out = labels == chosen[0]
    for v in chosen[1:]:  # one pass per component: as many as the clicks at most
        out |= labels == v
    return out


def _at(labels: np.ndarray, box: Box, points: Iterable[Point]) -> list[int]:
    """The labels under ``points`` (those inside ``box``)."""
    out = []
    for p in points:
        if all(lo <= c < hi for c, (lo, hi) in zip(p, box, strict=True)):
            out.append(int(labels[tuple(c - lo for c, (lo, _) in zip(p, box, strict=True))]))
    return out


def _components(
    volume: np.ndarray,
    bounds: tuple[float, float],
    seeds: Sequence[Point],
    box: Box,
    order: Order,
) -> tuple[np.ndarray, Box]:
    """The window components that hold ``seeds`` (inside ``box``), over the final box.

    The window is labelled in ``box``; while the picked components reach a side of the
    box that is not a side of the volume, that side moves out by the box's size and the
    labelling is done again. Components that reach no inner side are whole.
    """
    shape = volume.shape
    while True:
        labels = _label(_in_window(volume[_slices(box)], bounds, order))
        picked = _pick(labels, _at(labels, box, seeds))
        wider = []
        for axis, (lo, hi) in enumerate(box):
            step = max(hi - lo, MARGIN)
            first = tuple(0 if a == axis else slice(None) for a in range(3))
            last = tuple(-1 if a == axis else slice(None) for a in range(3))
            if lo > 0 and picked[first].any():
                lo = max(0, lo - step)
            if hi < shape[axis] and picked[last].any():
                hi = min(shape[axis], hi + step)
            wider.append((lo, hi))
        if tuple(wider) == box:
            return picked, box
        box = tuple(wider)


def _union(base: _Mask, sub: np.ndarray, box: Box, order: Order) -> _Mask:
    full = np.array(base.mask, order=order)  # a writable copy
    full[_slices(box)] |= sub
    whole = box if base.box is None else tuple(
        (min(a, c), max(b, d)) for (a, b), (c, d) in zip(base.box, box, strict=True)
    )  # fmt: skip
    inner = _box(full[_slices(whole)])
    full.flags.writeable = False
    absolute = None if inner is None else tuple(
        (lo + a, lo + b) for (lo, _), (a, b) in zip(whole, inner, strict=True)
    )  # fmt: skip
    return _Mask(full, absolute, full.view(np.uint8))


def _keep_only(base: _Mask, seeds: Iterable[Point], order: Order) -> _Mask:
    """The components of ``base`` that hold one of ``seeds`` (labelled in its box)."""
    shape = base.mask.shape
    if base.box is None:
        return base
    labels = _label(np.array(base.mask[_slices(base.box)], order=order))
    return _Mask.of(_pick(labels, _at(labels, base.box, seeds)), base.box, shape, order)


def _region(
    state: _State,
    volume: np.ndarray,
    bounds: tuple[float, float],
    seeds: frozenset[Point],
    order: Order,
) -> _Mask:
    """The components of the window ``bounds`` that hold ``seeds``."""
    shape = volume.shape
    kept = _window_of(state, bounds)
    if kept is not None and kept.seeds == seeds:
        return kept.region
    if kept is not None:
        have = kept.region.mask
        outside = sorted(p for p in seeds if not have[p])
        inside = seeds.difference(outside)
        # the components of the earlier seeds all stay when no seed was taken back
        base = kept.region if seeds >= kept.seeds else _keep_only(kept.region, inside, order)
        region = base
        if outside:
            sub, box = _components(volume, bounds, outside, _around(outside, shape), order)
            region = _union(base, sub, box, order)
    else:
        # a wider window (a click on a new value) holds the kept region of a narrower one
        start = None
        with _KEPT_LOCK:
            for w in reversed(state.windows):
                lo, hi = w.bounds
                if bounds[0] <= lo and hi <= bounds[1] and w.seeds <= seeds:
                    start = w.region.box
                    break
        points = sorted(seeds)
        sub, box = _components(volume, bounds, points, _around(points, shape, start), order)
        region = _Mask.of(sub, box, shape, order)
    _keep_window(state, _Window(bounds, seeds, region))
    return region


def _squared(points: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """``float32`` squared distances (mm) between pairs of voxels (``points``: ``[n, 2, 3]``),
    computed as the distances to the clicks have always been: ``((dx² + dy²) + dz²)`` in
    ``float64``, then rounded to ``float32``."""
    t = ((points[:, 0, :] - points[:, 1, :]) * np.asarray(spacing, np.float64)) ** 2
    return ((t[:, 0] + t[:, 1]) + t[:, 2]).astype(np.float32)


def _cell_box(point: Point, fg: Sequence[Point], box: Box, spacing: Sequence[float]) -> Box | None:
    """A box holding every voxel of ``box`` at least as near to ``point`` as to each of ``fg``
    (the Voronoi cell of ``point``), one voxel wider than exact arithmetic gives; None when empty.

    ``|x - p|² <= |x - f|²`` is linear in ``x`` (the squares cancel): per axis
    ``a·x + c``, with ``a = 2 s² (p - f)``, ``c = s² (f² - p²)``. Each inequality bounds
    each axis given the largest the other axes can add; the bounds are tightened until
    they stop moving. Computed in ``float64`` over a few numbers, not over voxels.
    """
    s2 = np.asarray(spacing, np.float64) ** 2
    p = np.asarray(point, np.float64)
    lo = np.asarray([b[0] for b in box], np.float64)
    hi = np.asarray([b[1] - 1 for b in box], np.float64)  # inclusive
    planes = []
    for f in fg:
        q = np.asarray(f, np.float64)
        if (q == p).all():
            continue  # the click itself: equal distances everywhere
        # float32 distances that differ by less than their rounding compare equal (claimed):
        # a margin far above it, from the largest squared distance in the box
        far = np.maximum(np.abs(lo - p), np.abs(hi - p)) + np.abs(q - p)
        planes.append((2 * s2 * (p - q), s2 * (q * q - p * p), 1e-5 * (1.0 + (s2 * far**2).sum())))
    for _ in range(8):
        moved = False
        for a, c, eps in planes:
            ends = np.maximum(a * lo, a * hi) + c  # the most each axis can add
            total = ends.sum()
            if total < -eps:
                return None
            for i in range(3):
                if a[i] == 0:
                    continue
                bound = (-eps - (total - ends[i]) - c[i]) / a[i]  # a[i] x + c[i] + rest >= -eps
                if a[i] > 0 and np.floor(bound) - 1 > lo[i]:
                    lo[i], moved = np.floor(bound) - 1, True
                elif a[i] < 0 and np.ceil(bound) + 1 < hi[i]:
                    hi[i], moved = np.ceil(bound) + 1, True
                if lo[i] > hi[i]:
                    return None
        if not moved:
            break
    out = tuple(
        (max(b[0], int(lo[i])), min(b[1], int(hi[i]) + 1)) for i, b in enumerate(box)
    )  # fmt: skip
    return None if any(a >= b for a, b in out) else out


def _claimed(
    base: _Mask, point: Point, fg: Sequence[Point], spacing: Sequence[float], order: Order
) -> tuple[np.ndarray, Box] | None:
    """The voxels of ``base`` at least as near to the background ``point`` as to every
    foreground click (``float32`` squared distances in mm, as compared since the first
    version), over their box; None when there is none.

    For each foreground click ``f`` (the nearest to ``point`` first), ``|x - f|² - |x - p|²``
    is a sum of one term per axis (the squares cancel): voxels where it is clearly positive
    are claimed and clearly negative are not, by one comparison of a plane of ``x, y``
    terms with the ``z`` terms; only the voxels within rounding of the bisecting plane are
    compared in ``float32`` one by one. The box shrinks to what is left after each click.
    """
    if base.box is None:
        return None
    box = _cell_box(point, fg, base.box, spacing)
    if box is None:
        return None
    near = np.array(base.mask[_slices(box)], order=order)
    s2 = np.asarray(spacing, np.float64) ** 2
    p = np.asarray(point, np.int64)
    for f in sorted(fg, key=lambda f: float((s2 * np.subtract(f, point) ** 2).sum())):
        q = np.asarray(f, np.int64)
        if (q == p).all():
            continue  # equal distances everywhere: all claimed
        axes = [np.arange(lo, hi, dtype=np.int64) for lo, hi in box]
        terms = [s2[i] * ((ax - q[i]) ** 2 - (ax - p[i]) ** 2) for i, ax in enumerate(axes)]
        far = np.asarray(
            [max(abs(lo - p[i]), abs(hi - 1 - p[i])) for i, (lo, hi) in enumerate(box)]
        )
        eps = 1e-5 * (1.0 + (s2 * (far + np.abs(q - p)) ** 2).sum())  # far above float32 rounding
        low = sum(float(t.min()) for t in terms)
        if low >= eps:
            continue  # the whole box is clearly nearer to the click than to f
        plane = terms[0][:, None] + terms[1][None, :]
        if low <= -eps:  # keep what is not clearly nearer to f
            above = np.empty(near.shape, bool, order=order)
            np.greater(plane[:, :, None], (-eps - terms[2])[None, None, :], out=above)
            near &= above
        # the voxels within rounding of the bisecting plane, compared as float32
        flat = plane.ravel()
        rank = np.argsort(flat)
        ranked = flat[rank]
        start = np.searchsorted(ranked, -eps - terms[2], side="right")
        stop = np.searchsorted(ranked, eps - terms[2], side="left")
        count = np.maximum(stop - start, 0)
        if count.sum():
            z = np.repeat(np.arange(len(count)), count)
            at = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
            xy = rank[np.repeat(start, count) + at]
            idx = (xy // plane.shape[1], xy % plane.shape[1], z)
            inside = near[idx]
            idx = tuple(i[inside] for i in idx)
            x = np.stack(idx, axis=1) + np.asarray([lo for lo, _ in box])
            to_p = np.stack([x, np.broadcast_to(p, x.shape)], axis=1)
            to_q = np.stack([x, np.broadcast_to(q, x.shape)], axis=1)
            lost = _squared(to_p, spacing) > _squared(to_q, spacing)
            near[tuple(i[lost] for i in idx)] = False
        inner = _box(near)
        if inner is None:
            return None
        if inner != tuple((0, hi - lo) for lo, hi in box):
            near = near[_slices(inner)]
            box = tuple((lo + a, lo + b) for (lo, _), (a, b) in zip(box, inner, strict=True))
    return near, box


def _within(inner: Box, outer: Box) -> tuple[slice, ...]:
    """``inner`` (absolute) as slices of an array over ``outer``."""
    return tuple(slice(a - lo, b - lo) for (a, b), (lo, _) in zip(inner, outer, strict=True))


def _without(
    base: _Mask, claims: list[tuple[np.ndarray, Box]], fg: Sequence[Point], order: Order
) -> _Mask:
    """``base`` less the ``claims``, then the parts of it connected to a foreground click.

    Labelled first only around the claimed voxels (their box, one voxel wider). That is
    exact when at most one piece there reaches a side of the box that lies inside the box
    of ``base``, and every foreground click there lies in that piece: what lies outside is
    unchanged and stays connected through it. Otherwise the box of ``base`` is labelled.
    """
    assert base.box is not None
    outer = base.box
    near = tuple(
        (min(c[1][i][0] for c in claims), max(c[1][i][1] for c in claims)) for i in range(3)
    )  # fmt: skip
    local = tuple(
        (max(lo, a - 1), min(hi, b + 1)) for (a, b), (lo, hi) in zip(near, outer, strict=True)
    )  # fmt: skip
    shape = base.mask.shape
    size = [int(np.prod([hi - lo for lo, hi in b])) for b in (local, outer)]
    # labelled twice when the local one does not settle it: only when it costs much less
    for box in (local, outer) if 2 * size[0] < size[1] else (outer,):
        keep = np.array(base.mask[_slices(box)], order=order)
        for sub, where in claims:
            keep[_within(where, box)] &= ~sub
        labels = _label(keep)
        held = _at(labels, box, fg)
        if box == outer:
            return _Mask.of(_pick(labels, held), box, shape, order)
        inside = [p for p in fg if all(lo <= c < hi for c, (lo, hi) in zip(p, box, strict=True))]
        if any(
            base.mask[p] and not keep[_within(tuple((c, c + 1) for c in p), box)].all()
            for p in inside
        ):
            continue  # a foreground click claimed: its component may lose its only click
        attached: set[int] = set()
        for axis, ((lo, hi), (first, last)) in enumerate(zip(box, outer, strict=True)):
            for side, at in ((lo > first, 0), (hi < last, -1)):
                if side:
                    face = tuple(at if a == axis else slice(None) for a in range(3))
                    attached.update(int(v) for v in np.unique(labels[face]))
        attached.discard(0)
        clicked = {v for v in held if v}
        if len(attached) > 1 or not clicked <= (attached or clicked):
            continue
        sub = np.array(base.mask[_slices(outer)], order=order)
        sub[_within(box, outer)] = _pick(labels, clicked | attached)
        return _Mask.of(sub, outer, shape, order)
    raise AssertionError("unreachable: the box of base is always labelled last")


def _cut(
    state: _State,
    region: _Mask,
    seeds: frozenset[Point],
    bg: frozenset[Point],
    spacing: Sequence[float],
    order: Order,
) -> _Mask:
    """``region`` less the voxels the background clicks claim, then what stays connected to
    a foreground click."""
    kept = state.cut
    if kept is not None and kept.region is region and kept.fg == seeds and kept.bg <= bg:
        if kept.bg == bg:
            return kept.result
        # more background clicks only remove voxels: start from the last cut
        base, added = kept.result, sorted(bg - kept.bg)
    else:
        base, added = region, sorted(bg)
    fg = sorted(seeds)
    result = base
    if base.box is not None:
        claims = [c for c in (_claimed(base, p, fg, spacing, order) for p in added) if c]
        if claims:
            result = _without(base, claims, fg, order)
    state.cut = _Cut(region, seeds, bg, result)
    return result


def grow(
    volume: np.ndarray,
    spacing: Sequence[float],
    foreground: Sequence[Sequence[float]],
    background: Sequence[Sequence[float]] = (),
    *,
    tolerance: float = DEFAULT_TOLERANCE,
) -> np.ndarray:
    """The ``uint8`` mask (1 = region) grown from ``foreground`` clicks in an ``[X, Y, Z]`` volume.

    The mask is read-only: the same array answers the same clicks again while it is kept.

    Parameters
    ----------
    volume : numpy.ndarray
        ``[X, Y, Z]`` values (Hounsfield units for CT).
    spacing : sequence of 3 float
        Voxel size in mm (distances to clicks are measured in mm).
    foreground, background : sequences of [x, y, z]
        Voxel indices of the clicks (MONAI Label's ``foreground`` / ``background``).
    tolerance : float
        The region keeps values within ``[min(clicked) - tolerance, max(clicked) + tolerance]``.

    Raises
    ------
    ClickError
        No foreground click, or a click outside the volume.
    """
    fg = _points(foreground, volume.shape, "foreground")
    bg = _points(background, volume.shape, "background")
    if not len(fg):
        raise ClickError("no foreground point: click inside the structure to grow it")
    values = volume[fg[:, 0], fg[:, 1], fg[:, 2]]
    bounds = (float(values.min()) - tolerance, float(values.max()) + tolerance)
    order: Order = "F" if volume.flags.f_contiguous else "C"  # NRRD: X fastest
    seeds: frozenset[Point] = frozenset((int(x), int(y), int(z)) for x, y, z in fg)
    state = _state(volume)
    region = _region(state, volume, bounds, seeds, order)
    if not len(bg):
        return region.answer
    clicks_bg: frozenset[Point] = frozenset((int(x), int(y), int(z)) for x, y, z in bg)
    return _cut(state, region, seeds, clicks_bg, spacing, order).answer
