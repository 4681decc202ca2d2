"""This process' open file descriptors on one folder and what is under it (``/proc/self/fd``).

Tests compare these, never the whole process' set: another test's threads still ending
(a server, a pool, a watch) may open and close descriptors of their own meanwhile.
"""

from __future__ import annotations

import os
from pathlib import Path


def fds_under(folder: Path | str) -> set[str]:
    """Descriptors open on ``folder`` or anything under it, as ``fd:path``."""
    root = os.path.realpath(folder)
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed since it was listed
            continue
        if target == root or target.startswith(root + os.sep):
            out.add(f"{fd}:{target}")
    return out
