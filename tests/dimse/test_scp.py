"""The SCP with dcmtk's tools as real peers: C-ECHO, C-STORE, C-FIND, C-GET, C-MOVE."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import time

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from dimse.conftest import DCMTK, Scp, dataset_bytes, dcmtk, free_port, sample
from pixels import Catalog
from pixels.dimse.config import ServerConfig
from pixels.dimse.receive import JOURNAL_DIR
from pixels.dimse.server import DimseServer

CT_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
MR_STUDY = "1.3.6.1.4.1.5962.1.2.4.20040826185059.5457"

#: Columns that name the file itself (path, its size and time, where it was found) or
#: positions in it (the file meta group Pixels writes differs in length).
FILE_COLUMNS = {
    "path", "modificationTime", "length", "relative_path", "local_path", "extension",
    "path_tags", "cataloged_at", "rowId", "version_tag", "frame_offsets", "original_path",
    "meta",
}  # fmt: skip


def _rows(catalog: str) -> dict[str, dict[str, object]]:
    table = Catalog(catalog).table.delta().to_pyarrow_table()
    return {r["SOPInstanceUID"]: r for r in table.to_pylist()}


def _header(meta: str) -> str:
    """``meta`` without the file meta group and bulk data offsets (positions in the file,
    whose meta group Pixels writes anew; the data set's bytes are compared whole)."""
    text = json.dumps({k: v for k, v in json.loads(meta).items() if k[:4] != "0002"})
    return re.sub(r"offset=(\d+)&?", "", text)


def _wait_rows(catalog: str, n: int) -> dict[str, dict[str, object]]:
    deadline = time.monotonic() + 120
    while True:
        rows = _rows(catalog)
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def test_echo(scp: Scp) -> None:
    res = dcmtk("echoscu", "-aec", "PIXELS", "127.0.0.1", scp.port)
    assert res.returncode == 0, res.stderr


def test_storescu_rows_equal_cataloging_the_same_files(
    scp: Scp, files: dict[str, str], tmp_path: object
) -> None:
    sent = [files[k] for k in ("j2k", "multiframe", "deflated")]
    sink = scp.server.sink
    commits, committed = sink.commits, sink.committed
    # one association of two files: JPEG 2000 proposed as such (-xw), and a multi-frame MR
    res = dcmtk("storescu", "-xw", "-aec", "PIXELS", "127.0.0.1", scp.port, *sent[:2])
    assert res.returncode == 0, res.stderr
    deadline = time.monotonic() + 120
    while sink.committed - committed < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    # batched: the two instances of the association in one commit
    assert (sink.commits - commits, sink.committed - committed) == (1, 2)
    res = dcmtk("storescu", "-xd", "-aec", "PIXELS", "127.0.0.1", scp.port, sent[2])
    assert res.returncode == 0, res.stderr
    rows = _wait_rows(scp.catalog, 5)
    reference = os.path.join(str(tmp_path), "reference")
    for path in sent:
        Catalog(reference).catalog(path, workers=0)
    expected = _rows(reference)
    assert len(expected) == 3
    for sop, want in expected.items():
        got = rows[sop]
        stored = str(got["path"])
        assert stored.startswith(scp.root)
        for column, value in want.items():
            if column not in FILE_COLUMNS:
                assert got[column] == value, (column, sop)
        original = str(want["path"]).removeprefix("file://")
        # the header as cataloged
        assert _header(str(got["meta"])) == _header(str(want["meta"]))
        ds = pydicom.dcmread(stored)
        # the data set as sent (dcmtk re-encodes some lengths of what it sends), under a
        # complete file meta group
        assert ds == pydicom.dcmread(original), sop
        assert ds.file_meta.MediaStorageSOPInstanceUID == sop
        assert ds.file_meta.TransferSyntaxUID == want["TransferSyntaxUID"]
        assert ds.file_meta.SourceApplicationEntityTitle == "STORESCU"
    assert not os.listdir(os.path.join(scp.root, "stow", JOURNAL_DIR))


def _find(scp: Scp, tmp: str, *keys: str, model: str = "-S") -> list[pydicom.Dataset]:
    out = os.path.join(tmp, f"find{len(os.listdir(tmp))}")
    os.makedirs(out)
    args = [model, "-aec", "PIXELS", "-X", "-od", out]
    for k in keys:
        args += ["-k", k]
    res = dcmtk("findscu", *args, "127.0.0.1", scp.port)
    assert res.returncode == 0, res.stderr
    return [pydicom.dcmread(os.path.join(out, f)) for f in sorted(os.listdir(out))]


def test_findscu_at_each_level(scp: Scp, tmp_path: object) -> None:
    tmp = str(tmp_path)
    # STUDY: person name wildcard, case-insensitive; only the requested keys come back
    # (ASCII values asked in the default repertoire: no SpecificCharacterSet)
    found = _find(scp, tmp, "QueryRetrieveLevel=STUDY", "PatientName=compressed*CT*",
                  "StudyInstanceUID", "StudyDate", "NumberOfStudyRelatedInstances")  # fmt: skip
    assert [d.StudyInstanceUID for d in found] == [CT_STUDY]
    assert {e.keyword for e in found[0]} == {
        "QueryRetrieveLevel", "PatientName", "StudyInstanceUID", "StudyDate",
        "NumberOfStudyRelatedInstances",
    }  # fmt: skip
    assert found[0].NumberOfStudyRelatedInstances == 1
    assert found[0].StudyDate == "20040119"
    # date range and open ranges: exactly the studies the table dates in them
    by_date = {str(r["StudyInstanceUID"]): r["StudyDate"] for r in _rows(scp.catalog).values()}

    def studies(lo: str, hi: str) -> list[str]:
        def day(t: str) -> dt.date:
            return dt.date(int(t[:4]), int(t[4:6]), int(t[6:]))

        return sorted(
            u for u, d in by_date.items()
            if d is not None and (not lo or d >= day(lo)) and (not hi or d <= day(hi))
        )  # fmt: skip

    for lo, hi in (("20040101", "20041231"), ("20040601", ""), ("", "20031231")):
        dates = _find(scp, tmp, "QueryRetrieveLevel=STUDY", f"StudyDate={lo}-{hi}",
                      "StudyInstanceUID")  # fmt: skip
        assert sorted(d.StudyInstanceUID for d in dates) == studies(lo, hi), (lo, hi)
    assert CT_STUDY in studies("20040101", "20041231")
    # a time range: the CT study was at 07:27:30, the MR one at 18:50:59
    times = _find(scp, tmp, "QueryRetrieveLevel=STUDY", "StudyTime=0700-0800", "StudyInstanceUID")
    assert CT_STUDY in {d.StudyInstanceUID for d in times}
    assert MR_STUDY not in {d.StudyInstanceUID for d in times}
    # SERIES: within a study, by modality with a ? wildcard
    series = _find(scp, tmp, "QueryRetrieveLevel=SERIES", f"StudyInstanceUID={MR_STUDY}",
                   "Modality=M?", "SeriesInstanceUID", "NumberOfSeriesRelatedInstances")  # fmt: skip
    assert len(series) == 1 and series[0].Modality == "MR"
    assert series[0].NumberOfSeriesRelatedInstances == 1
    # IMAGE: a UID list
    sops = _find(scp, tmp, "QueryRetrieveLevel=IMAGE",
                 "SOPInstanceUID=1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322\\9.9.9",
                 "SOPClassUID", "InstanceNumber")  # fmt: skip
    assert [d.SOPClassUID for d in sops] == ["1.2.840.10008.5.1.4.1.1.2"]
    # PATIENT (Patient Root): universal matching lists every patient once
    patients = _find(scp, tmp, "QueryRetrieveLevel=PATIENT", "PatientID", "PatientName",
                     "NumberOfPatientRelatedStudies", model="-P")  # fmt: skip
    names = {str(d.PatientName) for d in patients}
    assert {"CompressedSamples^CT1", "CompressedSamples^MR1"} <= names
    # the Study Root model has no PATIENT level: a failure status, no matches
    res = dcmtk("findscu", "-v", "-S", "-aec", "PIXELS", "-k", "QueryRetrieveLevel=PATIENT",
                "-k", "PatientID", "127.0.0.1", scp.port)  # fmt: skip
    assert "datasetdoesnotmatchsopclass" in (res.stdout + res.stderr).lower()


def test_getscu_receives_the_stored_bytes(
    scp: Scp, files: dict[str, str], tmp_path: object
) -> None:
    out = str(tmp_path)
    res = dcmtk("getscu", "-S", "+B", "-aec", "PIXELS", "-od", out, "-k", "QueryRetrieveLevel=STUDY",
                "-k", f"StudyInstanceUID={CT_STUDY}", "127.0.0.1", scp.port)  # fmt: skip
    assert res.returncode == 0, res.stderr
    got = os.listdir(out)
    assert len(got) == 1
    # +B: getscu writes the data set's bytes as received
    assert dataset_bytes(os.path.join(out, got[0])) == dataset_bytes(files["ct"])
    # no unique key of the level: a failure naming it, not an empty Success
    res = dcmtk("getscu", "-v", "-S", "-aec", "PIXELS", "-od", out, "-k",
                "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={CT_STUDY}",
                "127.0.0.1", scp.port)  # fmt: skip
    assert "doesnotmatchsopclass" in (res.stdout + res.stderr).lower()
    assert len(os.listdir(out)) == 1


def test_movescu_to_storescp(scp: Scp, files: dict[str, str], tmp_path: object) -> None:
    out = str(tmp_path / "recv")  # type: ignore[operator]
    os.makedirs(out)
    port = free_port()
    storescp = subprocess.Popen(
        [os.path.join(DCMTK, "storescp"), "+B", "-aet", "STORESCP", "-od", out, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        scp.destinations["STORESCP"] = ("127.0.0.1", port)
        deadline = time.monotonic() + 120
        while dcmtk("echoscu", "-aec", "STORESCP", "127.0.0.1", str(port)).returncode != 0:
            assert time.monotonic() < deadline, "storescp did not start"
            time.sleep(0.1)
        res = dcmtk("movescu", "-v", "-S", "-aec", "PIXELS", "-aem", "STORESCP",
                    "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={MR_STUDY}",
                    "-k", "SeriesInstanceUID=1.3.6.1.4.1.5962.1.3.4.1.20040826185059.5457",
                    "127.0.0.1", scp.port)  # fmt: skip
        assert res.returncode == 0, res.stderr
        assert "Final Move Response (Success)" in res.stderr + res.stdout
        assert len(os.listdir(out)) == 1
        # no SeriesInstanceUID at the SERIES level: 0xA900, nothing sent
        res = dcmtk("movescu", "-v", "-S", "-aec", "PIXELS", "-aem", "STORESCP",
                    "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={MR_STUDY}",
                    "127.0.0.1", scp.port)  # fmt: skip
        assert "doesnotmatchsopclass" in (res.stdout + res.stderr).lower()
        assert len(os.listdir(out)) == 1
        # an unknown destination: 0xA801, nothing sent
        res = dcmtk("movescu", "-v", "-S", "-aec", "PIXELS", "-aem", "NOWHERE",
                    "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={MR_STUDY}",
                    "127.0.0.1", scp.port)  # fmt: skip
        assert "movedestinationunknown" in (res.stdout + res.stderr).lower()
        assert len(os.listdir(out)) == 1
    finally:
        scp.destinations.pop("STORESCP", None)
        storescp.terminate()
        storescp.wait(10)
    (got,) = os.listdir(out)
    # +B: storescp writes the data set's bytes as received (its trailing padding too)
    assert dataset_bytes(os.path.join(out, got)) == dataset_bytes(files["mr"])


def test_find_cancel_stops_the_answers(tmp_path: pytest.TempPathFactory) -> None:
    """findscu --cancel 1 sends C-CANCEL after the first answer: the SCP stops early and ends
    with Cancel (0xFE00), not with the other studies and Success.

    The SCP must still be answering when the C-CANCEL comes: with 120 small answers it once
    sent them all first (CI, Success: a right answer then). 1,500 studies, each answer read
    from its header, give the C-CANCEL a window of about a second, not milliseconds. (A
    C-CANCEL sent before the first answer is dropped by pynetdicom, which clears the ones
    received before it dispatches a request.)"""
    root = str(tmp_path)
    data = os.path.join(root, "data")
    os.makedirs(data)
    template = pydicom.dcmread(sample("mr"))
    for i in range(1500):  # 1,500 studies of one MR each
        template.StudyInstanceUID = generate_uid()
        template.SeriesInstanceUID = generate_uid()
        template.SOPInstanceUID = template.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        template.save_as(os.path.join(data, f"{i}.dcm"))
    catalog = os.path.join(root, "catalog")
    Catalog(catalog).catalog(data, workers=0)
    with DimseServer(catalog, ServerConfig(port=0, find_limit=10_000)) as server:
        # up to 3 tries: a fast machine under load once sent all 1,500 before the C-CANCEL
        # came (a clean-clone CI); an SCP that ignores C-CANCEL fails all three
        for _ in range(3):
            res = dcmtk("findscu", "-v", "-S", "-aec", "PIXELS", "--cancel", "1",
                        "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID",
                        "-k", "PatientName", "-k", "StudyDate", "-k", "StudyDescription",
                        "-k", "ModalitiesInStudy", "-k", "NumberOfStudyRelatedInstances",
                        "127.0.0.1", str(server.port))  # fmt: skip
            assert res.returncode == 0, res.stderr
            text = res.stdout + res.stderr
            if "Received Final Find Response (Cancel" in text:
                break
    assert "Received Final Find Response (Cancel" in text, text[-500:]
    assert text.count("Find Response:") < 1500


def test_a_store_of_another_class_than_its_context_is_refused_not_aborted(
    tmp_path: pytest.TempPathFactory,
) -> None:
    """pydicom's rtdose_rle.dcm holds its SOP Class UID as UN: dcmsend sends it with an
    Affected SOP Class UID ('31') that is not its context's. The SCP answers that C-STORE
    with 0xC000 naming both (as storescp does) and stores the next instance on the same
    association; pynetdicom alone aborted the association, losing the rest of the batch."""
    root = str(tmp_path)
    catalog = os.path.join(root, "catalog")
    Catalog(catalog).catalog(sample("ct"), workers=0)
    bad = get_testdata_file("rtdose_rle.dcm", download=False)
    assert bad
    with DimseServer(catalog, ServerConfig(port=0, timeout=10, commit_seconds=0.2)) as server:
        res = dcmtk("dcmsend", "-v", "-aec", "PIXELS", "--no-halt", "127.0.0.1",
                    str(server.port), str(bad), sample("mr"))  # fmt: skip
        text = res.stdout + res.stderr
        assert "Received C-STORE Response (Error: CannotUnderstand)" in text, text
        assert "Received C-STORE Response (Success)" in text, text
        assert "sent to the peer       : 2" in text, text
        assert "Peer aborted" not in text, text
        rows = _wait_rows(catalog, 2)
    assert sorted(rows) == sorted(
        str(pydicom.dcmread(p).SOPInstanceUID) for p in (sample("ct"), sample("mr"))
    )


def test_move_to_a_destination_that_refuses_names_it_not_unknown(
    scp: Scp, tmp_path: pytest.TempPathFactory
) -> None:
    """A configured C-MOVE destination that is down, or rejects the association, ends the
    C-MOVE with 0xA702, the failed count, the Failed SOP Instance UID List and an Error
    Comment naming the destination and why; pynetdicom answered 0xA801 (Move Destination
    Unknown), sending an operator after a configuration that is there."""
    mr_sop = str(pydicom.dcmread(sample("mr")).SOPInstanceUID)
    down, refusing = free_port(), free_port()
    storescp = subprocess.Popen(
        [os.path.join(DCMTK, "storescp"), "--refuse", "-aet", "REFUSING", str(refusing)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    scp.destinations.update(DOWN=("127.0.0.1", down), REFUSING=("127.0.0.1", refusing))
    try:
        deadline = time.monotonic() + 120
        while "Association Rejected" not in str(dcmtk("echoscu", "-v", "127.0.0.1", str(refusing))):
            assert time.monotonic() < deadline, "storescp did not start"
            time.sleep(0.1)
        for dest, why in (
            ("DOWN", f"DOWN@127.0.0.1:{down} did not answer"),
            ("REFUSING", f"REFUSING@127.0.0.1:{refusing} rejected: "),
        ):
            res = dcmtk("movescu", "-d", "-S", "-aec", "PIXELS", "-aem", dest,
                        "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={MR_STUDY}",
                        "127.0.0.1", scp.port)  # fmt: skip
            text = res.stdout + res.stderr
            assert "DIMSE Status                  : 0xa702: Refused: Out of resources" in text, text
            assert "MoveDestinationUnknown" not in text
            assert "Failed Suboperations          : 1" in text, text
            assert "FailedSOPInstanceUIDList" in text and mr_sop in text, text
            (comment,) = re.findall(r"\(0000,0902\) LO \[([^\]]*)\]", text)
            assert comment.startswith(why), comment
    finally:
        scp.destinations.pop("DOWN", None)
        scp.destinations.pop("REFUSING", None)
        storescp.terminate()
        storescp.wait(10)


def _charset_file(name: str) -> str:
    from pydicom.data import get_charset_files

    (path,) = get_charset_files(name)
    return str(path)


def test_japanese_names_match_group_by_group(tmp_path: pytest.TempPathFactory) -> None:
    """findscu with an ISO 2022 IR 87 identifier (as Japanese modalities send): a name
    given in its alphabetic and ideographic groups finds the patient held with a phonetic
    group too (pydicom's chrH31.dcm), and the answer names it in a character set it
    declares. The whole name was compared: two groups never matched three."""
    root = str(tmp_path)
    catalog = os.path.join(root, "catalog")
    names = os.path.join(root, "names")
    os.makedirs(names)
    for name in ("chrH31.dcm", "chrX1.dcm"):
        shutil.copyfile(_charset_file(name), os.path.join(names, name))
    Catalog(catalog).catalog(names, workers=0)
    held = pydicom.dcmread(_charset_file("chrH31.dcm"))
    with DimseServer(catalog, ServerConfig(port=0, timeout=10)) as server:

        def find(name: str) -> list[pydicom.Dataset]:
            ident = pydicom.Dataset()
            ident.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
            ident.QueryRetrieveLevel = "STUDY"
            ident.PatientName = name
            ident.StudyInstanceUID = ""
            query = os.path.join(root, f"q{len(os.listdir(root))}.dcm")
            ident.save_as(query, implicit_vr=False, little_endian=True)
            out = os.path.join(root, f"out{len(os.listdir(root))}")
            os.makedirs(out)
            res = dcmtk("findscu", "-S", "-aec", "PIXELS", "-X", "-od", out, "127.0.0.1",
                        str(server.port), query)  # fmt: skip
            assert res.returncode == 0, res.stderr
            return [pydicom.dcmread(os.path.join(out, f)) for f in sorted(os.listdir(out))]

        for name in ("Yamada^Tarou=山田^太郎", "=山田^太郎", "yamada*=山田*=やまだ^たろう"):
            found = find(name)
            assert [d.StudyInstanceUID for d in found] == [held.StudyInstanceUID], name
            assert str(found[0].PatientName) == str(held.PatientName)
        for name in ("Yamada^Tarou=鈴木^一郎", "Wang^XiaoDong=山田^太郎"):
            assert find(name) == [], name


def test_retired_storage_classes_are_stored_and_retrieved(
    scp: Scp, tmp_path: pytest.TempPathFactory
) -> None:
    """Old archives hold instances of retired storage classes (here pydicom's US1_UNCR.dcm
    made a retired Ultrasound Image, 1.2.840.10008.5.1.4.1.1.6, as a 1990s scanner wrote
    them): dcmsend stores it and getscu, which proposes the retired classes, gets it
    back. The SCP accepted pynetdicom's storage classes only: 'No Acceptable Presentation
    Contexts', the instance lost to a migration."""
    root = str(tmp_path)
    ds = pydicom.dcmread(get_testdata_file("US1_UNCR.dcm", download=False))
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.6"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    sent = os.path.join(root, "retired_us.dcm")
    ds.save_as(sent)
    res = dcmtk("dcmsend", "-v", "-aec", "PIXELS", "127.0.0.1", scp.port, sent)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "with status SUCCESS  : 1" in res.stdout + res.stderr
    deadline = time.monotonic() + 120
    while ds.SOPInstanceUID not in (rows := _rows(scp.catalog)):
        assert time.monotonic() < deadline, "not cataloged"
        time.sleep(0.1)
    assert rows[ds.SOPInstanceUID]["SOPClassUID"] == "1.2.840.10008.5.1.4.1.1.6"
    out = os.path.join(root, "got")
    os.makedirs(out)
    res = dcmtk("getscu", "-S", "+B", "-aec", "PIXELS", "-od", out, "-k", "QueryRetrieveLevel=STUDY",
                "-k", f"StudyInstanceUID={ds.StudyInstanceUID}", "127.0.0.1", scp.port)  # fmt: skip
    assert res.returncode == 0, res.stderr
    (got,) = os.listdir(out)
    back, original = pydicom.dcmread(os.path.join(out, got)), pydicom.dcmread(sent)
    assert back.SOPClassUID == "1.2.840.10008.5.1.4.1.1.6"
    del original[0xFFFCFFFC]  # the file's trailing padding: dcmtk drops it
    assert back == original


def test_series_and_image_keys_at_the_study_level_come_back_empty(
    scp: Scp, tmp_path: pytest.TempPathFactory
) -> None:
    """A STUDY-level C-FIND with keys of the series and image levels (SeriesDescription,
    Rows, as a viewer's generic query template carries): they come back empty and select
    nothing, as the lower levels' indexed keys (Modality) do. They were matched against,
    and returned from, the study's first instance: one image's Rows filtered whole studies."""
    tmp = str(tmp_path)
    keys = ("QueryRetrieveLevel=STUDY", f"StudyInstanceUID={CT_STUDY}", "Modality")
    (found,) = _find(scp, tmp, *keys, "SeriesDescription", "Rows", "ContentDate")
    assert pydicom.dcmread(sample("ct")).Rows == 128  # the study's one image has a value
    for keyword in ("Modality", "SeriesDescription", "Rows", "ContentDate"):
        assert keyword in found and found[keyword].value in (None, "", b""), keyword
    assert [d.StudyInstanceUID for d in _find(scp, tmp, *keys, "Rows=999")] == [CT_STUDY]
    # at the IMAGE level they are the instance's, and match
    image = ("QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={CT_STUDY}", "SOPInstanceUID")
    (found,) = _find(scp, tmp, *image, "Rows=128")
    assert found.Rows == 128
    assert _find(scp, tmp, *image, "Rows=999") == []
