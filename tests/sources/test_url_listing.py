"""Listing fsspec URLs: S3 (a real moto server) and memory://."""

from __future__ import annotations

import io
import uuid
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fsspec
import pytest
from pydicom.data import get_testdata_file

from pixels.errors import SourceNotFoundError
from pixels.sources import iter_files, open_file
from pixels.sources.opener import clear_zip_cache


def _testfile(name: str) -> bytes:
    path = get_testdata_file(name, download=False)
    assert path is not None, name
    return Path(str(path)).read_bytes()


CT = _testfile("CT_small.dcm")
MR = _testfile("MR_small.dcm")
RT = _testfile("rtplan.dcm")


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2019, 1, 2, 3, 4, 6)), data)
    return buf.getvalue()


FILES = {
    "study/s1/ct.dcm": CT,
    "study/s1/mr.dcm": MR,
    "study/s2/deep/plan.dcm": RT,
    "study/s2/.hidden.dcm": CT,
    "study/s2/partial.dcm.part": CT,
    "study/archive.zip": _zip_bytes({"a/ct.dcm": CT, "../evil.dcm": MR}),
    "study/top.dcm": CT,
    "other/x.dcm": CT,
}
EXPECTED = [
    "archive.zip/a/ct.dcm",
    "archive.zip/../evil.dcm",
    "s1/ct.dcm",
    "s1/mr.dcm",
    "s2/deep/plan.dcm",
    "top.dcm",
]


@pytest.fixture(scope="module")
def bucket(s3_server: Any) -> Iterator[str]:
    import s3fs

    name = f"b-{uuid.uuid4().hex[:12]}"
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **s3_server.storage_options)
    fs.mkdir(name)
    for key, data in FILES.items():
        fs.pipe(f"{name}/{key}", data)
    yield name
    clear_zip_cache()


def test_s3_prefix_lists_files_and_zip_members(bucket: str, s3_server: Any) -> None:
    opts = s3_server.storage_options
    refs = list(iter_files(f"s3://{bucket}/study", storage_options=opts))
    assert [r.relative_path for r in refs] == EXPECTED
    by_rel = {r.relative_path: r for r in refs}
    ct = by_rel["s1/ct.dcm"]
    assert ct.path == f"s3://{bucket}/study/s1/ct.dcm"
    assert ct.length == len(CT)
    assert ct.local_path is None and ct.extension == "dcm" and ct.path_tags == ("s1", "ct", "dcm")
    assert ct.modificationTime.tzinfo is not None
    assert abs(ct.modificationTime - datetime.now(UTC)) < timedelta(hours=1)
    member = by_rel["archive.zip/a/ct.dcm"]
    assert member.path == f"zip://a/ct.dcm::s3://{bucket}/study/archive.zip"
    assert member.original_path == f"s3://{bucket}/study/archive.zip"
    assert member.modificationTime == datetime(2019, 1, 2, 3, 4, 6, tzinfo=UTC)
    assert by_rel["archive.zip/../evil.dcm"].error is not None
    # the same listing with a trailing slash, and a pattern with a folder
    assert [
        r.relative_path for r in iter_files(f"s3://{bucket}/study/", storage_options=opts)
    ] == EXPECTED
    rels = [
        r.relative_path
        for r in iter_files(f"s3://{bucket}/study", pattern="s2/*", storage_options=opts)
    ]
    assert rels == ["s2/deep/plan.dcm"]


def test_s3_open_file_gives_same_bytes(bucket: str, s3_server: Any) -> None:
    opts = s3_server.storage_options
    refs = {r.relative_path: r for r in iter_files(f"s3://{bucket}/study", storage_options=opts)}
    expected = {
        "s1/ct.dcm": CT,
        "s1/mr.dcm": MR,
        "s2/deep/plan.dcm": RT,
        "archive.zip/a/ct.dcm": CT,
    }
    for rel, data in expected.items():
        with open_file(refs[rel], storage_options=opts) as f:
            assert f.read() == data
            f.seek(128)
            assert f.read(4) == b"DICM"


def test_s3_large_file_is_opened_lazily(bucket: str, s3_server: Any) -> None:
    import s3fs

    opts = s3_server.storage_options
    big = bytes(128) + b"DICM" + bytes(5 << 20)
    s3fs.S3FileSystem(skip_instance_cache=True, **opts).pipe(f"{bucket}/big/big.dcm", big)
    (ref,) = iter_files(f"s3://{bucket}/big", storage_options=opts)
    assert ref.length == len(big)
    with open_file(ref, storage_options=opts) as f:
        assert not isinstance(f, io.BytesIO)
        f.seek(128)
        assert f.read(4) == b"DICM"
        f.seek(len(big) - 10)
        assert f.read() == bytes(10)


def test_s3_single_file_and_zip_sources(bucket: str, s3_server: Any) -> None:
    opts = s3_server.storage_options
    (ref,) = iter_files(f"s3://{bucket}/study/top.dcm", storage_options=opts)
    assert ref.relative_path == "top.dcm" and ref.length == len(CT)
    rels = [
        r.relative_path
        for r in iter_files(f"s3://{bucket}/study/archive.zip", storage_options=opts)
    ]
    assert rels == ["a/ct.dcm", "../evil.dcm"]


def test_s3_sees_new_keys_on_second_listing(bucket: str, s3_server: Any) -> None:
    import s3fs

    opts = s3_server.storage_options
    before = list(iter_files(f"s3://{bucket}/other", storage_options=opts))
    s3fs.S3FileSystem(skip_instance_cache=True, **opts).pipe(f"{bucket}/other/y.dcm", MR)
    after = list(iter_files(f"s3://{bucket}/other", storage_options=opts))
    assert len(after) == len(before) + 1


def test_s3_missing_prefix_raises(bucket: str, s3_server: Any) -> None:
    with pytest.raises(SourceNotFoundError, match="nothing-here"):
        list(iter_files(f"s3://{bucket}/nothing-here", storage_options=s3_server.storage_options))


@pytest.mark.slow
def test_s3_pages_keep_order(s3_server: Any) -> None:
    """More keys than one ListObjectsV2 page (1,000): order and count survive paging."""
    import s3fs

    opts = s3_server.storage_options
    name = f"p-{uuid.uuid4().hex[:12]}"
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **opts)
    fs.mkdir(name)
    keys = [f"flat/{i:05d}.dcm" for i in range(1100)] + ["flat/sub/z.dcm", "flat/sub.dcm"]
    fs.pipe({f"{name}/{k}": b"x" for k in keys})
    rels = [r.relative_path for r in iter_files(f"s3://{name}/flat", storage_options=opts)]
    assert rels == [f"{i:05d}.dcm" for i in range(1100)] + ["sub.dcm", "sub/z.dcm"]


@pytest.fixture
def memfs() -> Iterator[Any]:
    fs = fsspec.filesystem("memory")
    root = f"/t-{uuid.uuid4().hex[:8]}"
    for key, data in FILES.items():
        fs.pipe(f"{root}/{key}", data)
    yield root
    fs.rm(root, recursive=True)


def test_memory_url_lists_like_s3(memfs: str) -> None:
    refs = list(iter_files(f"memory://{memfs}/study"))
    assert [r.relative_path for r in refs] == EXPECTED
    ct = next(r for r in refs if r.relative_path == "s1/ct.dcm")
    assert ct.path == f"memory://{memfs}/study/s1/ct.dcm"
    with open_file(ct) as f:
        assert f.read() == CT
    member = next(r for r in refs if r.relative_path == "archive.zip/a/ct.dcm")
    with open_file(member) as f:
        assert f.read() == CT


def test_memory_missing_raises() -> None:
    with pytest.raises(SourceNotFoundError):
        list(iter_files("memory://does/not/exist"))
