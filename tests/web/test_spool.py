"""pixels.web.spool on real files: a spool that cannot be locked leaves nothing behind, a
live one survives its own process's clean-up, one that cannot be locked is kept."""

from __future__ import annotations

import errno
import logging
import os
import resource
import subprocess
from pathlib import Path

import pytest

from dimse.conftest import mount_tmpfs
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


def test_a_live_spool_survives_a_clean_up_of_its_own_process_after_another_descriptor_closed(
    tmp_path: Path,
) -> None:
    """The lock is the spool's descriptor's, not the process's: the STOW path opens a
    spooled body again (to map it) and closes that descriptor; a POSIX record lock (what
    ``flock`` is on NFS) went with it, and a clean-up in the same process (another
    server of the table started in it) took the live spool. It stays until released."""
    folder = tmp_path / "incoming"
    made = spool.create(str(folder), suffix=".body")
    os.close(made.fd)
    with open(made.path, "rb") as fh:  # another descriptor of the file, closed
        fh.read()
    assert spool.clean(str(folder)) == []
    with spool.locked_leftovers(str(folder)) as leftovers:
        assert leftovers == []
    assert os.path.exists(made.path)
    made.release()
    assert spool.clean(str(folder)) == [made.path]


def test_a_leftover_whose_lock_cannot_be_taken_is_kept_and_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A clean-up that cannot lock a file (here: a read-only mount, where it cannot be
    opened to write; on NFS without a lock manager: ENOLCK) cannot tell a live writer's
    from a killed one's: it keeps it and says so (it raised the unlink's EROFS before)."""
    folder = tmp_path / "ro"
    mount_tmpfs(folder, "size=64k")
    try:
        left = spool.create(str(folder), suffix=".body")  # a killed writer's: unlocked
        os.close(left.fd)
        left.release()
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        with caplog.at_level(logging.WARNING, logger="pixels.web"):
            assert spool.clean(str(folder)) == []
            with spool.locked_leftovers(str(folder)) as leftovers:
                assert leftovers == []
        assert os.path.exists(left.path)
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)
    assert f"{left.path} kept: it cannot be locked here" in caplog.text
    assert "Read-only file system" in caplog.text
