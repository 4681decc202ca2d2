"""``pixels optimize --cluster``: rows ordered by study and series, row group statistics
that let a look-up by study skip the other row groups, the rows themselves unchanged."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import uuid
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from deltalake import DeltaTable

import pixels.table.catalog_table
from corpus import copy_with_new_uids, sample_file
from pixels import Catalog
from pixels.cli import main


def _rows(catalog: str) -> list[dict[str, object]]:
    """Every column of every row, in path order: read by DuckDB (``pixels sql``) and by
    delta-rs, which must agree."""
    rows = Catalog(catalog).sql_arrow("SELECT * FROM object_catalog ORDER BY path").to_pylist()
    delta = DeltaTable(catalog).to_pyarrow_table()
    delta = delta.take(pa.compute.sort_indices(delta, [("path", "ascending")])).to_pylist()
    assert delta == rows
    assert len(rows) == 36 and len({r["path"] for r in rows}) == 36
    return rows


def _shuffled_catalog(tmp_path: Path) -> str:
    """A catalog of 36 CT files (6 studies of three two-file series), committed 5 rows at a
    time; the files are named at random, so studies interleave in path order and no file
    of the table is ordered by study."""
    catalog = str(tmp_path / "catalog")
    files = copy_with_new_uids(sample_file("CT_small.dcm"), tmp_path / "made", 36, per_series=2)
    (tmp_path / "in").mkdir()
    for p in files:
        p.rename(tmp_path / "in" / f"{uuid.uuid4().hex}.dcm")
    Catalog(catalog).catalog(str(tmp_path / "in"), workers=0, commit_rows=5)
    return catalog


def test_cluster_orders_rows_by_study_so_statistics_prune(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        pixels.table.catalog_table, "_ROW_GROUP", 6
    )  # row groups of the files written
    catalog = _shuffled_catalog(tmp_path)
    before = _rows(catalog)
    result = CliRunner().invoke(main, ["optimize", "--table", catalog, "--cluster"])
    assert result.exit_code == 0, result.output
    assert _rows(catalog) == before
    groups = []
    for uri in DeltaTable(catalog).file_uris():
        md = pq.read_metadata(uri)
        col = md.schema.to_arrow_schema().get_field_index("StudyInstanceUID")
        for g in range(md.num_row_groups):
            st = md.row_group(g).column(col).statistics
            groups.append((st.min, st.max))
    assert len(groups) >= 6
    studies = {
        r[0]
        for r in Catalog(catalog).sql("SELECT DISTINCT StudyInstanceUID FROM object_catalog").values
    }
    for study in studies:
        # the row groups a reader cannot skip for this study: the study's own, at most two
        hits = [g for g in groups if g[0] <= study <= g[1]]
        assert 1 <= len(hits) <= 2, (study, hits)


@pytest.mark.parametrize("runs_per_range", [0, 1000], ids=["gathered", "sliced"])
def test_cluster_writes_ranges_of_studies_a_point_look_up_prunes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runs_per_range: int
) -> None:
    """Several output files, each a range of whole studies with its min/max in the Delta
    log and in its footer; a look-up by study reads one file's row groups only. The
    rows of a batch go to their ranges reordered (gathered) or as runs (sliced)."""
    import pixels.cluster

    monkeypatch.setattr(pixels.cluster, "_RUNS_PER_RANGE", runs_per_range)
    monkeypatch.setattr(pixels.cluster, "_CLUSTER_ROWS", 12)  # 36 rows: about 3 files
    monkeypatch.setattr(pixels.cluster, "_SAMPLE_EVERY", 1)
    monkeypatch.setattr(pixels.cluster, "_BATCH_ROWS", 4)  # rows spread in small batches
    monkeypatch.setattr(pixels.cluster, "_SORT_BYTES", 1)  # ranges of one study, sorted apart
    monkeypatch.setattr(pixels.table.catalog_table, "_ROW_GROUP", 6)
    catalog = _shuffled_catalog(tmp_path)
    before = _rows(catalog)
    version = DeltaTable(catalog).version()
    # a clustering killed midway left its temporary ranges: the next one removes them
    stale = tmp_path / "catalog" / "_pixels" / "tmp" / "cluster-killed"
    stale.mkdir(parents=True)
    (stale / "range-000000.parquet").write_bytes(b"PAR1")
    metrics = Catalog(catalog).optimize(cluster=True)
    assert _rows(catalog) == before
    assert not stale.exists()
    assert not list((tmp_path / "catalog").glob("*.tmp"))
    dt = DeltaTable(catalog)
    assert dt.version() == version + 1  # one commit: old files out, sorted ones in
    adds = pa.table(dt.get_add_actions(flatten=True)).to_pylist()
    assert metrics["numFilesAdded"] == len(adds) >= 2
    spans = sorted(
        (a["min.StudyInstanceUID"], a["max.StudyInstanceUID"], a["num_records"]) for a in adds
    )
    assert sum(s[2] for s in spans) == 36
    for (_, hi, _), (lo, _, _) in itertools.pairwise(spans):
        assert hi < lo  # disjoint ranges: a study lies in one file
    for a in adds:  # the footer's statistics agree with the log's, and skip ``meta``
        md = pq.read_metadata(str(tmp_path / "catalog" / a["path"]))
        names = md.schema.to_arrow_schema().names
        sts = [md.row_group(g).column(names.index("StudyInstanceUID")).statistics
               for g in range(md.num_row_groups)]  # fmt: skip
        assert min(s.min for s in sts) == a["min.StudyInstanceUID"]
        assert max(s.max for s in sts) == a["max.StudyInstanceUID"]
        meta = md.row_group(0).column(names.index("meta")).statistics
        assert meta is None or not meta.has_min_max
    from pixels.sql import connect

    study = spans[1][0]
    con = connect(Catalog(catalog).table)
    con.execute("PRAGMA enable_profiling = 'query_tree'")
    query = "SELECT SOPInstanceUID FROM object_catalog WHERE StudyInstanceUID = ?"
    assert len(con.execute(query, [study]).fetchall()) == 6
    plan = con.execute("EXPLAIN ANALYZE " + query, [study]).fetchall()[0][1]
    found = re.search(r"Row Groups Scanned: (\d+) / (\d+)", plan)
    assert found, plan
    scanned, total = int(found[1]), int(found[2])
    assert total == 6 and 1 <= scanned <= 2, plan  # the study's own row groups only
    # ``pixels sql`` goes further: the view holds only the file whose log statistics
    # may hold the study (its two row groups), not the footers of the others
    con = connect(Catalog(catalog).table, sql=query, params=[study])
    con.execute("PRAGMA enable_profiling = 'query_tree'")
    plan = con.execute("EXPLAIN ANALYZE " + query, [study]).fetchall()[0][1]
    found = re.search(r"Row Groups Scanned: (\d+) / (\d+)", plan)
    assert found and int(found[2]) == 2 and 1 <= int(found[1]) <= 2, plan
    cat = Catalog(catalog)
    for sql, params in (
        (query, [study]),
        (
            "SELECT SOPInstanceUID FROM object_catalog o WHERE o.StudyInstanceUID IN (?, ?)",
            [study, spans[0][0]],
        ),
        # not pruned: an OR, and a second reference to the view
        ("SELECT SOPInstanceUID FROM object_catalog WHERE StudyInstanceUID = ? OR true", [study]),
        (
            "SELECT SOPInstanceUID FROM object_catalog WHERE StudyInstanceUID = ? AND path IN "
            "(SELECT path FROM object_catalog)",
            [study],
        ),
        ("SELECT SOPInstanceUID FROM object_catalog WHERE StudyInstanceUID = ?", ["9.9.9"]),
    ):
        got = sorted(cat.sql_arrow(sql, params)["SOPInstanceUID"].to_pylist())
        full = duckdb.connect()
        Catalog(catalog).table.scan().register(full)
        assert got == sorted(r[0] for r in full.execute(sql, params).fetchall()), sql
    assert len(cat.sql_arrow(query, [study])) == 6
    # the pruning path of ``pixels sql`` (the Delta log's add actions) imports no pandas
    code = f"""
import sys
from click.testing import CliRunner
from pixels.cli import main
res = CliRunner().invoke(main, ["sql", "-t", {catalog!r}, "-f", "csv",
    "SELECT count(*) AS n FROM object_catalog WHERE StudyInstanceUID = '{study}'"])
assert res.exit_code == 0, (res.output, res.exception)
print(res.output.replace(chr(34), "").split(), "pandas" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == "['n', '6'] False"
    assert len(cat.sql_arrow(query, ["9.9.9"])) == 0
    # a table another writer made, with statistics of every column (a date among them)
    from deltalake import write_deltalake

    rows = cat.sql_arrow("SELECT * FROM object_catalog ORDER BY StudyInstanceUID")
    other = str(tmp_path / "other")
    write_deltalake(other, rows.slice(0, 18))
    write_deltalake(other, rows.slice(18), mode="append")
    day = rows["StudyDate"][0].as_py()
    for sql, params in (
        ("SELECT count(*) FROM object_catalog WHERE StudyDate = ?", [str(day)]),
        ("SELECT count(*) FROM object_catalog WHERE StudyInstanceUID = ?", [study]),
        ("SELECT count(*) FROM object_catalog WHERE Modality = 'CT'", []),
    ):
        full = duckdb.connect()
        Catalog(other).table.scan().register(full)
        want = full.execute(sql, params).fetchall()[0][0]
        assert want > 0
        assert Catalog(other).sql_arrow(sql, params).column(0).to_pylist() == [want], sql
