"""The Delta table under crashes and concurrent writers, driven through the real `pixels` command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from corpus import copy_with_new_uids, sample_file, tree_files
from pixels import Catalog
from pixels.schema import TIMESTAMP
from pixels.table import CatalogTable
from ports import port_file_args, wait_for_ports

PIXELS = [sys.executable, "-m", "pixels.cli"]


def count_distinct(table: Path) -> tuple[int, int]:
    df = Catalog(table).sql("SELECT count(*) AS n, count(DISTINCT path) AS d FROM object_catalog")
    return int(df.n[0]), int(df.d[0])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    copy_with_new_uids(sample_file("CT_small.dcm"), root / "ct", 1200)
    copy_with_new_uids(sample_file("MR_small.dcm"), root / "mr", 600)
    return root


@pytest.mark.slow
@pytest.mark.parametrize(
    ("workers", "commit_rows", "kill_at"),
    [("1", "60", 200), ("2", "200", 900)],  # the second: killed at half of the 1,800 files
)
def test_kill_9_then_resume_loses_nothing_and_duplicates_nothing(
    corpus: Path, tmp_path: Path, workers: str, commit_rows: str, kill_at: int
) -> None:
    files = tree_files(corpus)
    table = tmp_path / "cat"
    proc = subprocess.Popen(
        [
            *PIXELS,
            "catalog",
            str(corpus),
            "--table",
            str(table),
            "--workers",
            workers,
            "--commit-rows",
            commit_rows,
            "-q",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    committed = 0
    while time.monotonic() < deadline:
        if DeltaTable.is_deltatable(str(table)):
            committed = DeltaTable(str(table)).count()
            if committed >= kill_at:
                break
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"run finished before it could be killed: {proc.stderr.read()!r}"
    os.killpg(proc.pid, signal.SIGKILL)  # the whole group: main process and workers
    proc.wait()
    before = DeltaTable(str(table)).count()
    assert kill_at <= before < len(files)
    n, d = count_distinct(table)
    assert n == d == before  # what was committed is intact

    out = subprocess.run(
        [*PIXELS, "catalog", str(corpus), "--table", str(table), "--workers", "2", "-q"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"unchanged {before:,}" in out.stderr, out.stderr
    n, d = count_distinct(table)
    assert n == d == len(files)
    got = set(Catalog(table).sql("SELECT path FROM object_catalog").path)
    assert got == set(files)


@pytest.mark.slow
def test_concurrent_runs_into_one_table(corpus: Path, tmp_path: Path) -> None:
    files = tree_files(corpus)
    table = tmp_path / "cat"
    cmd = [
        *PIXELS,
        "catalog",
        str(corpus),
        "--table",
        str(table),
        "--workers",
        "1",
        "--commit-rows",
        "100",
        "-q",
    ]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    n, d = count_distinct(table)
    assert n == d == len(files)
    dt = DeltaTable(str(table))
    assert dt.count() == len(files)
    # the table stays readable by delta-rs itself, and a later run finds nothing to do
    stats = Catalog(table).catalog(corpus, workers=0)
    assert stats.processed == 0 and stats.unchanged == len(files)


def test_optimize_compacts_and_keeps_rows(corpus: Path, tmp_path: Path) -> None:
    table = tmp_path / "cat"
    cat = Catalog(table)
    cat.catalog(corpus / "mr", workers=0, commit_rows=100)
    before = len(CatalogTable(table).file_uris())
    assert before >= 4
    cat.optimize()
    assert len(CatalogTable(table).file_uris()) == 1
    n, d = count_distinct(table)
    assert n == d == 600


def test_optimize_keeps_what_readers_of_older_versions_read(corpus: Path, tmp_path: Path) -> None:
    """Replaced files stay for Delta's 7 days: snapshots in use and time travel keep working."""
    table = tmp_path / "cat"
    Catalog(table).catalog(corpus / "mr", workers=0, commit_rows=100)
    held = CatalogTable(table).scan()  # what a running catalog, Spark or the server reads
    old_files = list(held.files)
    assert len(old_files) >= 4
    out = subprocess.run(
        [*PIXELS, "optimize", "--table", str(table)], capture_output=True, text=True, check=True
    )
    assert '"filesVacuumed": 0' in out.stdout, out.stdout
    assert len(CatalogTable(table).file_uris()) == 1
    assert all(os.path.exists(f) for f in old_files)
    paths = tree_files(corpus / "mr")
    got = CatalogTable(table).lookup(paths, uris=held)
    assert sorted(got["path"].to_pylist()) == paths
    # time travel to the version before the compaction
    back = DeltaTable(str(table), version=held.version).to_pyarrow_table(columns=["path"])
    assert sorted(back["path"].to_pylist()) == paths

    # asked for: no retention, the replaced files go now (and with them that version)
    out = subprocess.run(
        [*PIXELS, "optimize", "--table", str(table), "--retention-hours", "0"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert f'"filesVacuumed": {len(old_files)}' in out.stdout, out.stdout
    assert not any(os.path.exists(f) for f in old_files)
    n, d = count_distinct(table)
    assert n == d == 600
    bad = subprocess.run(
        [*PIXELS, "optimize", "--table", str(table), "--retention-hours", "-1"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "--retention-hours" in bad.stderr


def _get_json(url: str) -> Any:
    import json
    import urllib.request

    with urllib.request.urlopen(url, timeout=60) as r:
        assert r.status == 200, url
        return json.loads(r.read() or b"[]")


def _optimize_between_writes(table: Path, after: int) -> bool:
    """Whether an OPTIMIZE commit after version ``after`` lies between two WRITE commits."""
    ops = [
        h["operation"]
        for h in sorted(DeltaTable(str(table)).history(), key=lambda h: h["version"])
        if h["version"] > after
    ]
    return any(
        op == "OPTIMIZE" and "WRITE" in ops[:i] and "WRITE" in ops[i + 1 :]
        for i, op in enumerate(ops)
    )


@pytest.mark.slow
def test_optimize_during_a_catalog_run_and_serve(tmp_path: Path) -> None:
    """`pixels optimize` while `pixels catalog` commits and `pixels serve` answers: both go on.

    `pixels optimize` runs back to back from before each catalog run starts until it ends.
    Whether one of them committed between two of the run's commits is read from the Delta
    history, not guessed from timing; a run too quick for that (a fast or a loaded machine)
    is followed by another over 1,500 new files, up to six runs.
    """
    import threading

    source = tmp_path / "src"
    table = tmp_path / "cat"
    copy_with_new_uids(sample_file("MR_small.dcm"), source / "mr", 600)
    Catalog(table).catalog(source / "mr", workers=0, commit_rows=50)
    mr_series = {
        r["SeriesInstanceUID"]: (r["StudyInstanceUID"], r["n"])
        for r in Catalog(table)
        .sql_arrow(
            "SELECT StudyInstanceUID, SeriesInstanceUID, count(*) AS n FROM object_catalog "
            "GROUP BY ALL"
        )
        .to_pylist()
    }
    assert len(mr_series) == 12 and {n for _, n in mr_series.values()} == {50}
    port_file = tmp_path / "port"
    server = subprocess.Popen(
        [*PIXELS, "serve", "--table", str(table), *port_file_args(port_file)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    run = None
    failures: list[str] = []
    answers = 0
    stop = threading.Event()

    def ask() -> None:
        nonlocal answers
        while not stop.is_set():
            for series, (study, n) in mr_series.items():
                try:
                    got = _get_json(f"{base}/studies/{study}/series/{series}/metadata")
                    if len(got) != n:
                        failures.append(f"{series}: {len(got)} instances, not {n}")
                    answers += 1
                except Exception as e:  # every failure is reported
                    failures.append(f"{series}: {e!r}")

    def optimize_until(done: threading.Event, results: list[subprocess.CompletedProcess]) -> None:
        while not done.is_set():
            results.append(
                subprocess.run(
                    [*PIXELS, "optimize", "--table", str(table)], capture_output=True, text=True
                )
            )

    try:
        [port] = wait_for_ports(port_file, server)
        base = f"http://127.0.0.1:{port}/dicomweb"
        deadline = time.monotonic() + 60
        while True:
            try:
                _get_json(base + "/studies?limit=1")
                break
            except OSError:
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        client = threading.Thread(target=ask, daemon=True)
        client.start()
        during = False
        optimizes: list[subprocess.CompletedProcess] = []
        for round_ in range(6):
            copy_with_new_uids(sample_file("CT_small.dcm"), source / f"ct{round_}", 1500)
            before = DeltaTable(str(table)).version()
            done = threading.Event()
            optimizer = threading.Thread(target=optimize_until, args=(done, optimizes))
            optimizer.start()
            run = subprocess.Popen(
                [
                    *PIXELS,
                    "catalog",
                    str(source),
                    "--table",
                    str(table),
                    "--workers",
                    "1",
                    "-q",
                    "--commit-rows",
                    "10",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            _, err = run.communicate(timeout=600)
            done.set()
            optimizer.join(timeout=600)
            assert run.returncode == 0, err
            bad = [o.stderr for o in optimizes if o.returncode != 0]
            assert not bad, bad[:2]
            if _optimize_between_writes(table, before):
                during = True
                break
        # the client goes on until it has more than 20 answers (a minute at most): a clean
        # clone's CI once got 12 during a run, where this machine gets 96-132 alone
        until = time.monotonic() + 60
        while answers <= 20 and not failures and time.monotonic() < until:
            time.sleep(0.1)
        stop.set()
        client.join(timeout=120)
        assert during, (
            f"no optimize committed between two commits of a catalog run in {round_ + 1} runs"
        )
        assert answers > 20 and not failures, failures[:5]
        n, d = count_distinct(table)
        assert n == d == len(tree_files(source))
        studies = _get_json(base + "/studies?limit=1000")
        assert sum(s["00201208"]["Value"][0] for s in studies) == n
    finally:
        stop.set()
        for p in (run, server):
            if p is not None and p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL) if p is server else p.kill()
                p.wait()


def test_missing_table_is_a_clear_error(tmp_path: Path) -> None:
    from pixels.errors import TableError

    with pytest.raises(TableError, match="no catalog table"):
        CatalogTable(tmp_path / "nothing").delta()
    # SQL over a table that does not exist yet sees an empty catalog
    assert len(Catalog(tmp_path / "nothing").sql("SELECT * FROM object_catalog")) == 0


def test_old_table_gains_new_columns(tmp_path: Path) -> None:
    """A table written with an older, narrower schema is evolved, its rows kept (new columns null)."""
    import pyarrow as pa
    from deltalake import write_deltalake

    from pixels.schema import SCHEMA

    table = tmp_path / "cat"
    old_fields = [f for f in SCHEMA if f.name not in ("file_type", "cataloged_at")]
    old = pa.schema(old_fields)
    ct = sample_file("CT_small.dcm")
    row = {f.name: None for f in old_fields}
    row.update(path="/old/row.dcm", length=1, relative_path="row.dcm")
    write_deltalake(str(table), pa.Table.from_pylist([row], schema=old), mode="error")
    data = tmp_path / "data"
    data.mkdir()
    (data / "ct.dcm").write_bytes(ct.read_bytes())
    cat = Catalog(table)
    stats = cat.catalog(data, workers=0)
    assert stats.written == 1
    names = DeltaTable(str(table)).schema().to_arrow().names
    assert "file_type" in names and "cataloged_at" in names
    rows = {
        r["path"]: r
        for r in cat.sql_arrow("SELECT path, file_type, Modality FROM object_catalog").to_pylist()
    }
    assert rows["/old/row.dcm"]["file_type"] is None
    assert (
        rows[str(data / "ct.dcm")]["file_type"] == "dicom"
        and rows[str(data / "ct.dcm")]["Modality"] == "CT"
    )


def test_a_table_path_that_cannot_be_a_table(tmp_path: Path) -> None:
    from pixels.errors import TableError
    from pixels.table import CatalogTable

    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(TableError, match=r"file\.txt"):
        CatalogTable(blocker).create()
    with pytest.raises(TableError, match=r"[Nn]ot a directory"):
        CatalogTable(blocker / "t").create()


def _zip_with_repeated_name(dest: Path) -> tuple[Path, list[str], Path]:
    """A real zip of pydicom's files where ``dup.dcm`` is written twice (two different files)."""
    import zipfile

    from corpus import pydicom_folder, readable_dicom_files

    files = readable_dicom_files(pydicom_folder())[:40]
    dest.mkdir()
    archive = dest / "a.zip"
    # the two members lie more than a chunk (64 files) apart: in different commits
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(archive, "w") as zf:
        zf.write(files[0], "dup.dcm")
        for f in files:
            zf.write(f, f.name)
            zf.write(f, "copy/" + f.name)
        zf.write(files[1], "dup.dcm")
    names = sorted({f.name for f in files} | {"copy/" + f.name for f in files} | {"dup.dcm"})
    return archive, names, files[1]


def test_a_repeated_zip_member_name_is_one_row_through_the_cli(tmp_path: Path) -> None:
    archive, names, last = _zip_with_repeated_name(tmp_path / "src")
    table = tmp_path / "cat"
    cmd = [*PIXELS, "catalog", str(archive.parent), "--table", str(table), "-q"]
    subprocess.run([*cmd, "--commit-rows", "1", "--workers", "1"], check=True, capture_output=True)
    rows = Catalog(table).sql_arrow("SELECT path, length FROM object_catalog").to_pylist()
    assert sorted(r["path"] for r in rows) == sorted(f"zip://{n}::{archive}" for n in names)
    # the member a reader gets by name is the last one written: its row, its size
    dup = [r for r in rows if r["path"] == f"zip://dup.dcm::{archive}"]
    assert dup == [{"path": f"zip://dup.dcm::{archive}", "length": last.stat().st_size}]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    assert f"unchanged {len(names)}" in out.stderr and "read 0 " in out.stderr, out.stderr
    assert DeltaTable(str(table)).count() == len(names)


def _rows(files: list[Path], root: Path) -> pa.Table:
    from pixels.dicom.record import catalog_batch
    from pixels.sources import iter_files

    refs = [r for r in iter_files(str(root)) if r.path in {str(f) for f in files}]
    return pa.Table.from_batches([catalog_batch(refs)])


def test_append_keeps_one_row_per_path_within_and_across_commits(tmp_path: Path) -> None:
    """The writer's own rule, whatever the listing sends: one row per path, newest wins."""
    import datetime as dt

    src = tmp_path / "src"
    files = copy_with_new_uids(sample_file("CT_small.dcm"), src, 6)
    rows = _rows(files, src)
    table = CatalogTable(tmp_path / "cat")
    snapshot = table.file_uris()  # what a listing compared with: nothing
    # one batch holding a path twice: an older copy of row 0 after the newer one
    older = rows.slice(0, 1).set_column(
        1, "modificationTime", pa.array([dt.datetime(2001, 1, 1, tzinfo=dt.UTC)], TIMESTAMP)
    )
    assert table.append(pa.concat_tables([rows.slice(0, 3), older]), checked=snapshot) == 3
    # the next commits (nobody else committed) carry paths this writer already wrote
    assert table.append(rows.slice(2, 2), checked=snapshot) == 1  # row 2 again: dropped
    assert (
        table.append(pa.concat_tables([rows.slice(1, 1), rows.slice(5, 1)]), checked=snapshot) == 1
    )
    n, d = count_distinct(tmp_path / "cat")
    assert n == d == 5
    got = Catalog(tmp_path / "cat").sql_arrow(
        "SELECT modificationTime FROM object_catalog WHERE path = ?", [rows["path"][0].as_py()]
    )
    assert got["modificationTime"].to_pylist() == [rows["modificationTime"][0].as_py()]


def test_append_sees_what_another_writer_committed_between_its_commits(tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = copy_with_new_uids(sample_file("MR_small.dcm"), src, 4)
    rows = _rows(files, src)
    mine, theirs = CatalogTable(tmp_path / "cat"), CatalogTable(tmp_path / "cat")
    snapshot = mine.file_uris()
    assert mine.append(rows.slice(0, 1), checked=snapshot) == 1
    assert theirs.append(rows.slice(2, 1)) == 1  # another process commits file 2
    assert mine.append(rows.slice(1, 1), checked=snapshot) == 1
    # this writer's listing (older than that commit) still holds file 2
    assert mine.append(rows.slice(2, 2), checked=snapshot) == 1
    n, d = count_distinct(tmp_path / "cat")
    assert n == d == 4


def _unreferenced(table: Path) -> set[str]:
    """Data files in the table folder that no add/remove action of its log names."""
    from pixels.table import _logged_files

    names = {n for n in os.listdir(table) if n.endswith((".parquet", ".parquet.tmp"))}
    return names - _logged_files(str(table))


@pytest.mark.slow
def test_files_a_killed_run_left_are_cleaned_by_a_later_run(corpus: Path, tmp_path: Path) -> None:
    """kill -9 while a data file is being written: the next run deletes what no commit names."""
    table = tmp_path / "cat"
    cmd = [*PIXELS, "catalog", str(corpus), "--table", str(table), "--workers", "1", "-q"]
    left: set[str] = set()
    for _attempt in range(6):
        proc = subprocess.Popen(
            [*cmd, "--commit-rows", "400"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and proc.poll() is None:
                # kill the moment a data file is being written (before its commit)
                if table.is_dir() and any(n.endswith(".tmp") for n in os.listdir(table)):
                    break
                time.sleep(0.001)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        left = _unreferenced(table)
        if left:
            break
    assert left, "no kill landed between writing a data file and committing it"
    committed = DeltaTable(str(table)).count()
    # a file as young as a live writer's stays; the killed run's files are a day old
    young = f"part-00000-{uuid.uuid4()}-c000.zstd.parquet.tmp"
    (table / young).write_bytes((table / sorted(left)[0]).read_bytes())
    day_ago = time.time() - 25 * 3600
    for name in left:
        os.utime(table / name, (day_ago, day_ago))

    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert f"unchanged {committed:,}" in out.stderr, out.stderr
    assert _unreferenced(table) == {young}
    assert all(os.path.exists(u) for u in DeltaTable(str(table)).file_uris())
    n, d = count_distinct(table)
    assert n == d == len(tree_files(corpus))


def test_iter_new_follows_the_identity_rule_row_by_row(corpus: Path, tmp_path: Path) -> None:
    """iter_new compares whole columns; each ref gets what same_version says row by row:
    unchanged refs are skipped, others come back with changed=True when the path is held."""
    import dataclasses
    from datetime import timedelta

    from pixels.schema import same_version
    from pixels.sources import iter_files
    from pixels.table import iter_new

    src = tmp_path / "src"
    src.mkdir()
    for i, f in enumerate(sorted(tree_files(corpus))[:40]):
        (src / f"{i:03d}.dcm").write_bytes(Path(f).read_bytes())
    (src / "bad.dcm").write_bytes(b"not dicom")
    cat = Catalog(tmp_path / "cat")
    cat.catalog(src, workers=0)
    table = CatalogTable(tmp_path / "cat")
    refs = sorted(iter_files(str(src)), key=lambda r: r.path)
    ms = timedelta(milliseconds=1)
    us = timedelta(microseconds=400)
    variants = [
        refs[0],  # unchanged
        dataclasses.replace(refs[1], length=refs[1].length + 1),
        dataclasses.replace(refs[2], modificationTime=refs[2].modificationTime + ms),
        dataclasses.replace(refs[3], modificationTime=refs[3].modificationTime + us),  # same ms
        dataclasses.replace(refs[4], version_tag="crc32:00000001"),  # held tag null: unknown
        dataclasses.replace(refs[5], path=refs[5].path + ".new"),
        *[r for r in refs[6:] if r.path.endswith("bad.dcm")],  # held with an error
        *refs[6:12],
    ]
    existing = table.lookup([r.path for r in variants]).to_pylist()
    held = {h["path"]: h for h in existing}

    def row_by_row(retry: bool) -> list[tuple[object, bool]]:
        out = []
        for r in variants:
            h = held.get(r.path)
            if h is None:
                out.append((r, False))
                continue
            hv = (h["length"], h["modificationTime"], h["version_tag"])
            if same_version(hv, (r.length, r.modificationTime, r.version_tag)) and not (
                retry and h["has_error"]
            ):
                continue
            out.append((r, True))
        return out

    for retry in (False, True):
        got = list(iter_new(table, variants, retry_errors=retry))
        assert got == row_by_row(retry)
    got = {r.path: changed for r, changed in iter_new(table, variants, retry_errors=True)}
    assert got == {
        variants[1].path: True,
        variants[2].path: True,
        variants[5].path: False,
        str(src / "bad.dcm"): True,
    }


def test_iter_new_builds_a_ref_only_for_new_or_changed_entries(tmp_path: Path) -> None:
    """A listing's columns are compared with the table; a FileRef is built for the entries
    to read and for no other (a no-op re-run builds none); before 1970 included."""
    from pixels.sources import RefBatch
    from pixels.sources.local import iter_local_batches
    from pixels.table import iter_new

    src = tmp_path / "src"
    a = [str(p) for p in copy_with_new_uids(sample_file("CT_small.dcm"), src / "a", 6)]
    b = copy_with_new_uids(sample_file("MR_small.dcm"), src / "b", 4)
    os.utime(b[0], ns=(0, -1_500_000_001))
    Catalog(tmp_path / "cat").catalog(src, workers=0)
    table = CatalogTable(tmp_path / "cat")
    built: list[str] = []

    def listing() -> list[RefBatch]:
        def recorded(b: RefBatch) -> RefBatch:
            def make(i: int) -> Any:
                built.append(b.paths[i])
                return b.ref(i)

            return RefBatch(b.paths, b.lengths, b.mtimes_ms, make, b.version_tags)

        return [recorded(b) for b in iter_local_batches(str(src))]

    assert list(iter_new(table, listing(), chunk=4)) == [] and built == []
    with open(a[1], "ab") as f:
        f.write(b"\0\0")
    os.utime(a[4], ns=(0, os.stat(a[4]).st_mtime_ns + 1_000_000))
    new = os.path.join(os.path.dirname(a[0]), "new.dcm")
    Path(new).write_bytes(Path(a[0]).read_bytes())
    got = [(r.path, changed) for r, changed in iter_new(table, listing(), chunk=4)]
    assert got == [(a[1], True), (a[4], True), (new, False)]
    assert built == [a[1], a[4], new]


def test_iter_new_holds_a_bounded_part_of_the_listing(tmp_path: Path) -> None:
    """iter_new pulls the listing at most one look-up group (``chunk``) plus one batch ahead
    of what it yields, however long the listing; against a new (empty) table it holds no
    group at all: each entry is yielded as it is listed."""
    from pixels.sources import RefBatch
    from pixels.sources.local import iter_local_batches
    from pixels.table import iter_new

    src = tmp_path / "src"
    for k in range(12):  # 12 folders of 3 real files: 12 batches of the listing
        copy_with_new_uids(sample_file("CT_small.dcm"), src / f"{k:02d}", 3)
    listed: list[str] = []

    def listing() -> Any:
        for b in iter_local_batches(str(src)):
            listed.extend(b.paths)
            yield RefBatch(b.paths, b.lengths, b.mtimes_ms, b.ref, b.version_tags)

    def ahead(table: CatalogTable, chunk: int) -> tuple[int, list[str]]:
        listed.clear()
        most, got = 0, []
        for ref, _ in iter_new(table, listing(), chunk=chunk):
            got.append(ref.path)
            most = max(most, len(listed) - len(got))
        assert got == listed  # every listed entry, in listing order
        return most, got

    table = CatalogTable(tmp_path / "cat")
    table.create()  # a new table: nothing to look up
    most, got = ahead(table, chunk=20)
    assert len(got) == 36 and most == 2  # the rest of the file's own batch (3 entries)
    # a table that holds other files: look-ups, in groups of at least `chunk` entries
    other = tmp_path / "other"
    copy_with_new_uids(sample_file("MR_small.dcm"), other, 2)
    Catalog(tmp_path / "cat").catalog(other, workers=0)
    for chunk in (4, 7, 20):
        most, got = ahead(table, chunk)
        assert len(got) == 36
        assert chunk - 1 <= most <= chunk - 1 + 3  # one group, plus at most one batch


def test_split_by_identity_follows_same_version_row_by_row() -> None:
    """split_by_identity on whole columns drops exactly the rows same_version says the table
    holds (any held version of a path), minus ``keep`` and, with keep_errors, held errors."""
    from datetime import UTC, datetime, timedelta

    from pixels.scan import LOOKUP_SCHEMA
    from pixels.schema import same_version
    from pixels.table import split_by_identity

    t0 = datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    old = datetime(1969, 12, 31, 23, 59, 59, 999500, tzinfo=UTC)
    us = timedelta(microseconds=300)
    held_rows = [  # (path, length, time, tag, has_error)
        ("/a", 10, t0, None, False),
        ("/b", 10, t0, "crc32:00000001", False),
        ("/c", 10, t0, None, True),
        ("/d", 10, t0, None, False),
        ("/d", 11, t0, None, False),  # two held versions of one path
        ("/e", 10, old, None, False),
        ("/f", None, None, None, False),
    ]
    data_rows = [
        ("/a", 10, t0 + us, None),  # same millisecond
        ("/b", 10, t0, "crc32:00000002"),
        ("/c", 10, t0, None),
        ("/d", 11, t0, None),
        ("/e", 10, old - us, None),  # floored: same millisecond before 1970
        ("/f", None, None, None),
        ("/g", 10, t0, None),
        ("/a2", 10, t0 + timedelta(milliseconds=1), None),
    ]
    existing = pa.Table.from_pylist(
        [dict(zip(LOOKUP_SCHEMA.names, r, strict=True)) for r in held_rows], LOOKUP_SCHEMA
    )
    data = pa.table(
        {
            "path": [r[0] for r in data_rows],
            "length": pa.array([r[1] for r in data_rows], pa.int64()),
            "modificationTime": pa.array([r[2] for r in data_rows], TIMESTAMP),
            "version_tag": pa.array([r[3] for r in data_rows], pa.string()),
        }
    )
    for keep, keep_errors in [((), False), ((), True), (("/a", "/d"), False)]:
        rows, replace = split_by_identity(data, existing, keep=keep, keep_errors=keep_errors)
        want, want_replace = [], []
        for p, n, t, v in data_rows:
            versions = [h[1:4] for h in held_rows if h[0] == p and not (keep_errors and h[4])]
            held = any(h[0] == p for h in held_rows)
            if held and p not in keep and any(same_version(h, (n, t, v)) for h in versions):
                continue
            want.append(p)
            if held:
                want_replace.append(p)
        assert rows["path"].to_pylist() == want, (keep, keep_errors)
        assert replace == want_replace
    assert split_by_identity(data, None)[0]["path"].to_pylist() == [r[0] for r in data_rows]


def test_footer_reads_leave_nothing_for_the_cycle_collector(tmp_path: Path) -> None:
    """A Parquet footer read for its statistics (the writer's identity check, the
    upgrade check, the index's ``meta`` check) is freed when dropped: a footer left in
    a reference cycle (``FileMetaData.schema``) waited for the next collection, which
    then freed the footers of every data file at once inside the DICOMweb server's next
    index update (70-170 ms at 10M rows).

    The reads run in a process of their own: in the suite's process, a thread another test
    left ending (a server's) may hold footers of its own while the collector is off."""
    src = tmp_path / "src"
    files = copy_with_new_uids(sample_file("CT_small.dcm"), src, 4)
    rows = _rows(files, src)
    table = CatalogTable(tmp_path / "cat")
    for i in range(3):
        table.append(rows.slice(i, 1))
    assert len(table.file_uris()) == 3
    pq.write_table(rows.slice(3, 1), tmp_path / "row.parquet")
    script = """
import gc, sys
import pyarrow.parquet as pq
from pixels.table import CatalogTable
from pixels.table.evolve import _fs_path, stale
from pixels.web.index_tables import _meta_never_null

table = CatalogTable(sys.argv[1])
uris = table.file_uris()
row = pq.read_table(sys.argv[2])
gc.collect()
gc.disable()
# a writer that sees only the table's files (their path ranges read from footers)
assert CatalogTable(sys.argv[1]).append(row) == 1
assert _meta_never_null(uris)
fs, root = table._fs()
assert not any(stale(fs, _fs_path(u, table.uri, root)) for u in uris)
left = [o for o in gc.get_objects() if isinstance(o, pq.FileMetaData)]
print(len(left))
"""
    run = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "cat"), str(tmp_path / "row.parquet")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["0"], run.stdout
