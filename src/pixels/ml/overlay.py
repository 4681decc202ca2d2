"""A quick look at a segmentation: one slice in a CT window with the labels painted over it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pixels.ml.models.base import Segment

__all__ = ["overlay"]


def overlay(
    image: np.ndarray,
    labels: np.ndarray,
    segments: Sequence[Segment],
    *,
    window: tuple[float, float] = (40.0, 400.0),
    alpha: float = 0.45,
) -> np.ndarray:
    """RGB ``uint8`` ``(rows, cols, 3)`` of one ``[X, Y]`` slice (as in a volume) with its labels.

    Parameters
    ----------
    image : numpy.ndarray
        ``[X, Y]`` slice in modality units (a volume's ``[:, :, k]``).
    labels : numpy.ndarray
        Its label map.
    segments : sequence of Segment
        Colours per label (union segments are not drawn).
    window : (center, width)
        Display window (default soft tissue).
    """
    c, w = window
    grey = np.clip((image.T.astype(np.float64) - (c - w / 2)) / w, 0, 1) * 255
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    lab = labels.T
    for s in segments:
        if s.includes or s.color is None:
            continue
        m = lab == s.label
        rgb[m] = (1 - alpha) * rgb[m] + alpha * np.asarray(s.color, dtype=np.float64)
    return np.rint(rgb).astype(np.uint8)
