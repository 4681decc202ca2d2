"""The optional heavy dependencies of :mod:`pixels.ml`, imported lazily.

Each ``need_*`` returns the module or raises :class:`~pixels.errors.ModelError`
saying what to install; :func:`status` says, for ``pixels models``, which are
there and why not.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from pixels.errors import ModelError

__all__ = ["need", "status"]

#: module -> what to install for it
INSTALL = {
    "torch": "pip install torch (or pip install 'pixels-lake[ml]')",
    "monai": "pip install monai (or pip install 'pixels-lake[ml]')",
    "scipy": "pip install scipy (or pip install 'pixels-lake[ml]')",
    "skimage": "pip install scikit-image (or pip install 'pixels-lake[ml]')",
    "highdicom": "pip install highdicom (or pip install 'pixels-lake[ml]')",
}


def need(module: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`ModelError` naming ``purpose`` and what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        hint = INSTALL.get(module.split(".")[0], f"pip install {module}")
        raise ModelError(f"{purpose} needs {module}, which is not installed: {hint}") from e


def status(module: str) -> tuple[bool, str]:
    """``(available, reason)``: the version when importable, else the import error and the fix."""
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        return False, f"{e}; {INSTALL.get(module, 'pip install ' + module)}"
    return True, str(getattr(mod, "__version__", "installed"))
