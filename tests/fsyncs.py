"""``os.fsync`` spied on in a test: each synced file's path recorded, the real one run."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest


def record_fsyncs(monkeypatch: pytest.MonkeyPatch, record: Callable[[str], object]) -> None:
    """Have each ``os.fsync`` (until ``monkeypatch`` undoes it) call ``record`` with the
    path of the file or folder synced (``/proc/self/fd``), then sync it."""
    real = os.fsync

    def fsync(fd: int) -> None:
        record(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
