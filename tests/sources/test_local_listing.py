"""Listing local folders: order, skips, patterns, symlinks, streaming, errors."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from pixels.errors import SourceError, SourceNotFoundError
from pixels.sources import FileRef, RefBatch, iter_file_batches, iter_files, open_file
from pixels.sources.local import extension_of, iter_local_batches, iter_local_dir, local_ref
from pixels.sources.ref import ms_since_epoch
from procfds import fds_under


def _testfile(name: str) -> Path:
    path = get_testdata_file(name, download=False)
    assert path is not None, name
    return Path(str(path))


CT = _testfile("CT_small.dcm")
MR = _testfile("MR_small.dcm")
RT = _testfile("rtplan.dcm")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A study folder with nested series, hidden and temporary files."""
    root = tmp_path / "study"
    (root / "series1").mkdir(parents=True)
    (root / "series2" / "sub").mkdir(parents=True)
    (root / ".git").mkdir()
    shutil.copy(CT, root / "series1" / "a.dcm")
    shutil.copy(MR, root / "series1" / "B.DCM")
    shutil.copy(RT, root / "series2" / "sub" / "plan.dcm")
    shutil.copy(CT, root / "top.dcm")
    (root / "notes.txt").write_text("hello")
    for junk in (".hidden.dcm", "x.dcm~", "y.tmp", "z.part", "d.crdownload", ".a.swp",
                 "Thumbs.db", ".DS_Store"):  # fmt: skip
        (root / junk).write_bytes(b"junk")
    shutil.copy(CT, root / ".git" / "inside_hidden.dcm")
    return root


def test_lists_nested_tree_with_file_fields(tree: Path) -> None:
    refs = list(iter_files(str(tree)))
    rels = [r.relative_path for r in refs]
    # sorted within each directory, depth first; hidden/temp files skipped
    assert rels == [
        "notes.txt",
        "series1/B.DCM",
        "series1/a.dcm",
        "series2/sub/plan.dcm",
        "top.dcm",
    ]
    ref = refs[2]
    path = tree / "series1" / "a.dcm"
    st = path.stat()
    assert ref == FileRef(
        path=str(path),
        modificationTime=datetime.fromtimestamp(st.st_mtime_ns // 10**6 / 1000, tz=UTC),
        length=CT.stat().st_size,
        relative_path="series1/a.dcm",
        local_path=str(path),
        extension="dcm",
        path_tags=("series1", "a", "dcm"),
    )
    assert ref.modificationTime.tzinfo is UTC
    assert refs[1].extension == "dcm"  # lower-cased
    assert all(r.error is None for r in refs)


def test_listing_is_deterministic(tree: Path) -> None:
    assert list(iter_files(str(tree))) == list(iter_files(str(tree)))


def test_pattern_on_name_is_case_insensitive(tree: Path) -> None:
    rels = [r.relative_path for r in iter_files(str(tree), pattern="*.dcm")]
    assert rels == ["series1/B.DCM", "series1/a.dcm", "series2/sub/plan.dcm", "top.dcm"]


def test_pattern_with_slash_matches_relative_path(tree: Path) -> None:
    rels = [r.relative_path for r in iter_files(str(tree), pattern="series2/*")]
    assert rels == ["series2/sub/plan.dcm"]


def test_not_recursive(tree: Path) -> None:
    rels = [r.relative_path for r in iter_files(str(tree), recursive=False)]
    assert rels == ["notes.txt", "top.dcm"]


def test_single_file_source(tree: Path) -> None:
    (ref,) = iter_files(str(tree / "series1" / "a.dcm"))
    assert ref.relative_path == "a.dcm"
    assert ref.path_tags == ("a", "dcm")
    assert ref.length == CT.stat().st_size


def test_file_url_is_listed_as_local(tree: Path) -> None:
    refs = list(iter_files(f"file://{tree}", pattern="*.dcm"))
    assert [r.local_path for r in refs] == [r.path for r in refs]
    assert len(refs) == 4


def test_missing_source_raises_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(SourceNotFoundError, match="nope") as info:
        list(iter_files(str(missing)))
    assert isinstance(info.value, FileNotFoundError)


def test_source_below_a_file_is_an_error_naming_it(tree: Path) -> None:
    """A source that cannot be looked up (a path through a file): SourceError naming it and
    the system's reason, as a listing in batches too."""
    bad = tree / "series1" / "a.dcm" / "below"
    for listing in (iter_files, iter_file_batches):
        with pytest.raises(SourceError, match=r"cannot access source: Not a directory") as info:
            list(listing(str(bad)))
        assert str(bad) in str(info.value) and not isinstance(info.value, FileNotFoundError)


def test_symlink_loop_terminates_and_lists_each_file_once(tree: Path) -> None:
    os.symlink(tree, tree / "series1" / "loop")  # a link to an ancestor
    os.symlink("..", tree / "series2" / "up")
    rels = [r.relative_path for r in iter_files(str(tree), pattern="*.dcm")]
    assert sorted(rels) == ["series1/B.DCM", "series1/a.dcm", "series2/sub/plan.dcm", "top.dcm"]


def test_symlinked_file_and_dir_are_followed_under_link_path(tree: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(MR, outside / "mr.dcm")
    os.symlink(outside, tree / "linked")
    os.symlink(tree / "top.dcm", tree / "alias.dcm")
    refs = {r.relative_path: r for r in iter_files(str(tree), pattern="*.dcm")}
    assert refs["linked/mr.dcm"].path == str(tree / "linked" / "mr.dcm")  # not resolved
    assert refs["linked/mr.dcm"].length == MR.stat().st_size
    assert refs["alias.dcm"].path == str(tree / "alias.dcm")
    assert refs["alias.dcm"].length == CT.stat().st_size


def test_dangling_symlink_is_skipped(tree: Path, caplog: pytest.LogCaptureFixture) -> None:
    os.symlink(tree / "gone.dcm", tree / "dangling.dcm")
    os.symlink("self.dcm", tree / "self.dcm")  # a link to itself (ELOOP)
    rels = [r.relative_path for r in iter_files(str(tree), pattern="*.dcm")]
    assert "dangling.dcm" not in rels and "self.dcm" not in rels
    assert "dangling" in caplog.text


_UNREADABLE_PROBE = """
import json, sys
from pixels.dicom.record import catalog_record
from pixels.sources import iter_files
refs = list(iter_files(sys.argv[1]))
rows = [catalog_record(r) for r in refs]
print(json.dumps([[r.relative_path, r.error, row["error"]] for r, row in zip(refs, rows)]))
"""


def _drop_dac_override() -> None:
    """In the child, before exec: root without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH obeys modes."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop = 24
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(pr_capbset_drop, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_unreadable_directory_and_file_become_error_rows() -> None:
    """Permissions really refuse access (as root, the child drops the capabilities that bypass them)."""
    import json
    import subprocess
    import sys
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="pixels-perm-", dir="/tmp"))
    try:
        root.chmod(0o755)
        (root / "ok").mkdir(mode=0o755)
        shutil.copy(CT, root / "ok" / "a.dcm")
        (root / "ok" / "a.dcm").chmod(0o644)
        (root / "locked").mkdir(mode=0o755)
        shutil.copy(CT, root / "locked" / "b.dcm")
        (root / "locked").chmod(0)
        shutil.copy(CT, root / "secret.dcm")
        (root / "secret.dcm").chmod(0)
        out = subprocess.run(
            [sys.executable, "-c", _UNREADABLE_PROBE, str(root)],
            capture_output=True,
            text=True,
            preexec_fn=_drop_dac_override if os.geteuid() == 0 else None,
            check=True,
        )
        rows = {rel: (list_err, row_err) for rel, list_err, row_err in json.loads(out.stdout)}
    finally:
        (root / "locked").chmod(0o755)
        shutil.rmtree(root)
    assert set(rows) == {"ok/a.dcm", "locked", "secret.dcm"}
    assert rows["ok/a.dcm"] == (None, None)
    assert rows["locked"][0] and str(root / "locked") in rows["locked"][0]
    assert rows["locked"][1] == rows["locked"][0]
    assert rows["secret.dcm"][0] is None
    assert (
        str(root / "secret.dcm") in rows["secret.dcm"][1] and "ermission" in rows["secret.dcm"][1]
    )


def test_listing_streams_while_walking(tmp_path: Path) -> None:
    for d in ("a", "b", "c"):
        (tmp_path / d).mkdir()
        shutil.copy(CT, tmp_path / d / "1.dcm")
    it = iter_files(str(tmp_path))
    first = next(it)
    assert first.relative_path == "a/1.dcm"
    # c/ is listed only when the walk reaches it: a file added now is seen
    shutil.copy(CT, tmp_path / "c" / "2.dcm")
    rest = [r.relative_path for r in it]
    assert rest == ["b/1.dcm", "c/1.dcm", "c/2.dcm"]


def test_open_file_local(tree: Path) -> None:
    ref = next(iter_files(str(tree), pattern="a.dcm"))
    with open_file(ref) as f:
        assert f.read() == CT.read_bytes()
        f.seek(128)
        assert f.read(4) == b"DICM"


def test_open_file_missing_raises_naming_path(tree: Path) -> None:
    ref = next(iter_files(str(tree), pattern="a.dcm"))
    os.unlink(ref.path)
    with pytest.raises(SourceNotFoundError, match=r"a\.dcm"), open_file(ref):
        pass


@pytest.mark.parametrize(
    ("name", "ext"),
    [("a.dcm", "dcm"), ("A.DCM", "dcm"), ("t1.nii.gz", "nii.gz"), ("x.tar.gz", "tar.gz"),
     ("data.gz", "gz"), ("IM0001", ""), ("dir/v1.2/IM", ""), ("trailing.", "")],
)  # fmt: skip
def test_extension(name: str, ext: str) -> None:
    assert extension_of(name) == ext


def test_names_that_are_not_utf8_are_listed_losslessly(tmp_path: Path) -> None:
    """``bad_\\xff.dcm`` (bytes on Linux) is stored escaped and opens again; no two names collide."""
    from pixels.sources import open_file
    from pixels.sources.local import os_path

    root = os.fsencode(tmp_path / "d")
    os.mkdir(root)
    os.mkdir(root + b"/sub\xfe")
    data = {
        b"bad_\xff.dcm": b"one",
        b"bad_\\xff.dcm": b"two",  # the escaped spelling, as a real name
        b"ok.dcm": b"three",
        b"sub\xfe/in.dcm": b"four",
    }
    for name, body in data.items():
        with open(root + b"/" + name, "wb") as f:
            f.write(body)
    refs = list(iter_files(os.fsdecode(root)))
    assert len(refs) == 4 and len({r.path for r in refs}) == 4
    got = {r.relative_path: r for r in refs}
    assert set(got) == {"bad_\\xff.dcm", "bad_\\\\xff.dcm", "ok.dcm", "sub\\xfe/in.dcm"}
    for ref in refs:
        for text in (ref.path, ref.relative_path, ref.local_path, *ref.path_tags):
            assert text is not None
            text.encode("utf-8")  # storable
        raw = os.fsencode(os_path(ref.path))
        assert raw.startswith(root + b"/")
        with open_file(ref) as f:
            assert f.read() == data[raw[len(root) + 1 :]]
    assert got["bad_\\xff.dcm"].extension == "dcm"
    assert got["sub\\xfe/in.dcm"].path_tags == ("sub\\xfe", "in", "dcm")


def test_plain_names_listed_as_the_general_route_lists_them(tmp_path: Path) -> None:
    """Plain names take a shorter route to their FileRef; every field is the same as the
    general route's (a pattern that matches everything takes it), for plain and other names."""
    ct = Path(get_testdata_file("CT_small.dcm", download=False) or "").read_bytes()
    names = ["a.dcm", "B.DCM", "t1.nii.gz", "x.TAR.BZ2", "noext", "a.b.c", "über.dcm",
             "back\\slash.dcm", "1.2.840.10008.dcm", "y.verylongext", "z.gz", "dot."]  # fmt: skip
    for sub in ("", "s1/", "s1/s2.d/", "ü/"):
        (tmp_path / sub).mkdir(parents=True, exist_ok=True)
        for n in names:
            (tmp_path / sub / n).write_bytes(ct)
    plain = list(iter_local_dir(str(tmp_path)))
    general = list(iter_local_dir(str(tmp_path), pattern="*"))
    assert len(plain) == 4 * len(names)
    assert plain == general
    assert {r.extension for r in plain} >= {"dcm", "nii.gz", "tar.bz2", "", "c", "gz"}


@pytest.mark.parametrize(
    ("relative_path", "words"),
    [
        ("benigns/patient0007/0007.LEFT_MLO.dcm", ("benigns", "patient0007", "0007", "LEFT", "MLO", "dcm")),
        ("1.2.826.0.1/1.2.3/1.2.3.4.dcm", ("1", "2", "826", "0", "1", "1", "2", "3", "1", "2", "3", "4", "dcm")),
        ("a-/b..c/_d", ("a-/b", ".c", "_d")),  # a separator after no letter or digit: no break
        ("dir/.hidden", ("dir", ".hidden")),
        ("x_y,z.dcm", ("x", "y", "z", "dcm")),  # commas always split (as dbx.pixels' split(","))
        ("café/é.dcm", ("café/é.dcm",)),  # (ASCII letters and digits only)
        ("a.", ("a", "")),
        ("", ("",)),
    ],
)  # fmt: skip
def test_path_tags_words(relative_path: str, words: tuple[str, ...]) -> None:
    """Words split at ``_ . / : @`` after an ASCII letter or digit (and at commas), the fast
    route for ordinary paths giving what the general one gives."""
    from pixels.sources.local import path_tags_of

    assert path_tags_of(relative_path, None) == words
    assert path_tags_of(relative_path) == words[-5:]


def _columns_match_refs(batch: RefBatch) -> list[FileRef]:
    """A batch's columns are its refs' identity fields, entry by entry."""
    refs = [batch.ref(i) for i in range(len(batch))]
    assert batch.paths == [r.path for r in refs]
    assert batch.lengths == [r.length for r in refs]
    assert batch.mtimes_ms == [ms_since_epoch(r.modificationTime) for r in refs]
    tags = batch.version_tags or [None] * len(batch)
    assert tags == [r.version_tag for r in refs]
    return refs


def test_batches_hold_the_listing_as_columns(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A directory's files come as (path, size, mtime) columns, split where a sub-directory
    comes between them; each entry's ref is the general route's (local_ref) for that stat."""
    os.utime(tree / "top.dcm", ns=(0, -1_234_567_891))  # before 1970: floored milliseconds
    batches = list(iter_local_batches(str(tree)))
    rels = [[r.relative_path for r in _columns_match_refs(b)] for b in batches]
    assert rels == [["notes.txt"], ["series1/B.DCM", "series1/a.dcm"], ["series2/sub/plan.dcm"],
                    ["top.dcm"]]  # fmt: skip
    for b in batches:
        for i, path in enumerate(b.paths):
            st = os.stat(path)
            assert (b.lengths[i], b.mtimes_ms[i]) == (st.st_size, st.st_mtime_ns // 10**6)
            assert b.ref(i) == local_ref(path, st, os.path.relpath(path, tree))
    assert batches[-1].mtimes_ms == [-1235]
    monkeypatch.setattr("pixels.sources.local.BATCH_FILES", 1)  # a huge directory: several
    assert [len(b) for b in iter_local_batches(str(tree))] == [1] * 5
    assert [r for b in iter_local_batches(str(tree)) for r in b.refs()] == list(
        iter_local_dir(str(tree))
    )


def test_file_batches_of_zips_urls_and_files_carry_their_refs(tmp_path: Path) -> None:
    """iter_file_batches gives iter_files' refs, zip members (with their crc32 tags) too."""
    import zipfile

    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    shutil.copy(CT, src / "d" / "a.dcm")
    with zipfile.ZipFile(src / "d" / "b.zip", "w") as z:
        z.write(MR, "x/MR_small.dcm")
        z.write(RT, "x/rtplan.dcm")
    shutil.copy(RT, src / "d" / "c.dcm")
    for source, kw in [(src, {}), (src, {"pattern": "*mr*"}), (src / "d" / "b.zip", {}),
                       (src / "d" / "a.dcm", {}), (f"file://{src}", {"expand_archives": False}),
                       (src, {"relative_prefix": "p/"})]:  # fmt: skip
        batches = list(iter_file_batches(str(source), **kw))  # type: ignore[arg-type]
        got = [r for b in batches for r in _columns_match_refs(b)]
        assert got == list(iter_files(str(source), **kw)), (source, kw)  # type: ignore[arg-type]
    names = [r.relative_path for b in iter_file_batches(str(src)) for r in b.refs()]
    assert names == ["d/a.dcm", "d/b.zip/x/MR_small.dcm", "d/b.zip/x/rtplan.dcm", "d/c.dcm"]
    tags = [t for b in iter_file_batches(str(src)) for t in (b.version_tags or [None] * len(b))]
    assert tags[0] is None and tags[3] is None and tags[1] and tags[1].startswith("crc32:")


def test_the_walk_leaves_no_directory_open(tmp_path: Path) -> None:
    """The walk keeps each directory of its stack open (its entries are stat'ed through it):
    all are closed when it ends, when it is stopped part way, and when a directory fails."""
    for d in ("a/b/c", "a/d", "e"):
        (tmp_path / d).mkdir(parents=True)
        for i in range(3):
            (tmp_path / d / f"{i}.dcm").write_bytes(b"x" * (i + 1))
    before = fds_under(tmp_path)
    listed = [p for b in iter_local_batches(str(tmp_path)) for p in b.paths]
    assert [os.path.relpath(p, tmp_path) for p in listed] == [
        f"{d}/{i}.dcm" for d in ("a/b/c", "a/d", "e") for i in range(3)
    ]
    assert fds_under(tmp_path) == before
    walk = iter_local_batches(str(tmp_path))
    next(walk)  # deep in a/b/c: three directories open
    assert len(fds_under(tmp_path) - before) == 3
    walk.close()
    assert fds_under(tmp_path) == before
