"""The Spark engine end to end on a real local[2] session: the dbx.pixels snippet, parity
with the local engine, incremental runs, streaming, crash recovery and the Delta commit."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pydicom
import pytest
from deltalake import DeltaTable
from PIL import Image

from corpus import copy_tree, copy_with_new_uids, pydicom_folder, readable_dicom_files, sample_file
from pixels import Catalog
from pixels.dicom import DicomMetaExtractor, DicomThumbnailExtractor
from pixels.errors import SourceNotFoundError
from pixels.schema import SCHEMA

pytestmark = pytest.mark.spark

CT = "CT_small.dcm"


def _table_rows(uri: Path | str) -> dict[str, dict[str, Any]]:
    """Rows of a Delta table by path, read with deltalake (not with the engine under test)."""
    rows = DeltaTable(str(uri)).to_pyarrow_table().to_pylist()
    by_path = {r["path"]: r for r in rows}
    assert len(by_path) == len(rows), "duplicate paths in the table"
    return by_path


def _pixels(data: bytes | None) -> np.ndarray | None:
    return None if data is None else np.asarray(Image.open(io.BytesIO(data)))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real DICOM files in nested folders, a zip of some, broken and hidden files."""
    root = tmp_path_factory.mktemp("spark-corpus") / "data"
    files = readable_dicom_files(pydicom_folder())
    copy_tree(files[:40], root / "study a" / "séries 1")
    copy_tree(files[40:70], root / "study b")
    copy_tree(files[70:], root)
    with zipfile.ZipFile(root / "archive.zip", "w") as zf:
        zf.write(sample_file(CT), "inner/ct.dcm")
        zf.write(sample_file("MR_small.dcm"), "mr.dcm")
        zf.writestr("../escape.dcm", sample_file(CT).read_bytes())
    ct = sample_file(CT).read_bytes()
    (root / "truncated.dcm").write_bytes(ct[:700])
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden.dcm").write_bytes(ct)
    (root / "_underscore.dcm").write_bytes(ct)  # Spark's own listing would drop it
    (root / "partial.dcm.part").write_bytes(ct)
    return root


@pytest.fixture(scope="module")
def local_rows(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """The local engine's table of the corpus, thumbnails included."""
    table = tmp_path_factory.mktemp("local-table") / "t"
    Catalog(table).catalog(corpus, workers=2, thumbnails=True)
    return _table_rows(table)


def test_dbx_snippet_matches_the_local_engine(
    spark: Any, corpus: Path, local_rows: dict[str, dict], tmp_path: Path
) -> None:
    table = str(tmp_path / "lake" / "object_catalog")
    # the dbx.pixels snippet, import line changed
    catalog = Catalog(spark, table=table)
    catalog_df = catalog.catalog(str(corpus), extractZip=True)
    meta_df = DicomMetaExtractor(catalog).transform(catalog_df)
    thumbnail_df = DicomThumbnailExtractor().transform(meta_df)
    result = catalog.save(thumbnail_df)
    assert result.fused == 2  # both transforms ran inside the writer tasks
    counts = {
        r["Modality"]: r["count"] for r in catalog.load().groupBy("Modality").count().collect()
    }

    spark_rows = _table_rows(table)
    assert result.rows == len(spark_rows) == len(local_rows)
    assert set(spark_rows) == set(local_rows)
    assert str(corpus / "_underscore.dcm") in spark_rows
    assert not any(".hidden" in p or p.endswith(".part") for p in spark_rows)
    assert sum(counts.values()) == len(local_rows)
    assert counts["CT"] == sum(1 for r in local_rows.values() if r["Modality"] == "CT")

    compared = 0
    for path, want in local_rows.items():
        got = spark_rows[path]
        for name in SCHEMA.names:
            if name in ("cataloged_at", "thumbnail"):
                continue
            assert got[name] == want[name], (path, name, got[name], want[name])
        if want["thumbnail"] is not None:
            assert np.array_equal(_pixels(got["thumbnail"]), _pixels(want["thumbnail"])), path
            compared += 1
        else:
            assert got["thumbnail"] is None
    assert compared > 40
    member = f"zip://inner/ct.dcm::{corpus / 'archive.zip'}"
    assert spark_rows[member]["Modality"] == "CT" and spark_rows[member]["error"] is None
    escape = next(r for p, r in spark_rows.items() if "escape.dcm" in p)
    assert "escape.dcm" in escape["error"]
    assert "truncated.dcm" in spark_rows[str(corpus / "truncated.dcm")]["error"]

    # writer tasks buffer Spark's small Arrow batches into whole row groups
    for uri in DeltaTable(table).file_uris():
        meta = pq.read_metadata(uri)
        assert meta.num_row_groups == 1 and meta.num_rows > 1, (uri, meta.num_row_groups)

    # the Spark schema of the table is the one derived from the single schema definition
    from pixels.schema import to_spark_schema

    loaded = catalog.load(variant=False)
    assert [(f.name, f.dataType) for f in loaded.schema.fields] == [
        (f.name, f.dataType) for f in to_spark_schema().fields
    ]


def test_local_engine_and_spark_share_one_table(spark: Any, corpus: Path, tmp_path: Path) -> None:
    """Spark writes into a table the local engine made, and the local engine reads it back."""
    table = tmp_path / "shared"
    Catalog(table).catalog(corpus / "study b", workers=0)
    before = _table_rows(table)
    catalog = Catalog(spark, table=str(table))
    listing = catalog.catalog(str(corpus), extractZip=True)
    listed = {r["path"] for r in listing.select("path").collect()}
    assert not listed & set(before), "files already in the table are listed again"
    catalog.save(DicomMetaExtractor(catalog).transform(listing))
    after = _table_rows(table)
    assert set(before) < set(after)
    for path, row in before.items():  # untouched rows keep their cataloged_at
        assert after[path]["cataloged_at"] == row["cataloged_at"]
    local = Catalog(table)
    assert local.count() == len(after)
    stats = local.catalog(corpus, workers=0)  # the local engine finds nothing new
    assert stats.processed == 0 and stats.unchanged == len(after)


def test_rerun_reads_only_new_and_changed_files(spark: Any, tmp_path: Path) -> None:
    src = tmp_path / "src"
    first = copy_with_new_uids(sample_file(CT), src / "a", 6)
    table = str(tmp_path / "t")
    catalog = Catalog(spark, table=table)
    catalog.save(DicomMetaExtractor(catalog).transform(catalog.catalog(str(src))))
    v1 = DeltaTable(table).version()
    assert len(_table_rows(table)) == 6

    # nothing new: the listing is empty and the save commits nothing
    again = catalog.catalog(str(src))
    assert again.count() == 0
    assert catalog.save(DicomMetaExtractor(catalog).transform(again)).rows == 0
    assert DeltaTable(table).version() == v1

    # two new files, one file rewritten in place with other content
    copy_with_new_uids(sample_file(CT), src / "b", 2)
    changed = first[0]
    replacement = copy_with_new_uids(sample_file("MR_small.dcm"), tmp_path / "mr", 1)[0]
    shutil.copyfile(replacement, changed)
    listed = {r["path"] for r in catalog.catalog(str(src)).select("path").collect()}
    assert len(listed) == 3 and str(changed) in listed
    meta = DicomMetaExtractor(catalog).transform(catalog.catalog(str(src)))
    result = catalog.save(meta.where("length > 0"))  # changed after the transform: not fused
    assert result.fused == 0
    assert result.rows == 3 and result.replaced == 1
    rows = _table_rows(table)
    assert len(rows) == 8
    assert rows[str(changed)]["Modality"] == "MR"
    assert rows[str(changed)]["length"] == changed.stat().st_size


def test_streaming_two_batches_and_a_changed_file(spark: Any, tmp_path: Path) -> None:
    src = tmp_path / "incoming"
    table = str(tmp_path / "t")
    checkpoint = str(tmp_path / "checkpoints")

    def run() -> Any:
        catalog = Catalog(spark, table=table)
        stream = catalog.catalog(str(src), streaming=True, streamCheckpointBasePath=checkpoint)
        meta = DicomMetaExtractor(catalog).transform(stream)
        return catalog.save(DicomThumbnailExtractor(max_size=64).transform(meta))

    first = copy_with_new_uids(sample_file(CT), src / "day1", 5)
    query = run()
    assert query.lastProgress["numInputRows"] == 5
    rows = _table_rows(table)
    assert set(rows) == {str(p) for p in first}
    assert all(r["thumbnail_width"] == 64 or r["thumbnail_height"] == 64 for r in rows.values())

    second = copy_with_new_uids(sample_file("MR_small.dcm"), src / "day2", 4)
    query = run()
    assert query.lastProgress["numInputRows"] == 4  # only the new files went through
    rows = _table_rows(table)
    assert set(rows) == {str(p) for p in first + second}

    # a file rewritten at the same path: Spark's file source never re-picks it,
    # the catalog's identity check does
    target = first[0]
    shutil.copyfile(second[0], target)
    os.utime(target, (time.time() + 5, time.time() + 5))
    run()
    rows = _table_rows(table)
    assert len(rows) == 9
    assert rows[str(target)]["Modality"] == "MR"
    assert rows[str(target)]["thumbnail"] is not None  # the stream's thumbnail step too

    version = DeltaTable(table).version()
    query = run()  # nothing new, nothing changed: no commit
    assert query.lastProgress["numInputRows"] == 0
    assert DeltaTable(table).version() == version
    assert DeltaTable(table).count() == len(_table_rows(table)) == 9


_KILLED_STREAM = """
import sys
from pixels.engines.spark.session import local_session
from pixels import Catalog
from pixels.dicom import DicomMetaExtractor
spark = local_session("local[1]", driver_memory="1g")
catalog = Catalog(spark, table=sys.argv[2])
df = catalog.catalog(sys.argv[1], streaming=True, streamCheckpointBasePath=sys.argv[3],
                     maxFilesPerTrigger=2)
catalog.save(DicomMetaExtractor(catalog).transform(df))
"""


def test_stream_killed_midway_then_restarted(spark: Any, tmp_path: Path) -> None:
    src = tmp_path / "incoming"
    files = copy_with_new_uids(sample_file(CT), src, 30)
    table = tmp_path / "t"
    checkpoint = tmp_path / "ck"
    script = tmp_path / "stream.py"
    script.write_text(_KILLED_STREAM)
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(src), str(table), str(checkpoint)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if DeltaTable.is_deltatable(str(table)) and DeltaTable(str(table)).version() >= 3:
                break
            assert proc.poll() is None, "the stream ended before it could be killed"
            time.sleep(0.05)
        else:
            pytest.fail("the stream made no progress in 300 s")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the JVM too
        proc.wait()
    done = _table_rows(table)
    assert 0 < len(done) < 30, "the kill did not land mid-way"

    catalog = Catalog(spark, table=str(table))
    df = catalog.catalog(str(src), streaming=True, streamCheckpointBasePath=str(checkpoint))
    catalog.save(DicomMetaExtractor(catalog).transform(df))
    rows = _table_rows(table)  # asserts no duplicate paths
    assert set(rows) == {str(p) for p in files}
    assert all(r["error"] is None and r["Modality"] == "CT" for r in rows.values())
    referenced = {os.path.basename(u) for u in DeltaTable(str(table)).file_uris()}
    assert all(pq.read_metadata(table / name).num_rows for name in referenced)
    # what the killed attempt wrote and never committed goes once it is old enough
    # (a day: a live writer elsewhere may still commit younger files) and its lease is stale
    from pixels.table import _logged_files

    def unreferenced() -> set[str]:
        names = {n for n in os.listdir(table) if n.endswith((".parquet", ".parquet.tmp"))}
        return names - _logged_files(str(table))

    day_ago = time.time() - 25 * 3600
    for name in unreferenced():
        os.utime(table / name, (day_ago, day_ago))
    for lease in (table / "_pixels" / "writers").glob("*"):
        os.utime(lease, (day_ago, day_ago))
    again = Catalog(spark, table=str(table))
    assert again.save(DicomMetaExtractor(again).transform(again.catalog(str(src)))).rows == 0
    assert not unreferenced()
    assert not list((table / "_pixels" / "writers").glob("*"))


def test_a_replayed_micro_batch_is_not_committed_twice(spark: Any, tmp_path: Path) -> None:
    src = tmp_path / "src"
    copy_with_new_uids(sample_file(CT), src, 3)
    catalog = Catalog(spark, table=str(tmp_path / "t"))
    df = DicomMetaExtractor(catalog).transform(catalog.catalog(str(src)))
    first = catalog._save_batch(df, "append", app_id="pixels-stream:test", batch_id=0)
    version = DeltaTable(str(tmp_path / "t")).version()
    assert first.rows == 3
    # a restart after the commit but before Spark's own checkpoint: the same batch again
    again = catalog._save_batch(df, "append", app_id="pixels-stream:test", batch_id=0)
    assert again.rows == 0 and DeltaTable(str(tmp_path / "t")).version() == version
    assert DeltaTable(str(tmp_path / "t")).transaction_version("pixels-stream:test") == 0


def test_overwrite_replaces_the_table_in_one_commit(spark: Any, tmp_path: Path) -> None:
    src = tmp_path / "src"
    copy_with_new_uids(sample_file(CT), src / "a", 4)
    table = str(tmp_path / "t")
    catalog = Catalog(spark, table=table)
    catalog.save(DicomMetaExtractor(catalog).transform(catalog.catalog(str(src))))
    only_b = copy_with_new_uids(sample_file(CT), tmp_path / "b", 2)
    fresh = Catalog(spark, table=str(tmp_path / "other"))  # lists everything under b
    df = DicomMetaExtractor(fresh).transform(fresh.catalog(str(tmp_path / "b")))
    before = DeltaTable(table).version()
    catalog.save(df, mode="overwrite")
    assert DeltaTable(table).version() == before + 1
    assert set(_table_rows(table)) == {str(p) for p in only_b}
    # the small files of many saves compact into one; the rows stay
    catalog.save(DicomMetaExtractor(catalog).transform(catalog.catalog(str(src))))
    assert len(DeltaTable(table).file_uris()) > 1
    catalog.optimize()
    assert len(DeltaTable(table).file_uris()) == 1 and catalog.count() == 6
    assert catalog.load().count() == 6


def test_a_failed_job_commits_nothing_and_leaves_no_files(spark: Any, tmp_path: Path) -> None:
    src = tmp_path / "src"
    copy_with_new_uids(sample_file(CT), src, 4)
    table = tmp_path / "t"
    catalog = Catalog(spark, table=str(table))
    good = DicomMetaExtractor(catalog).transform(catalog.catalog(str(src)))
    catalog.save(good)
    version = DeltaTable(str(table)).version()
    names_before = sorted(os.listdir(table))
    # one partition of good rows, one whose length cannot be cast: its task fails
    from pyspark.sql import functions as sf

    bad = good.withColumn(
        "length",
        sf.when(sf.col("path").endswith("0.dcm"), sf.lit("not a number")).otherwise(
            sf.col("length").cast("string")
        ),
    )
    from pyspark.errors import PythonException

    with pytest.raises((PythonException, Exception)) as err:
        catalog.save(bad.repartition(2), mode="overwrite")
    assert "not a number" in str(err.value) or "cast" in str(err.value).lower()
    assert DeltaTable(str(table)).version() == version
    assert sorted(os.listdir(table)) == names_before


def test_concurrent_writer_between_snapshot_and_commit(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The local engine commits the same files while the Spark job runs: no duplicates."""
    from pixels.table import CatalogTable

    src = tmp_path / "src"
    copy_with_new_uids(sample_file(CT), src, 5)
    table = tmp_path / "t"
    catalog = Catalog(spark, table=str(table))
    df = DicomMetaExtractor(catalog).transform(catalog.catalog(str(src)))
    real_lock = CatalogTable._writer_lock
    state = {"raced": False}

    def lock_after_a_rival(self: CatalogTable) -> Any:
        if not state["raced"]:
            state["raced"] = True
            Catalog(table).catalog(src, workers=0)  # commits all 5 first
        return real_lock(self)

    monkeypatch.setattr(CatalogTable, "_writer_lock", lock_after_a_rival)
    result = catalog.save(df)
    assert state["raced"]
    rows = _table_rows(table)
    assert len(rows) == 5
    # the rival's commit (after the table's creation) is the last one: Spark committed nothing
    assert result.rows == 0 and result.version is None and result.skipped == 5
    assert DeltaTable(str(table)).version() == 1


def test_metastore_table_name_without_delta_jars(spark: Any, tmp_path: Path) -> None:
    src = tmp_path / "src"
    copy_with_new_uids(sample_file(CT), src, 3)
    catalog = Catalog(spark, table="pixels_test_object_catalog")
    catalog.save(DicomMetaExtractor(catalog).transform(catalog.catalog(str(src))))
    assert spark.table("pixels_test_object_catalog").count() == 3
    warehouse = spark.conf.get("spark.sql.warehouse.dir").removeprefix("file:")
    assert DeltaTable.is_deltatable(os.path.join(warehouse, "pixels_test_object_catalog"))
    assert (
        spark.sql("SELECT count(*) n FROM object_catalog WHERE Modality = 'CT'").first()["n"] == 3
    )


def test_bad_input_names_the_source(spark: Any, tmp_path: Path) -> None:
    catalog = Catalog(spark, table=str(tmp_path / "t"))
    with pytest.raises(SourceNotFoundError, match="nowhere"):
        catalog.catalog(str(tmp_path / "nowhere"))
    from pixels.errors import PixelsError

    with pytest.raises(PixelsError, match="mode"):
        catalog.save(catalog.load(), mode="upsert")


@pytest.mark.parametrize(
    ("uri", "path", "local"),
    [
        ("file:/data/a b/ü.dcm", "/data/a b/ü.dcm", "/data/a b/ü.dcm"),
        ("file:///data/x.dcm", "/data/x.dcm", "/data/x.dcm"),
        ("s3a://bucket/k/x.dcm", "s3://bucket/k/x.dcm", None),
        ("dbfs:/Volumes/c/s/v/x.dcm", "dbfs:/Volumes/c/s/v/x.dcm", "/Volumes/c/s/v/x.dcm"),
        ("dbfs:/mnt/x.dcm", "dbfs:/mnt/x.dcm", "/dbfs/mnt/x.dcm"),
    ],
)
def test_spark_file_uris_become_catalog_paths(uri: str, path: str, local: str | None) -> None:
    from pixels.rows import uri_to_path

    assert uri_to_path(uri) == (path, local)


def test_listing_units_cover_every_folder_once(tmp_path: Path) -> None:
    from pixels.engines.spark.listing import plan_units
    from pixels.sources import iter_files

    root = tmp_path / "root"
    for i in range(3):
        for j in range(4):
            copy_tree([sample_file(CT)], root / f"p{i}" / f"s{j}")
    copy_tree([sample_file(CT)], root)
    (root / ".git").mkdir()
    units = plan_units(str(root), target=5)
    assert any(not rec for _, _, rec in units) and any(rec for _, _, rec in units)
    listed = []
    for path, prefix, rec in units:
        listed += [
            (r.path, r.relative_path)
            for r in iter_files(path, recursive=rec, relative_prefix=prefix)
        ]
    whole = [(r.path, r.relative_path) for r in iter_files(str(root))]
    assert sorted(listed) == sorted(whole) and len(listed) == 13


def test_s3_source_listed_and_read_in_the_executors(
    spark: Any, s3_server: Any, tmp_path: Path
) -> None:
    """An ``s3://`` prefix on a real S3 server (moto): listed and read by executors via fsspec."""
    import uuid

    import s3fs

    bucket = f"spark-{uuid.uuid4().hex[:10]}"
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **s3_server.storage_options)
    fs.mkdir(bucket)
    ct, mr = sample_file(CT).read_bytes(), sample_file("MR_small.dcm").read_bytes()
    for i in range(3):
        fs.pipe(f"{bucket}/data/p{i}/s1/ct.dcm", ct)
    fs.pipe(f"{bucket}/data/mr.dcm", mr)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("inner/ct.dcm", ct)
    fs.pipe(f"{bucket}/data/p0/archive.zip", buf.getvalue())
    fs.pipe(f"{bucket}/data/p1/bad.dcm", b"\x00" * 10)

    table = str(tmp_path / "t")
    catalog = Catalog(spark, table=table)
    listing = catalog.catalog(
        f"s3://{bucket}/data", storage_options=s3_server.storage_options, extractZip=True
    )
    result = catalog.save(DicomMetaExtractor(catalog).transform(listing))
    rows = _table_rows(table)
    assert result.rows == len(rows) == 6
    for i in range(3):
        row = rows[f"s3://{bucket}/data/p{i}/s1/ct.dcm"]
        assert row["Modality"] == "CT" and row["error"] is None
        assert row["relative_path"] == f"p{i}/s1/ct.dcm" and row["local_path"] is None
    assert rows[f"s3://{bucket}/data/mr.dcm"]["Modality"] == "MR"
    member = rows[f"zip://inner/ct.dcm::s3://{bucket}/data/p0/archive.zip"]
    assert member["Modality"] == "CT" and member["relative_path"] == "p0/archive.zip/inner/ct.dcm"
    assert f"s3://{bucket}/data/p1/bad.dcm" in rows[f"s3://{bucket}/data/p1/bad.dcm"]["error"]
    # the same listing again: nothing new
    again = catalog.catalog(
        f"s3://{bucket}/data", storage_options=s3_server.storage_options, extractZip=True
    )
    assert again.count() == 0
    # without extractZip the archive itself is a file the table does not hold yet
    plain = catalog.catalog(f"s3://{bucket}/data", storage_options=s3_server.storage_options)
    assert [r["path"] for r in plain.collect()] == [f"s3://{bucket}/data/p0/archive.zip"]


def test_continuous_stream_picks_up_files_as_they_arrive(spark: Any, tmp_path: Path) -> None:
    src = tmp_path / "incoming"
    copy_with_new_uids(sample_file(CT), src / "a", 2)
    table = str(tmp_path / "t")
    catalog = Catalog(spark, table=table)
    df = catalog.catalog(str(src), streaming=True, streamCheckpointBasePath=str(tmp_path / "ck"))
    query = catalog.save(
        DicomMetaExtractor(catalog).transform(df), trigger="1 second", rescan_seconds=2
    )
    try:
        assert query.isActive

        def wait_for(n: int) -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if DeltaTable.is_deltatable(table) and DeltaTable(table).count() >= n:
                    return
                assert query.exception() is None, query.exception()
                time.sleep(0.2)
            pytest.fail(f"the stream did not reach {n} rows")

        wait_for(2)
        later = copy_with_new_uids(sample_file("MR_small.dcm"), src / "b", 3)
        wait_for(5)
        rows = _table_rows(table)
        assert len(rows) == 5 and all(rows[str(p)]["Modality"] == "MR" for p in later)

        # a file rewritten in place while the stream runs: the periodic rescan finds it
        target = later[0]
        shutil.copyfile(sample_file("rtplan.dcm"), target)
        deadline = time.monotonic() + 120
        while _table_rows(table)[str(target)]["Modality"] != "RTPLAN":
            assert time.monotonic() < deadline, "the rewritten file was not re-read"
            time.sleep(0.5)
        assert len(_table_rows(table)) == 5
    finally:
        query.stop()


def test_anti_join_listing_used_with_spark_delta(spark: Any, tmp_path: Path) -> None:
    """The listing filter for sessions with Delta Lake: a join against the table's rows."""
    from pixels.engines.spark.catalog import unseen

    src = tmp_path / "src"
    files = copy_with_new_uids(sample_file(CT), src, 4)
    (src / "bad.dcm").write_bytes(b"nope")
    catalog = Catalog(spark, table=str(tmp_path / "t"))
    catalog.save(DicomMetaExtractor(catalog).transform(catalog.catalog(str(src))))
    fresh = Catalog(spark, table=str(tmp_path / "empty"))  # lists everything
    listing = fresh.catalog(str(src))
    assert listing.count() == 5
    assert unseen(listing, catalog.load()).count() == 0
    assert [r["path"] for r in unseen(listing, catalog.load(), retry_errors=True).collect()] == [
        str(src / "bad.dcm")
    ]
    shutil.copyfile(sample_file("MR_small.dcm"), files[0])
    changed = fresh.catalog(str(src))
    assert [r["path"] for r in unseen(changed, catalog.load()).collect()] == [str(files[0])]


def test_catalog_rows_can_be_read_again(spark: Any, tmp_path: Path) -> None:
    """DicomMetaExtractor over loaded rows re-reads the files: an old read error does not stick."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "later.dcm").write_bytes(b"not yet")
    catalog = Catalog(spark, table=str(tmp_path / "t"))
    catalog.save(DicomMetaExtractor(catalog).transform(catalog.catalog(str(src))))
    assert catalog.load().first()["error"]
    shutil.copyfile(sample_file(CT), src / "later.dcm")
    again = DicomMetaExtractor(catalog).transform(catalog.load()).first()
    assert again["error"] is None and again["Modality"] == "CT"


def test_volume_holds_default_stream_checkpoints(spark: Any, tmp_path: Path) -> None:
    from pixels.engines.spark.catalog import _volume_root

    assert _volume_root("main.pixels.landing") == "/Volumes/main/pixels/landing"
    assert _volume_root("/mnt/scratch") == "/mnt/scratch"
    src = tmp_path / "src"
    copy_with_new_uids(sample_file(CT), src, 2)
    volume = tmp_path / "volume"
    catalog = Catalog(spark, table=str(tmp_path / "t"), volume=str(volume))
    df = catalog.catalog(str(src), streaming=True)
    catalog.save(DicomMetaExtractor(catalog).transform(df))
    assert catalog.count() == 2
    checkpoints = list((volume / "_checkpoints").iterdir())
    assert len(checkpoints) == 1 and (checkpoints[0] / "save" / "offsets").is_dir()


def test_readme_snippet_as_a_script(tmp_path: Path) -> None:
    """examples/spark_catalog.py (the README snippet) in a fresh process, as a user runs it."""
    src = tmp_path / "src"
    copy_with_new_uids(sample_file(CT), src / "ct", 3)
    copy_with_new_uids(sample_file("MR_small.dcm"), src / "mr", 2)
    script = Path(__file__).parents[2] / "examples" / "spark_catalog.py"
    table = tmp_path / "lake" / "object_catalog"
    done = subprocess.run(
        [sys.executable, str(script), str(src), str(table), "local[1]"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    shown = done.stdout
    assert "|Modality|count|" in shown
    assert "|      CT|    3|" in shown and "|      MR|    2|" in shown
    rows = _table_rows(table)
    assert len(rows) == 5 and all(r["thumbnail"] for r in rows.values())
    assert Catalog(table).count() == 5  # the local engine reads what Spark wrote


def test_streaming_expands_zip_archives_and_applies_the_pattern(spark: Any, tmp_path: Path) -> None:
    src = tmp_path / "incoming"
    (src / "drop").mkdir(parents=True)
    with zipfile.ZipFile(src / "drop" / "upload.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(sample_file(CT), "a/ct.dcm")
        zf.write(sample_file("MR_small.dcm"), "mr.dcm")
        zf.writestr("readme.txt", "skip me")
        zf.writestr("../../escape.dcm", sample_file(CT).read_bytes())
    shutil.copyfile(sample_file(CT), src / "drop" / "plain.dcm")
    (src / "drop" / "notes.txt").write_text("skip me too")
    (src / ".staging").mkdir()
    shutil.copyfile(sample_file(CT), src / ".staging" / "half.dcm")
    table = str(tmp_path / "t")
    catalog = Catalog(spark, table=table)
    df = catalog.catalog(
        str(src),
        pattern="*.dcm",
        streaming=True,
        extractZip=True,
        streamCheckpointBasePath=str(tmp_path / "ck"),
    )
    catalog.save(DicomMetaExtractor(catalog).transform(df))
    rows = _table_rows(table)
    archive = src / "drop" / "upload.zip"
    assert set(rows) == {
        f"zip://a/ct.dcm::{archive}",
        f"zip://mr.dcm::{archive}",
        next(p for p in rows if "escape.dcm" in p),
        str(src / "drop" / "plain.dcm"),
    }
    assert rows[f"zip://mr.dcm::{archive}"]["Modality"] == "MR"
    assert rows[f"zip://a/ct.dcm::{archive}"]["relative_path"] == "drop/upload.zip/a/ct.dcm"
    assert "escape.dcm" in next(r["error"] for p, r in rows.items() if "escape.dcm" in p)


def test_thumbnails_added_later_with_mode_replace(spark: Any, tmp_path: Path) -> None:
    """Rows re-derived from the table (thumbnails added later) replace their old rows."""
    src = tmp_path / "src"
    copy_with_new_uids(sample_file(CT), src, 3)
    table = str(tmp_path / "t")
    catalog = Catalog(spark, table=table)
    catalog.save(DicomMetaExtractor(catalog).transform(catalog.catalog(str(src))))
    assert all(r["thumbnail"] is None for r in _table_rows(table).values())
    with_thumbs = DicomThumbnailExtractor(max_size=32).transform(catalog.load())
    # append keeps the rows the table holds at the same identity
    assert catalog.save(with_thumbs).skipped == 3
    assert all(r["thumbnail"] is None for r in _table_rows(table).values())
    result = catalog.save(with_thumbs, mode="replace")
    assert result.rows == 3 and result.replaced == 3
    rows = _table_rows(table)  # no duplicates
    assert len(rows) == 3 and all(max(_pixels(r["thumbnail"]).shape) == 32 for r in rows.values())


def _zip_with_repeated_name(dest: Path) -> tuple[Path, Path]:
    """A real zip where ``dup.dcm`` is written twice (two different files), 20 members apart."""
    files = readable_dicom_files(pydicom_folder())[:20]
    dest.mkdir(parents=True)
    archive = dest / "a.zip"
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(archive, "w") as zf:
        zf.write(files[0], "dup.dcm")
        for f in files:
            zf.write(f, f.name)
        zf.write(files[1], "dup.dcm")
    return archive, files[1]


def test_a_repeated_zip_member_name_is_one_row_batch_and_stream(spark: Any, tmp_path: Path) -> None:
    archive, last = _zip_with_repeated_name(tmp_path / "src")
    dup = f"zip://dup.dcm::{archive}"
    for streaming in (False, True):
        table = str(tmp_path / f"t-{streaming}")
        catalog = Catalog(spark, table=table)
        df = catalog.catalog(
            str(archive.parent),
            extractZip=True,
            streaming=streaming,
            streamCheckpointBasePath=str(tmp_path / f"ck-{streaming}"),
        )
        catalog.save(DicomMetaExtractor(catalog).transform(df))
        rows = _table_rows(table)  # asserts one row per path
        assert len(rows) == DeltaTable(table).count() == 21
        # the member a reader gets by name is the last one written: its row, its size
        assert rows[dup]["length"] == last.stat().st_size
        assert rows[dup]["SOPInstanceUID"] == pydicom.dcmread(last).SOPInstanceUID


def test_one_row_per_path_when_a_path_reaches_several_tasks(spark: Any, tmp_path: Path) -> None:
    """Rows of one path in different tasks (a DataFrame not partitioned by path): one row."""
    from pyspark.sql import functions as sf

    src = tmp_path / "src"
    files = copy_with_new_uids(sample_file(CT), src, 6)
    table = str(tmp_path / "t")
    catalog = Catalog(spark, table=table)
    meta = DicomMetaExtractor(catalog).transform(catalog.catalog(str(src))).cache()
    listed = {r["path"]: r["modificationTime"] for r in meta.collect()}
    older = meta.withColumn(
        "modificationTime", sf.col("modificationTime") - sf.expr("INTERVAL 1 DAY")
    )
    for mode in ("append", "overwrite"):
        twice = meta.union(older).union(meta).repartition(3, sf.rand(seed=7))
        result = catalog.save(twice, mode=mode)
        rows = _table_rows(table)  # asserts one row per path
        assert set(rows) == {str(f) for f in files}
        assert DeltaTable(table).count() == 6
        # the newest identity stands for each path: the file as listed, not a day older
        for path, row in rows.items():
            assert row["modificationTime"].replace(tzinfo=None) == listed[path], path
        if mode == "append":
            assert result.rows == 6 and result.skipped == 12
    meta.unpersist()


def test_databricks_path_on_real_spark_up_to_the_delta_statement(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The path sessions with Delta Lake take (Databricks: ``use_spark_delta``), on real Spark.

    Delta's Spark jars cannot be had here (PyPI's delta-spark ships none and Maven is
    unreachable), so a Parquet metastore table of the catalog schema stands for the
    Delta table: the listing's anti join runs against ``spark.table``, the MERGE
    source is de-duplicated by Spark, and the generated MERGE is analysed by Spark
    against the table (every column of ``UPDATE SET *`` / ``INSERT *`` resolved)
    until the one step only Delta can do; its match condition runs as a join.
    """
    from pyspark.errors import UnsupportedOperationException
    from pyspark.sql import functions as sf

    from pixels.engines.spark.catalog import CHANGED_SQL, merge_sql, one_row_per_path

    src = tmp_path / "src"
    files = copy_with_new_uids(sample_file(CT), src, 4)
    (src / "bad.dcm").write_bytes(b"not dicom")
    seed = Catalog(tmp_path / "seed")  # the rows a Databricks job would have saved
    seed.catalog(src, workers=0)
    name = "pixels_dbx_object_catalog"
    spark.sql(f"DROP TABLE IF EXISTS {name}")
    seeded = Catalog(spark, table=str(tmp_path / "seed")).load(variant=False)
    seeded.write.format("parquet").saveAsTable(name)

    changed, new = files[0], src / "new.dcm"
    shutil.copyfile(copy_with_new_uids(sample_file("MR_small.dcm"), tmp_path / "mr", 1)[0], changed)
    os.utime(changed, (time.time() + 5, time.time() + 5))
    shutil.copyfile(files[1], new)

    monkeypatch.setenv("PIXELS_SPARK_DELTA", "1")
    dbx = Catalog(spark, table=name)
    assert dbx.use_spark_delta and dbx.count() == 5  # spark.table(name)
    listed = {r["path"] for r in dbx.catalog(str(src)).select("path").collect()}
    assert listed == {str(changed), str(new)}
    retried = dbx.catalog(str(src), retry_errors=True).select("path").collect()
    assert {r["path"] for r in retried} == {str(changed), str(new), str(src / "bad.dcm")}

    meta = DicomMetaExtractor(dbx).transform(dbx.catalog(str(src)))
    older = meta.withColumn(
        "modificationTime", sf.col("modificationTime") - sf.expr("INTERVAL 1 DAY")
    )
    rows = meta.union(older).union(meta).repartition(3)
    with pytest.raises(UnsupportedOperationException) as err:
        dbx.save(rows)
    # analysis passed (a column UPDATE SET * or INSERT * could not match fails before)
    # Spark 4: "... does not support MERGE INTO TABLE"; Spark 3.5: "MERGE INTO TABLE is not supported temporarily."
    assert "MERGE INTO TABLE" in str(err.value) and "support" in str(err.value), err.value
    assert not [t for t in spark.catalog.listTables() if t.name.startswith("_pixels_save_")]

    # what MERGE would do, run as queries over the same source and table
    source = one_row_per_path(rows.select(*SCHEMA.names))
    source.createOrReplaceTempView("pixels_dbx_source")
    got = {r["path"]: r for r in source.collect()}
    assert set(got) == {str(changed), str(new)}  # one row per path...
    for path, row in got.items():  # ...the newest
        assert row["modificationTime"] == max(
            r["modificationTime"] for r in rows.where(sf.col("path") == path).collect()
        )
    assert got[str(changed)]["Modality"] == "MR"
    updated = spark.sql(
        f"SELECT s.path FROM {name} t JOIN pixels_dbx_source s ON t.path = s.path "
        f"WHERE {CHANGED_SQL}"
    ).collect()
    inserted = spark.sql(
        f"SELECT s.path FROM pixels_dbx_source s LEFT ANTI JOIN {name} t ON t.path = s.path"
    ).collect()
    assert [r["path"] for r in updated] == [str(changed)]
    assert [r["path"] for r in inserted] == [str(new)]
    # the statement as Spark parses it: one MERGE of the view into the table
    plan = (
        spark._jsparkSession.sessionState()
        .sqlParser()
        .parsePlan(merge_sql(name, "pixels_dbx_source"))
    )
    assert plan.nodeName() == "MergeIntoTable"
    spark.sql(f"DROP TABLE {name}")


def _sub_ms_times(files: list[Path]) -> None:
    """Give each file a modification time with a sub-millisecond part (as most have)."""
    base = time.time_ns() - 10**9
    for i, f in enumerate(files):
        t = base + i * 1_000_000 + 123_456
        os.utime(f, ns=(t, t))


def test_a_stream_then_a_local_run_reads_nothing(spark: Any, tmp_path: Path) -> None:
    """Spark's file source gives milliseconds, os.stat more: one precision, no re-read."""
    src = tmp_path / "src"
    files = copy_with_new_uids(sample_file(CT), src, 5)
    _sub_ms_times(files)
    table = tmp_path / "t"
    catalog = Catalog(spark, table=str(table))
    stream = catalog.catalog(
        str(src), streaming=True, streamCheckpointBasePath=str(tmp_path / "ck")
    )
    catalog.save(DicomMetaExtractor(catalog).transform(stream))
    version = DeltaTable(str(table)).version()
    rows = _table_rows(table)
    assert len(rows) == 5
    for f in files:  # whole milliseconds, the file's own
        got = rows[str(f)]["modificationTime"]
        assert got.microsecond % 1000 == 0
        assert int(got.timestamp() * 1000) == os.stat(f).st_mtime_ns // 1_000_000
    stats = Catalog(table).catalog(src, workers=0)
    assert stats.processed == 0 and stats.unchanged == 5
    assert DeltaTable(str(table)).version() == version


def test_a_local_run_then_a_new_stream_reads_nothing(spark: Any, tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = copy_with_new_uids(sample_file(CT), src, 5)
    _sub_ms_times(files)
    table = tmp_path / "t"
    assert Catalog(table).catalog(src, workers=0).written == 5
    version = DeltaTable(str(table)).version()
    catalog = Catalog(spark, table=str(table))
    # what the stream lists (before any file is read) is compared with the table
    listing = catalog.catalog(
        str(src), streaming=True, streamCheckpointBasePath=str(tmp_path / "a")
    )
    query = (
        listing.writeStream.format("memory")
        .queryName("pixels_new_stream_listing")
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    assert query.lastProgress["numInputRows"] == 5  # Spark's source saw the files...
    assert spark.table("pixels_new_stream_listing").count() == 0  # ...none goes to be read
    new = src / "new" / "x.dcm"
    new.parent.mkdir()
    shutil.copyfile(files[0], new)
    stream = catalog.catalog(str(src), streaming=True, streamCheckpointBasePath=str(tmp_path / "b"))
    catalog.save(DicomMetaExtractor(catalog).transform(stream))
    assert DeltaTable(str(table)).version() == version + 1
    rows = _table_rows(table)
    assert len(rows) == 6 and str(new) in rows


def test_rows_an_older_version_wrote_at_microseconds_still_match(tmp_path: Path) -> None:
    """Tables written before times were milliseconds: their files are not read again."""
    import dataclasses

    import pyarrow as pa

    from pixels.dicom.record import catalog_batch
    from pixels.sources import iter_files
    from pixels.sources.local import to_utc
    from pixels.table import CatalogTable

    src = tmp_path / "src"
    files = copy_with_new_uids(sample_file(CT), src, 4)
    _sub_ms_times(files)
    refs = [
        dataclasses.replace(r, modificationTime=to_utc(os.stat(r.path).st_mtime))
        for r in iter_files(str(src))
    ]
    assert all(r.modificationTime.microsecond % 1000 for r in refs)
    table = tmp_path / "t"
    CatalogTable(table).append(pa.Table.from_batches([catalog_batch(refs)]))
    stats = Catalog(table).catalog(src, workers=0)
    assert stats.processed == 0 and stats.unchanged == 4
