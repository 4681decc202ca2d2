"""``pixels optimize --cluster``: rows ordered by study and series, row group statistics
that let a look-up by study skip the other row groups, the rows themselves unchanged."""

from __future__ import annotations

import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from deltalake import DeltaTable

import pixels.table.catalog_table
from corpus import copy_with_new_uids, sample_file
from pixels import Catalog
from pixels.cli import main


def _rows(catalog: str) -> list[tuple[str, str, str]]:
    t = Catalog(catalog).sql_arrow("SELECT path, SOPInstanceUID, meta FROM object_catalog")
    return sorted(zip(*(t[c].to_pylist() for c in t.column_names), strict=True))


def test_cluster_orders_rows_by_study_so_statistics_prune(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        pixels.table.catalog_table, "_ROW_GROUP", 6
    )  # row groups of the files written
    catalog = str(tmp_path / "catalog")
    # files named at random: studies interleave in path order, no file is ordered by study
    files = copy_with_new_uids(sample_file("CT_small.dcm"), tmp_path / "made", 36, per_series=2)
    (tmp_path / "in").mkdir()
    for p in files:
        p.rename(tmp_path / "in" / f"{uuid.uuid4().hex}.dcm")
    Catalog(catalog).catalog(str(tmp_path / "in"), workers=0, commit_rows=5)
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
