"""The hostile corpus (tests/hostile.py) cataloged with thumbnails under a memory limit.

Each file is a real DICOM file mutated one way (byte flips, truncation, huge lengths,
lying sizes, deep nesting, corrupt codestreams) or left unchanged. One
``pixels catalog --thumbnails`` run over all of them, in a subprocess whose address
space is limited (RLIMIT_AS), must give exactly one row per file, no error on any
unchanged file, a thumbnail for every unchanged file with pixel data, and an error
that names its file wherever there is one: one bad file never costs the others.
"""

from __future__ import annotations

import resource
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from hostile import Case, build
from pixels import Catalog

pytestmark = pytest.mark.slow

#: Address-space limit of the catalog process and its workers. Python, pyarrow,
#: deltalake and the codecs reserve ~1.5 GiB of virtual memory before any file is read.
MEMORY_LIMIT = 3 << 30


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Case], list[dict]]:
    root = tmp_path_factory.mktemp("hostile")
    folder = root / "files"
    cases = {c.name: c for c in build(folder, seed=9)}
    table = root / "catalog"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pixels.cli",
            "catalog",
            str(folder),
            "--table",
            str(table),
            "--thumbnails",
            "--thumbnail-format",
            "png",
            "--workers",
            "2",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=_limit_memory,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    rows = Catalog(table).sql_arrow(
        "SELECT path, error, thumbnail_error, thumbnail_format, frame_offsets FROM object_catalog"
    )
    return folder, cases, rows.to_pylist()


def test_the_corpus_is_deterministic_and_covers_every_kind(tmp_path: Path) -> None:
    a = build(tmp_path / "a", seed=3, per_kind=1)
    b = build(tmp_path / "b", seed=3, per_kind=1)
    assert a == b
    for case in a:
        assert (tmp_path / "a" / case.name).read_bytes() == (
            tmp_path / "b" / case.name
        ).read_bytes()
    kinds = Counter(c.kind for c in a)
    assert set(kinds) == {
        "good",
        "flip",
        "flip-header",
        "truncate",
        "huge-length",
        "lie",
        "nesting",
        "codestream",
        "junk",
    }


def test_one_row_per_file(corpus: tuple[Path, dict[str, Case], list[dict]]) -> None:
    folder, cases, rows = corpus
    names = [Path(r["path"]).name for r in rows]
    assert len(cases) > 300
    assert Counter(names) == Counter(list(cases)), "a file has no row or several"
    assert {p.name for p in folder.iterdir()} == set(cases)


def test_unchanged_files_have_no_error_and_a_thumbnail(
    corpus: tuple[Path, dict[str, Case], list[dict]],
) -> None:
    _, cases, rows = corpus
    good = [r for r in rows if cases[Path(r["path"]).name].good]
    assert len(good) >= 40
    for r in good:
        assert r["error"] is None, r["error"]
        assert r["thumbnail_error"] is None, r["thumbnail_error"]
        if r["frame_offsets"]:
            assert r["thumbnail_format"] == "png", r["path"]


def test_every_error_names_its_file(corpus: tuple[Path, dict[str, Case], list[dict]]) -> None:
    rows = corpus[2]
    errors = [r for r in rows if r["error"] or r["thumbnail_error"]]
    assert len(errors) > 150  # most mutations are caught
    for r in errors:
        for text in (r["error"], r["thumbnail_error"]):
            if text:
                assert r["path"] in text, text
                assert "Traceback" not in text


def test_issue_9_cases_are_clear_errors(corpus: tuple[Path, dict[str, Case], list[dict]]) -> None:
    """The lying frame count, decoder panics and headers lying about the image size."""
    _, _, rows = corpus
    by_name = {Path(r["path"]).name: r for r in rows}
    lying = by_name["lie_frames_400_bytes.dcm"]["error"]
    assert "NumberOfFrames (0028,0008) 2147483647" in lying and "too few" in lying
    rle = by_name["lie_MR_small_RLE_65535.dcm"]
    assert rle["error"] is None and "RLE expands at most 64 times" in rle["thumbnail_error"]
    for name in ("lie_MR_small_jpeg_ls_lossless_65535.dcm", "lie_JPEG2000_65535.dcm"):
        text = by_name[name]["thumbnail_error"]
        assert "the header says Rows (0028,0010) 65535 x Columns (0028,0011) 65535" in text
    for name in ("codestream_JPEG2000_65535.dcm", "codestream_SC_rgb_jpeg_dcmtk_65535.dcm"):
        text = by_name[name]["thumbnail_error"]
        assert "codestream declares 65535 x 65535 x" in text, text


def test_a_later_thumbnail_pass_over_the_corpus(
    corpus: tuple[Path, dict[str, Case], list[dict]], tmp_path: Path
) -> None:
    """``pixels thumbnails --force`` (the separate pass, through the process pool) over the
    same corpus, under the same limit: every row kept, the same thumbnails on good files."""
    import shutil

    folder, cases, before = corpus
    table = tmp_path / "catalog"
    shutil.copytree(folder.parent / "catalog", table)  # the catalog the fixture wrote
    out = subprocess.run(
        [
            *(sys.executable, "-m", "pixels.cli", "thumbnails", "--table", str(table)),
            *("--force", "--format", "png", "--workers", "2"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=_limit_memory,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    after = Catalog(table).sql_arrow(
        "SELECT path, error, thumbnail_error, thumbnail_format, frame_offsets FROM object_catalog"
    )
    rows = after.to_pylist()
    assert Counter(Path(r["path"]).name for r in rows) == Counter(list(cases))
    old = {r["path"]: r for r in before}
    for r in rows:
        assert r["error"] == old[r["path"]]["error"]
        if cases[Path(r["path"]).name].good:
            assert r["thumbnail_error"] is None, r["thumbnail_error"]
            assert (r["thumbnail_format"] == "png") == bool(r["frame_offsets"]), r["path"]
