"""``pixels sql`` started fast (:mod:`pixels.cli.sqlfast`, :mod:`pixels.deltalog`): the
Delta log read by DuckDB alone agrees with delta-rs, and every answer is the click
command's, byte for byte, on a table of many versions (appends, an optimize that
clusters, a delete, a checkpoint, an append after it)."""

from __future__ import annotations

import io
import os
import random
import shutil
import string
import uuid
from pathlib import Path
from typing import Any

import _duckdb
import click
import pytest
from click.testing import CliRunner
from deltalake import DeltaTable

import pixels.cluster
from corpus import copy_tree, copy_with_new_uids, sample_file
from pixels import Catalog
from pixels.cli import main
from pixels.cli.options import DEFAULT_TABLE, TABLE_OPTION, TABLE_STORAGE_OPTION
from pixels.cli.query import sql_cmd
from pixels.cli.sqlfast import DEFAULT_TABLE as FAST_DEFAULT_TABLE
from pixels.cli.sqlfast import SQL_OPTIONS, parse, plain_table, run
from pixels.deltalog import read_log
from pixels.scan import protocol_features
from pixels.sql import TableReader, connect, connect_from_log

DATA = Path(__file__).parent / "data" / "delta"


def _log_agrees(table: str) -> None:
    """The log read without delta-rs lists delta-rs' files, in its order, at its version."""
    dt = DeltaTable(table)
    snap = read_log(table, _duckdb.connect())
    assert snap is not None
    assert (snap.version, list(snap.files)) == (dt.version(), list(dt.file_uris()))
    assert snap.features == protocol_features(dt)
    assert snap.description == dt.metadata().description
    assert list(snap.columns) == dt.schema().to_arrow().names


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("sqlfast")
    made = copy_with_new_uids(sample_file("CT_small.dcm"), root / "made", 12, per_series=2)
    (root / "in").mkdir()
    for p in made:  # named at random: studies interleave in path order
        p.rename(root / "in" / f"{uuid.uuid4().hex}.dcm")
    cat = str(root / "catalog")
    Catalog(cat).catalog(str(root / "in"), workers=0, commit_rows=4)
    _log_agrees(cat)
    copy_tree([sample_file("MR_small.dcm"), sample_file("rtplan.dcm")], root / "in" / "more")
    Catalog(cat).catalog(str(root / "in"), workers=0)
    with pytest.MonkeyPatch.context() as mp:  # files of a few rows each
        mp.setattr(pixels.cluster, "_CLUSTER_ROWS", 4)
        mp.setattr(pixels.cluster, "_SAMPLE_EVERY", 1)
        mp.setattr(pixels.cluster, "_SORT_BYTES", 1)
        Catalog(cat).optimize(cluster=True)  # removes every file, adds clustered ones
    _log_agrees(cat)
    DeltaTable(cat).delete("Modality = 'RTPLAN'")  # a file rewritten without the row
    DeltaTable(cat).create_checkpoint()
    _log_agrees(cat)
    copy_tree([sample_file("JPEG2000.dcm")], root / "in" / "last")
    Catalog(cat).catalog(str(root / "in"), workers=0)
    _log_agrees(cat)
    dt = DeltaTable(cat)
    assert len(dt.file_uris()) > 2 and dt.version() >= 5
    assert any(n.endswith(".checkpoint.parquet") for n in os.listdir(Path(cat) / "_delta_log"))
    study = Catalog(cat).sql_arrow(
        "SELECT StudyInstanceUID FROM object_catalog WHERE Modality = 'CT' ORDER BY path LIMIT 1"
    )["StudyInstanceUID"][0]
    return {"table": cat, "study": study.as_py(), "root": root}


def test_the_log_read_without_delta_rs_declines_what_only_delta_rs_reads(tmp_path: Path) -> None:
    """Deletion vectors and column mapping (tables Databricks wrote): read_log answers
    None or names the features, so ``pixels sql`` reads them with delta-rs as before."""
    con = _duckdb.connect()
    assert read_log(str(DATA / "table-with-dv-small"), con) is None
    snap = read_log(str(DATA / "table_with_column_mapping"), con)
    dt = DeltaTable(str(DATA / "table_with_column_mapping"))
    assert snap is not None and snap.features == protocol_features(dt) and snap.features
    assert read_log(str(tmp_path), con) is None  # no log
    for q in ("SELECT count(*) FROM object_catalog", "SELECT * FROM object_catalog"):
        assert not connect_from_log(str(DATA / "table-with-dv-small"), q, con)
        assert not connect_from_log(str(DATA / "table_with_column_mapping"), q, con)


def test_a_log_it_cannot_replay_whole_is_declined(table: dict[str, Any], tmp_path: Path) -> None:
    """A commit missing (no checkpoint covers it), or a checkpoint in parts: None (delta-rs
    reads the table, or says what is wrong)."""
    con = _duckdb.connect()
    for damage in ("missing commit", "checkpoint in parts"):
        copy = tmp_path / damage.replace(" ", "-")
        shutil.copytree(table["table"], copy)
        log = copy / "_delta_log"
        assert read_log(str(copy), con) is not None
        (checkpoint,) = log.glob("*.checkpoint.parquet")
        version = int(checkpoint.name.split(".")[0])
        if damage == "missing commit":  # not covered by a checkpoint
            checkpoint.unlink()
            (log / f"{version - 1:020d}.json").unlink()
        else:
            checkpoint.rename(log / f"{version:020d}.checkpoint.0000000001.0000000001.parquet")
        assert read_log(str(copy), con) is None, damage


def _view(con: Any) -> str:
    return str(
        con.execute("SELECT sql FROM duckdb_views() WHERE view_name = 'object_catalog'").fetchall()[
            0
        ][0]
    )


def test_the_view_is_the_one_delta_rs_gives(table: dict[str, Any]) -> None:
    """The same files (pruned by the same statistics to the study's file), the same order."""
    for sql in (
        f"SELECT path FROM object_catalog WHERE StudyInstanceUID = '{table['study']}'",
        "SELECT path FROM object_catalog WHERE StudyInstanceUID = '9.9.9'",
        "SELECT Modality, count(*) FROM object_catalog GROUP BY 1",
    ):
        fast = _duckdb.connect()
        assert connect_from_log(table["table"], sql, fast)
        slow = connect(TableReader(table["table"]), sql=sql)
        assert _view(fast) == _view(slow), sql
        listed, every = _view(fast).count(".parquet'"), len(DeltaTable(table["table"]).file_uris())
        assert (1 <= listed < every) if "= '" in sql else listed == every, (sql, listed, every)


def _fast(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int | None, str, str]:
    code = run(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def _slow(argv: list[str]) -> tuple[int, str, str]:
    res = CliRunner().invoke(main, ["sql", *argv])
    return res.exit_code, res.stdout, res.stderr


QUERIES = (
    "SELECT path, SeriesInstanceUID, SOPInstanceUID FROM object_catalog "
    "WHERE StudyInstanceUID = '{study}' ORDER BY path",
    "SELECT * FROM object_catalog ORDER BY path",
    "SELECT Modality, count(*) AS n FROM object_catalog GROUP BY 1 ORDER BY 1",
    "SELECT path_tags, thumbnail, StudyDate, modificationTime, is_anon, Rows "
    "FROM object_catalog ORDER BY path LIMIT 5",
    "SELECT path FROM object_catalog WHERE StudyInstanceUID = '9.9.9'",
    "SELECT 'a \"quoted\", text' AS t, NULL::VARCHAR AS n, '' AS e, 'x:smile:y' AS emoji",
)


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_answers_are_the_click_commands(
    table: dict[str, Any],
    fmt: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    for i, q in enumerate(QUERIES):
        q = q.format(study=table["study"])
        for max_rows in ("100", "2"):
            argv = ["-t", table["table"], "--format", fmt, q, "--max-rows", max_rows]
            code, out, err = _fast(argv, capsys)
            assert code == 0, (q, err)
            assert (0, out, err) == _slow(argv), q
            fast_file, slow_file = tmp_path / f"f{i}", tmp_path / f"s{i}"
            assert run([*argv, "-O", str(fast_file)]) == 0
            assert _slow([*argv, "-O", str(slow_file)])[0] == 0
            assert fast_file.read_bytes() == slow_file.read_bytes(), q
    # a type the fast writers leave to the Arrow ones (no byte written before)
    argv = ["-t", table["table"], "-f", fmt, "SELECT 1.5::DOUBLE AS d, INTERVAL 1 DAY AS i"]
    assert _fast(argv, capsys) == (None, "", "")


def test_errors_are_the_click_commands(
    table: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """What the fast path does not answer is left to click, nothing written: a query
    DuckDB refuses (click's message names the column), bad syntax, a missing table,
    --help, Parquet, an object-store option."""
    argv = ["-t", table["table"], "SELECT nope FROM object_catalog"]
    assert _fast(argv, capsys) == (None, "", "")  # the click command words the error
    code, out, err = _slow(argv)
    assert code == 1 and out == "" and '"nope"' in err and err.startswith("SQL error: Binder")
    for argv in (
        ["-t", table["table"], "SELEC 1"],
        ["-t", str(table["root"] / "nothing"), "SELECT 1"],
        ["--help"],
        ["-t", table["table"], "-f", "parquet", "SELECT 1", "-O", str(table["root"] / "x")],
        ["-t", table["table"], "-o", "anon=true", "SELECT 1"],
    ):
        assert _fast(argv, capsys) == (None, "", ""), argv


def test_one_definition_of_the_options() -> None:
    """The click command's options are SQL_OPTIONS, and --table/-o are the ones every
    command shares (pixels.cli.options)."""
    assert FAST_DEFAULT_TABLE == DEFAULT_TABLE
    params = {p.name: p for p in sql_cmd.params}
    assert [p.name for p in sql_cmd.params] == ["query", *(o.dest for o in SQL_OPTIONS)]
    for o in SQL_OPTIONS:
        p = params[o.dest]
        assert isinstance(p, click.Option)
        assert [*p.opts, *p.secondary_opts] == list(o.decls)
        assert (p.default, p.multiple, p.help, p.show_default) == (
            o.default,
            o.multiple,
            o.help,
            o.show_default,
        )
        if o.choices:
            assert isinstance(p.type, click.Choice) and tuple(p.type.choices) == o.choices
        else:
            assert p.type is (click.INT if o.type is int else click.STRING)
    shared = click.command()(lambda **_: None)
    shared = TABLE_STORAGE_OPTION(TABLE_OPTION(shared))
    for p in shared.params:
        assert p.to_info_dict() == params[str(p.name)].to_info_dict()


@pytest.mark.parametrize(
    "argv",
    [
        ["Q"],
        ["-t", "x", "Q"],
        ["--table=x", "Q", "-f", "csv"],
        ["-tx", "-fjson", "Q"],
        ["Q", "--max-rows", "5", "--max-rows=7"],
        ["-o", "a=1", "--storage-option", "b=2", "Q"],
        ["-O", "out.txt", "--format", "table", "--", "-Q"],
        ["Q", "R"],
        ["-f", "xml", "Q"],
        ["--max-rows", "x", "Q"],
        ["--max-rows", " 5", "Q"],
        ["--nope", "Q"],
        ["-t"],
        [],
        ["-h"],
        ["--tab", "x", "Q"],
        ["-t", "-f", "Q"],
    ],
)
def test_the_small_parser_reads_what_click_reads(argv: list[str]) -> None:
    """Wherever :func:`parse` answers, click reads the same values."""
    got = parse(argv)
    try:
        ctx = sql_cmd.make_context("sql", list(argv))
    except (click.exceptions.Exit, click.UsageError):
        assert got is None
        return
    if got is not None:
        assert got == ctx.params


def test_the_plain_table_is_richs() -> None:
    """The table output without rich is rich's, character for character (random tables,
    widths); where it is not that simple it says so (None) and rich prints it."""
    from rich.console import Console
    from rich.table import Table

    rng = random.Random(7)
    alpha = string.ascii_letters + string.digits + "./_-=:∅…"
    written = 0
    for _ in range(600):
        ncol = rng.randint(1, 5)
        names = ["".join(rng.choices(alpha + " ", k=rng.randint(1, 20))) for _ in range(ncol)]
        rows = [
            [
                "".join(
                    rng.choices(
                        alpha + " " * (rng.random() < 0.3), k=rng.choice([0, 1, 9, 60, 120])
                    )
                )
                for _ in range(ncol)
            ]
            for _ in range(rng.randint(0, 12))
        ]
        width = rng.choice([30, 60, 80, 120, 200])
        got = plain_table(names, rows, "(3 rows)", width)
        if got is None:
            continue
        buf = io.StringIO()
        console = Console(file=buf, width=width)
        t = Table(show_lines=False)
        for n in names:
            t.add_column(n, overflow="fold")
        for r in rows:
            t.add_row(*r)
        console.print(t)
        console.print("(3 rows)")
        assert got == buf.getvalue(), (names, rows, width)
        written += 1
    assert written > 200
    assert plain_table(["a"], [["[bold]x"]], "(1 rows)", 80) is None  # markup
    assert plain_table(["a"], [["x:smile:y"]], "(1 rows)", 80) is None  # an emoji code


#: A checkpoint with Spark's columns (``stats_parsed`` beside ``stats``, ``txn``, no
#: ``sidecar`` and no deletion vector fields), and one with fewer columns than delta-rs
#: writes (no ``remove``, ``tags``, reader features or ``sidecar``): the same rows
#: rewritten from delta-rs' checkpoint by DuckDB.
_OTHER_CHECKPOINTS = {
    "spark": """
        SELECT txn,
          CASE WHEN add IS NOT NULL THEN {{'path': add.path,
            'partitionValues': add.partitionValues, 'size': add.size,
            'modificationTime': add.modificationTime, 'dataChange': add.dataChange,
            'tags': add.tags, 'stats': add.stats,
            'stats_parsed': json_transform(add.stats, '{parsed}')}} END AS add,
          CASE WHEN remove IS NOT NULL THEN {{'path': remove.path,
            'deletionTimestamp': remove.deletionTimestamp, 'dataChange': remove.dataChange,
            'extendedFileMetadata': remove.extendedFileMetadata,
            'partitionValues': remove.partitionValues, 'size': remove.size}} END AS remove,
          metaData,
          CASE WHEN protocol IS NOT NULL THEN {{
            'minReaderVersion': protocol.minReaderVersion,
            'minWriterVersion': protocol.minWriterVersion}} END AS protocol
        FROM read_parquet(?)""",
    "fewer columns": """
        SELECT
          CASE WHEN add IS NOT NULL THEN {{'path': add.path,
            'partitionValues': add.partitionValues, 'size': add.size,
            'modificationTime': add.modificationTime, 'dataChange': add.dataChange,
            'stats': add.stats}} END AS add,
          CASE WHEN metaData IS NOT NULL THEN {{'id': metaData.id,
            'description': metaData.description, 'format': metaData.format,
            'schemaString': metaData.schemaString,
            'partitionColumns': metaData.partitionColumns,
            'configuration': metaData.configuration}} END AS metaData,
          CASE WHEN protocol IS NOT NULL THEN {{
            'minReaderVersion': protocol.minReaderVersion,
            'minWriterVersion': protocol.minWriterVersion}} END AS protocol
        FROM read_parquet(?)
        WHERE add IS NOT NULL OR metaData IS NOT NULL OR protocol IS NOT NULL""",
}


@pytest.mark.parametrize("writer", sorted(_OTHER_CHECKPOINTS))
def test_a_checkpoint_with_another_writers_columns_reads_as_delta_rs_reads_it(
    table: dict[str, Any], tmp_path: Path, writer: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The checkpoint is read by the columns it has: delta-rs' files, order, version and
    features, the same pruning, and the same answers as the click command."""
    copy = tmp_path / "t"
    shutil.copytree(table["table"], copy)
    (checkpoint,) = (copy / "_delta_log").glob("*.checkpoint.parquet")
    con = _duckdb.connect()
    string_columns = [
        r[0]
        for r in con.execute(f"DESCRIBE SELECT * FROM '{copy}/*.parquet'").fetchall()
        if r[1] == "VARCHAR"
    ]
    bounds = "{" + ", ".join(f'"{c}": "VARCHAR"' for c in string_columns) + "}"
    parsed = '{"numRecords": "BIGINT", "minValues": ' + bounds + ', "maxValues": ' + bounds + "}"
    rewritten = tmp_path / "checkpoint.parquet"
    select = _OTHER_CHECKPOINTS[writer].format(parsed=parsed)
    con.execute(f"COPY ({select}) TO '{rewritten}' (FORMAT parquet)", [str(checkpoint)])
    shutil.move(rewritten, checkpoint)
    fields = {
        str(r[0]): str(r[1])
        for r in con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(checkpoint)]).fetchall()
    }
    assert "sidecar" not in fields and "deletionVector" not in fields["add"]
    assert ("stats_parsed" in fields["add"]) == (writer == "spark")
    assert ("remove" in fields) == (writer == "spark")

    _log_agrees(str(copy))
    before = read_log(table["table"], con)
    snap = read_log(str(copy), con)
    assert before is not None and snap is not None
    assert [f[len(str(copy)) :] for f in snap.files] == [
        f[len(table["table"]) :] for f in before.files
    ]
    assert snap.bounds({"studyinstanceuid"}) == before.bounds({"studyinstanceuid"})
    sql = f"SELECT path FROM object_catalog WHERE StudyInstanceUID = '{table['study']}'"
    fast = _duckdb.connect()
    assert connect_from_log(str(copy), sql, fast)
    assert _view(fast) == _view(connect(TableReader(str(copy)), sql=sql))
    assert 1 <= _view(fast).count(".parquet'") < len(snap.files)
    argv = ["-t", str(copy), "-f", "csv", sql + " ORDER BY path"]
    code, out, err = _fast(argv, capsys)
    assert code == 0 and (0, out, err) == _slow(argv) and out.count("\n") > 1


def test_struct_fields_are_read_from_duckdbs_type_names() -> None:
    """The checkpoint's struct fields, as DuckDB names their types: quoted names, nested
    structs, maps and lists inside."""
    from pixels.deltalog import _struct_fields

    con = _duckdb.connect()
    select = """SELECT {'path': 'p', 'a b': 1, 'x"y': 2, 'offset': 3,
        'dv': {'c, d': 1, 'e': [1]}, 'm': MAP {'k': 'v'}, 'l': [{'z': 1}], 'last': 1} AS s"""
    (duck_type,) = [str(r[1]) for r in con.execute(f"DESCRIBE {select}").fetchall()]
    assert _struct_fields(duck_type) == {"path", "a b", 'x"y', "offset", "dv", "m", "l", "last"}
    assert _struct_fields("VARCHAR") is None
    assert _struct_fields("MAP(VARCHAR, VARCHAR)") is None


@pytest.mark.parametrize("fmt", ["csv", "table"])
def test_the_console_script_leaves_after_its_whole_answer(
    table: dict[str, Any], tmp_path: Path, fmt: str
) -> None:
    """``python -m pixels.cli sql`` ends without the interpreter's teardown once its
    answer is written: all of it, buffered or larger than a pipe's buffer, through a
    pipe and to ``--output``, as the click command writes it."""
    import subprocess
    import sys

    env = dict(os.environ, COLUMNS="100")
    env.pop("PYTHONUNBUFFERED", None)  # standard output buffered, as a user's is
    for q in (
        "SELECT o.path, o.meta, r.range FROM object_catalog o, range(40) r ORDER BY 1, 3",
        "SELECT count(*) AS n FROM object_catalog",
    ):
        argv = ["-t", table["table"], "-f", fmt, "--max-rows", "1000", q]
        done = subprocess.run(
            [sys.executable, "-m", "pixels.cli", "sql", *argv],
            capture_output=True,
            text=True,
            check=False,
            env=env,
        )
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("COLUMNS", "100")
            slow = _slow(argv)
        assert (done.returncode, done.stdout, done.stderr) == slow
        big = len(done.stdout.encode()) > 1 << 16
        assert big if "range" in q else not big and done.stdout.count("\n") >= 2
        fast_file, slow_file = tmp_path / "fast", tmp_path / "slow"
        done = subprocess.run(
            [sys.executable, "-m", "pixels.cli", "sql", *argv, "-O", str(fast_file)],
            capture_output=True,
            check=False,
            env=env,
        )
        assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
        assert _slow([*argv, "-O", str(slow_file)])[0] == 0
        assert fast_file.read_bytes() == slow_file.read_bytes()


def test_a_v2_checkpoint_is_left_to_delta_rs(table: dict[str, Any], tmp_path: Path) -> None:
    """A checkpoint holding a ``checkpointMetadata`` action (a V2 checkpoint under the
    classic name) is declined; the same column holding none reads as before."""
    con = _duckdb.connect()
    before = read_log(table["table"], con)
    assert before is not None
    for action in ("{'version': 1, 'tags': NULL::MAP(VARCHAR, VARCHAR)}", "NULL"):
        copy = tmp_path / ("v2" if action != "NULL" else "none")
        shutil.copytree(table["table"], copy)
        (checkpoint,) = (copy / "_delta_log").glob("*.checkpoint.parquet")
        rewritten = tmp_path / "checkpoint.parquet"
        select = (
            f"SELECT *, CASE WHEN protocol IS NOT NULL THEN {action} END AS checkpointMetadata "
            "FROM read_parquet(?)"
        )
        con.execute(f"COPY ({select}) TO '{rewritten}' (FORMAT parquet)", [str(checkpoint)])
        shutil.move(rewritten, checkpoint)
        snap = read_log(str(copy), con)
        if action == "NULL":
            assert snap is not None
            assert [f[len(str(copy)) :] for f in snap.files] == [
                f[len(table["table"]) :] for f in before.files
            ]
        else:
            assert snap is None
