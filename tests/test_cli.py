"""The `pixels` command as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pydicom
import pytest
from click.testing import CliRunner

from corpus import copy_tree, sample_file
from pixels.cli import main

PIXELS = [sys.executable, "-m", "pixels.cli"]


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PIXELS, *args], capture_output=True, text=True, check=check)


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cli")
    data = root / "data"
    copy_tree(
        [sample_file("CT_small.dcm"), sample_file("MR_small.dcm"), sample_file("rtplan.dcm")],
        data / "a",
    )
    (data / "broken.dcm").write_bytes(sample_file("CT_small.dcm").read_bytes()[:300])
    out = run("catalog", str(data), "--table", str(root / "cat"), "--workers", "2", "-q")
    assert "listed 4" in out.stderr and "errors 1" in out.stderr, out.stderr
    assert "broken.dcm" in out.stderr  # the error summary names the file
    return data, root / "cat"


def test_second_run_reads_nothing(table: tuple[Path, Path]) -> None:
    data, cat = table
    out = run("catalog", str(data), "--table", str(cat), "-q")
    assert "unchanged 4" in out.stderr and "read 0" in out.stderr


def test_thumbnails_on_a_rerun_say_how_to_fill_the_unchanged_rows(tmp_path: Path) -> None:
    """The README's order (catalog, then catalog --thumbnails) once made no thumbnail and
    said nothing: the files were unchanged, so not read again."""
    data, cat = tmp_path / "data", str(tmp_path / "cat")
    copy_tree([sample_file("CT_small.dcm")], data)
    first = run("catalog", str(data), "--table", cat, "-q", "-w", "0")
    assert "note:" not in first.stderr
    again = run("catalog", str(data), "--table", cat, "--thumbnails", "-q", "-w", "0")
    assert "unchanged 1" in again.stderr
    assert (
        f"the 1 unchanged files were not read again: pixels thumbnails --table {cat} "
        "makes them for the rows that lack one" in again.stderr
    ), again.stderr
    run("thumbnails", "--table", cat, "-w", "0")
    made = run("sql", "--table", cat, "SELECT count(thumbnail) n FROM object_catalog", "-f", "csv")
    assert made.stdout.split() == ['"n"', "1"]


def test_sql_table_output(table: tuple[Path, Path]) -> None:
    _, cat = table
    out = run(
        "sql",
        "--table",
        str(cat),
        "SELECT Modality, count(*) AS n FROM object_catalog GROUP BY 1 ORDER BY 1",
    )
    for modality in ("CT", "MR", "RTPLAN"):
        assert modality in out.stdout
    assert "(4 rows)" in out.stdout


def test_sql_imports_only_what_a_query_needs(table: tuple[Path, Path]) -> None:
    """``pixels sql`` as the console script runs it imports DuckDB's engine and the Delta
    log reader only: not click, pyarrow (nor numpy), deltalake, the ``duckdb`` package's
    Python layer, rich (a plain table is written as rich writes it), the catalog's imports
    (pydicom, pandas, the engines), the table writer's, nor the other commands' modules.
    Each was a share of a point look-up's start (~0.7 s of CPU in all at load 9). The
    output is the click command's, byte for byte."""
    _, cat = table
    heavy = {"click", "pyarrow", "numpy", "deltalake", "duckdb", "rich", "pandas", "pydicom"}
    heavy |= {"fsspec", "pixels.catalog", "pixels.table", "pixels.scan", "pixels.schema"}
    heavy |= {"pixels.sources", "pixels.cli.query", "pixels.cli.options", "pixels.cli.catalog"}
    heavy |= {"pixels.cli.serve", "pixels.cli.images", "pixels.cli.ml"}
    query = "SELECT Modality, Rows, path FROM object_catalog WHERE Modality = 'MR'"
    for fmt in ("table", "csv", "json"):
        args = ["sql", "-t", str(cat), "-f", fmt, query]
        script = "from pixels.cli import main; main()"
        done = subprocess.run(  # the process ends in main(): its imports as -X importtime says
            [sys.executable, "-X", "importtime", "-c", script, *args],
            capture_output=True,
            text=True,
            check=False,
            env=dict(os.environ, COLUMNS="90"),
        )
        assert done.returncode == 0, done.stderr
        lines = done.stderr.splitlines()
        imported = {s.rsplit("|", 1)[-1].strip() for s in lines if s.startswith("import time:")}
        assert "_duckdb" in imported and "pixels.deltalog" in imported
        assert sorted(imported & heavy) == [], fmt
        assert [s for s in lines if not s.startswith("import time:")] == [], fmt
        res = CliRunner(env={"COLUMNS": "90"}).invoke(main, args)
        assert res.exit_code == 0 and "MR" in res.stdout
        assert done.stdout == res.stdout, fmt


def test_sql_csv_json_parquet(table: tuple[Path, Path], tmp_path: Path) -> None:
    _, cat = table
    q = "SELECT SOPInstanceUID, Rows, path_tags FROM object_catalog WHERE Modality = 'CT'"
    csv = run("sql", "--table", str(cat), q, "--format", "csv").stdout.splitlines()
    ct = pydicom.dcmread(sample_file("CT_small.dcm"))
    assert csv[0] == '"SOPInstanceUID","Rows","path_tags"'
    assert csv[1].startswith(f'"{ct.SOPInstanceUID}",{ct.Rows},')
    js = [
        json.loads(line)
        for line in run("sql", "--table", str(cat), q, "--format", "json").stdout.splitlines()
    ]
    assert js == [
        {
            "SOPInstanceUID": ct.SOPInstanceUID,
            "Rows": ct.Rows,
            "path_tags": '["a", "CT", "small", "dcm"]',
        }
    ]
    out = tmp_path / "r.parquet"
    run("sql", "--table", str(cat), q, "--format", "parquet", "--output", str(out))
    t = pq.read_table(out)
    assert t.column("SOPInstanceUID").to_pylist() == [ct.SOPInstanceUID]
    assert t.column("path_tags").to_pylist() == [["a", "CT", "small", "dcm"]]


def test_bad_sql_gives_duckdb_message(table: tuple[Path, Path]) -> None:
    _, cat = table
    out = run("sql", "--table", str(cat), "SELECT nope FROM object_catalog", check=False)
    assert out.returncode == 1
    assert "SQL error" in out.stderr and "nope" in out.stderr
    assert "Traceback" not in out.stderr
    out = run("sql", "--table", str(cat), "SELEC 1", check=False)
    assert out.returncode == 1 and "syntax error" in out.stderr.lower()


def test_missing_source_is_clear(tmp_path: Path) -> None:
    out = run("catalog", str(tmp_path / "absent"), "--table", str(tmp_path / "cat"), check=False)
    assert out.returncode == 2
    assert "absent" in out.stderr and "Traceback" not in out.stderr


def test_schema_markdown_lists_every_column() -> None:
    from pixels.schema import COLUMNS

    out = run("schema", "--markdown").stdout
    for c in COLUMNS:
        assert f"`{c.name}`" in out


def test_readme_column_table_is_generated_from_schema() -> None:
    from pixels.schema import markdown_table

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert markdown_table() in readme, (
        "README column table is stale: run `pixels schema --markdown`"
    )


def test_patches_command(tmp_path: Path) -> None:
    """`pixels patches` cuts the selected images; the patch table is queryable and exact."""
    import io

    import numpy as np
    from PIL import Image

    data = tmp_path / "data"
    copy_tree(
        [sample_file("CT_small.dcm"), sample_file("MR_small.dcm"), sample_file("rtplan.dcm")], data
    )
    run("catalog", str(data), "--table", str(tmp_path / "cat"), "-q")
    out = run(
        "patches",
        "--table",
        str(tmp_path / "cat"),
        "--out",
        str(tmp_path / "p"),
        "--where",
        "Modality = 'CT'",
        "--size",
        "64",
        "--stride",
        "32",
    )
    assert "patches: 9 from 1 files · 0 errors" in out.stderr, out.stderr
    res = run(
        "sql",
        "--table",
        str(tmp_path / "p"),
        "SELECT x, y, width, height, data FROM object_catalog WHERE x = 32 AND y = 64",
        "--format",
        "parquet",
        "--output",
        str(tmp_path / "one.parquet"),
    )
    assert res.returncode == 0
    (row,) = pq.read_table(tmp_path / "one.parquet").to_pylist()
    tile = np.asarray(Image.open(io.BytesIO(row["data"]))).astype(np.uint16).view(np.int16)
    ref = pydicom.dcmread(sample_file("CT_small.dcm")).pixel_array[64:128, 32:96]
    assert np.array_equal(tile, ref)
    bad = run(
        "patches",
        "--table",
        str(tmp_path / "cat"),
        "--out",
        str(tmp_path / "q"),
        "--where",
        "nope(",
        check=False,
    )
    assert bad.returncode == 1 and "SQL error" in bad.stderr and "Traceback" not in bad.stderr


def test_pydicom_warnings_kept_per_row_and_summarised(tmp_path: Path) -> None:
    """pydicom's warnings never reach the terminal: each is in its file's row, with the
    tag, and the run ends with a count by kind and example paths (workers and in-process)."""
    from pixels.catalog import Catalog

    data = tmp_path / "data"
    data.mkdir()
    for name in ("badVR.dcm", "SC_rgb_jpeg.dcm", "CT_small.dcm"):
        (data / name).write_bytes(sample_file(name).read_bytes())
    # a real CT whose Instance Number (0020,0013) IS value "1 " becomes the invalid "7B"
    ct = sample_file("CT_small.dcm").read_bytes()
    at = ct.find(b"\x20\x00\x13\x00IS\x02\x00")
    assert at > 0
    mutated = ct[: at + 8] + b"7B" + ct[at + 10 :]
    (data / "ct_bad_is.dcm").write_bytes(mutated)
    for workers in ("2", "0"):
        cat = tmp_path / f"cat{workers}"
        out = run("catalog", str(data), "--table", str(cat), "--workers", workers, "-q")
        assert "Warning" not in out.stderr and "warn_and_log" not in out.stderr, out.stderr
        assert "warnings: 3 files read with warnings" in out.stderr, out.stderr
        assert "2 × Invalid value for VR IS" in out.stderr, out.stderr
        assert (
            "1 × Expected explicit VR, but found implicit VR - using implicit VR for reading"
            in out.stderr
        ), out.stderr
        assert f"e.g. {data / 'SC_rgb_jpeg.dcm'}" in out.stderr
        rows = (
            Catalog(cat)
            .sql_arrow("SELECT path, warnings, error, Modality FROM object_catalog")
            .to_pylist()
        )
        got = {Path(r["path"]).name: r for r in rows}
        assert got["badVR.dcm"]["warnings"] == ["(0028,0008) Invalid value for VR IS: '1A'."]
        assert got["ct_bad_is.dcm"]["warnings"] == ["(0020,0013) Invalid value for VR IS: '7B'."]
        assert got["SC_rgb_jpeg.dcm"]["warnings"] == [
            "(0008,0008) Expected explicit VR, but found implicit VR - using implicit VR for reading"
        ]
        assert got["CT_small.dcm"]["warnings"] is None
        # warnings do not make a file an error: it is read whole
        assert all(r["error"] is None for r in rows)
        assert got["ct_bad_is.dcm"]["Modality"] == "CT"


def test_catalog_error_names_the_path_on_one_line(tmp_path: Path) -> None:
    """A path in an error message is printed whole (not wrapped, brackets not read as markup)."""
    missing = tmp_path / ("a-long-folder-name-" * 6) / "[red]scan[/red]" / "incoming"
    out = run("catalog", str(missing), "--table", str(tmp_path / "cat"), "-q", check=False)
    assert out.returncode == 2
    assert f"error: {missing}: source not found" in out.stderr.splitlines(), out.stderr
