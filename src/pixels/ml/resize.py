"""Resizing a frame tensor the way the datasets do (bilinear, antialiased)."""

from __future__ import annotations

from typing import Any

from pixels.ml.deps import need

need("torch", "pixels.ml resizing")

import torch  # noqa: E402

__all__ = ["resize"]


def resize(t: Any, size: int | tuple[int, int] | None) -> Any:
    """``t`` (``[C, H, W]``) resized to ``size`` (an int: square), as ``float32``; ``t``
    itself when ``size`` is None or already its size."""
    if size is None:
        return t
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(t.shape[-2:]) == hw:
        return t
    out = torch.nn.functional.interpolate(
        t[None].float(), size=hw, mode="bilinear", antialias=True, align_corners=False
    )
    return out[0]
