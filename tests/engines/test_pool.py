"""Workers that die: one error row for the file they were reading, never the run.

The pool is the real forkserver process pool; the worker is killed with SIGKILL
(what the kernel's out-of-memory killer sends) while it is blocked reading a FIFO
placed in the middle of a chunk of real DICOM files, so the kill lands mid-chunk,
deterministically.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pydicom
import pytest

from corpus import copy_tree, readable_dicom_files, sample_file
from pixels import Catalog
from pixels.dicom.record import RecordOptions, catalog_record
from pixels.engines.pool import FilePool, Item, chunks, parse_size
from pixels.sources import ArchiveLimits, iter_files
from pixels.sources.local import make_ref

CT = sample_file("CT_small.dcm")


@pytest.fixture()
def real_files(tmp_path: Path) -> list[Path]:
    files = readable_dicom_files(CT.parent)[:24]
    return copy_tree(files, tmp_path / "data")


def _items(files: list[Path], fifo: Path, at: int) -> list[Item]:
    refs = list(iter_files(str(files[0].parent)))
    fifo_ref = make_ref(
        str(fifo), datetime.now(UTC), 0, fifo.name, local_path=str(fifo)
    )  # listings skip FIFOs: built by hand
    refs.insert(at, fifo_ref)
    return [(r, False) for r in refs]


def _watch(
    pool: FilePool, target: str, on_reading: Callable[[int], bool], stop: threading.Event
) -> None:
    """Call ``on_reading(pid)`` whenever a worker is reading ``target``; stop when it says so."""
    seen: set[int] = set()
    while not stop.is_set():
        for pid, ref in pool.reading().items():
            if ref.path == target and pid not in seen:
                seen.add(pid)
                if not on_reading(pid):
                    return
        time.sleep(0.005)


def _run(pool: FilePool, items: list[Item], chunk: int) -> dict[str, dict]:
    chunks = [items[i : i + chunk] for i in range(0, len(items), chunk)]
    rows: dict[str, dict] = {}
    for covered, batch in pool.run(chunks):
        for row in batch.to_pylist():
            assert row["path"] not in rows, f"two rows for {row['path']}"
            rows[row["path"]] = row
        assert {r["path"] for r in batch.to_pylist()} <= {r.path for r, _ in covered}
    return rows


def _assert_real_rows(rows: dict[str, dict], files: list[Path]) -> None:
    """Every real file has the row an undisturbed, in-process read gives."""
    for ref in iter_files(str(files[0].parent)):
        want = catalog_record(ref)
        got = rows[ref.path]
        for col in ("error", "meta", "SOPInstanceUID", "frame_offsets", "frame_lengths"):
            assert got[col] == want[col], (ref.path, col)
    assert sum(rows[str(f)]["error"] is None for f in files) >= 20


def test_worker_killed_on_a_file_costs_that_file_only(
    tmp_path: Path, real_files: list[Path]
) -> None:
    """A file that kills its worker every time: its error row names it; all others have rows."""
    fifo = tmp_path / "hangs.dcm"
    os.mkfifo(fifo)
    items = _items(real_files, fifo, at=10)  # the middle of the second chunk of 8
    kills: list[int] = []

    def kill(pid: int) -> bool:
        kills.append(pid)
        os.kill(pid, signal.SIGKILL)
        return True

    stop = threading.Event()
    with FilePool(2, RecordOptions(), memory_limit=None) as pool:
        watcher = threading.Thread(target=_watch, args=(pool, str(fifo), kill, stop), daemon=True)
        watcher.start()
        try:
            rows = _run(pool, items, chunk=8)
        finally:
            stop.set()
            watcher.join()
        assert pool.restarts == 2
    assert len(kills) == 2  # once among the others, once read alone
    assert set(rows) == {r.path for r, _ in items}
    err = rows[str(fifo)]["error"]
    assert err is not None and str(fifo) in err and "SIGKILL" in err and "alone" in err
    _assert_real_rows(rows, real_files)


def test_bystander_of_a_dead_worker_gets_its_row(tmp_path: Path, real_files: list[Path]) -> None:
    """The kill was not the file's fault (it reads fine alone): it gets its real row."""
    fifo = tmp_path / "victim.dcm"
    os.mkfifo(fifo)
    items = _items(real_files, fifo, at=3)

    def kill_once(pid: int) -> bool:
        # the worker is blocked in open(): the path now names a real file for the retry
        shutil.copyfile(CT, tmp_path / "ct.tmp")
        os.replace(tmp_path / "ct.tmp", fifo)
        os.kill(pid, signal.SIGKILL)
        return False

    stop = threading.Event()
    with FilePool(2, RecordOptions(), memory_limit=None) as pool:
        watcher = threading.Thread(
            target=_watch, args=(pool, str(fifo), kill_once, stop), daemon=True
        )
        watcher.start()
        try:
            rows = _run(pool, items, chunk=4)
        finally:
            stop.set()
            watcher.join()
        assert pool.restarts == 1
    assert set(rows) == {r.path for r, _ in items}
    victim = rows[str(fifo)]
    assert (
        victim["error"] is None and victim["SOPInstanceUID"] == pydicom.dcmread(CT).SOPInstanceUID
    )
    _assert_real_rows(rows, real_files)


def _padded_zip(path: Path, pad: int) -> Path:
    """A zip whose member is CT_small.dcm followed by ``pad`` zero bytes (deflates to ~pad/1000)."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.write(CT, "ct.dcm", compress_type=zipfile.ZIP_DEFLATED)
        info = zipfile.ZipInfo("huge.dcm", date_time=(2024, 1, 2, 3, 4, 6))
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w", force_zip64=True) as out:
            out.write(CT.read_bytes())
            block = bytes(1 << 20)
            for _ in range(pad >> 20):
                out.write(block)
    return path


def test_worker_memory_is_bounded(tmp_path: Path) -> None:
    """A member that needs more memory than a worker may use: a MemoryError row, the rest kept."""
    src = tmp_path / "src"
    copy_tree([CT, sample_file("MR_small.dcm")], src)
    _padded_zip(src / "big.zip", 400 << 20)
    cat = Catalog(tmp_path / "cat")
    limits = ArchiveLimits(max_ratio=1e9)  # the zip-bomb ratio check is not what is tested
    stats = cat.catalog(src, workers=1, worker_memory=320 << 20, limits=limits)
    rows = {
        r["relative_path"]: r for r in cat.sql_arrow("SELECT * FROM object_catalog").to_pylist()
    }
    assert set(rows) == {"CT_small.dcm", "MR_small.dcm", "big.zip/ct.dcm", "big.zip/huge.dcm"}
    assert stats.errors == 1
    err = rows["big.zip/huge.dcm"]["error"]
    assert (
        err is not None
        and "MemoryError" in err
        and "huge.dcm" in err
        and "PIXELS_WORKER_MEMORY" in err
    )
    for name in ("CT_small.dcm", "MR_small.dcm", "big.zip/ct.dcm"):
        assert rows[name]["error"] is None and rows[name]["SOPInstanceUID"]
    again = cat.catalog(src, workers=1, worker_memory=320 << 20, limits=limits)
    assert again.processed == 0


def test_tasks_grow_and_carry_every_file_once(tmp_path: Path) -> None:
    """Tasks start small (a small run reaches every worker) and grow to the cap; every
    file of the listing is in exactly one task, in listing order, and gets its row."""
    real = readable_dicom_files(CT.parent)[:10]
    files = [f for k in range(15) for f in copy_tree(real, tmp_path / "data" / f"{k:02d}")]
    items: list[Item] = [(r, False) for r in iter_files(str(tmp_path / "data"))]
    assert len(items) == 150
    tasks = list(chunks(items, size=40, first=8))
    assert [len(t) for t in tasks] == [8, 8, 16, 16, 32, 32, 38]
    assert [it for t in tasks for it in t] == items
    assert [len(t) for t in chunks(items[:5], size=4, first=16)] == [4, 1]  # first <= size
    with FilePool(2, RecordOptions(), memory_limit=None) as pool:
        got = [row for _, batch in pool.run(tasks) for row in batch.to_pylist()]
    assert sorted(r["path"] for r in got) == sorted(str(f) for f in files)
    assert all(r["error"] is None and r["meta"] for r in got)


def test_workers_are_recycled_and_every_file_comes_back_once(tmp_path: Path) -> None:
    """With ``recycle_files``, fresh workers replace the running ones once they were given
    that many files (after the tasks in flight finish): every file still gets exactly
    one row, each set of workers reads at most its quota, and it is not a breakage."""
    real = readable_dicom_files(CT.parent)[:10]
    files = [f for k in range(6) for f in copy_tree(real, tmp_path / "data" / f"{k:02d}")]
    items: list[Item] = [(r, False) for r in iter_files(str(tmp_path / "data"))]
    assert len(items) == 60
    pids: set[int] = set()
    with FilePool(2, RecordOptions(), memory_limit=None, recycle_files=16) as pool:
        got = []
        for _, batch in pool.run(chunks(items, size=8, first=8)):
            got += batch.to_pylist()
            pids |= {p.pid for p in pool._procs}
    assert sorted(r["path"] for r in got) == sorted(str(f) for f in files)
    assert all(r["error"] is None and r["meta"] for r in got)
    # 60 files, 16 per set of workers: the 4th set reads the last 12
    assert pool.recycled == 3 and pool.restarts == 0
    assert len(pids) == 2 * 4


def test_parse_size() -> None:
    assert parse_size("4G") == 4 << 30 and parse_size("512m") == 512 << 20
    assert parse_size("1024") == 1024 and parse_size("0") == 0 and parse_size("2GiB") == 2 << 30
    with pytest.raises(ValueError, match="PIXELS_WORKER_MEMORY"):
        parse_size("lots")


def _panicking_rle(path: Path) -> Path:
    """MR_small_RLE.dcm with one byte of its RLE data changed: pylibjpeg-rle panics on it."""
    from pydicom.encaps import generate_frames

    src = sample_file("MR_small_RLE.dcm")
    data = bytearray(src.read_bytes())
    ds = pydicom.dcmread(src)
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    at = bytes(data).index(frame) + 708
    assert data[at] == 252
    data[at] = 191  # a run length that writes one byte past the segment (a Rust index panic)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("workers", [0, 1])
def test_decoder_panic_is_one_row(tmp_path: Path, workers: int) -> None:
    """A Rust decoder panic (a BaseException, not an Exception) costs one row, not the run."""
    src = tmp_path / "src"
    copy_tree([CT, sample_file("MR_small.dcm")], src)
    bad = _panicking_rle(src / "panic_rle.dcm")
    cat = Catalog(tmp_path / "cat")
    stats = cat.catalog(src, workers=workers, thumbnails=True)
    rows = {
        r["relative_path"]: r for r in cat.sql_arrow("SELECT * FROM object_catalog").to_pylist()
    }
    assert set(rows) == {"CT_small.dcm", "MR_small.dcm", "panic_rle.dcm"}
    assert stats.processed == 3
    row = rows["panic_rle.dcm"]
    problem = row["error"] or row["thumbnail_error"]
    assert problem is not None and str(bad) in problem
    assert row["thumbnail"] is None
    for name in ("CT_small.dcm", "MR_small.dcm"):
        assert rows[name]["error"] is None and rows[name]["thumbnail"] is not None


def test_cli_worker_memory_option(tmp_path: Path) -> None:
    import subprocess
    import sys

    src = tmp_path / "src"
    copy_tree([CT], src)
    cmd = [sys.executable, "-m", "pixels.cli", "catalog", str(src), "--table", str(tmp_path / "c")]
    bad = subprocess.run([*cmd, "--worker-memory", "lots"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--worker-memory" in bad.stderr and "'lots'" in bad.stderr
    ok = subprocess.run(
        [*cmd, "--worker-memory", "2G", "-w", "1", "-q"], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    assert Catalog(tmp_path / "c").sql("SELECT count(*) n FROM object_catalog").n[0] == 1


def test_workers_that_cannot_start_say_why(real_files: list[Path]) -> None:
    from pixels.errors import PixelsError

    items = [(r, False) for r in iter_files(str(real_files[0].parent))]
    with (
        FilePool(1, RecordOptions(), memory_limit=8 << 20) as pool,
        pytest.raises(PixelsError, match=r"could not start.*8388608 bytes: too small"),
    ):
        list(pool.run([items]))


def test_tasks_travel_as_plain_data(real_files: list[Path]) -> None:
    """A catalog task goes to its worker as tuples and comes back as Arrow IPC bytes (both
    pickle in C): the same refs arrive, and the same rows as :func:`worker.run`'s batch."""
    import pickle

    from pixels.engines import worker

    refs = list(iter_files(str(real_files[0].parent)))
    refs.append(make_ref("/nonexistent/x.dcm", datetime.now(UTC), 10, "x.dcm", local_path=None))
    packed = pickle.loads(pickle.dumps(worker.pack_refs(refs)))
    assert all(type(t) is tuple for t in packed)
    assert worker.unpack_refs(packed) == refs
    data = pickle.loads(pickle.dumps(worker.run_packed(packed, RecordOptions())))
    assert isinstance(data, bytes)
    got = worker.decode_batch(data).drop_columns(["cataloged_at"])
    want = worker.run(refs, RecordOptions()).drop_columns(["cataloged_at"])
    assert got.schema == want.schema and got.num_rows == len(refs) > 20
    assert got.to_pylist() == want.to_pylist()
    assert got.column("error")[-1].as_py() == "/nonexistent/x.dcm: file not found"


def test_rows_batch_is_from_pylist(real_files: list[Path]) -> None:
    """Rows cut into columns in C give ``from_pylist``'s batch; a row lacking a column too."""
    import pyarrow as pa

    from pixels.engines import worker
    from pixels.schema import SCHEMA

    rows = [catalog_record(r) for r in iter_files(str(real_files[0].parent))]
    for some in (rows, rows[:1], [], [*rows[:3], {"path": "/x.dcm", "error": "x: bad"}]):
        got = worker.rows_batch(some)
        assert got.equals(pa.RecordBatch.from_pylist(some, schema=SCHEMA))
        assert got.num_rows == len(some)


def test_the_parent_never_loads_pydicom_and_workers_start_with_it() -> None:
    """A catalog run's parent imports no pydicom (a no-op re-run reads no header: ~1 s of
    start-up saved); its workers are forked with the header reader and the frame index
    already imported (by the forkserver, once), not imported again by each worker."""
    import subprocess
    import sys

    from pixels.engines.pool import start_pool

    code = (
        "import sys, pixels.cli.catalog, pixels.catalog, pixels.engines.local, "
        "pixels.engines.pool; print(sorted(m for m in sys.modules if m.split('.')[0] == "
        "'pydicom' or m in ('pixels.dicom.meta', 'pixels.dicom.keycols')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    pool = start_pool(1)
    try:
        loaded = pool.submit(
            eval, "[m in __import__('sys').modules for m in ('pydicom', 'pixels.dicom.meta', "
            "'pixels.dicom.frames', 'pixels.dicom.fastread')]"
        )  # fmt: skip
        assert loaded.result() == [True, True, True, True]
    finally:
        pool.shutdown()


def test_workers_and_forkserver_end_when_the_run_is_killed(tmp_path: Path) -> None:
    """A run killed outright (SIGKILL, the OOM killer, SIGTERM without a handler) leaves
    no process behind: its workers' parent is the forkserver, and they held its pipe, so
    both waited for tasks forever (seen: 52 minutes after a SIGTERM of `pixels catalog`)."""
    import subprocess
    import sys

    script = tmp_path / "run.py"
    script.write_text(
        "import os, sys, time\n"
        "from pixels.engines.pool import start_pool\n"
        "pool = start_pool(2)\n"
        "print(os.getpid(), *sorted(pool._processes), flush=True)\n"
        "time.sleep(600)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        run, *workers = (int(p) for p in proc.stdout.readline().split())
        assert run == proc.pid and len(workers) == 2
        with open(f"/proc/{workers[0]}/stat") as fh:
            forkserver = {int(fh.read().split()[3])}  # the workers' parent
        left = set(workers) | forkserver
        assert all(os.path.exists(f"/proc/{p}") for p in left)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while left and time.monotonic() < deadline:
            for p in list(left):
                try:
                    with open(f"/proc/{p}/stat") as fh:
                        state = fh.read().split()[2]
                except FileNotFoundError:
                    state = "gone"
                if state in ("gone", "Z"):  # ended (a zombie until init reaps it)
                    left.discard(p)
            time.sleep(0.1)
        assert not left, f"processes left behind by a killed run: {sorted(left)}"
    finally:
        if proc.poll() is None:
            proc.kill()
