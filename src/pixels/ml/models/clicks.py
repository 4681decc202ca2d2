"""Interactive segmentation from clicks: a region grown in 3-D from foreground points.

:func:`grow` is what MONAI Label's clients call a *deepgrow* model, without
weights: the voxels whose value lies within ``tolerance`` of the values under
the foreground clicks, connected (6-neighbourhood) to a foreground click, and
nearer (in mm) to a foreground click than to any background click. Background
clicks therefore cut the region: each one claims the voxels closer to it.

>>> import numpy as np
>>> v = np.zeros((8, 8, 3), np.float32); v[:4] = 1000.0
>>> int(grow(v, (1.0, 1.0, 1.0), [[1, 1, 1]]).sum())  # the bright half: 4 x 8 x 3
96
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

__all__ = ["DEFAULT_TOLERANCE", "ClickError", "grow"]

#: Half-width of the value window around the clicked values (Hounsfield units for CT).
DEFAULT_TOLERANCE = 100.0


class ClickError(ValueError):
    """Click points that cannot be used (outside the volume, not [x, y, z])."""


def _points(points: Sequence[Sequence[float]], shape: tuple[int, ...], what: str) -> np.ndarray:
    out = np.asarray([[round(float(c)) for c in p] for p in points], np.int64).reshape(-1, 3)
    bad = (out < 0) | (out >= np.asarray(shape))
    if bad.any():
        p = out[bad.any(axis=1)][0].tolist()
        raise ClickError(f"{what} point {p} lies outside the volume of sizes {list(shape)}")
    return out


def grow(
    volume: np.ndarray,
    spacing: Sequence[float],
    foreground: Sequence[Sequence[float]],
    background: Sequence[Sequence[float]] = (),
    *,
    tolerance: float = DEFAULT_TOLERANCE,
) -> np.ndarray:
    """The ``uint8`` mask (1 = region) grown from ``foreground`` clicks in an ``[X, Y, Z]`` volume.

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
    from scipy import ndimage
    from skimage.segmentation import flood

    fg = _points(foreground, volume.shape, "foreground")
    bg = _points(background, volume.shape, "background")
    if not len(fg):
        raise ClickError("no foreground point: click inside the structure to grow it")
    seeds = volume[fg[:, 0], fg[:, 1], fg[:, 2]]
    window = (volume >= seeds.min() - tolerance) & (volume <= seeds.max() + tolerance)
    footprint = ndimage.generate_binary_structure(3, 1)  # 6-connected
    # a flood fill from each click costs the size of the region, not of the volume
    # (ndimage.label over a 512x512x100 CT took 3.8 s, flood 0.9 s)
    order: Literal["C", "F"] = "F" if volume.flags.f_contiguous else "C"  # NRRD: X fastest
    region = np.zeros(volume.shape, bool, order=order)
    for p in fg:
        if not region[tuple(p)]:
            region |= flood(window, tuple(int(c) for c in p), footprint=footprint)
    if len(bg) and region.any():
        # background clicks claim the voxels nearer (mm) to them than to any foreground
        # click; only the region can lose voxels, so distances are taken in its box
        box = tuple(slice(int(a.min()), int(a.max()) + 1) for a in np.nonzero(region))
        sub = region[box]
        grids = np.ogrid[tuple(slice(b.start, b.stop) for b in box)]
        sampling = [float(sp) for sp in spacing]

        def nearest(points: np.ndarray) -> np.ndarray:
            best = np.full(sub.shape, np.inf, np.float32)
            for q in points:
                d = sum(
                    ((g - int(c)) * sp) ** 2 for g, c, sp in zip(grids, q, sampling, strict=True)
                )
                np.minimum(best, d, out=best)
            return best

        sub &= nearest(fg) < nearest(bg)
        cut = np.zeros(volume.shape, bool, order=order)
        cut[box] = sub
        region = np.zeros(volume.shape, bool, order=order)
        for p in fg:  # what stays connected to a foreground click
            if cut[tuple(p)] and not region[tuple(p)]:
                region |= flood(cut, tuple(int(c) for c in p), footprint=footprint)
    return region.astype(np.uint8)
