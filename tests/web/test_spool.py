"""pixels.web.spool on real files: a spool that cannot be locked leaves nothing behind."""

from __future__ import annotations

import errno
import os
import resource
from pathlib import Path

import pytest

from pixels.web import spool
from procfds import fds_under


def test_a_spool_not_locked_for_want_of_descriptors_leaves_no_descriptor_nor_file(
    tmp_path: Path,
) -> None:
    """create() opens the file, then a second descriptor to hold its lock. The process
    out of descriptors (RLIMIT_NOFILE: the file's is the last one free) fails the second:
    the first was leaked, and the unlocked file left, at each try (a server at its
    descriptor limit leaking more with each request). Now both are undone."""
    folder = tmp_path / "incoming"
    folder.mkdir()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowest = os.open(os.devnull, os.O_RDONLY)  # every descriptor below it is in use
    os.close(lowest)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest + 1, hard))
    try:
        with pytest.raises(OSError) as e:
            spool.create(str(folder), suffix=".body")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert e.value.errno == errno.EMFILE
    assert fds_under(folder) == set()
    assert os.listdir(folder) == []
