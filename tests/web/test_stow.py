"""STOW-RS: store a highdicom SEG and a real file with new UIDs, then find and retrieve them."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator

import highdicom as hd
import httpx
import numpy as np
import pydicom
import pytest
from dicomweb_client import DICOMwebClient
from pydicom.uid import generate_uid

from pixels import Catalog
from web.conftest import Server, create_app, running


@pytest.fixture(scope="module")
def stow_server(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of its own (a catalog of two files), so stored instances change no other test."""
    root = tmp_path_factory.mktemp("stow")
    files = {k: server.files[k] for k in ("ct", "mr")}
    catalog = str(root / "catalog")
    for path in files.values():
        Catalog(catalog).catalog(path, workers=0)
    with running(create_app(catalog, token="")) as url:
        yield Server(url, files, catalog, str(root / "stow"))


@pytest.fixture(scope="module")
def client(stow_server: Server) -> DICOMwebClient:
    return DICOMwebClient(url=f"{stow_server.url}/dicomweb")


def _seg(ct_path: str) -> pydicom.Dataset:
    ct = pydicom.dcmread(ct_path)
    mask = np.zeros((1, ct.Rows, ct.Columns), dtype=bool)
    mask[0, 40:80, 30:90] = True
    desc = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="box",
        segmented_property_category=hd.sr.CodedConcept("91723000", "SCT", "Anatomical Structure"),
        segmented_property_type=hd.sr.CodedConcept("80891009", "SCT", "Heart"),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )
    return hd.seg.Segmentation(
        source_images=[ct],
        pixel_array=mask,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[desc],
        series_instance_uid=hd.UID(),
        series_number=99,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="pixels-tests",
        manufacturer_model_name="tests",
        software_versions="0",
        device_serial_number="1",
    )


def _bytes(ds: pydicom.Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_store_seg_then_search_and_retrieve(client: DICOMwebClient, stow_server: Server) -> None:
    seg = _seg(stow_server.files["ct"])
    res = client.store_instances([seg])
    ref = res.ReferencedSOPSequence[0]
    assert ref.ReferencedSOPInstanceUID == seg.SOPInstanceUID
    assert ref.RetrieveURL.endswith(f"/instances/{seg.SOPInstanceUID}")
    assert "FailedSOPSequence" not in res
    stored = os.path.join(
        stow_server.storage,
        seg.StudyInstanceUID,
        seg.SeriesInstanceUID,
        f"{seg.SOPInstanceUID}.dcm",
    )
    assert os.path.exists(stored)
    found = client.search_for_series(seg.StudyInstanceUID, search_filters={"Modality": "SEG"})
    assert [s["0020000E"]["Value"][0] for s in found] == [seg.SeriesInstanceUID]
    got = client.retrieve_instance(seg.StudyInstanceUID, seg.SeriesInstanceUID, seg.SOPInstanceUID)
    assert _bytes(got) == _bytes(seg)
    # the same instance again: idempotent success; changed bytes: replaced, with a warning
    again = client.store_instances([seg])
    assert "WarningReason" not in again.ReferencedSOPSequence[0]
    seg.ContentLabel = "CHANGED"
    changed = client.store_instances([seg])
    assert changed.ReferencedSOPSequence[0].WarningReason == 0xB000
    got = client.retrieve_instance(seg.StudyInstanceUID, seg.SeriesInstanceUID, seg.SOPInstanceUID)
    assert got.ContentLabel == "CHANGED"
    assert (
        len(client.search_for_instances(search_filters={"SOPInstanceUID": seg.SOPInstanceUID})) == 1
    )


def test_store_mixed_outcomes(client: DICOMwebClient, stow_server: Server) -> None:
    ds = pydicom.dcmread(stow_server.files["mr"])
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = (
        generate_uid() for _ in range(3)
    )
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    other = pydicom.dcmread(stow_server.files["ct"])
    other.SOPInstanceUID = generate_uid()
    other.file_meta.MediaStorageSOPInstanceUID = other.SOPInstanceUID
    res = client.store_instances([ds, other], study_instance_uid=ds.StudyInstanceUID)
    assert [i.ReferencedSOPInstanceUID for i in res.ReferencedSOPSequence] == [ds.SOPInstanceUID]
    assert res.FailedSOPSequence[0].FailureReason == 0xA900
    assert client.search_for_studies(search_filters={"StudyInstanceUID": ds.StudyInstanceUID})
    # all failed: 409
    boundary = "b0undary"
    body = (
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + b"this is not DICOM"
        + f"\r\n--{boundary}--\r\n".encode()
    )
    r = httpx.post(
        f"{stow_server.url}/dicomweb/studies",
        content=body,
        headers={
            "Content-Type": f'multipart/related; type="application/dicom"; boundary="{boundary}"'
        },
    )
    assert r.status_code == 409
    assert r.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0xC000]
