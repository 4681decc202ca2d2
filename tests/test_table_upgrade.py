"""Tables written by an older Pixels (schema 1: no ``rowId``/``is_anon``, folders in
``path_tags``): written and read as they are, upgraded once by ``pixels upgrade``
(or ``pixels optimize``), resumably, on local disk and on S3 (a real moto server)."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from click.testing import CliRunner
from deltalake import DeltaTable, write_deltalake

from corpus import sample_file
from pixels import Catalog
from pixels.cli import main
from pixels.schema import SCHEMA, row_id
from pixels.sources.local import path_tags_of
from pixels.table import CatalogTable

#: The column order of tables written before schema 2 (no rowId / is_anon; folders in path_tags).
V1_FILE_COLUMNS = [
    "path", "modificationTime", "length", "relative_path", "local_path", "extension",
    "path_tags", "original_path", "version_tag", "file_type",
]  # fmt: skip
V1_DESCRIPTION = "Pixels catalog: one row per file (pixels schema 1)"


@pytest.fixture
def files(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "patient5397").mkdir(parents=True)
    shutil.copyfile(sample_file("CT_small.dcm"), root / "patient5397" / "patient5397_ct.dcm")
    shutil.copyfile(sample_file("MR_small.dcm"), root / "patient5397" / "mr_small.dcm")
    return root


def _v1_rows(files: Path, scratch: Path) -> pa.Table:
    """Real rows of ``files``, as an older Pixels wrote them."""
    Catalog(scratch).catalog(files, workers=0)
    rows = DeltaTable(str(scratch)).to_pyarrow_table().sort_by("path")
    rest = [n for n in SCHEMA.names if n not in [*V1_FILE_COLUMNS, "rowId", "is_anon"]]
    v1 = rows.select(V1_FILE_COLUMNS + rest)
    folders = pa.array(
        [r.split("/") for r in v1["relative_path"].to_pylist()], pa.list_(pa.string())
    )
    return v1.set_column(v1.schema.get_field_index("path_tags"), "path_tags", folders)


def _write_v1(
    uri: str, rows: pa.Table, commits: int, options: dict[str, str] | None = None
) -> None:
    """``rows`` as a schema-1 table at ``uri``, in ``commits`` data files."""
    step = -(-rows.num_rows // commits)
    for i in range(commits):
        write_deltalake(
            uri,
            rows.slice(i * step, step),
            mode="append",
            description=V1_DESCRIPTION,
            storage_options=options,
        )
    assert "rowId" not in DeltaTable(uri, storage_options=options).schema().to_arrow().names


def _all(cat: Catalog) -> list[dict[str, Any]]:
    q = "SELECT path, rowId, is_anon, path_tags, meta FROM object_catalog ORDER BY path"
    return cat.sql_arrow(q).to_pylist()


def test_an_old_table_is_written_without_rewriting_it(files: Path, tmp_path: Path) -> None:
    """The first write to an old table adds its rows only; old rows read with derived ids."""
    old_uri = str(tmp_path / "old")
    v1 = _v1_rows(files, tmp_path / "scratch")
    _write_v1(old_uri, v1, 1)
    old_files = set(DeltaTable(old_uri).file_uris())

    (files / "more").mkdir()
    shutil.copyfile(sample_file("JPEG2000.dcm"), files / "more" / "j2k.dcm")
    cat = Catalog(old_uri)
    stats = cat.catalog(files, workers=0)
    assert stats.processed == 1 and stats.unchanged == 2  # old rows are not read again
    dt = DeltaTable(old_uri)
    assert old_files <= set(dt.file_uris())  # the old data file is still the table's
    assert dt.metadata().description == V1_DESCRIPTION  # not upgraded yet
    assert {"rowId", "is_anon"} <= set(dt.schema().to_arrow().names)
    # readers: rowId and is_anon as the upgrade will write them; old path_tags kept
    got = _all(cat)
    assert [r["path"] for r in got] == sorted(str(p) for p in files.rglob("*.dcm"))
    for r in got:
        assert r["rowId"] == row_id(r["path"]) and r["is_anon"] is True, r["path"]
    before = {r["path"]: r for r in v1.to_pylist()}
    for r in got:
        if r["path"] in before:
            assert r["meta"] == before[r["path"]]["meta"]
            assert r["path_tags"] == before[r["path"]]["path_tags"]
    by_id = cat.sql_arrow(
        "SELECT path FROM object_catalog WHERE rowId = ?", [row_id(got[0]["path"])]
    )
    assert by_id["path"].to_pylist() == [got[0]["path"]]


def test_pixels_upgrade_rewrites_old_rows_once(files: Path, tmp_path: Path) -> None:
    old_uri = str(tmp_path / "old")
    v1 = _v1_rows(files, tmp_path / "scratch")
    _write_v1(old_uri, v1, 2)
    # a write first: new rows beside the old ones, which the upgrade leaves as they are
    (files / "more").mkdir()
    shutil.copyfile(sample_file("JPEG2000.dcm"), files / "more" / "j2k_b.dcm")
    Catalog(old_uri).catalog(files, workers=0)
    new_file = set(DeltaTable(old_uri).file_uris()) - set(
        DeltaTable(old_uri, version=1).file_uris()
    )
    read_before = _all(Catalog(old_uri))

    result = CliRunner().invoke(main, ["upgrade", "--table", old_uri])
    assert result.exit_code == 0, result.output
    assert '"filesRewritten": 2' in result.output and '"rowsUpgraded": 2' in result.output
    dt = DeltaTable(old_uri)
    assert dt.metadata().description.endswith("(pixels schema 2)")
    assert new_file <= set(dt.file_uris())  # a file of schema-2 rows is not rewritten
    stored = dt.to_pyarrow_table().sort_by("path").to_pylist()
    assert len(stored) == 3
    for r in stored:
        assert r["rowId"] == row_id(r["path"]) and r["is_anon"] is True, r["path"]
        assert r["path_tags"] == list(path_tags_of(r["relative_path"])), r["path"]
    assert all(r["path_tags"] != list(path_tags_of(r["relative_path"])) for r in v1.to_pylist())
    # what readers saw before is what is stored now, but for the re-split path_tags
    after = _all(Catalog(old_uri))
    strip = [{k: v for k, v in r.items() if k != "path_tags"} for r in read_before]
    assert [{k: v for k, v in r.items() if k != "path_tags"} for r in after] == strip
    # once: nothing left to do, no commit
    version = dt.version()
    again = CliRunner().invoke(main, ["upgrade", "--table", old_uri])
    assert again.exit_code == 0 and '"filesRewritten": 0' in again.output
    assert DeltaTable(old_uri).version() == version


def test_an_interrupted_upgrade_leaves_whole_rows_and_resumes(files: Path, tmp_path: Path) -> None:
    old_uri = str(tmp_path / "old")
    v1 = _v1_rows(files, tmp_path / "scratch")
    _write_v1(old_uri, v1, 2)
    table = CatalogTable(old_uri)

    def stop(_: str) -> None:
        raise KeyboardInterrupt  # Ctrl-C after the first file's commit

    with pytest.raises(KeyboardInterrupt):
        table.upgrade(progress=stop)
    dt = DeltaTable(old_uri)
    assert dt.metadata().description == V1_DESCRIPTION
    stored = dt.to_pyarrow_table().to_pylist()
    assert sorted(r["path"] for r in stored) == sorted(v1["path"].to_pylist())
    assert sorted(r["rowId"] is None for r in stored) == [False, True]  # one file done
    assert all(r["rowId"] == row_id(r["path"]) for r in _all(Catalog(old_uri)))
    done = CatalogTable(old_uri).upgrade()
    assert done["filesRewritten"] == 1 and done["rowsUpgraded"] == 1
    stored = DeltaTable(old_uri).to_pyarrow_table().to_pylist()
    assert all(r["rowId"] == row_id(r["path"]) for r in stored) and len(stored) == 2


def test_optimize_upgrades_an_old_table(files: Path, tmp_path: Path) -> None:
    old_uri = str(tmp_path / "old")
    _write_v1(old_uri, _v1_rows(files, tmp_path / "scratch"), 2)
    result = CliRunner().invoke(main, ["optimize", "--table", old_uri])
    assert result.exit_code == 0, result.output
    assert '"rowsUpgraded": 2' in result.output
    dt = DeltaTable(old_uri)
    assert dt.metadata().description.endswith("(pixels schema 2)")
    stored = dt.to_pyarrow_table().to_pylist()
    assert len(stored) == 2 and all(r["rowId"] == row_id(r["path"]) for r in stored)


def test_an_old_table_on_s3_is_written_read_and_upgraded(
    s3_server: Any, files: Path, tmp_path: Path
) -> None:
    import s3fs

    bucket = f"upg-{uuid.uuid4().hex[:10]}"
    s3fs.S3FileSystem(skip_instance_cache=True, **s3_server.storage_options).mkdir(bucket)
    uri = f"s3://{bucket}/catalog"
    opts = {"key": "testing", "secret": "testing", "endpoint_url": s3_server.endpoint_url}
    v1 = _v1_rows(files, tmp_path / "scratch")
    _write_v1(uri, v1, 2, CatalogTable(uri, storage_options=opts).storage_options)

    (files / "more").mkdir()
    shutil.copyfile(sample_file("JPEG2000.dcm"), files / "more" / "j2k.dcm")
    cat = Catalog(uri, storage_options=opts)
    assert cat.catalog(files, workers=0).processed == 1
    got = _all(cat)
    assert len(got) == 3 and all(r["rowId"] == row_id(r["path"]) for r in got)
    assert all(r["is_anon"] is True for r in got)  # local source files

    table = CatalogTable(uri, storage_options=opts)
    assert table.needs_upgrade
    done = table.upgrade()
    assert done["filesRewritten"] == 2 and done["rowsUpgraded"] == 2
    assert not CatalogTable(uri, storage_options=opts).needs_upgrade
    stored = DeltaTable(uri, storage_options=table.storage_options).to_pyarrow_table()
    rows = stored.sort_by("path").to_pylist()
    assert len(rows) == 3
    for r in rows:
        assert r["rowId"] == row_id(r["path"]) and r["is_anon"] is True, r["path"]
        assert r["path_tags"] == list(path_tags_of(r["relative_path"])), r["path"]
    assert [r["meta"] for r in _all(Catalog(uri, storage_options=opts))] == [r["meta"] for r in got]


@pytest.mark.spark
def test_spark_reads_an_old_table_with_derived_ids(spark: Any, files: Path, tmp_path: Path) -> None:
    """``Catalog(spark).load()`` shows old rows as the upgrade will write them."""
    old_uri = str(tmp_path / "old")
    v1 = _v1_rows(files, tmp_path / "scratch")
    _write_v1(old_uri, v1, 1)
    CatalogTable(old_uri).create()  # a write's first step: the columns, no rows rewritten
    rows = Catalog(spark, table=old_uri).load(variant=False).select("path", "rowId", "is_anon")
    got = sorted((r["path"], r["rowId"], r["is_anon"]) for r in rows.collect())
    assert got == sorted((p, row_id(p), True) for p in v1["path"].to_pylist())
    found = spark.sql(f"SELECT path FROM object_catalog WHERE rowId = {got[0][1]}").collect()
    assert [r["path"] for r in found] == [got[0][0]]
