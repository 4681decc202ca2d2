"""DICOMweb (QIDO-RS, WADO-RS, STOW-RS) over a Pixels catalog.

Examples
--------
>>> from pixels.web import create_app, serve
>>> serve("./catalog", port=8042)          # doctest: +SKIP
"""

from pixels.web.app import create_app, serve

__all__ = ["create_app", "serve"]
