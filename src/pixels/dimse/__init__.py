"""DICOM networking (DIMSE) over the catalog: an SCP and an SCU.

- :class:`~pixels.dimse.server.DimseServer`: C-ECHO, C-STORE (into the catalog,
  durable before the answer, committed in batches), C-FIND (Patient and Study
  Root), C-GET and C-MOVE, answered from the DICOMweb server's index; run by
  ``pixels serve --dimse-port`` beside DICOMweb, or alone by ``pixels dimse scp``.
- :class:`~pixels.dimse.scu.Client`: C-ECHO, C-FIND, C-GET, C-MOVE, C-STORE against
  a remote PACS; :func:`~pixels.dimse.scu.retrieve` pulls from one into a catalog.

Needs ``pynetdicom`` (``pip install pixels-lake[dimse]``). The names below are
imported on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Client", "DimseServer", "Peer", "RetrieveResult", "ServerConfig", "retrieve"]

_LAZY = {
    "Client": "pixels.dimse.scu",
    "RetrieveResult": "pixels.dimse.scu",
    "retrieve": "pixels.dimse.scu",
    "DimseServer": "pixels.dimse.server",
    "Peer": "pixels.dimse.config",
    "ServerConfig": "pixels.dimse.config",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pixels.dimse' has no attribute {name!r}")
    import importlib

    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as e:
        if e.name == "pynetdicom":
            raise ModuleNotFoundError(
                "pixels.dimse needs pynetdicom: pip install 'pixels-lake[dimse]'", name=e.name
            ) from e
        raise
