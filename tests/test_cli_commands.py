"""The ``pixels`` command's surface: every command listed, reachable by ``python -m`` and the script."""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib.metadata import entry_points

from click.testing import CliRunner

COMMANDS = {
    "catalog": "List SOURCE (folder, file, zip, s3://...",
    "deid": "De-identify the files of the catalog --table into --out...",
    "dimse": "DICOM networking: serve the catalog (scp) or talk to a PACS...",
    "demo": "Catalog the real DICOM files bundled with pydicom (and...",
    "models": "List the segmentation models, whether each can run here, and...",
    "optimize": "Compact the table's small files and vacuum files replaced...",
    "patches": "Cut the selected images into patches (rows with source,...",
    "schema": "Print the catalog's columns.",
    "segment": "Segment the selected series with MODEL: one DICOM SEG per...",
    "serve": "Serve the catalog over DICOMweb (QIDO-RS, WADO-RS, STOW-RS)...",
    "show": "Write a contact sheet of the selected rows' thumbnails (made...",
    "sql": "Run a DuckDB QUERY over the view object_catalog.",
    "thumbnails": "Make thumbnails for cataloged rows that lack one (only the...",
    "upgrade": "Rewrite the rows an older Pixels wrote into the current...",
}


def _listed(help_text: str) -> dict[str, str]:
    lines = help_text.splitlines()
    start = lines.index("Commands:") + 1
    out = {}
    for line in lines[start:]:
        if not line.strip():
            break
        name, text = line.split(maxsplit=1)
        out[name] = text
    return out


def test_python_m_pixels_cli_lists_every_command():
    done = subprocess.run(
        [sys.executable, "-m", "pixels.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: python -m pixels.cli [OPTIONS] COMMAND [ARGS]...")
    assert set(_listed(done.stdout)) == set(COMMANDS)  # (short help cut to the terminal)


def test_the_console_script_is_the_group_and_each_command_has_help():
    from pixels.cli import main

    (script,) = entry_points(group="console_scripts", name="pixels")
    assert script.value == "pixels.cli:main"
    assert script.load() is main
    runner = CliRunner()
    res = runner.invoke(main, ["--help"], prog_name="pixels")  # 80 columns
    assert res.exit_code == 0
    assert res.output.startswith("Usage: pixels [OPTIONS] COMMAND [ARGS]...")
    assert _listed(res.output) == COMMANDS
    for name in COMMANDS:
        for flag in ("--help", "-h"):
            res = runner.invoke(main, [name, flag], prog_name="pixels")
            assert res.exit_code == 0, (name, res.output)
            assert res.output.startswith(f"Usage: pixels {name} "), res.output
    res = runner.invoke(main, ["no-such-command"], prog_name="pixels")
    assert res.exit_code == 2
    assert "No such command 'no-such-command'" in res.output


def test_commands_run_in_process_leave_pandas_importable(tmp_path):
    """catalog and thumbnails keep pandas out while they run, not for the rest of the process.

    A fresh interpreter (this one may have pandas already): the commands run through
    click as a test or ``pixels demo`` runs them, then the process uses pandas.
    """
    from corpus import sample_file

    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(sample_file("CT_small.dcm"), src / "ct.dcm")
    table = str(tmp_path / "cat")
    code = f"""
import sys
from click.testing import CliRunner
from pixels.cli import main
runner = CliRunner()
for args in (["catalog", {str(src)!r}, "-t", {table!r}, "-w", "0", "-q"],
             ["thumbnails", "-t", {table!r}, "-w", "0"]):
    res = runner.invoke(main, args)
    assert res.exit_code == 0, (args, res.output, res.exception)
    assert "pandas" not in sys.modules, args
from pixels import Catalog
df = Catalog({table!r}).sql("SELECT Modality, thumbnail IS NOT NULL AS t FROM object_catalog")
print(type(df).__module__, df.to_dict("records"))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "pandas [{'Modality': 'CT', 't': True}]"


def test_a_bad_query_exits_1_and_names_the_option(tmp_path):
    """sql, show, patches and thumbnails: a query DuckDB refuses is exit 1 with its message."""
    from corpus import sample_file
    from pixels.cli import main

    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(sample_file("CT_small.dcm"), src / "ct.dcm")
    table = str(tmp_path / "cat")
    runner = CliRunner()
    assert runner.invoke(main, ["catalog", str(src), "-t", table, "-w", "0", "-q"]).exit_code == 0
    for args, prefix in (
        (["sql", "-t", table, "SELEC 1"], "SQL error: "),
        (["show", "-t", table, "--where", "nope nope", "-O", str(tmp_path / "s.png")], None),
        (["patches", "-t", table, "--where", "nope nope", "-O", str(tmp_path / "p")], None),
        (["thumbnails", "-t", table, "--where", "nope nope", "-w", "0"], None),
    ):
        res = runner.invoke(main, args)
        assert res.exit_code == 1, (args, res.output)
        want = prefix or "SQL error in --where: "
        assert res.output.startswith(want + "Parser Error: syntax error at or near"), res.output
        assert not (tmp_path / "s.png").exists() and not (tmp_path / "p").exists()


def test_a_missing_table_is_an_error_naming_it(tmp_path):
    """A mistyped --table: every command that reads a catalog exits 2 naming the folder.

    Before, ``sql`` answered from an empty view, ``patches``/``thumbnails``/``optimize``
    reported zero work with exit 0 and ``show`` said "no rows match".
    """
    from pixels.cli import main

    missing = tmp_path / "no-such-catalog"
    runner = CliRunner()
    for args in (
        ["sql", "select count(*) from object_catalog"],
        ["show", "-O", str(tmp_path / "s.png")],
        ["patches", "-O", str(tmp_path / "p")],
        ["thumbnails", "-w", "0"],
        ["segment", "-w", "0", "-q"],
        ["optimize"],
        ["upgrade"],
    ):
        res = runner.invoke(main, [args[0], "-t", str(missing), *args[1:]])
        assert res.exit_code == 2, (args, res.output)
        assert res.output.strip() == (
            f"error: {missing}: no catalog table here (no _delta_log): run `pixels catalog` "
            "first, or pass --table"
        ), (args, res.output)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
