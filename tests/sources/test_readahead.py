"""Read-ahead of a task's files: the kernel reads the next files while one is parsed."""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
import time
from pathlib import Path

import pytest

from corpus import pydicom_folder, sample_file
from pixels.dicom.record import RecordOptions, catalog_record, reads_whole
from pixels.engines import worker
from pixels.sources import iter_files
from pixels.sources.readahead import ReadAhead
from pixels.sources.ref import FileRef
from procfds import fds_under


def _evict(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # dirty pages are never dropped
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]  # fmt: skip
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]


def _resident(path: Path) -> bool:
    """Whether every page of the file is in the page cache (``mincore``: nothing is read)."""
    size = path.stat().st_size
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
        try:
            pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
            vec = ctypes.create_string_buffer(pages)
            assert _libc.mincore(addr, size, vec) == 0, ctypes.get_errno()
            return all(b & 1 for b in vec.raw)
        finally:
            _libc.munmap(addr, size)
    finally:
        os.close(fd)


def _wait_resident(paths: list[Path], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not all(_resident(p) for p in paths):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.mark.skipif(not hasattr(os, "POSIX_FADV_WILLNEED"), reason="needs posix_fadvise")
def test_the_next_files_of_a_task_are_read_ahead_and_no_further(tmp_path: Path) -> None:
    """Files not in memory: opening the read-ahead queues the reads of the first ``depth``
    files (they come into the page cache without being read), taking file ``i`` queues
    file ``i + depth``, and the files further on are left alone."""
    data = sample_file("CT_small.dcm").read_bytes()
    for i in range(20):
        (tmp_path / f"{i:02d}.dcm").write_bytes(data)
    refs = sorted(iter_files(str(tmp_path)), key=lambda r: r.path)
    paths = [Path(r.path) for r in refs]
    for p in paths:
        _evict(p)
    if any(_resident(p) for p in paths):
        pytest.skip(f"{tmp_path}: this file system keeps evicted files in memory")
    before = fds_under(tmp_path)
    assert before == set()
    with ReadAhead(refs, reads_whole, depth=5) as ahead:
        assert _wait_resident(paths[:5]), "the first files were not read ahead"
        assert not any(_resident(p) for p in paths[5:])
        fd = ahead.take(0)
        assert fd is not None and os.pread(fd, len(data) + 1, 0) == data
        os.close(fd)
        assert _wait_resident(paths[5:6]) and not any(_resident(p) for p in paths[6:])
        assert len(fds_under(tmp_path)) == 5  # files 1-5 open, file 0 taken
    assert fds_under(tmp_path) == set()  # the files never taken are closed


def test_files_not_read_whole_are_not_opened_ahead(tmp_path: Path) -> None:
    """Remote, errored or too large files are left to their opener: ``take`` gives None."""
    (tmp_path / "a.dcm").write_bytes(sample_file("CT_small.dcm").read_bytes())
    (ref,) = iter_files(str(tmp_path))
    listed_error = FileRef(ref.path, ref.modificationTime, ref.length, "a.dcm", ref.local_path,
                           "dcm", (), error="listing failed")  # fmt: skip
    remote = FileRef("s3://b/a.dcm", ref.modificationTime, ref.length, "a.dcm", None, "dcm", ())
    huge = FileRef(ref.path, ref.modificationTime, 2 << 20, "a.dcm", ref.local_path, "dcm", ())
    gone = FileRef(str(tmp_path / "gone.dcm"), ref.modificationTime, 10, "gone.dcm",
                   str(tmp_path / "gone.dcm"), "dcm", ())  # fmt: skip
    with ReadAhead([listed_error, remote, huge, gone, ref], reads_whole) as ahead:
        assert [ahead.take(i) for i in range(4)] == [None] * 4
        fd = ahead.take(4)
        assert fd is not None
        os.close(fd)


def test_a_task_read_ahead_gives_the_rows_of_files_read_one_by_one(tmp_path: Path) -> None:
    """``worker.run`` (read-ahead) and ``catalog_record`` alone give the same rows for every
    file of pydicom's test folder, and for files changed, cut or gone since listed (gone
    after the read-ahead opened it: read as opened); no descriptor is left open."""
    folder = tmp_path / "in"
    folder.mkdir()
    for p in sorted(pydicom_folder().iterdir()):
        if p.is_file():
            (folder / p.name).write_bytes(p.read_bytes())
    ct, mr = sample_file("CT_small.dcm").read_bytes(), sample_file("MR_small.dcm").read_bytes()
    for name in ("zz_longer.dcm", "zz_cut.dcm", "zz_gone.dcm"):
        (folder / name).write_bytes(mr if name == "zz_longer.dcm" else ct)
    refs = sorted(iter_files(str(folder)), key=lambda r: r.path)
    (folder / "zz_longer.dcm").write_bytes(ct)
    (folder / "zz_cut.dcm").write_bytes(ct[:-1000])
    (folder / "zz_gone.dcm").unlink()
    assert fds_under(folder) == set()
    alone = [catalog_record(r, RecordOptions()) for r in refs]
    batch = worker.run(refs, RecordOptions())
    assert fds_under(folder) == set()  # (zz_gone's would show as '... (deleted)')
    assert (
        worker.rows_batch(alone)
        .drop_columns(["cataloged_at"])
        .equals(batch.drop_columns(["cataloged_at"]))
    )
    rows = {Path(r["path"]).name: r for r in batch.to_pylist()}
    assert len(rows) > 50 and rows["zz_gone.dcm"]["error"].endswith(": file not found")
    assert rows["zz_longer.dcm"]["error"] is None and rows["zz_cut.dcm"]["error"]
    # a file removed once opened ahead is read as it was opened
    (folder / "zz_gone.dcm").write_bytes(ct)
    (ref,) = [r for r in iter_files(str(folder)) if r.path.endswith("zz_gone.dcm")]
    with ReadAhead([ref], reads_whole) as ahead:
        os.unlink(ref.path)
        fd = ahead.take(0)
        row = catalog_record(ref, RecordOptions(), fd=fd)
        assert fd is not None
        os.close(fd)
    assert row["error"] is None and row["Modality"] == "CT"
