"""One set of catalog options (:class:`CatalogOptions`) for the batch run, the watch
loop and the CLI: each option defined once, and the same rows from both engines."""

from __future__ import annotations

import dataclasses
import inspect
import shutil
import threading
import time
from pathlib import Path

import pytest

from corpus import sample_file
from pixels.engines.local import run_catalog
from pixels.engines.options import CatalogOptions
from pixels.engines.watch import Watcher, watch_catalog
from pixels.sql import query
from pixels.table import CatalogTable

#: How long a file may take to reach the table on a loaded machine (a wait, not a timing).
PATIENCE = 90.0


def test_catalog_options_are_defined_once() -> None:
    """Neither engine repeats an option of CatalogOptions as a parameter of its own."""
    fields = {f.name for f in dataclasses.fields(CatalogOptions)}
    for fn in (run_catalog, Watcher.__init__, watch_catalog):
        params = set(inspect.signature(fn).parameters)
        assert not fields & params, (fn.__qualname__, sorted(fields & params))
        assert "config" in params


def test_an_unknown_option_names_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"unknown catalog option\(s\) wrokers; valid: .*workers"):
        run_catalog(str(tmp_path), CatalogTable(tmp_path / "cat"), wrokers=0)
    with pytest.raises(TypeError, match="unknown catalog option"):
        Watcher(str(tmp_path), CatalogTable(tmp_path / "cat"), wrokers=0)


def test_one_options_object_gives_the_same_rows_batch_and_watching(tmp_path: Path) -> None:
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    shutil.copyfile(sample_file("CT_small.dcm"), src / "ct.dcm")
    shutil.copyfile(sample_file("MR_small.dcm"), src / "sub" / "mr.dcm")
    shutil.copyfile(sample_file("MR_small.dcm"), src / "mr.img")
    config = CatalogOptions(workers=0, pattern="*.dcm", recursive=False)

    batch = CatalogTable(tmp_path / "batch")
    assert run_catalog(str(src), batch, config).written == 1
    watched = CatalogTable(tmp_path / "watched")
    watcher = Watcher(str(src), watched, config, settle=0.2, poll=True, poll_interval=0.2)
    runner = threading.Thread(target=watcher.run)
    runner.start()
    try:
        deadline = time.monotonic() + PATIENCE
        while watcher.stats.written < 1 and time.monotonic() < deadline and runner.is_alive():
            time.sleep(0.2)
        walks = watcher.stats.walks  # two more walks (polls): nothing more may come
        while watcher.stats.walks < walks + 2 and time.monotonic() < deadline:
            assert runner.is_alive()
            time.sleep(0.05)
        assert watcher.stats.walks >= walks + 2
    finally:
        watcher.stop()
        runner.join(timeout=60)
    q = "SELECT path, relative_path, Modality FROM object_catalog ORDER BY path"
    assert query(batch, q).to_pylist() == [
        {"path": str(src / "ct.dcm"), "relative_path": "ct.dcm", "Modality": "CT"}
    ]
    assert query(watched, q).to_pylist() == query(batch, q).to_pylist()
    # the keyword form (the API before CatalogOptions) still works, and overrides config
    again = CatalogTable(tmp_path / "again")
    assert run_catalog(str(src), again, config, recursive=True).written == 2
