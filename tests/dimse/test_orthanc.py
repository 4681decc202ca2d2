"""Orthanc as a real peer: Pixels' SCU finds, stores, gets and moves from it into a catalog;
Orthanc queries Pixels' SCP, moves from it and stores to it (Orthanc 1.10 has no C-GET SCU)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest
from click.testing import CliRunner

from dimse.conftest import big_mr, dataset_of, free_port, mount_tmpfs, sample
from pixels import Catalog
from pixels.cli import main
from pixels.dimse.config import DimseError, ServerConfig
from pixels.dimse.scu import Client, GetCancelledError, retrieve
from pixels.dimse.server import DimseServer

ORTHANC = "/usr/sbin/Orthanc"
CT_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
MR_STUDY = "1.3.6.1.4.1.5962.1.2.4.20040826185059.5457"


@dataclass
class Peers:
    http: str
    orthanc_port: int
    pixels: DimseServer
    pixels_catalog: str
    #: the port Orthanc moves to for ``retrieve(method="move")`` (AE PIXELSR)
    retrieve_port: int
    root: str


def _http(url: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    with urllib.request.urlopen(req, timeout=60) as rsp:
        text = rsp.read()
    return json.loads(text) if text else None


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peers]:
    root = str(tmp_path_factory.mktemp("orthanc"))
    catalog = os.path.join(root, "pixels")
    Catalog(catalog).catalog(sample("ct"), workers=0)
    http, dicom, retrieve_port = free_port(), free_port(), free_port()
    pixels = DimseServer(
        catalog,
        ServerConfig(port=0, destinations={"ORTHANC": ("127.0.0.1", dicom)}, commit_seconds=0.2),
    ).start()
    config = {
        "Name": "pixels-tests",
        "StorageDirectory": os.path.join(root, "db"),
        "IndexDirectory": os.path.join(root, "db"),
        "HttpPort": http,
        "HttpBindAddress": "127.0.0.1",
        "DicomPort": dicom,
        "DicomAet": "ORTHANC",
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [],
        "DicomCheckCalledAet": True,
        "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowFind": True,
        "DicomAlwaysAllowGet": True,
        "DicomAlwaysAllowMove": True,
        "DicomModalities": {
            "pixels": ["PIXELS", "127.0.0.1", pixels.port],
            "pixelsr": ["PIXELSR", "127.0.0.1", retrieve_port],
        },
        "StableAge": 1,
    }
    cfg = os.path.join(root, "orthanc.json")
    with open(cfg, "w") as fh:
        json.dump(config, fh)
    log = os.path.join(root, "log")
    with open(log, "w") as err:
        proc = subprocess.Popen([ORTHANC, cfg], stdout=subprocess.DEVNULL, stderr=err)
    url = f"http://127.0.0.1:{http}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _http(url + "/system")
                break
            except OSError:
                assert proc.poll() is None, Path(log).read_text()[-2000:]
                assert time.monotonic() < deadline, "Orthanc did not start"
                time.sleep(0.2)
        yield Peers(url, dicom, pixels, catalog, retrieve_port, root)
    finally:
        pixels.stop()
        proc.terminate()
        proc.wait(20)


def _orthanc_sops(peers: Peers) -> set[str]:
    out = set()
    for iid in _http(peers.http + "/instances"):
        tags = _http(f"{peers.http}/instances/{iid}/simplified-tags")
        out.add(tags["SOPInstanceUID"])
    return out


def test_pixels_scu_stores_finds_and_retrieves_from_orthanc(peers: Peers) -> None:
    client = Client(f"ORTHANC@127.0.0.1:{peers.orthanc_port}", ae_title="PIXELSR")
    assert client.echo() == 0
    sent = [sample("mr"), sample("j2k")]
    assert [s for _, s in client.store(sent)] == [0, 0]
    found = client.find({"PatientName": "CompressedSamples*", "StudyInstanceUID": ""}, "STUDY")
    assert MR_STUDY in {d.StudyInstanceUID for d in found}
    j2k_study = pydicom.dcmread(sample("j2k")).StudyInstanceUID
    # C-GET straight into a new catalog
    got = os.path.join(peers.root, "by-get")
    result = retrieve(
        client.peer,
        got,
        {"StudyInstanceUID": j2k_study},
        "STUDY",
        client=client,
        storage_root=os.path.join(peers.root, "stow-by-get"),
    )
    assert (result.status, result.completed, result.failed) == (0, 1, 0)
    rows = Catalog(got).table.delta().to_pyarrow_table().to_pylist()
    assert [r["SOPInstanceUID"] for r in rows] == [pydicom.dcmread(sample("j2k")).SOPInstanceUID]
    assert rows[0]["error"] is None
    assert rows[0]["TransferSyntaxUID"] == "1.2.840.10008.1.2.4.91"  # as stored, not transcoded
    assert dataset_of(str(rows[0]["path"])) == dataset_of(sample("j2k"))
    # C-MOVE to Pixels (served on the port Orthanc knows PIXELSR at) into another catalog;
    # each catalog here has its files in a folder of its own (the default, stow/ beside the
    # catalogs, is the served catalog's: one table per storage root)
    moved = os.path.join(peers.root, "by-move")
    result = retrieve(
        client.peer,
        moved,
        {"StudyInstanceUID": MR_STUDY},
        "STUDY",
        method="move",
        ae_title="PIXELSR",
        port=peers.retrieve_port,
        client=client,
        storage_root=os.path.join(peers.root, "stow-by-move"),
    )
    assert (result.status, result.completed, result.failed) == (0, 1, 0)
    rows = Catalog(moved).table.delta().to_pyarrow_table().to_pylist()
    assert len(rows) == 1 and rows[0]["StudyInstanceUID"] == MR_STUDY
    assert dataset_of(str(rows[0]["path"])) == dataset_of(sample("mr"))


def test_a_move_sent_elsewhere_is_an_error_naming_the_ae(peers: Peers) -> None:
    """Orthanc knows PIXELS at the module's SCP, not at the port this retrieve serves:
    it reports the instance moved, none arrives here, and the retrieve says why instead
    of a success with nothing cataloged."""
    client = Client(f"ORTHANC@127.0.0.1:{peers.orthanc_port}", ae_title="PIXELS")
    assert [s for _, s in client.store([sample("mr")])] == [0]
    port = free_port()
    elsewhere = os.path.join(peers.root, "moved-elsewhere")
    with pytest.raises(DimseError) as err:
        retrieve(
            client.peer,
            elsewhere,
            {"StudyInstanceUID": MR_STUDY},
            method="move",
            ae_title="PIXELS",
            port=port,
            client=client,
            storage_root=os.path.join(peers.root, "stow-moved-elsewhere"),
        )
    message = str(err.value)
    assert "says it moved 1 instance(s) to PIXELS, but 0 arrived here" in message, message
    assert f"PIXELS@127.0.0.1:{port}" in message and "--ae-title" in message, message


def test_a_get_of_nothing_orthanc_holds_says_what_to_check(peers: Peers) -> None:
    """Orthanc answers a C-GET of a study it does not hold with 0xC000 and no
    sub-operation: the command's error says nothing was sent and how to look."""
    peer = f"ORTHANC@127.0.0.1:{peers.orthanc_port}"
    out = os.path.join(peers.root, "get-nothing")
    res = CliRunner().invoke(main, ["dimse", "get", peer, "-k", "StudyInstanceUID=1.2.3",
                                    "-o", out])  # fmt: skip
    assert res.exit_code == 1, res.output
    assert "completed 0, failed 0" in res.output, res.output
    assert f"C-GET from {peer} did not complete: nothing was sent" in res.output, res.output
    assert "`pixels dimse find` with the same --level and -k keys" in res.output


def test_orthanc_finds_moves_and_stores_with_pixels(peers: Peers) -> None:
    answers = _http(
        peers.http + "/modalities/pixels/query",
        {"Level": "Study", "Query": {"StudyInstanceUID": CT_STUDY, "PatientName": ""}},
    )
    content = _http(f"{peers.http}/queries/{answers['ID']}/answers?expand")
    assert [a["0010,0010"]["Value"] for a in content] == ["CompressedSamples^CT1"]
    ct_sop = pydicom.dcmread(sample("ct")).SOPInstanceUID
    assert ct_sop not in _orthanc_sops(peers)
    # C-MOVE: Pixels sends the CT to Orthanc
    _http(
        peers.http + "/modalities/pixels/move",
        {"Level": "Study", "Resources": [{"StudyInstanceUID": CT_STUDY}], "TargetAet": "ORTHANC"},
    )
    assert ct_sop in _orthanc_sops(peers)
    (iid,) = [
        i
        for i in _http(peers.http + "/instances")
        if _http(f"{peers.http}/instances/{i}/simplified-tags")["SOPInstanceUID"] == ct_sop
    ]
    received = os.path.join(peers.root, "ct-from-orthanc.dcm")
    url = f"{peers.http}/instances/{iid}/file"
    with urllib.request.urlopen(url, timeout=60) as rsp, open(received, "wb") as fh:
        shutil.copyfileobj(rsp, fh)
    assert dataset_of(received) == dataset_of(sample("ct"))
    # C-STORE: Orthanc sends Pixels an instance it was given (Orthanc 1.10 has no C-GET SCU)
    with open(sample("multiframe"), "rb") as fh:
        req = urllib.request.Request(peers.http + "/instances", data=fh.read(), method="POST")
    with urllib.request.urlopen(req, timeout=60) as rsp:
        uploaded = json.loads(rsp.read())["ID"]
    _http(peers.http + "/modalities/pixels/store", {"Resources": [uploaded], "Synchronous": True})
    sop = pydicom.dcmread(sample("multiframe")).SOPInstanceUID
    deadline = time.monotonic() + 120
    while True:
        rows = Catalog(peers.pixels_catalog).table.delta().to_pyarrow_table().to_pylist()
        mine = [r for r in rows if r["SOPInstanceUID"] == sop]
        if mine or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(mine) == 1 and mine[0]["error"] is None
    assert mine[0]["NumberOfFrames"] == 10


@pytest.mark.root
def test_a_c_get_from_orthanc_into_a_full_folder_is_cancelled(peers: Peers, tmp_path: Path) -> None:
    """Orthanc as the C-GET peer: the first instance that cannot be written (a 256 kB
    tmpfs, 4 MB instances) is refused 0xA700 and the C-GET cancelled; Orthanc ends it
    before sending every instance, and the error names the folder and the instance."""
    first = str(tmp_path / "big.dcm")
    big_mr(first, 8)
    ds = pydicom.dcmread(first)
    sops, ids = [], []
    for _ in range(5):
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        ds.save_as(first)
        with open(first, "rb") as fh:
            req = urllib.request.Request(peers.http + "/instances", data=fh.read(), method="POST")
            with urllib.request.urlopen(req, timeout=60) as rsp:
                ids.append(json.loads(rsp.read())["ID"])
        sops.append(str(ds.SOPInstanceUID))
    out = tmp_path / "out"
    try:
        mount_tmpfs(out, "size=256k")
        client = Client(f"ORTHANC@127.0.0.1:{peers.orthanc_port}", timeout=20)
        with pytest.raises(GetCancelledError) as stopped:
            client.get({"StudyInstanceUID": str(ds.StudyInstanceUID)}, folder=str(out))
        left = os.listdir(out)
    finally:
        if os.path.ismount(out):
            subprocess.run(["umount", "--lazy", str(out)], check=True)
        for iid in ids:  # the other tests count Orthanc's instances
            req = urllib.request.Request(f"{peers.http}/instances/{iid}", method="DELETE")
            urllib.request.urlopen(req, timeout=60).close()
    result = stopped.value.result
    sop = result.refused[0].split("'")[1]
    assert sop in sops and f"SOP Instance {sop!r} not written to {out}: " in str(stopped.value)
    assert len(result.refused) < len(sops), result
    assert left == []
