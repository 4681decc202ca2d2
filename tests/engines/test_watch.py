"""`pixels catalog DIR --watch`: a real process watching a real folder while files come and go.

Each test runs the command as a user does (a subprocess), changes the folder
under it, and reads the Delta table it writes.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable

from corpus import sample_file
from pixels.engines.inotify import available
from pixels.engines.watch import filesystem_type, needs_polling
from pixels.sql import query
from pixels.table import CatalogTable

PIXELS = [sys.executable, "-m", "pixels.cli"]
CT = sample_file("CT_small.dcm").read_bytes()
MR = sample_file("MR_small.dcm").read_bytes()
#: How long a change may take to reach the table on a loaded machine (a wait, not a timing).
PATIENCE = 90.0


class Watch:
    """A running `pixels catalog --watch` and its log."""

    def __init__(self, src: Path, cat: Path, log: Path, *args: str) -> None:
        self.cat = cat
        self.log = log
        self.fh = open(log, "a")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*PIXELS, "catalog", str(src), "--table", str(cat), "--watch", *args],
            stdout=self.fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill -9 reaches the workers too
        )

    def rows(self) -> dict[str, dict[str, Any]]:
        table = CatalogTable(self.cat)
        if not table.exists():
            return {}
        got = query(table, "SELECT path, length, error, Modality, warnings FROM object_catalog")
        out: dict[str, dict[str, Any]] = {}
        for row in got.to_pylist():
            assert row["path"] not in out, f"two rows for {row['path']}"
            out[row["path"]] = row
        return out

    def wait(self, what: str, done: Callable[[dict[str, dict[str, Any]]], bool]) -> None:
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the watch ended early:\n{self.log.read_text()}"
            if done(self.rows()):
                return
            time.sleep(0.2)
        raise AssertionError(f"{what}: not in the table after {PATIENCE} s\n{self.log.read_text()}")

    def stop(self, sig: int = signal.SIGINT) -> int:
        if self.proc.poll() is None:
            if sig == signal.SIGKILL:
                os.killpg(self.proc.pid, signal.SIGKILL)
            else:
                self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=60)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            self.fh.close()
        return code


@pytest.fixture()
def watches() -> Iterator[list[Watch]]:
    started: list[Watch] = []
    yield started
    for w in started:
        if w.proc.poll() is None:
            w.stop(signal.SIGKILL)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _watching(watcher: Any, runner: threading.Thread) -> None:
    """Wait until ``watcher`` has made its first walk (its inotify watches are set first)."""
    deadline = time.monotonic() + PATIENCE
    while watcher.stats.walks < 1:
        assert runner.is_alive() and time.monotonic() < deadline, "the watch did not start"
        time.sleep(0.02)


MODES = [
    pytest.param(
        ["--settle", "3"],
        id="inotify",
        marks=pytest.mark.skipif(not available(), reason="no inotify here"),
    ),
    pytest.param(["--settle", "3", "--poll", "--poll-interval", "0.3"], id="poll"),
]


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_files_appear_change_and_go_while_watching(
    tmp_path: Path, watches: list[Watch], mode: list[str]
) -> None:
    """New files, a file written in two halves, a rewrite, a new folder, a zip archive, and
    deletions (rows removed with --deletions remove) reach the table while it runs."""
    src = tmp_path / "in"
    _write(src / "before.dcm", CT)  # there before the watch starts
    _write(src / "gone" / "x.dcm", MR)
    w = Watch(
        src, tmp_path / "cat", tmp_path / "watch.log", *mode, "-w", "1", "--deletions", "remove"
    )
    watches.append(w)
    before, x = str(src / "before.dcm"), str(src / "gone" / "x.dcm")
    w.wait("files there at start", lambda r: before in r and x in r)

    _write(src / "new.dcm", MR)
    w.wait("a new file", lambda r: str(src / "new.dcm") in r)

    # written in two halves with a pause shorter than --settle: read once, whole
    half = src / "half.dcm"
    with open(half, "wb") as f:
        f.write(CT[: len(CT) // 2])
        f.flush()
        time.sleep(1.0)
        assert str(half) not in w.rows(), "a file still being written was read"
        f.write(CT[len(CT) // 2 :])
    w.wait("the whole file", lambda r: str(half) in r)
    row = w.rows()[str(half)]
    assert row["length"] == len(CT) and row["error"] is None and row["Modality"] == "CT"

    # rewritten in place: its row is replaced, not doubled
    time.sleep(0.05)
    _write(src / "before.dcm", MR)
    w.wait("the rewritten file", lambda r: r[before]["length"] == len(MR))
    assert w.rows()[before]["Modality"] == "MR"

    # a new folder with a file in it, and a zip archive: members are rows
    _write(src / "d1" / "d2" / "deep.dcm", CT)
    archive = src / "batch.zip"
    with zipfile.ZipFile(tmp_path / "batch.zip", "w") as z:
        z.writestr("m1.dcm", CT)
        z.writestr("m2.dcm", MR)
    shutil.move(tmp_path / "batch.zip", archive)  # moved in whole: old mtime, new ctime
    w.wait(
        "a file in a new folder and the members of a zip",
        lambda r: (
            str(src / "d1" / "d2" / "deep.dcm") in r
            and sum(1 for p in r if p.endswith(f"::{archive}")) == 2
        ),
    )

    # deleted: a file, a folder, an archive
    os.remove(src / "new.dcm")
    shutil.rmtree(src / "gone")
    os.remove(archive)
    w.wait(
        "rows of deleted files removed",
        lambda r: str(src / "new.dcm") not in r and x not in r and not any("::" in p for p in r),
    )
    assert set(w.rows()) == {before, str(half), str(src / "d1" / "d2" / "deep.dcm")}

    assert w.stop(signal.SIGINT) == 0
    log = w.log.read_text()
    assert "watched" in log and "Traceback" not in log, log


@pytest.mark.slow
def test_kill_9_mid_batch_then_restart_reads_every_file_once(
    tmp_path: Path, watches: list[Watch]
) -> None:
    """kill -9 while rows are being committed, files still arriving; a restart ends with every
    file exactly once. Deleted files keep their rows by default (as Auto Loader does)."""
    src = tmp_path / "in"
    n = 600
    for i in range(n):
        _write(src / f"s{i // 100}" / f"{i:04d}.dcm", CT if i % 2 else MR)
    cat = tmp_path / "cat"
    args = ["--settle", "1", "-w", "1", "--commit-rows", "10"]
    w = Watch(src, cat, tmp_path / "watch1.log", *args)
    watches.append(w)
    w.wait("some rows committed", lambda r: len(r) >= 10)
    for i in range(n, n + 20):  # arriving while the backlog is read
        _write(src / "late" / f"{i:04d}.dcm", CT)
    held = len(w.rows())
    w.stop(signal.SIGKILL)
    assert 0 < held < n, f"the kill was not mid-run ({held} of {n} rows)"
    after_kill = len(w.rows())
    assert after_kill < n + 20

    for i in range(n + 20, n + 30):  # arriving while it is down
        _write(src / "late" / f"{i:04d}.dcm", MR)
    w2 = Watch(src, cat, tmp_path / "watch2.log", *args)
    watches.append(w2)
    expected = {str(p) for p in src.rglob("*.dcm")}
    assert len(expected) == n + 30
    w2.wait("every file", lambda r: set(r) == expected)  # rows() asserts one row per path
    assert all(r["error"] is None for r in w2.rows().values())

    # a deleted file keeps its row (deletions keep): checked once a later file is in
    os.remove(src / "s0" / "0000.dcm")
    _write(src / "late" / "barrier.dcm", CT)
    w2.wait("the file after the deletion", lambda r: str(src / "late" / "barrier.dcm") in r)
    assert str(src / "s0" / "0000.dcm") in w2.rows()
    assert w2.stop(signal.SIGTERM) == 0
    assert "Traceback" not in w2.log.read_text()
    # every commit of the second run added rows the first had not committed: none twice
    dt = DeltaTable(str(cat))
    assert dt.to_pyarrow_table(columns=["path"]).num_rows == n + 31


def test_mount_types_that_are_polled(tmp_path: Path) -> None:
    """Where inotify cannot see changes made elsewhere, the watch polls (and says why)."""
    fstype = filesystem_type(str(tmp_path))
    assert fstype is not None and fstype != ""
    why = needs_polling(str(tmp_path))
    if fstype in ("nfs", "nfs4", "cifs") or fstype.startswith("fuse"):
        assert why is not None and fstype in why
    elif available():
        assert why is None


@pytest.mark.slow
def test_ctrl_c_commits_every_row_read(tmp_path: Path, watches: list[Watch]) -> None:
    """Ctrl-C in the middle of a backlog: the rows of every file read are committed before
    it exits, and a restart reads only the others."""
    src = tmp_path / "in"
    # a backlog of several seconds' reading (400 files were all read before a Ctrl-C sent
    # after the first commit was seen in the table: the test then stopped nothing midway)
    n = 2000
    for i in range(n):
        _write(src / f"{i:04d}.dcm", CT)
    cat = tmp_path / "cat"
    w = Watch(src, cat, tmp_path / "watch1.log", "--settle", "1", "-w", "1", "--commit-rows", "50")
    watches.append(w)
    deadline = time.monotonic() + PATIENCE  # Ctrl-C as soon as the log shows a commit
    while "committed" not in w.log.read_text():
        assert w.proc.poll() is None, f"the watch ended early:\n{w.log.read_text()}"
        assert time.monotonic() < deadline, f"no commit after {PATIENCE} s\n{w.log.read_text()}"
        time.sleep(0.02)
    assert w.stop(signal.SIGINT) == 0
    log = w.log.read_text()
    read = int(re.findall(r"· read ([\d,]+) ", log)[-1].replace(",", ""))
    held = len(w.rows())
    assert held == read < n, log
    w2 = Watch(src, cat, tmp_path / "watch2.log", "--settle", "1", "-w", "1")
    watches.append(w2)
    w2.wait("every file", lambda r: len(r) == n)
    assert w2.stop(signal.SIGINT) == 0
    log2 = w2.log.read_text()
    assert int(re.findall(r"· read ([\d,]+) ", log2)[-1].replace(",", "")) == n - read, log2


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("s3://bucket/incoming", "--watch watches a local folder"),
        (str(sample_file("CT_small.dcm")), "--watch needs a folder"),
    ],
)
def test_watch_refuses_what_it_cannot_watch(tmp_path: Path, source: str, message: str) -> None:
    out = subprocess.run(
        [*PIXELS, "catalog", source, "--table", str(tmp_path / "cat"), "--watch"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and message in out.stderr and source in out.stderr, out.stderr
    assert not (tmp_path / "cat").exists()


@pytest.mark.parametrize("poll", [False, True], ids=["inotify", "poll"])
def test_more_new_files_than_candidates_held_are_all_read(tmp_path: Path, poll: bool) -> None:
    """Candidates are a bounded set: 60 files arriving at once with room for 5 overflow it,
    and the full walk that follows reads every one (each once)."""
    from pixels.engines.watch import Watcher

    if not poll and not available():
        pytest.skip("no inotify here")
    src = tmp_path / "in"
    src.mkdir()
    table = CatalogTable(tmp_path / "cat")
    watcher = Watcher(
        str(src), table, workers=0, settle=0.5, poll=poll, poll_interval=0.2, max_pending=5
    )
    runner = threading.Thread(target=watcher.run)
    runner.start()
    try:
        _watching(watcher, runner)  # (the first walk found an empty folder)
        for i in range(60):
            _write(src / f"{i:03d}.dcm", CT)
        deadline = time.monotonic() + PATIENCE
        while watcher.stats.written < 60 and time.monotonic() < deadline and runner.is_alive():
            time.sleep(0.2)
    finally:
        watcher.stop()
        runner.join(timeout=60)
    assert not runner.is_alive()
    assert watcher.stats.walks >= 2  # the overflow led to a full walk
    assert len(watcher._settling.items) <= 5
    got = query(table, "SELECT path, error FROM object_catalog").to_pylist()
    assert sorted(r["path"] for r in got) == sorted(str(src / f"{i:03d}.dcm") for i in range(60))
    assert all(r["error"] is None for r in got)
    assert watcher.stats.processed == 60  # none read twice


@pytest.mark.slow
def test_catalog_watch_from_python_until_ctrl_c(tmp_path: Path) -> None:
    """`Catalog(table).watch(folder)` runs until Ctrl-C, then returns its stats, rows committed."""
    src = tmp_path / "in"
    _write(src / "a.dcm", CT)
    script = (
        "import sys\n"
        "from pixels import Catalog\n"
        "stats = Catalog(sys.argv[2]).watch(sys.argv[1], settle=0.5, workers=0)\n"
        "print('processed', stats.processed, 'written', stats.written, flush=True)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(src), str(tmp_path / "cat")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        table = CatalogTable(tmp_path / "cat")
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline and proc.poll() is None:
            if table.exists() and table.count() == 1:
                break
            time.sleep(0.2)
        _write(src / "b.dcm", MR)
        while time.monotonic() < deadline and proc.poll() is None:
            if table.count() == 2:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert "processed 2 written 2" in out, out
    assert table.count() == 2


@pytest.mark.skipif(not available(), reason="no inotify here")
def test_folders_gone_before_they_are_watched_do_not_stop_the_watch(tmp_path: Path) -> None:
    """Tools make and remove scratch folders in a blink: the watch goes on."""
    from pixels.engines.watch import Watcher

    src = tmp_path / "in"
    src.mkdir()
    table = CatalogTable(tmp_path / "cat")
    watcher = Watcher(str(src), table, workers=0, settle=0.5)
    runner = threading.Thread(target=watcher.run)
    runner.start()
    try:
        _watching(watcher, runner)
        for i in range(20):
            (src / f"scratch{i}").mkdir()
            (src / f"scratch{i}").rmdir()
        _write(src / "after.dcm", CT)
        deadline = time.monotonic() + PATIENCE
        while watcher.stats.written < 1 and time.monotonic() < deadline and runner.is_alive():
            time.sleep(0.2)
        assert runner.is_alive()
    finally:
        watcher.stop()
        runner.join(timeout=60)
    got = query(table, "SELECT path FROM object_catalog").to_pylist()
    assert got == [{"path": str(src / "after.dcm")}]
