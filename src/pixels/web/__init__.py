"""DICOMweb (QIDO-RS, WADO-RS, STOW-RS) over a Pixels catalog.

Examples
--------
>>> from pixels.web import create_app, serve
>>> serve("./catalog", port=8042)          # doctest: +SKIP

The names are imported on first use, so ``python -m pixels.web.ohif`` runs its module once
(importing the package does not import the app and, through it, ``ohif``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pixels.web.app import create_app, serve

__all__ = ["create_app", "serve"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from pixels.web.app import create_app, serve

        return {"create_app": create_app, "serve": serve}[name]
    raise AttributeError(f"module 'pixels.web' has no attribute {name!r}")
