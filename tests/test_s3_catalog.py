"""`pixels catalog s3://...` against a real S3 server (moto in server mode)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pydicom

from corpus import copy_with_new_uids, sample_file
from pixels import Catalog
from pixels.table import CatalogTable
from pixels.web.stow_root import OWNER_FILE
from ports import port_file_args, wait_for_ports


def test_catalog_s3_prefix_end_to_end(s3_server: Any, tmp_path: Any) -> None:
    import s3fs

    bucket = f"cat-{uuid.uuid4().hex[:10]}"
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **s3_server.storage_options)
    fs.mkdir(bucket)
    ct, mr = sample_file("CT_small.dcm"), sample_file("MR_small.dcm")
    fs.pipe(f"{bucket}/data/p1/ct.dcm", ct.read_bytes())
    fs.pipe(f"{bucket}/data/p1/mr.dcm", mr.read_bytes())
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("inner/ct.dcm", ct.read_bytes())
    fs.pipe(f"{bucket}/data/p2/archive.zip", buf.getvalue())
    fs.pipe(f"{bucket}/data/p2/bad.dcm", b"\x00" * 10)
    fs.pipe(f"{bucket}/elsewhere/x.dcm", ct.read_bytes())

    table = tmp_path / "cat"
    opts = [
        "-o",
        f"endpoint_url={s3_server.endpoint_url}",
        "-o",
        "key=testing",
        "-o",
        "secret=testing",
    ]
    cmd = [
        sys.executable,
        "-m",
        "pixels.cli",
        "catalog",
        f"s3://{bucket}/data",
        "--table",
        str(table),
        "-q",
        *opts,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert "listed 4" in out.stderr and "errors 1" in out.stderr, out.stderr

    rows = {
        r["relative_path"]: r
        for r in Catalog(table).sql_arrow("SELECT * FROM object_catalog").to_pylist()
    }
    assert set(rows) == {"p1/ct.dcm", "p1/mr.dcm", "p2/archive.zip/inner/ct.dcm", "p2/bad.dcm"}
    assert rows["p1/ct.dcm"]["path"] == f"s3://{bucket}/data/p1/ct.dcm"
    assert rows["p1/ct.dcm"]["local_path"] is None
    assert rows["p1/ct.dcm"]["length"] == ct.stat().st_size
    assert rows["p1/ct.dcm"]["SOPInstanceUID"] == pydicom.dcmread(ct).SOPInstanceUID
    assert rows["p1/mr.dcm"]["Modality"] == "MR"
    member = rows["p2/archive.zip/inner/ct.dcm"]
    assert member["original_path"] == f"s3://{bucket}/data/p2/archive.zip"
    assert member["error"] is None and member["Modality"] == "CT"
    assert (
        rows["p2/bad.dcm"]["error"]
        and f"s3://{bucket}/data/p2/bad.dcm" in rows["p2/bad.dcm"]["error"]
    )

    # incremental: nothing new, then one new key
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert "unchanged 4" in out.stderr and "read 0" in out.stderr, out.stderr
    fs.pipe(f"{bucket}/data/p1/new.dcm", mr.read_bytes())
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert "read 1" in out.stderr and "unchanged 4" in out.stderr, out.stderr
    assert Catalog(table).count() == 5


def test_show_reads_files_on_s3_with_the_catalog_s_options(s3_server: Any, tmp_path: Path) -> None:
    """`pixels show` makes missing thumbnails from the files: on S3 it needs the same
    -o options as `pixels catalog`, which it did not take."""
    import s3fs

    bucket = f"show-{uuid.uuid4().hex[:10]}"
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **s3_server.storage_options)
    fs.mkdir(bucket)
    fs.pipe(f"{bucket}/d/ct.dcm", sample_file("CT_small.dcm").read_bytes())
    opts = ["-o", f"endpoint_url={s3_server.endpoint_url}", "-o", "key=testing"]
    opts += ["-o", "secret=testing"]
    table, sheet = str(tmp_path / "cat"), str(tmp_path / "sheet.png")
    out = _pixels("catalog", f"s3://{bucket}/d", "--table", table, "-q", "-w", "0", *opts)
    assert out.returncode == 0, out.stderr
    out = _pixels("show", "--table", table, "--out", sheet, *opts)
    assert out.returncode == 0, out.stderr
    assert "1 tiles (1 with an image)" in out.stderr, out.stderr


# ------------------------------------------------------------- tables on S3 itself
def _pixels(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pixels.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def _s3_env(s3_server: Any) -> dict[str, str]:
    """Credentials and endpoint the way a user exports them (no -o options)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_ENDPOINT_URL=s3_server.endpoint_url,
        AWS_REGION="us-east-1",
    )
    return env


def _get(url: str, accept: str = "application/dicom+json") -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()


def test_a_table_on_s3_end_to_end(s3_server: Any, tmp_path: Path) -> None:
    """catalog into s3://, re-run, sql, serve: nothing of the table touches the local disk."""
    import s3fs

    bucket = f"tbl-{uuid.uuid4().hex[:10]}"
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **s3_server.storage_options)
    fs.mkdir(bucket)
    files = {n: sample_file(n) for n in ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm")}
    for name, src in files.items():
        fs.pipe(f"{bucket}/data/{name}", src.read_bytes())
    table = f"s3://{bucket}/catalog"
    opts = ["-o", f"endpoint_url={s3_server.endpoint_url}", "-o", "key=testing"]
    opts += ["-o", "secret=testing"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    work = tmp_path / "cwd"
    work.mkdir()

    def run(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            [sys.executable, "-m", "pixels.cli", *args],
            capture_output=True, text=True, cwd=work, timeout=300, **kw,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        return out

    out = run("catalog", f"s3://{bucket}/data", "--table", table, "-q", *opts, env=env)
    assert "listed 3" in out.stderr and "written 3" in out.stderr, out.stderr
    assert fs.exists(f"{bucket}/catalog/_delta_log/00000000000000000000.json")
    assert not fs.exists(f"{bucket}/catalog/_pixels")  # no lock file: delta-rs' commits
    assert list(work.iterdir()) == []  # nothing of the table on the local disk
    out = run("catalog", f"s3://{bucket}/data", "--table", table, "-q", *opts, env=env)
    assert "unchanged 3" in out.stderr and "read 0" in out.stderr, out.stderr

    # pixels sql: -o options, then the environment's credentials alone
    query = "SELECT path, Modality, SOPInstanceUID FROM object_catalog ORDER BY path"
    for how in (opts, []):
        out = run("sql", "--table", table, query, "--format", "json", *how,
                  env=env if how else _s3_env(s3_server))  # fmt: skip
        rows = [json.loads(line) for line in out.stdout.splitlines()]
        assert [r["path"] for r in rows] == [f"s3://{bucket}/data/{n}" for n in sorted(files)]
        for r in rows:
            ds = pydicom.dcmread(files[r["path"].rsplit("/", 1)[1]])
            assert (r["SOPInstanceUID"], r["Modality"]) == (ds.SOPInstanceUID, ds.Modality)
    out = subprocess.run(
        [sys.executable, "-m", "pixels.cli", "sql", "--table", table, query],
        capture_output=True, text=True, cwd=work, env=env, timeout=300,
    )  # fmt: skip
    assert out.returncode != 0  # no credentials, no endpoint: refused, not an empty answer

    # pixels serve over the S3 table, the files on S3 too: QIDO and WADO answers
    port_file = tmp_path / "port"
    server = subprocess.Popen(
        [sys.executable, "-m", "pixels.cli", "serve", "--table", table,
         *port_file_args(port_file), *opts],
        cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        [port] = wait_for_ports(port_file, server)
        base = f"http://127.0.0.1:{port}/dicomweb"
        deadline = time.monotonic() + 60
        while True:
            try:
                status, _, body = _get(f"{base}/instances")
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(server.stderr.read() if server.stderr else "") from None
                time.sleep(0.2)
        assert status == 200
        listed = {i["00080018"]["Value"][0] for i in json.loads(body)}
        want = {n: pydicom.dcmread(p) for n, p in files.items()}
        assert listed == {str(ds.SOPInstanceUID) for ds in want.values()}
        ct = want["CT_small.dcm"]
        inst = f"{base}/studies/{ct.StudyInstanceUID}/series/{ct.SeriesInstanceUID}"
        inst += f"/instances/{ct.SOPInstanceUID}"
        status, _, body = _get(inst + "/metadata")
        assert status == 200
        assert json.loads(body)[0]["00100010"]["Value"] == [{"Alphabetic": str(ct.PatientName)}]
        status, headers, body = _get(inst, 'multipart/related; type="application/dicom"')
        assert status == 200 and "multipart/related" in headers["content-type"]
        assert bytes(ct.PixelData) in body and str(ct.SOPInstanceUID).encode() in body
        status, _, body = _get(
            inst + "/frames/1", "multipart/related; type=application/octet-stream"
        )
        assert status == 200
        assert ct.PixelData in body

        # STOW-RS into the S3 table: the file lands in ./stow, its row in the table
        new = pydicom.dcmread(files["MR_small.dcm"])
        new.SOPInstanceUID = new.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        part = io.BytesIO()
        new.save_as(part, enforce_file_format=True)
        b = "pixels-s3-test"
        stored = urllib.request.Request(
            f"{base}/studies",
            data=f"--{b}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            + part.getvalue()
            + f"\r\n--{b}--\r\n".encode(),
            headers={
                "Content-Type": f'multipart/related; type="application/dicom"; boundary={b}',
                "Accept": "application/dicom+json",
            },
            method="POST",
        )
        with urllib.request.urlopen(stored, timeout=60) as resp:
            assert resp.status == 200
        _, _, body = _get(f"{base}/instances?SOPInstanceUID={new.SOPInstanceUID}")
        assert [i["00080018"]["Value"][0] for i in json.loads(body)] == [new.SOPInstanceUID]
    finally:
        server.terminate()
        server.wait(10)
    assert [p.name for p in work.iterdir()] == ["stow"]  # not ./s3:/bucket/stow
    owner = work / "stow" / OWNER_FILE  # the storage root's table (one table per root)
    assert owner.read_text() == f"{table}\n"
    (stored_file,) = [p for p in (work / "stow").rglob("*") if p.is_file() and p != owner]
    assert stored_file.read_bytes() == part.getvalue()


def test_the_index_of_an_s3_table_reads_a_version_asked_for_at_once(
    s3_server: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    """A remote table's index re-checks the log only now and then; a request that needs a
    newer version (a STOW-RS answer waits for the version it committed) reads it at once.
    The re-check is made hourly here, so only a read of the version asked for finds it."""
    import s3fs

    import pixels.web.index as web_index

    local = copy_with_new_uids(sample_file("CT_small.dcm"), tmp_path / "src", 4, per_series=2)
    scratch = tmp_path / "scratch"
    Catalog(scratch).catalog(tmp_path / "src", workers=0)
    rows = Catalog(scratch).sql_arrow("SELECT * FROM object_catalog ORDER BY path")
    assert rows.num_rows == len(local)
    bucket = f"ix-{uuid.uuid4().hex[:10]}"
    s3fs.S3FileSystem(skip_instance_cache=True, **s3_server.storage_options).mkdir(bucket)
    uri = f"s3://{bucket}/catalog"
    opts = {"key": "testing", "secret": "testing", "endpoint_url": s3_server.endpoint_url}
    table = CatalogTable(uri, storage_options=opts)
    table.create()
    table.append(rows.slice(0, 2))
    monkeypatch.setattr(web_index, "_REMOTE_RECHECK_S", 3600.0)
    index = web_index.TableIndex(table)
    try:
        first = index.current()
        assert first.rows("SELECT count(*) AS n FROM inst", []) == [{"n": 2}]
        table.append(rows.slice(2, 2))
        version = table.version()
        assert first.version is not None and version > first.version
        assert index.current().version == first.version  # not re-checked within the hour
        now = index.current(min_version=version)
        assert now.version == version
        assert now.rows("SELECT count(*) AS n FROM inst", []) == [{"n": 4}]
    finally:
        index.close()


def test_concurrent_writers_into_one_s3_table(s3_server: Any, tmp_path: Path) -> None:
    """Two writers committing the same files at once into one s3:// table: each file once.

    No lock file can serialise writers on an object store: the check of what the
    table holds and the commit are made safe by committing only on top of the
    version that was checked (delta-rs' conditional put; a lost race re-checks).
    Both writers check, then commit, at the same moment, batch after batch.
    """
    import s3fs

    local = copy_with_new_uids(sample_file("CT_small.dcm"), tmp_path / "src", 24, per_series=6)
    scratch = tmp_path / "scratch"
    Catalog(scratch).catalog(tmp_path / "src", workers=0)
    rows = Catalog(scratch).sql_arrow("SELECT * FROM object_catalog ORDER BY path")
    assert rows.num_rows == len(local)

    bucket = f"conc-{uuid.uuid4().hex[:10]}"
    s3fs.S3FileSystem(skip_instance_cache=True, **s3_server.storage_options).mkdir(bucket)
    uri = f"s3://{bucket}/catalog"
    opts = {"key": "testing", "secret": "testing", "endpoint_url": s3_server.endpoint_url}
    CatalogTable(uri, storage_options=opts).create()
    writers = [CatalogTable(uri, storage_options=opts) for _ in range(2)]
    barrier = threading.Barrier(2, timeout=120)
    written = [0, 0]
    failures: list[BaseException] = []

    def write(i: int) -> None:
        try:
            for start in range(0, rows.num_rows, 2):
                barrier.wait()
                written[i] += writers[i].append(rows.slice(start, 2))
        except BaseException as e:  # reported below
            failures.append(e)
            barrier.abort()

    threads = [threading.Thread(target=write, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not failures, failures
    assert sum(written) == rows.num_rows
    got = Catalog(uri, storage_options=opts).sql_arrow(
        "SELECT count(*) AS n, count(DISTINCT path) AS paths FROM object_catalog"
    )
    assert got.to_pylist() == [{"n": rows.num_rows, "paths": rows.num_rows}]
    assert not s3fs.S3FileSystem(skip_instance_cache=True, **s3_server.storage_options).exists(
        f"{bucket}/catalog/_pixels"
    )


def test_orphan_files_on_s3_are_cleaned_but_never_logged_ones(
    s3_server: Any, tmp_path: Path
) -> None:
    """Files a killed writer left in an s3:// table go; every file a version names stays."""
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True, **s3_server.storage_options)
    bucket = f"orph-{uuid.uuid4().hex[:10]}"
    fs.mkdir(bucket)
    uri = f"s3://{bucket}/catalog"
    opts = {"key": "testing", "secret": "testing", "endpoint_url": s3_server.endpoint_url}
    for k in range(3):  # three commits of real files
        copy_with_new_uids(sample_file("CT_small.dcm"), tmp_path / f"src{k}", 2, per_series=2)
        Catalog(uri, storage_options=opts).catalog(tmp_path / f"src{k}", workers=0)
    table = CatalogTable(uri, storage_options=opts)
    rows = Catalog(uri, storage_options=opts).sql_arrow("SELECT path FROM object_catalog")
    assert rows.num_rows == 6
    # compaction: the three files leave the table (remove actions) but stay on S3 for
    # readers of older versions until vacuumed after the retention
    table.optimize(vacuum=False)
    files = {p.rsplit("/", 1)[-1] for p in fs.ls(f"{bucket}/catalog") if p.endswith(".parquet")}
    current = {u.rsplit("/", 1)[-1] for u in table.file_uris()}
    assert len(files) == 4 and current < files
    # what writers killed between writing and committing leave behind
    source = f"{bucket}/catalog/{sorted(files)[0]}"
    orphans = {
        f"part-00000-{uuid.uuid4()}-c000.zstd.parquet",
        f"part-00001-{uuid.uuid4()}-c000.zstd.parquet.tmp",
    }
    for name in orphans:
        fs.copy(source, f"{bucket}/catalog/{name}")
    time.sleep(1.1)  # object times have whole seconds
    assert table.clean_orphans(min_age_hours=1) == []  # as young as a live writer's: kept
    assert sorted(table.clean_orphans(min_age_hours=0)) == sorted(orphans)
    fs.invalidate_cache()
    left = {p.rsplit("/", 1)[-1] for p in fs.ls(f"{bucket}/catalog") if ".parquet" in p}
    assert left == files  # every logged file, removed ones included, is still there
    again = Catalog(uri, storage_options=opts).sql_arrow("SELECT path FROM object_catalog")
    assert sorted(again.column("path").to_pylist()) == sorted(rows.column("path").to_pylist())
    assert table.clean_orphans(min_age_hours=0) == []
