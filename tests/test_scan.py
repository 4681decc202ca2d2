"""Reading the table as the Delta protocol says: deletion vectors and column mapping.

Two kinds of real tables:

* tables written by Databricks Runtime (from delta-rs' test data, see
  ``tests/data/delta/README.md``): one with a deletion vector, one with column
  mapping and a partition column;
* a catalog of real DICOM files written by Pixels, in which a row is then deleted
  the way Databricks deletes it (a deletion vector in the log, the Parquet file
  untouched). delta-rs cannot write deletion vectors (its DELETE rewrites files,
  checked below), so the test writes the vector and the commit as the Delta
  protocol specifies; the byte format is checked against the vector Databricks
  wrote, and delta-rs' own reader confirms the row is deleted.
"""

from __future__ import annotations

import json
import shutil
import struct
import time
import uuid
import zlib
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pydicom
import pytest
from deltalake import DeltaTable, QueryBuilder, write_deltalake
from starlette.testclient import TestClient

from corpus import sample_file
from pixels import Catalog
from pixels.errors import TableError
from pixels.table import CatalogTable
from pixels.web import create_app

DATA = Path(__file__).parent / "data" / "delta"
FILES = ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "rtplan.dcm"]

# --------------------------------------------------------------------------- helpers
_Z85 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"


def z85(data: bytes) -> str:
    """Z85 text of ``data`` (length a multiple of 4), as Delta encodes DV file names."""
    out = []
    for (word,) in struct.iter_unpack(">I", data):
        chars = []
        for _ in range(5):
            word, r = divmod(word, 85)
            chars.append(_Z85[r])
        out.append("".join(reversed(chars)))
    return "".join(out)


def roaring_array(rows: list[int]) -> bytes:
    """A RoaringBitmapArray in Delta's serialization (magic, bitmaps, portable roaring)."""
    highs: dict[int, list[int]] = {}
    for r in sorted(set(rows)):
        highs.setdefault(r >> 32, []).append(r & 0xFFFFFFFF)
    out = struct.pack("<Iq", 1681511377, len(highs))
    for high, lows in sorted(highs.items()):
        containers: dict[int, list[int]] = {}
        for v in lows:
            containers.setdefault(v >> 16, []).append(v & 0xFFFF)
        assert all(len(c) <= 4096 for c in containers.values())  # array containers only
        head = struct.pack("<II", 12346, len(containers))  # no run containers
        head += b"".join(struct.pack("<HH", k, len(c) - 1) for k, c in sorted(containers.items()))
        offset = len(head) + 4 * len(containers)
        offsets = b""
        body = b""
        for _, c in sorted(containers.items()):
            offsets += struct.pack("<I", offset + len(body))
            body += struct.pack(f"<{len(c)}H", *c)
        out += struct.pack("<I", high) + head + offsets + body
    return out


def dv_file(rows: list[int]) -> tuple[bytes, int]:
    """A deletion vector file holding one vector (version byte, size, data, CRC)."""
    data = roaring_array(rows)
    return b"\x01" + struct.pack(">i", len(data)) + data + struct.pack(">I", zlib.crc32(data)), len(
        data
    )


def delete_with_deletion_vector(table: Path, path: str) -> None:
    """Delete the row of ``path`` the way Databricks does: a deletion vector, files untouched."""
    dt = DeltaTable(str(table))
    adds = pa.table(dt.get_add_actions(flatten=True)).to_pylist()
    for add in adds:
        paths = pq.read_table(table / add["path"], columns=["path"])["path"].to_pylist()
        if path in paths:
            break
    else:
        raise AssertionError(f"{path} is in no data file")
    rows = [i for i, p in enumerate(paths) if p == path]
    dv_id = uuid.uuid4()
    blob, size = dv_file(rows)
    (table / f"deletion_vector_{dv_id}.bin").write_bytes(blob)
    now = int(time.time() * 1000)
    actions: list[dict[str, Any]] = [
        {"commitInfo": {"timestamp": now, "operation": "DELETE", "readVersion": dt.version()}},
        {
            "remove": {
                "path": add["path"],
                "deletionTimestamp": now,
                "dataChange": True,
                "extendedFileMetadata": True,
                "partitionValues": {},
                "size": add["size_bytes"],
            }
        },
        {
            "add": {
                "path": add["path"],
                "partitionValues": {},
                "size": add["size_bytes"],
                "modificationTime": add["modification_time"],
                "dataChange": True,
                "stats": json.dumps({"numRecords": add["num_records"], "tightBounds": False}),
                "deletionVector": {
                    "storageType": "u",
                    "pathOrInlineDv": z85(dv_id.bytes),
                    "offset": 1,
                    "sizeInBytes": size,
                    "cardinality": len(rows),
                },
            }
        },
    ]
    log = table / "_delta_log" / f"{dt.version() + 1:020d}.json"
    with open(log, "x") as fh:  # a commit is a new file, never an overwrite
        fh.write("\n".join(json.dumps(a) for a in actions) + "\n")


def test_the_deletion_vector_writer_matches_databricks_bytes() -> None:
    # the vector Databricks wrote for DELETE ... WHERE value IN (0, 9)
    real = DATA / "table-with-dv-small"
    blob = next(real.glob("deletion_vector_*.bin")).read_bytes()
    assert dv_file([0, 9])[0] == blob
    log = (real / "_delta_log" / "00000000000000000001.json").read_text()
    add = next(json.loads(line)["add"] for line in log.splitlines() if '"add"' in line)
    dv_id = next(real.glob("deletion_vector_*.bin")).stem.removeprefix("deletion_vector_")
    assert add["deletionVector"]["pathOrInlineDv"] == z85(uuid.UUID(dv_id).bytes)


def test_delta_rs_cannot_write_deletion_vectors(tmp_path: Path) -> None:
    # why the test above writes them itself: delta-rs' DELETE rewrites the file
    write_deltalake(
        str(tmp_path), pa.table({"v": list(range(10))}),
        configuration={"delta.enableDeletionVectors": "true"},
    )  # fmt: skip
    dt = DeltaTable(str(tmp_path))
    assert "deletionVectors" in (dt.protocol().reader_features or [])
    dt.delete("v < 3")
    assert not list(tmp_path.glob("deletion_vector_*"))
    assert sum(pq.read_metadata(u).num_rows for u in DeltaTable(str(tmp_path)).file_uris()) == 7


# --------------------------------------------------------------- Databricks' tables
def test_rows_deleted_by_databricks_stay_deleted(tmp_path: Path) -> None:
    table = tmp_path / "t"
    shutil.copytree(DATA / "table-with-dv-small", table)
    (uri,) = DeltaTable(str(table)).file_uris()
    assert pq.read_table(uri).num_rows == 10  # the file still holds the deleted rows
    got = Catalog(table).sql_arrow("SELECT value FROM object_catalog ORDER BY value")
    assert got["value"].to_pylist() == [1, 2, 3, 4, 5, 6, 7, 8]
    assert Catalog(table).count() == 8  # not the log's record count (10)
    scan = CatalogTable(table).scan()
    assert not scan.direct and "deletion vectors" in scan.features[0]


def test_column_mapping_and_partitions_written_by_databricks(tmp_path: Path) -> None:
    table = tmp_path / "t"
    shutil.copytree(DATA / "table_with_column_mapping", table)
    rows = Catalog(table).sql_arrow(
        'SELECT "Company Very Short" AS company, "Super Name" AS name FROM object_catalog '
        "ORDER BY name"
    )
    assert rows.to_pylist() == [
        {"company": "BMS", "name": "Anthony Johnson"},
        {"company": "BMS", "name": "Mr. Daniel Ferguson MD"},
        {"company": "BMS", "name": "Nathan Bennett"},
        {"company": "BMS", "name": "Stephanie Mcgrath"},
        {"company": "BME", "name": "Timothy Lamb"},
    ]


# ------------------------------------------------------- a Pixels catalog with a DV
@pytest.fixture()
def catalog_with_a_deleted_row(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    data = tmp_path / "data"
    data.mkdir()
    files = {}
    for name in FILES:
        files[name] = data / name
        shutil.copyfile(sample_file(name), files[name])
    table = tmp_path / "catalog"
    Catalog(table).catalog(data, workers=0)
    DeltaTable(str(table)).alter.set_table_properties({"delta.enableDeletionVectors": "true"})
    delete_with_deletion_vector(table, str(files["CT_small.dcm"]))
    # the fixture is what a Delta reader says it is: delta-rs no longer sees the row
    seen = QueryBuilder().register("t", DeltaTable(str(table))).execute("SELECT path FROM t")
    paths = pa.RecordBatchReader.from_stream(seen).read_all()["path"].to_pylist()
    assert sorted(paths) == sorted(str(files[n]) for n in FILES if n != "CT_small.dcm")
    return table, files


def test_sql_and_lookups_honour_a_deletion_vector(
    catalog_with_a_deleted_row: tuple[Path, dict[str, Path]],
) -> None:
    table, files = catalog_with_a_deleted_row
    ct = str(files["CT_small.dcm"])
    got = Catalog(table).sql_arrow("SELECT path FROM object_catalog ORDER BY path")
    assert got["path"].to_pylist() == sorted(str(files[n]) for n in FILES if n != "CT_small.dcm")
    assert Catalog(table).sql_arrow(
        "SELECT count(*) AS n FROM object_catalog WHERE path = ?", [ct]
    )["n"].to_pylist() == [0]
    assert Catalog(table).count() == len(FILES) - 1
    found = CatalogTable(table).lookup([ct, str(files["MR_small.dcm"])])
    assert found["path"].to_pylist() == [str(files["MR_small.dcm"])]


def test_the_web_index_honours_a_deletion_vector(
    catalog_with_a_deleted_row: tuple[Path, dict[str, Path]],
) -> None:
    table, files = catalog_with_a_deleted_row
    uids = {n: pydicom.dcmread(files[n], stop_before_pixels=True) for n in FILES}
    with TestClient(create_app(str(table), viewer=False), base_url="http://localhost") as client:
        listed = client.get("/dicomweb/instances")
        assert listed.status_code == 200
        sops = {i["00080018"]["Value"][0] for i in listed.json()}
        assert sops == {str(uids[n].SOPInstanceUID) for n in FILES if n != "CT_small.dcm"}
        ct = uids["CT_small.dcm"]
        gone = client.get(f"/dicomweb/studies/{ct.StudyInstanceUID}/series")
        assert gone.status_code == 204 or gone.json() == []
        mr = uids["MR_small.dcm"]
        meta = client.get(
            f"/dicomweb/studies/{mr.StudyInstanceUID}/series/{mr.SeriesInstanceUID}"
            f"/instances/{mr.SOPInstanceUID}/metadata"
        )
        assert meta.status_code == 200
        assert meta.json()[0]["00080018"]["Value"] == [str(mr.SOPInstanceUID)]


def test_writes_into_a_table_with_deletion_vectors_are_refused(
    catalog_with_a_deleted_row: tuple[Path, dict[str, Path]],
) -> None:
    # Pixels' writers rewrite and add plain Parquet files: into a table whose rows
    # are cut by deletion vectors they could bring deleted rows back
    table, files = catalog_with_a_deleted_row
    before = DeltaTable(str(table)).version()
    with pytest.raises(TableError, match="deletion vectors") as e:
        Catalog(table).catalog(files["CT_small.dcm"].parent, workers=0, retry_errors=True)
    assert str(table) in str(e.value)
    assert DeltaTable(str(table)).version() == before


# --------------------------------------------------- files of one schema: no union_by_name
def test_a_column_change_bumps_the_schema_version() -> None:
    """Adding, removing or renaming a column must bump SCHEMA_VERSION (and this digest):
    TableScan.uniform trusts a table in the current version to hold files of exactly
    SCHEMA's columns, and old tables are found by their version."""
    import hashlib

    from pixels.schema import SCHEMA, SCHEMA_VERSION

    digest = hashlib.sha256("\n".join(SCHEMA.names).encode()).hexdigest()
    assert SCHEMA_VERSION == 2
    assert digest == "12fa2fb16d1b2e7b624f6b48964784e6aecd1357bd013bf33114812035d42867", (
        "SCHEMA's columns changed: bump SCHEMA_VERSION and the digest"
    )


def test_a_current_table_is_read_without_union_by_name_and_a_foreign_column_with_it(
    tmp_path: Path,
) -> None:
    """Files Pixels wrote in the current schema are read by name (``union_by_name`` off:
    it reads every footer to bind); a column somebody else added to the table, which the
    files lack, turns it back on."""
    data = tmp_path / "data"
    data.mkdir()
    for name in FILES[:2]:
        shutil.copyfile(sample_file(name), data / name)
    table = tmp_path / "catalog"
    cat = Catalog(table)
    cat.catalog(data, workers=0)
    scan = CatalogTable(str(table)).scan()
    assert scan.uniform and scan.union_by_name == "union_by_name=false"
    assert sorted(cat.sql("SELECT Modality FROM object_catalog")["Modality"]) == ["CT", "MR"]

    from deltalake.schema import Field

    DeltaTable(str(table)).alter.add_columns([Field("site", "string", nullable=True)])
    scan = CatalogTable(str(table)).scan()
    assert not scan.uniform and scan.union_by_name == "union_by_name=true"
    got = cat.sql("SELECT Modality FROM object_catalog ORDER BY Modality")
    assert got["Modality"].tolist() == ["CT", "MR"]
