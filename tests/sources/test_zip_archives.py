"""Zip archives: expansion, reading members, and refusing unsafe ones."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import struct
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from pixels.errors import SourceError, UnsafeArchiveMemberError
from pixels.sources import ArchiveLimits, FileRef, iter_files, open_file
from pixels.sources.opener import clear_zip_cache


def _testfile(name: str) -> bytes:
    path = get_testdata_file(name, download=False)
    assert path is not None, name
    return Path(str(path)).read_bytes()


CT = _testfile("CT_small.dcm")
MR = _testfile("MR_small.dcm")
MiB = 1 << 20


@pytest.fixture(autouse=True)
def _fresh_zip_cache() -> object:
    clear_zip_cache()
    yield
    clear_zip_cache()


def _make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(2020, 5, 17, 10, 30, 4))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return path


@pytest.fixture
def study_zip(tmp_path: Path) -> Path:
    return _make_zip(
        tmp_path / "study.zip",
        {"s1/ct.dcm": CT, "s1/deep/mr.dcm": MR, "readme.txt": b"hi", "__MACOSX/s1/._ct.dcm": b"x"},
    )


def test_zip_source_expands_members(study_zip: Path) -> None:
    refs = list(iter_files(str(study_zip)))
    assert [r.relative_path for r in refs] == ["s1/ct.dcm", "s1/deep/mr.dcm", "readme.txt"]
    ct = refs[0]
    assert ct.path == f"zip://s1/ct.dcm::{study_zip}"
    assert ct.original_path == str(study_zip)
    assert ct.member == "s1/ct.dcm"
    assert ct.local_path is None
    assert ct.length == len(CT)
    assert ct.extension == "dcm"
    assert ct.path_tags == ("s1", "ct", "dcm")
    assert ct.modificationTime == datetime(2020, 5, 17, 10, 30, 4, tzinfo=UTC)
    assert ct.error is None


def test_zip_in_tree_keeps_archive_relative_path(tmp_path: Path, study_zip: Path) -> None:
    root = tmp_path / "root"
    (root / "batch").mkdir(parents=True)
    shutil.move(study_zip, root / "batch" / "study.zip")
    (root / "batch" / "plain.dcm").write_bytes(CT)
    rels = [r.relative_path for r in iter_files(str(root), pattern="*.dcm")]
    assert rels == [
        "batch/plain.dcm",
        "batch/study.zip/s1/ct.dcm",
        "batch/study.zip/s1/deep/mr.dcm",
    ]
    # the archive matching the pattern lists all its members
    rels = [r.relative_path for r in iter_files(str(root), pattern="*.zip")]
    assert rels == ["batch/study.zip/s1/ct.dcm", "batch/study.zip/s1/deep/mr.dcm",
                    "batch/study.zip/readme.txt"]  # fmt: skip


def test_expand_archives_off_lists_the_zip(study_zip: Path) -> None:
    (ref,) = iter_files(str(study_zip), expand_archives=False)
    assert ref.extension == "zip" and ref.member is None


def test_zip_extension_without_magic_is_a_plain_file(tmp_path: Path) -> None:
    fake = tmp_path / "fake.zip"
    fake.write_bytes(CT)
    (ref,) = iter_files(str(fake))
    assert ref.path == str(fake) and ref.error is None


def test_members_read_back_byte_equal(study_zip: Path) -> None:
    refs = list(iter_files(str(study_zip), pattern="*.dcm"))
    for ref, expected in zip(refs, (CT, MR), strict=True):
        with open_file(ref) as f:
            assert f.read() == expected
            f.seek(128)
            assert f.read(4) == b"DICM"


def test_corrupt_zip_gives_one_error_row(tmp_path: Path, study_zip: Path) -> None:
    data = study_zip.read_bytes()
    bad = tmp_path / "bad.zip"
    bad.write_bytes(data[: len(data) // 2])  # central directory cut off
    (ref,) = iter_files(str(bad))
    assert ref.path == str(bad)
    assert ref.error is not None and "corrupt zip" in ref.error and str(bad) in ref.error


def test_unsafe_names_become_error_rows(tmp_path: Path) -> None:
    archive = _make_zip(
        tmp_path / "evil.zip",
        {"../evil.dcm": CT, "/abs.dcm": CT, "C:\\x.dcm": CT, "a/../../b.dcm": CT, "ok.dcm": CT},
    )
    refs = {r.member: r for r in iter_files(str(archive))}
    assert refs["ok.dcm"].error is None
    for name in ("../evil.dcm", "a/../../b.dcm"):
        err = refs[name].error
        assert err is not None and "traversal" in err and repr(name) in err and str(archive) in err
    for name in ("/abs.dcm", "C:\\x.dcm"):
        err = refs[name].error
        assert err is not None and "absolute" in err


def _encrypted_zip(path: Path) -> Path:
    """A zip whose member carries the 'encrypted' flag bit (zipfile cannot encrypt)."""
    _make_zip(path, {"secret.dcm": CT, "plain.dcm": CT})
    _patch_member(path, "secret.dcm", 6, 8, "<H", 0x1)  # general purpose flag, bit 0
    return path


def test_encrypted_member_is_refused(tmp_path: Path) -> None:
    archive = _encrypted_zip(tmp_path / "enc.zip")
    refs = {r.member: r for r in iter_files(str(archive))}
    assert refs["plain.dcm"].error is None
    assert refs["secret.dcm"].error is not None and "encrypted" in refs["secret.dcm"].error
    with pytest.raises(UnsafeArchiveMemberError, match="encrypted"), open_file(refs["secret.dcm"]):
        pass


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """50 MB of zeros deflated (ratio about 1000) next to a normal member."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("zeros.dcm", "w") as f:
            chunk = bytes(MiB)
            for _ in range(50):
                f.write(chunk)
        zf.writestr("ct.dcm", CT)
    return path


def test_high_ratio_member_is_refused(bomb: Path) -> None:
    refs = {r.member: r for r in iter_files(str(bomb))}
    err = refs["zeros.dcm"].error
    assert err is not None and "ratio" in err and "zeros.dcm" in err and str(bomb) in err
    assert refs["zeros.dcm"].length == 50 * MiB
    assert refs["ct.dcm"].error is None


def test_size_and_count_limits(bomb: Path, tmp_path: Path) -> None:
    limits = ArchiveLimits(max_member_bytes=10 * MiB, max_ratio=1e9)
    refs = {r.member: r for r in iter_files(str(bomb), limits=limits)}
    assert "max_member_bytes" in (refs["zeros.dcm"].error or "")

    archive = _make_zip(tmp_path / "many.zip", {f"{i}.dcm": CT for i in range(5)})
    refs_list = list(iter_files(str(archive), limits=ArchiveLimits(max_members=3)))
    assert [r.error is None for r in refs_list] == [True, True, True, False, False]
    assert "max_members=3" in (refs_list[3].error or "")

    total = ArchiveLimits(max_total_bytes=2 * len(CT) + 10)
    refs_list = list(iter_files(str(archive), limits=total))
    assert [r.error is None for r in refs_list] == [True, True, False, False, False]
    assert "max_total_bytes" in (refs_list[2].error or "")


def _patch_member(
    path: Path, member: str, local_off: int, cd_off: int, fmt: str, value: int
) -> None:
    """Overwrite a field of a member in its local header and its central directory entry."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    struct.pack_into(fmt, data, info.header_offset + local_off, value)
    pos = data.find(b"PK\x01\x02")
    while pos != -1:
        name_len = struct.unpack_from("<H", data, pos + 28)[0]
        if bytes(data[pos + 46 : pos + 46 + name_len]).decode() == member:
            struct.pack_into(fmt, data, pos + cd_off, value)
            break
        pos = data.find(b"PK\x01\x02", pos + 4)
    assert pos != -1
    path.write_bytes(bytes(data))


def _patch_declared_size(path: Path, member: str, size: int) -> None:
    """Make a member's header declare ``size`` uncompressed bytes."""
    _patch_member(path, member, 22, 24, "<I", size)


def test_member_whose_header_lies_is_stopped_while_reading(bomb: Path, tmp_path: Path) -> None:
    liar = tmp_path / "liar.zip"
    shutil.copy(bomb, liar)
    _patch_declared_size(liar, "zeros.dcm", 1000)
    limits = ArchiveLimits(max_member_bytes=1 * MiB)
    refs = {r.member: r for r in iter_files(str(liar), limits=limits)}
    ref = refs["zeros.dcm"]
    assert ref.error is None and ref.length == 1000  # the header looks harmless
    with pytest.raises(SourceError, match=r"zeros\.dcm"), open_file(ref, limits=limits):
        pass
    with open_file(refs["ct.dcm"], limits=limits) as f:  # the rest of the archive still reads
        assert f.read() == CT


def test_extract_dir_writes_only_inside(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    archive = _make_zip(
        tmp_path / "in" / "study.zip",
        {"s1/ct.dcm": CT, "../escape.dcm": CT, "/abs.dcm": CT, "mr.dcm": MR},
    )
    out = tmp_path / "out"
    refs = {r.member: r for r in iter_files(str(archive), extract_dir=str(out))}
    ct = refs["s1/ct.dcm"]
    assert ct.local_path == str(out / "study" / "s1" / "ct.dcm")
    assert Path(ct.local_path).read_bytes() == CT
    assert ct.path == f"zip://s1/ct.dcm::{archive}"  # identity stays the member URL
    assert refs["../escape.dcm"].error and refs["../escape.dcm"].local_path is None
    assert refs["/abs.dcm"].error
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == ["study/mr.dcm", "study/s1/ct.dcm"]
    assert not (tmp_path / "escape.dcm").exists() and not (tmp_path / "in" / "escape.dcm").exists()
    # files open through local_path, and a second listing reuses them
    with open_file(ct) as f:
        assert f.read() == CT
    mtime = os.stat(ct.local_path).st_mtime_ns
    again = {r.member: r for r in iter_files(str(archive), extract_dir=str(out))}
    assert again["s1/ct.dcm"] == ct
    assert os.stat(ct.local_path).st_mtime_ns == mtime


def test_extract_refuses_symlink_planted_in_extract_dir(tmp_path: Path) -> None:
    archive = _make_zip(tmp_path / "a.zip", {"link/x.dcm": CT})
    out = tmp_path / "out"
    (out / "a").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, out / "a" / "link")
    (ref,) = iter_files(str(archive), extract_dir=str(out))
    assert ref.error is not None and "extraction" in ref.error
    assert list(elsewhere.iterdir()) == []


def test_extract_stops_lying_member(bomb: Path, tmp_path: Path) -> None:
    liar = tmp_path / "liar.zip"
    shutil.copy(bomb, liar)
    _patch_declared_size(liar, "zeros.dcm", 1000)
    out = tmp_path / "out"
    limits = ArchiveLimits(max_member_bytes=1 * MiB)
    refs = {r.member: r for r in iter_files(str(liar), extract_dir=str(out), limits=limits)}
    assert refs["zeros.dcm"].error is not None and refs["zeros.dcm"].local_path is None
    assert refs["ct.dcm"].local_path is not None
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["ct.dcm"]


def _read_all(refs: list[FileRef]) -> list[bytes]:
    out = []
    for ref in refs:
        with open_file(ref) as f:
            out.append(f.read())
    return out


def test_cached_archives_are_safe_in_forked_workers(tmp_path: Path) -> None:
    """Workers forked after the parent cached an archive read correct bytes."""
    members = {f"{i}.dcm": (CT if i % 2 else MR) for i in range(12)}
    archive = _make_zip(tmp_path / "many.zip", members)
    refs = list(iter_files(str(archive)))
    assert _read_all(refs[:1]) == [members["0.dcm"]]  # the parent now holds the archive open
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        results = pool.map(_read_all, [refs[i::2] for i in range(2)])
    got = {
        ref.member: data for i in range(2) for ref, data in zip(refs[i::2], results[i], strict=True)
    }
    assert got == members
    assert _read_all(refs) == list(members.values())


def test_dot_components_are_normalised_not_dropped(tmp_path: Path) -> None:
    """``./x.dcm`` and ``d/./z.dcm`` are members like any other (they were silently dropped)."""
    names = ["./x.dcm", "d/./z.dcm", "d//w.dcm", "./.hidden.dcm", "../up.dcm"]
    archive = _make_zip(tmp_path / "dots.zip", dict.fromkeys(names, CT))
    refs = {r.member: r for r in iter_files(str(archive))}
    assert set(refs) == {"./x.dcm", "d/./z.dcm", "d//w.dcm", "../up.dcm"}
    rels = {m: r.relative_path for m, r in refs.items() if r.error is None}
    assert rels == {"./x.dcm": "x.dcm", "d/./z.dcm": "d/z.dcm", "d//w.dcm": "d/w.dcm"}
    assert refs["d/./z.dcm"].path_tags == ("d", "z", "dcm")  # of the normalised relative path
    assert refs["d/./z.dcm"].path == f"zip://d/./z.dcm::{archive}"
    assert refs["../up.dcm"].error is not None and "traversal" in refs["../up.dcm"].error
    for name in rels:
        with open_file(refs[name]) as f:
            assert f.read() == CT
        with open_file(
            FileRef.from_row({"path": refs[name].path, "original_path": str(archive)})
        ) as f:
            assert f.read() == CT
    out = tmp_path / "out"
    extracted = {r.member: r for r in iter_files(str(archive), extract_dir=str(out))}
    assert extracted["d/./z.dcm"].local_path == str(out / "dots" / "d" / "z.dcm")
    assert Path(str(extracted["./x.dcm"].local_path)).read_bytes() == CT


def test_extracted_member_rewritten_same_size_same_time_is_extracted_again(tmp_path: Path) -> None:
    """An extracted copy is reused only when its CRC-32 is the member's, not on size and time alone."""
    archive = tmp_path / "a.zip"
    out = tmp_path / "out"
    _make_zip(archive, {"s/ct.dcm": CT})
    (ref,) = iter_files(str(archive), extract_dir=str(out))
    changed = CT.replace(b"CT", b"XY", 1)
    assert len(changed) == len(CT) and changed != CT
    _make_zip(archive, {"s/ct.dcm": changed})  # same size, same DOS time
    (again,) = iter_files(str(archive), extract_dir=str(out))
    assert again.local_path == ref.local_path
    assert again.version_tag != ref.version_tag
    assert Path(str(again.local_path)).read_bytes() == changed


_LIST_MTIMES = """
import json, sys
from pixels.sources import iter_files
refs = iter_files(sys.argv[1])
print(json.dumps({r.relative_path.rsplit("/", 1)[-1]: r.modificationTime.isoformat() for r in refs}))
"""


def _mtimes_in_zone(archive: Path, tz: str) -> dict[str, str]:
    import json
    import subprocess
    import sys

    env = {**os.environ, "TZ": tz}
    done = subprocess.run(
        [sys.executable, "-c", _LIST_MTIMES, str(archive)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    out: dict[str, str] = json.loads(done.stdout)
    return out


@pytest.mark.skipif(shutil.which("zip") is None, reason="Info-ZIP zip is not installed")
def test_member_mtimes_do_not_depend_on_the_time_zone(tmp_path: Path) -> None:
    """Archives written by Info-ZIP ``zip`` in New York, listed in three other zones."""
    import subprocess

    data = tmp_path / "data"
    data.mkdir()
    stamps = {"ct.dcm": 1_589_711_405, "mr.dcm": 1_700_000_001}  # odd seconds: not DOS steps
    for name, ts in stamps.items():
        (data / name).write_bytes(CT if name == "ct.dcm" else MR)
        os.utime(data / name, (ts, ts))
    env = {**os.environ, "TZ": "America/New_York"}
    # with the extended timestamp field (Info-ZIP's default) and without it (-X)
    with_ut, dos_only = tmp_path / "ut.zip", tmp_path / "dos.zip"
    subprocess.run(["zip", "-q", str(with_ut), *stamps], cwd=data, env=env, check=True)
    subprocess.run(["zip", "-q", "-X", str(dos_only), *stamps], cwd=data, env=env, check=True)
    assert any(b"UT" in i.extra for i in zipfile.ZipFile(with_ut).infolist())
    assert not any(i.extra for i in zipfile.ZipFile(dos_only).infolist())
    zones = ("UTC", "Asia/Tokyo", "America/Los_Angeles")
    # the extended timestamp: the true modification time, in every zone
    true = {n: datetime.fromtimestamp(ts, UTC).isoformat() for n, ts in stamps.items()}
    for tz in zones:
        assert _mtimes_in_zone(with_ut, tz) == true, tz
    # DOS time only: the writer's wall clock read as UTC, the same in every zone
    import zoneinfo

    new_york = zoneinfo.ZoneInfo("America/New_York")
    wall = {}
    for n, ts in stamps.items():
        local = datetime.fromtimestamp(ts, new_york).replace(tzinfo=UTC)
        wall[n] = local.replace(second=local.second + local.second % 2).isoformat()  # 2 s steps
    for tz in zones:
        assert _mtimes_in_zone(dos_only, tz) == wall, tz
