"""The embedded engine end to end: real files in, Delta table out, checked against pydicom."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import shutil
import time
import uuid
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pydicom
import pytest
from deltalake import DeltaTable

from corpus import copy_tree, pydicom_folder, readable_dicom_files, sample_file
from pixels import Catalog

CT = "CT_small.dcm"
MR = "MR_small.dcm"


@pytest.fixture()
def mixed(tmp_path: Path) -> Path:
    """A folder of real DICOM files, a PNG, a text file, and broken files."""
    root = tmp_path / "data"
    sub = root / "study1" / "series1"
    copy_tree([sample_file(CT), sample_file(MR), sample_file("JPEG2000.dcm")], sub)
    copy_tree([sample_file("waveform_ecg.dcm")], root / "ecg")
    png = root / "images" / "pic.png"
    png.parent.mkdir(parents=True)
    # a real PNG written by Pillow-free means: the PNG signature + IHDR from a real encoder
    import zlib

    raw = b"\x00" + b"\x80" * 4
    ihdr = (4).to_bytes(4, "big") + (1).to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")
        )

    png.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    (root / "notes.txt").write_text("not an image")
    (root / "empty.dcm").write_bytes(b"")
    data = sample_file(CT).read_bytes()
    (root / "truncated.dcm").write_bytes(data[:700])
    (root / ".hidden.dcm").write_bytes(data)
    return root


def rows_by_name(cat: Catalog) -> dict[str, dict]:
    rows = cat.sql_arrow("SELECT * FROM object_catalog").to_pylist()
    return {os.path.basename(r["path"]): r for r in rows}


def test_catalog_values_match_pydicom(mixed: Path, tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "cat")
    stats = cat.catalog(mixed, workers=2)
    rows = rows_by_name(cat)
    assert ".hidden.dcm" not in rows
    assert set(rows) == {
        CT,
        MR,
        "JPEG2000.dcm",
        "waveform_ecg.dcm",
        "pic.png",
        "notes.txt",
        "empty.dcm",
        "truncated.dcm",
    }
    assert stats.listed == 8 and stats.processed == 8 and stats.written == 8
    assert stats.errors == 3  # notes.txt, empty.dcm, truncated.dcm

    for name in (CT, MR, "JPEG2000.dcm", "waveform_ecg.dcm"):
        row = rows[name]
        path = mixed / ("ecg" if name == "waveform_ecg.dcm" else "study1/series1") / name
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert row["error"] is None, row["error"]
        assert row["file_type"] == "dicom"
        assert row["path"] == str(path)
        assert row["local_path"] == str(path)
        assert row["length"] == path.stat().st_size
        assert row["extension"] == "dcm"
        assert row["SOPInstanceUID"] == ds.SOPInstanceUID
        assert row["StudyInstanceUID"] == ds.StudyInstanceUID
        assert row["Modality"] == ds.Modality
        assert row["TransferSyntaxUID"] == ds.file_meta.TransferSyntaxUID
        written = str(ds.PatientName) if "PatientName" in ds else ""
        assert row["PatientName"] == (written or None), (name, written)
        if "Rows" in ds:
            assert row["Rows"] == ds.Rows and row["Columns"] == ds.Columns
        if ds.get("StudyDate"):
            assert row["StudyDate"] == dt.datetime.strptime(ds.StudyDate, "%Y%m%d").date()
        meta = json.loads(row["meta"])
        assert meta["00080018"]["Value"] == [ds.SOPInstanceUID]
        back = pydicom.Dataset.from_json(row["meta"])
        assert back.SOPInstanceUID == ds.SOPInstanceUID
    ct = rows[CT]
    assert ct["relative_path"] == f"study1/series1/{CT}"
    assert list(ct["path_tags"]) == ["study1", "series1", "CT", "small", "dcm"]  # as dbx.pixels
    assert ct["original_path"] is None
    # the ECG waveform (~400 KB of samples) stays out of the JSON: only its annotations are there
    ecg = json.loads(rows["waveform_ecg.dcm"]["meta"])
    assert len(rows["waveform_ecg.dcm"]["meta"]) < 100_000
    waveform = ecg["54000100"]["Value"][0]["54001010"]
    assert set(waveform) == {"vr", "BulkDataURI"}
    assert "InlineBinary" not in rows["waveform_ecg.dcm"]["meta"] or all(
        len(m) <= 1024 for m in _inline_values(ecg)
    )

    assert rows["pic.png"]["file_type"] == "png" and rows["pic.png"]["error"] is None
    assert rows["pic.png"]["meta"] is None
    for bad in ("notes.txt", "empty.dcm", "truncated.dcm"):
        assert rows[bad]["error"] and str(mixed) in rows[bad]["error"], rows[bad]
    assert "empty" in rows["empty.dcm"]["error"]


def test_every_pydicom_test_file_is_a_row(tmp_path: Path) -> None:
    src = pydicom_folder()
    files = [
        p
        for p in src.rglob("*")
        if p.is_file()
        and not any(part.startswith((".", "__")) for part in p.relative_to(src).parts)
    ]
    cat = Catalog(tmp_path / "cat")
    stats = cat.catalog(src, workers=2)
    assert stats.listed == len(files) == stats.processed
    df = cat.sql("SELECT path, SOPInstanceUID, error FROM object_catalog")
    assert len(df) == len(files)
    readable = {str(p) for p in readable_dicom_files(src)}
    ok = set(df[df.error.isna() & df.SOPInstanceUID.notna()].path)
    # every file pydicom reads strictly is read without error
    missing = {
        p
        for p in readable
        if p not in ok and pydicom.dcmread(p, stop_before_pixels=True).get("SOPInstanceUID")
    }
    # pydicom reads these two without complaint; they are cut short, and Pixels says so
    truncated = {str(src / "MR_truncated.dcm"), str(src / "rtplan_truncated.dcm")}
    assert missing == truncated
    rows = {r["path"]: r for r in cat.sql_arrow("SELECT * FROM object_catalog").to_pylist()}
    for p in truncated:
        assert "truncated" in rows[p]["error"]
    # the header of MR_truncated is whole: it is kept with the error about its pixel data
    mr = rows[str(src / "MR_truncated.dcm")]
    assert "(7FE0,0010)" in mr["error"] and mr["SOPInstanceUID"] and mr["meta"]
    assert rows[str(src / "rtplan_truncated.dcm")]["meta"] is None


def test_incremental_rerun_and_changed_file(mixed: Path, tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "cat")
    first = cat.catalog(mixed, workers=0)
    assert first.processed == 8
    v1 = DeltaTable(str(tmp_path / "cat")).version()
    again = cat.catalog(mixed, workers=0)
    assert (
        again.listed == 8 and again.processed == 0 and again.unchanged == 8 and again.written == 0
    )
    assert DeltaTable(str(tmp_path / "cat")).version() == v1  # nothing committed

    # change one file (now a different real DICOM), add one
    target = mixed / "study1" / "series1" / CT
    shutil.copyfile(sample_file("rtplan.dcm"), target)
    os.utime(target, (time.time() + 5, time.time() + 5))
    shutil.copyfile(sample_file(CT), mixed / "new.dcm")
    third = cat.catalog(mixed, workers=0)
    assert third.processed == 2 and third.unchanged == 7
    df = cat.sql("SELECT path, Modality, length FROM object_catalog")
    assert len(df) == 9 and df.path.is_unique
    row = df[df.path == str(target)].iloc[0]
    assert row.Modality == "RTPLAN" and row.length == target.stat().st_size


def test_retry_errors(mixed: Path, tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "cat")
    cat.catalog(mixed, workers=0)
    stats = cat.catalog(mixed, workers=0, retry_errors=True)
    assert stats.processed == 3  # the three bad files, read again
    assert cat.count() == 8
    assert cat.sql("SELECT count(DISTINCT path) n FROM object_catalog").n[0] == 8


def test_zip_archive_members_cataloged(tmp_path: Path) -> None:
    import zipfile

    arc = tmp_path / "archive.zip"
    with zipfile.ZipFile(arc, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(sample_file(CT), "patient1/ct/CT_small.dcm")
        z.write(sample_file(MR), "patient1/mr/MR_small.dcm")
        z.writestr("../escape.dcm", sample_file(CT).read_bytes())
    cat = Catalog(tmp_path / "cat")
    stats = cat.catalog(arc, workers=0)
    assert stats.listed == 3
    df = cat.sql_arrow("SELECT * FROM object_catalog ORDER BY relative_path").to_pylist()
    by_rel = {r["relative_path"]: r for r in df}
    ct = by_rel["patient1/ct/CT_small.dcm"]
    assert ct["error"] is None
    assert ct["original_path"] == str(arc)
    assert ct["path"].startswith("zip://patient1/ct/CT_small.dcm::")
    assert ct["local_path"] is None
    assert ct["SOPInstanceUID"] == pydicom.dcmread(sample_file(CT)).SOPInstanceUID
    escape = [r for r in df if "escape" in r["path"]]
    assert len(escape) == 1 and escape[0]["error"] and "escape.dcm" in escape[0]["error"]
    assert escape[0]["meta"] is None


def _inline_values(obj: object) -> list[str]:
    """Every InlineBinary string in a DICOM JSON tree."""
    out: list[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "InlineBinary":
                out.append(v)
            else:
                out.extend(_inline_values(v))
    elif isinstance(obj, list):
        for v in obj:
            out.extend(_inline_values(v))
    return out


def test_script_without_main_guard_runs_once(tmp_path: Path) -> None:
    """Worker processes must not re-run the caller's script (forkserver/spawn import __main__)."""
    import subprocess
    import sys

    data = tmp_path / "data"
    copy_tree([sample_file(CT), sample_file(MR)], data)
    script = tmp_path / "user_script.py"
    script.write_text(
        "from pixels import Catalog\n"
        "print('script body ran', flush=True)\n"
        f"stats = Catalog({str(tmp_path / 'cat')!r}).catalog({str(data)!r}, workers=2)\n"
        "print('processed', stats.processed, flush=True)\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("script body ran") == 1
    assert "processed 2" in out.stdout


def test_frame_index_columns_locate_every_frame(tmp_path: Path) -> None:
    """The frame columns written during the header pass give pydicom's frames with ranged reads."""
    from pydicom.encaps import get_frame
    from pydicom.pixels.utils import get_expected_length

    from pixels.dicom.frames import read_frame
    from pixels.dicom.record import frame_index_of

    cat = Catalog(tmp_path / "cat")
    cat.catalog(pydicom_folder(), workers=2)
    cat.catalog(sample_file("emri_small.dcm").parent, workers=2)
    rows = cat.sql_arrow(
        "SELECT * FROM object_catalog WHERE frame_offsets IS NOT NULL AND local_path IS NOT NULL"
    ).to_pylist()
    assert len(rows) >= 100
    multi = fragmented = 0
    for row in rows:
        ds = pydicom.dcmread(row["local_path"], force=bool(row["forced"]))
        index = frame_index_of(row)
        n = len(row["frame_offsets"])
        try:
            declared = int(ds.get("NumberOfFrames") or 1)
        except ValueError:  # badVR.dcm: "1A"; counted as one frame
            declared = 1
            ds.NumberOfFrames = 1
        assert n == declared, row["path"]
        multi += n > 1
        fragmented += row["frame_fragments"] is not None
        with open(row["local_path"], "rb") as fp:
            for i in sorted({0, n // 2, n - 1}):
                got = read_frame(fp, index, i)
                if index.encapsulated:
                    assert got == get_frame(ds.PixelData, i, number_of_frames=n), (row["path"], i)
                elif index.bit_offsets is None:
                    size = int(get_expected_length(ds, "bytes")) // n  # a whole frame, not a prefix
                    big = ds.file_meta.get("TransferSyntaxUID") == "1.2.840.10008.1.2.2"
                    if size % 2 and big and ds.BitsAllocated == 8 and ds["PixelData"].VR == "OW":
                        size += 1  # 8-bit OW (big endian): the byte pair holding the last pixel
                    assert len(got) == size, (row["path"], i, len(got), size)
                    assert got == ds.PixelData[i * size : (i + 1) * size], (row["path"], i)
    assert multi >= 10 and fragmented >= 1


def test_table_inside_the_source_is_not_cataloged(tmp_path: Path) -> None:
    copy_tree([sample_file(CT)], tmp_path)
    cat = Catalog(tmp_path / "catalog")
    first = cat.catalog(tmp_path, workers=0)
    again = cat.catalog(tmp_path, workers=0)
    assert first.listed == again.listed == 1 and again.processed == 0
    assert cat.sql("SELECT count(*) n FROM object_catalog WHERE path LIKE '%catalog%'").n[0] == 0


def _same_size_variant(data: bytes) -> tuple[bytes, str]:
    """``data`` (a real DICOM file) with its SOP Instance UID's last digit changed: same size."""
    uid = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID
    new = uid[:-1] + str((int(uid[-1]) + 1) % 10)
    out = data.replace(uid.encode(), new.encode())
    assert len(out) == len(data) and out != data
    return out, new


def _zip_with(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2021, 3, 4, 5, 6, 8)), data)


def test_zip_member_rewritten_same_size_same_time_is_read_again(tmp_path: Path) -> None:
    """Re-anonymised members keep size and DOS time: the CRC-32 tells them apart."""
    ct = sample_file(CT).read_bytes()
    mr = sample_file(MR).read_bytes()
    archive = tmp_path / "src" / "study.zip"
    archive.parent.mkdir()
    _zip_with(archive, {"a/ct.dcm": ct, "a/mr.dcm": mr})
    cat = Catalog(tmp_path / "cat")
    first = cat.catalog(archive.parent, workers=0)
    assert first.processed == 2
    variant, new_uid = _same_size_variant(ct)
    _zip_with(archive, {"a/ct.dcm": variant, "a/mr.dcm": mr})
    again = cat.catalog(archive.parent, workers=0)
    assert again.processed == 1 and again.unchanged == 1
    rows = {
        r["relative_path"]: r for r in cat.sql_arrow("SELECT * FROM object_catalog").to_pylist()
    }
    assert len(rows) == 2
    assert rows["study.zip/a/ct.dcm"]["SOPInstanceUID"] == new_uid
    assert rows["study.zip/a/ct.dcm"]["version_tag"] == f"crc32:{zlib.crc32(variant):08x}"
    assert cat.catalog(archive.parent, workers=0).processed == 0


def test_s3_object_rewritten_same_size_same_second_is_read_again(
    s3_server: Any, tmp_path: Path
) -> None:
    """S3 times have 1 s steps: an object rewritten within the second, same size, has a new ETag.

    The bucket is versioned so that the two versions are written back to back (same
    second, checked) before the first catalog run: the newer is deleted, the table
    catalogs the older, then the newer is restored by deleting the older.
    """
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    ct = sample_file(CT).read_bytes()
    variant, new_uid = _same_size_variant(ct)
    bucket = f"etag-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=bucket, Key="d/other.dcm", Body=sample_file(MR).read_bytes())
    for _ in range(5):
        time.sleep(1 - time.time() % 1)  # start of a second: two puts fit in it
        newer_first = s3.put_object(Bucket=bucket, Key="d/ct.dcm", Body=variant)
        older = s3.put_object(Bucket=bucket, Key="d/ct.dcm", Body=ct)
        versions = s3.list_object_versions(Bucket=bucket, Prefix="d/ct.dcm")["Versions"]
        times = {v["VersionId"]: v["LastModified"] for v in versions}
        if times[newer_first["VersionId"]] == times[older["VersionId"]]:
            break
        for v in versions:
            s3.delete_object(Bucket=bucket, Key="d/ct.dcm", VersionId=v["VersionId"])
    else:
        raise AssertionError("could not write two versions within one second in 5 tries")
    # the object now holds the original bytes, written at time t
    cat = Catalog(tmp_path / "cat")
    so = s3_server.storage_options
    assert cat.catalog(f"s3://{bucket}/d", workers=0, storage_options=so).processed == 2
    # delete that version: the object holds the variant, same size, same time t
    s3.delete_object(Bucket=bucket, Key="d/ct.dcm", VersionId=older["VersionId"])
    head = s3.head_object(Bucket=bucket, Key="d/ct.dcm")
    assert head["ContentLength"] == len(ct)
    assert head["LastModified"] == times[older["VersionId"]]
    again = cat.catalog(f"s3://{bucket}/d", workers=0, storage_options=so)
    assert again.processed == 1 and again.unchanged == 1
    rows = {
        r["relative_path"]: r for r in cat.sql_arrow("SELECT * FROM object_catalog").to_pylist()
    }
    assert rows["ct.dcm"]["SOPInstanceUID"] == new_uid
    assert rows["ct.dcm"]["version_tag"] == "etag:" + head["ETag"].strip('"')
    assert cat.catalog(f"s3://{bucket}/d", workers=0, storage_options=so).processed == 0


def test_rows_from_before_version_tags_are_not_read_again(tmp_path: Path) -> None:
    """A table written before ``version_tag`` existed: its rows match (null = unknown tag)."""
    from deltalake import write_deltalake

    ct = sample_file(CT).read_bytes()
    archive = tmp_path / "src" / "study.zip"
    archive.parent.mkdir()
    _zip_with(archive, {"a/ct.dcm": ct, "a/mr.dcm": sample_file(MR).read_bytes()})
    fresh = Catalog(tmp_path / "fresh")
    fresh.catalog(archive.parent, workers=0)
    old_rows = fresh.sql_arrow("SELECT * FROM object_catalog").drop_columns(["version_tag"])
    write_deltalake(str(tmp_path / "old"), old_rows, mode="error")
    old = Catalog(tmp_path / "old")
    stats = old.catalog(archive.parent, workers=0)
    assert stats.listed == 2 and stats.processed == 0
    assert "version_tag" in DeltaTable(str(tmp_path / "old")).schema().to_arrow().names
    # a member that changes size is still read again, and gets its tag
    _zip_with(archive, {"a/ct.dcm": ct + b"\0\0", "a/mr.dcm": sample_file(MR).read_bytes()})
    assert old.catalog(archive.parent, workers=0).processed == 1
    tags = old.sql("SELECT relative_path, version_tag FROM object_catalog ORDER BY 1")
    assert tags.version_tag.isna().tolist() == [False, True]


def test_file_names_that_are_not_utf8(tmp_path: Path) -> None:
    """``bad_\\xff.dcm`` next to a good file (it crashed the run: 0 rows): every file has its row."""
    src = os.fsencode(tmp_path / "src")
    os.makedirs(src + b"/d\xe9j\xe0")
    ct, mr = sample_file(CT), sample_file(MR)
    shutil.copyfile(ct, os.fsdecode(src + b"/bad_\xff.dcm"))
    shutil.copyfile(mr, os.fsdecode(src + b"/good.dcm"))
    _zip_with(Path(os.fsdecode(src + b"/d\xe9j\xe0/arch\xff.zip")), {"m.dcm": ct.read_bytes()})
    cat = Catalog(tmp_path / "cat")
    stats = cat.catalog(os.fsdecode(src), workers=2)
    assert stats.processed == 3 and stats.errors == 0
    rows = {
        r["relative_path"]: r for r in cat.sql_arrow("SELECT * FROM object_catalog").to_pylist()
    }
    assert set(rows) == {"bad_\\xff.dcm", "good.dcm", "d\\xe9j\\xe0/arch\\xff.zip/m.dcm"}
    base = os.fsdecode(src)
    assert rows["bad_\\xff.dcm"]["path"] == base + "/bad_\\xff.dcm"
    ct_uid = pydicom.dcmread(ct).SOPInstanceUID
    assert rows["bad_\\xff.dcm"]["SOPInstanceUID"] == ct_uid
    assert rows["d\\xe9j\\xe0/arch\\xff.zip/m.dcm"]["SOPInstanceUID"] == ct_uid
    assert rows["good.dcm"]["SOPInstanceUID"] == pydicom.dcmread(mr).SOPInstanceUID
    assert cat.catalog(os.fsdecode(src), workers=2).processed == 0
    # the stored path opens the file again (thumbnails pass, web server)
    made = cat.thumbnails(workers=0)
    assert made.made == 3


_OPENED: list[str] | None = None  # paths opened while a test records them (audit hook)


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _OPENED is not None and event == "open" and isinstance(args[0], str):
        _OPENED.append(args[0])


def test_rerun_reads_exactly_the_files_whose_size_or_mtime_changed(tmp_path: Path) -> None:
    """A no-op re-run opens no listed file; a file whose size alone changed (mtime put back)
    and one whose mtime alone changed are read again, and only they; times before 1970 too."""
    import sys

    global _OPENED
    src = tmp_path / "src"
    copy_tree([sample_file(CT), sample_file(MR), sample_file("rtplan.dcm")], src / "s1")
    copy_tree([sample_file(CT), sample_file(MR)], src / "s2")
    old = src / "s2" / MR
    os.utime(old, ns=(0, -86_400_123_456_789))  # 1969-12-31, not a whole millisecond
    cat = Catalog(tmp_path / "cat")
    assert cat.catalog(src, workers=0).processed == 5
    sys.addaudithook(_audit)  # (hooks stay for the process: it records only inside this test)
    _OPENED = []
    try:
        again = cat.catalog(src, workers=0)
        assert (again.listed, again.processed, again.written) == (5, 0, 0)
        # (the walk opens each directory to stat its entries through it: not a file read)
        assert [p for p in _OPENED if p.startswith(str(src)) and not os.path.isdir(p)] == []

        grown, touched = src / "s1" / CT, src / "s1" / "rtplan.dcm"
        st = grown.stat()
        with open(grown, "ab") as f:
            f.write(b"\0\0")  # (trailing padding: still the same DICOM)
        os.utime(grown, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.utime(touched, (time.time() + 7, time.time() + 7))
        _OPENED.clear()
        third = cat.catalog(src, workers=0)
        opened = {p for p in _OPENED if p.startswith(str(src)) and not os.path.isdir(p)}
    finally:
        _OPENED = None
    assert (third.listed, third.processed, third.written) == (5, 2, 2)
    assert opened == {str(grown), str(touched)}
    df = cat.sql('SELECT path, length, "modificationTime" AS t FROM object_catalog')
    assert len(df) == 5 and df.path.is_unique
    rows = df.set_index("path")
    assert rows.loc[str(grown), "length"] == st.st_size + 2
    mtime = rows.loc[str(touched), "t"].to_pydatetime()
    assert int(mtime.timestamp() * 1000) == touched.stat().st_mtime_ns // 10**6
    assert int(rows.loc[str(old), "t"].to_pydatetime().timestamp() * 1000) == -86_400_124
