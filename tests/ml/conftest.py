"""Fixtures of the pixels.ml tests: one catalog of real series, built once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the ml extra is not installed (pip install -e '.[ml]')")

from series import ct_series, dicomdir_series

from corpus import sample_file


@pytest.fixture(scope="session")
def ml_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folders of real series (see each name) under one root."""
    root = tmp_path_factory.mktemp("ml-data")
    ct_series(root / "rev", 6)  # CT_small moved along its normal, file names reversed
    dicomdir_series("98892001/CT5N", root / "ct5n")  # 5 real slices, positions descending
    dicomdir_series("77654033/CT2", root / "ct2")  # 4 real slices, one 200 mm away: a gap
    (root / "ect").mkdir()
    shutil.copy(sample_file("eCT_Supplemental.dcm"), root / "ect" / "ect.dcm")  # enhanced CT
    (root / "emri").mkdir()
    shutil.copy(sample_file("emri_small.dcm"), root / "emri" / "emri.dcm")  # no orientation
    (root / "mr").mkdir()
    shutil.copy(sample_file("MR_small.dcm"), root / "mr" / "mr.dcm")
    return root


@pytest.fixture(scope="session")
def ml_catalog(ml_data: Path, tmp_path_factory: pytest.TempPathFactory) -> object:
    """The catalog of :func:`ml_data` (read-only for tests: copy it to change it)."""
    from pixels import Catalog

    cat = Catalog(str(tmp_path_factory.mktemp("ml-cat") / "catalog"))
    stats = cat.catalog(str(ml_data), workers=0)
    assert stats.errors == 0
    return cat
