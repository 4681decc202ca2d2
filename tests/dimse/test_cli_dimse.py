"""``pixels dimse`` against the SCP, and C-GET of a cataloged zip member."""

from __future__ import annotations

import json
import os
import zipfile

import pydicom
import pytest
from click.testing import CliRunner

from dimse.conftest import Scp, dataset_bytes, dcmtk, sample
from pixels import Catalog
from pixels.cli import main
from pixels.dimse.config import ServerConfig
from pixels.dimse.server import DimseServer

CT_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"


def _run(*args: str) -> str:
    res = CliRunner().invoke(main, ["dimse", *args])
    assert res.exit_code == 0, res.output
    return res.output


def test_dimse_commands(scp: Scp, tmp_path: pytest.TempPathFactory) -> None:
    peer = f"PIXELS@127.0.0.1:{scp.port}"
    assert "C-ECHO PIXELS@127.0.0.1" in _run("echo", peer)
    lines = _run("find", peer, "-k", "PatientName=*CT1", "-k", "StudyInstanceUID=").splitlines()
    found = [json.loads(line) for line in lines]
    assert [f["0020000D"]["Value"] for f in found] == [[CT_STUDY]]
    out = os.path.join(str(tmp_path), "out")
    text = _run("get", peer, "-k", f"StudyInstanceUID={CT_STUDY}", "-o", out)
    assert "completed 1, failed 0" in text
    (name,) = os.listdir(out)
    assert dataset_bytes(os.path.join(out, name)) == dataset_bytes(sample("ct"))
    catalog = os.path.join(str(tmp_path), "pulled")
    text = _run("retrieve", peer, "-t", catalog, "-k", f"StudyInstanceUID={CT_STUDY}")
    assert "completed 1, failed 0" in text
    rows = Catalog(catalog).table.delta().to_pyarrow_table().to_pylist()
    assert [r["StudyInstanceUID"] for r in rows] == [CT_STUDY]
    assert rows[0]["error"] is None
    # a failure is an error exit naming it
    res = CliRunner().invoke(main, ["dimse", "move", peer, "-k", f"StudyInstanceUID={CT_STUDY}",
                                    "--dest", "NOWHERE"])  # fmt: skip
    assert res.exit_code != 0
    assert "0xA801" in res.output


def test_get_sends_a_zip_member_as_cataloged(tmp_path: pytest.TempPathFactory) -> None:
    root = str(tmp_path)
    archive = os.path.join(root, "study.zip")
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(sample("ct"), "inner/CT_small.dcm")
    catalog = os.path.join(root, "catalog")
    Catalog(catalog).catalog(archive, workers=0)
    rows = Catalog(catalog).table.delta().to_pyarrow_table().to_pylist()
    assert [str(r["path"]).startswith("zip://") for r in rows] == [True]
    with DimseServer(catalog, ServerConfig(port=0)) as server:
        out = os.path.join(root, "out")
        os.makedirs(out)
        res = dcmtk("getscu", "-S", "+B", "-aec", "PIXELS", "-od", out,
                    "-k", "QueryRetrieveLevel=IMAGE", "-k", f"StudyInstanceUID={CT_STUDY}",
                    "-k", f"SOPInstanceUID={pydicom.dcmread(sample('ct')).SOPInstanceUID}",
                    "127.0.0.1", str(server.port))  # fmt: skip
        assert res.returncode == 0, res.stderr
    (name,) = os.listdir(out)
    assert dataset_bytes(os.path.join(out, name)) == dataset_bytes(sample("ct"))


def test_files_and_folders_a_command_cannot_use_are_named(
    scp: Scp, tmp_path: pytest.TempPathFactory
) -> None:
    """``pixels dimse store`` of a missing or non-DICOM file and ``get -o`` onto a file end
    with an error naming the path (no traceback), and nothing is sent."""
    peer = f"PIXELS@127.0.0.1:{scp.port}"
    root = str(tmp_path)
    text = os.path.join(root, "notes.txt")
    with open(text, "w") as fh:
        fh.write("not a DICOM file\n")
    missing = os.path.join(root, "missing.dcm")
    for path, why in ((missing, "No such file or directory"), (text, "is not a DICOM file")):
        res = CliRunner().invoke(main, ["dimse", "store", peer, sample("ct"), path])
        assert res.exit_code == 1, res.output
        assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
        assert path in res.output and why in res.output, res.output
        assert "nothing was sent" in res.output
    for out in (text, os.path.join(text, "sub")):  # a file, a file on the way
        res = CliRunner().invoke(main, ["dimse", "get", peer, "-k", f"StudyInstanceUID={CT_STUDY}",
                                        "-o", out])  # fmt: skip
        assert res.exit_code == 1, res.output
        assert isinstance(res.exception, SystemExit), res.exception
        assert f"cannot make the output folder {out} (--out)" in res.output, res.output
