"""`pixels catalog s3://...` against a real S3 server (moto in server mode)."""

from __future__ import annotations

import io
import subprocess
import sys
import uuid
import zipfile
from typing import Any

import pydicom

from corpus import sample_file
from pixels import Catalog


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
