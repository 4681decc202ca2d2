"""dcmtk's dcmqrscp as a second archive: ``pixels dimse`` finds, gets and moves from it
into a catalog, and its failures are named (peer, status in hex with its meaning, the
reason of a rejected association)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner

from dimse.conftest import dataset_of, dcmqrscp, free_port, sample
from pixels import Catalog
from pixels.cli import main

CT_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
MR_STUDY = "1.3.6.1.4.1.5962.1.2.4.20040826185059.5457"


@dataclass
class Archive:
    peer: str
    #: the port dcmqrscp moves to for AE ``PIXELSR``
    move_port: int


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    root = tmp_path_factory.mktemp("dcmqrscp")
    port, move_port = free_port(), free_port()
    hosts = f"pixelsr = (PIXELSR, 127.0.0.1, {move_port})\n"
    with dcmqrscp(root, port, sample("ct"), sample("mr"), hosts=hosts):
        yield Archive(f"ARCHIVE@127.0.0.1:{port}", move_port)


def _pixels(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, ["dimse", *args])
    return res.exit_code, res.output


def _stored(catalog: str) -> dict[str, str]:
    rows = Catalog(catalog).table.delta().to_pyarrow_table().to_pylist()
    assert all(r["error"] is None for r in rows)
    return {str(r["SOPInstanceUID"]): str(r["path"]) for r in rows}


def test_find_get_and_move_from_dcmqrscp_into_a_catalog(archive: Archive, tmp_path: Path) -> None:
    code, out = _pixels("find", archive.peer, "-k", "StudyInstanceUID=", "-k", "PatientName=")
    assert code == 0, out
    found = {json.loads(line)["0020000D"]["Value"][0] for line in out.splitlines()}
    assert found == {CT_STUDY, MR_STUDY}
    catalog = str(tmp_path / "catalog")
    code, out = _pixels(
        "retrieve", archive.peer, "-t", catalog, "-k", f"StudyInstanceUID={CT_STUDY}"
    )
    assert code == 0, out
    assert f"retrieve {archive.peer}: status 0x0000 (Success), completed 1, failed 0" in out
    code, out = _pixels("retrieve", archive.peer, "-t", catalog, "--move", "--ae-title", "PIXELSR",
                        "--port", str(archive.move_port), "-k", f"StudyInstanceUID={MR_STUDY}")  # fmt: skip
    assert code == 0, out
    assert "completed 1, failed 0" in out
    stored = _stored(catalog)
    for key in ("ct", "mr"):
        sop = str(pydicom.dcmread(sample(key)).SOPInstanceUID)
        assert dataset_of(stored[sop]) == dataset_of(sample(key)), key


def test_dcmqrscp_failures_are_named(archive: Archive) -> None:
    code, out = _pixels("move", archive.peer, "--dest", "NOWHERE",
                        "-k", f"StudyInstanceUID={CT_STUDY}")  # fmt: skip
    assert code != 0
    assert f"C-MOVE {archive.peer}: status 0xA801 (Failure: Move destination unknown)" in out
    # no unique key below the study: dcmqrscp answers 0xC000-class, named as such
    code, out = _pixels("find", archive.peer, "--level", "SERIES", "-k", "Modality=")
    assert code != 0
    assert f"C-FIND to {archive.peer} failed with status 0xC" in out
    assert "(Failure: Unable to" in out
    port = archive.peer.rsplit(":", 1)[1]
    code, out = _pixels("echo", f"WRONG@127.0.0.1:{port}")
    assert code != 0
    assert (
        f"association with WRONG@127.0.0.1:{port}: rejected: Called AE title not recognised "
        "(Rejected Permanent, Service User)"
    ) in out
