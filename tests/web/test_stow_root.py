"""One table per STOW-RS / C-STORE storage root (:mod:`pixels.web.stow_root`).

Two table folders in one parent share the default ``stow`` folder: the first table to
write records itself there, and a server for the other refuses to start on it (a new
version of an instance stored for one would replace the file the other's row describes,
and a killed server's journal of one would be replayed into the other). A storage root
is a local folder: a URL is refused.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from corpus import sample_file
from fsyncs import record_fsyncs
from pixels.web import stow
from pixels.web.state import WebState
from pixels.web.stow_root import OWNER_FILE, StorageRootError, claim


def test_the_first_write_claims_the_root_and_another_table_is_refused(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    first = WebState(str(a))
    assert not (tmp_path / "stow").exists()  # nothing is written before the first STOW
    outcome, row = stow.store_file(first, sample_file("CT_small.dcm").read_bytes())
    assert outcome.failure is None and row is not None
    assert (tmp_path / "stow" / OWNER_FILE).read_text() == f"{a}\n"
    assert outcome.path is not None and outcome.path.startswith(f"{tmp_path / 'stow'}{os.sep}")

    with pytest.raises(StorageRootError) as err:
        WebState(str(b))
    assert str(err.value) == (
        f"the storage root {tmp_path / 'stow'} holds the received files of the table {a}, "
        f"not {b}: give this table its own folder with --storage-root"
    )
    other = WebState(str(b), storage_root=str(tmp_path / "stow-b"))  # its own: fine
    outcome, _ = stow.store_file(other, sample_file("MR_small.dcm").read_bytes())
    assert outcome.failure is None
    assert (tmp_path / "stow-b" / OWNER_FILE).read_text() == f"{b}\n"
    again = WebState(str(a))  # the same table again (a restart): fine
    outcome, _ = stow.store_file(again, sample_file("MR_small.dcm").read_bytes())
    assert outcome.failure is None and outcome.path is not None
    assert outcome.path.startswith(f"{tmp_path / 'stow'}{os.sep}")


def test_a_root_written_before_claims_is_claimed_by_the_next_write(tmp_path: Path) -> None:
    """A storage root an earlier version filled (no record) goes to the first table that
    writes into it now."""
    root = tmp_path / "stow"
    (root / "1.2.3" / "4.5.6").mkdir(parents=True)
    (root / "1.2.3" / "4.5.6" / "7.8.9.dcm").write_bytes(b"an earlier STOW")
    state = WebState(str(tmp_path / "a"))
    assert not (root / OWNER_FILE).exists()
    stow.store_file(state, sample_file("CT_small.dcm").read_bytes())
    assert (root / OWNER_FILE).read_text() == f"{tmp_path / 'a'}\n"
    with pytest.raises(StorageRootError, match="--storage-root"):
        WebState(str(tmp_path / "b"))


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["dimse", "scp", "--port", "0"]])
def test_a_server_for_another_table_does_not_start(tmp_path: Path, command: list[str]) -> None:
    stow.store_file(WebState(str(tmp_path / "a")), sample_file("CT_small.dcm").read_bytes())
    run = subprocess.run(
        [sys.executable, "-m", "pixels.cli", *command, "--table", str(tmp_path / "b")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1, run.stderr
    assert f"holds the received files of the table {tmp_path / 'a'}" in run.stderr
    assert "--storage-root" in run.stderr


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["dimse", "scp", "--port", "0"]])
def test_a_url_storage_root_is_refused(tmp_path: Path, command: list[str]) -> None:
    """It was taken as the local folder ``./s3:/bucket/stow``: received files and their
    spools are local (the table may be on an object store)."""
    with pytest.raises(StorageRootError, match="the storage root s3://bucket/stow is a URL"):
        WebState(str(tmp_path / "a"), storage_root="s3://bucket/stow")
    run = subprocess.run(
        [sys.executable, "-m", "pixels.cli", *command, "--table", str(tmp_path / "a"),
         "--storage-root", "s3://bucket/stow"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    assert "the storage root s3://bucket/stow is a URL" in run.stderr
    assert not (tmp_path / "s3:").exists()
    state = WebState(str(tmp_path / "a"), storage_root=f"file://{tmp_path / 'local'}")
    assert state.storage_root == str(tmp_path / "local")


def test_the_record_of_a_new_root_is_on_disk_when_claimed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first write records the table in a new storage root: the record, its entry in
    the root and the root's in its parent are synced (``os.fsync`` spied on, the real one
    runs), or a power loss could leave received files in a root that names no table."""
    synced: list[str] = []
    record_fsyncs(monkeypatch, synced.append)
    root = tmp_path / "new" / "stow"
    claim(str(root), str(tmp_path / "a"))
    marker = str(root / OWNER_FILE)
    assert synced[:3] == [marker, str(root), str(root.parent)]
    synced.clear()
    claim(str(root), str(tmp_path / "a"))  # recorded already: nothing written, nothing synced
    assert synced == []
