"""What an object's IOD requires of the attributes Table E.1-1 would remove or empty.

The table's actions are IOD-blind: ``X`` removes Presentation Creation Date and Time
(0070,0082 / 0070,0083), which every Presentation State IOD requires (Type 1), and
:func:`pixels.deid.profile.resolve` empties the sequences of an ``X/Z`` (Type 2 safe),
which leaves an empty Type 3 sequence (Referenced Study Sequence: "one or more items")
where the IOD has it as Type 3. Either way dciodvfy (dicom3tools) finds the written object
invalid where its source was not.

:data:`REQUIREMENTS` lists those cases, found by de-identifying every object we have real
files of (pydicom's and pydicom-data's test files; GSPS made by dcmtk's ``dcmpsmk``; GSPS,
pseudo-color, color and advanced blending presentation states and a KOS made by highdicom;
the SEG of the tests) and comparing dciodvfy's errors on each output with its source's
(``scripts/deid_iod_survey.py``), then checking each row's Type against dciodvfy's module
definitions for all 113 storage SOP classes it defines (``--types``: which found Basic
Structured Display). The Type and module of each row are dciodvfy's, or PS3.3's where
dciodvfy has no definition of the IOD (said in ``source``).

A row applies at the top level of the data set only, and only where the table's action
would leave the attribute out (``X``) or empty where it may not be (``Z`` on a Type 3
sequence), never to keep an original value:

- Type 1: a dummy (the walk's dummies: ``19000101``, ``000000``); with the
  longitudinal options the table already shifts (or keeps) dates, and nothing changes;
- Type 2: emptied (``Z``);
- Type 3 (a sequence that must hold items when present): removed (``X``).

A small table, not an IOD engine: an attribute is looked up for the object's SOP Class UID
first, then for every IOD (``"*"``: a module every composite IOD has, General Study).

Examples
--------
>>> from pixels.deid.iod import requirement
>>> requirement("1.2.840.10008.5.1.4.1.1.11.1", 0x00700082).type
'1'
>>> requirement("1.2.840.10008.5.1.4.1.1.2", 0x00700082) is None
True
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ANY_IOD", "REQUIREMENTS", "Requirement", "action_for", "requirement"]

#: The key of a row that holds for every composite IOD.
ANY_IOD = "*"


@dataclass(frozen=True)
class Requirement:
    """One attribute's Type in one IOD (or every IOD), and where that was found.

    Attributes
    ----------
    tag : int
        The attribute, ``0xGGGGEEEE``.
    keyword : str
        Its keyword (for messages and the docs).
    type : str
        ``"1"``, ``"2"`` or ``"3"`` (a sequence whose module wants one or more items).
    module : str
        The module that holds it (dciodvfy's name).
    sop_classes : tuple of str
        The SOP Class UIDs it holds for, or ``("*",)`` for every IOD.
    source : str
        Which files and which check found it.
    """

    tag: int
    keyword: str
    type: str
    module: str
    sop_classes: tuple[str, ...]
    source: str


_PS = "1.2.840.10008.5.1.4.1.1.11."
#: Presentation states whose IOD includes the Presentation State Identification Module.
_PRESENTATION_STATES = {
    _PS + "1": "Grayscale Softcopy Presentation State (dcmpsmk over CT_small and MR_small; "
    "highdicom)",
    _PS + "2": "Color Softcopy Presentation State (highdicom over SC_rgb)",
    _PS + "3": "Pseudo-Color Softcopy Presentation State (highdicom over CT_small)",
    _PS + "4": "Blending Softcopy Presentation State (no file: dciodvfy's definition, "
    "a GSPS given this class)",
    _PS + "5": "XA/XRF Grayscale Softcopy Presentation State (PS3.3 A.58: no file, "
    "no dciodvfy definition)",
    _PS + "8": "Advanced Blending Presentation State (highdicom over CT_small)",
    _PS + "12": "Variable Modality LUT Softcopy Presentation State (PS3.3: no file, "
    "no dciodvfy definition)",
}
#: SR and KOS IODs: Referenced Performed Procedure Step Sequence is Type 2 in their SR
#: Document Series / Key Object Document Series Module (absent: an error; empty: none). Of
#: the 113 storage SOP classes dciodvfy defines, these are the only ones where it is
#: (``scripts/deid_iod_survey.py --types``); the others without a definition from PS3.3.
_SR_SERIES = {
    "1.2.840.10008.5.1.4.1.1.78.6": "Spectacle Prescription Report",
    "1.2.840.10008.5.1.4.1.1.88.11": "Basic Text SR",
    "1.2.840.10008.5.1.4.1.1.88.22": "Enhanced SR",
    "1.2.840.10008.5.1.4.1.1.88.33": "Comprehensive SR (highdicom; pydicom's reportsi)",
    "1.2.840.10008.5.1.4.1.1.88.34": "Comprehensive 3D SR (highdicom)",
    "1.2.840.10008.5.1.4.1.1.88.35": "Extensible SR (PS3.3: no dciodvfy definition)",
    "1.2.840.10008.5.1.4.1.1.88.40": "Procedure Log",
    "1.2.840.10008.5.1.4.1.1.88.50": "Mammography CAD SR",
    "1.2.840.10008.5.1.4.1.1.88.59": "Key Object Selection Document (highdicom)",
    "1.2.840.10008.5.1.4.1.1.88.65": "Chest CAD SR",
    "1.2.840.10008.5.1.4.1.1.88.67": "X-Ray Radiation Dose SR",
    "1.2.840.10008.5.1.4.1.1.88.68": "Radiopharmaceutical Radiation Dose SR",
    "1.2.840.10008.5.1.4.1.1.88.69": "Colon CAD SR (PS3.3: no dciodvfy definition)",
    "1.2.840.10008.5.1.4.1.1.88.70": "Implantation Plan SR (PS3.3: no dciodvfy definition)",
    "1.2.840.10008.5.1.4.1.1.88.71": "Acquisition Context SR",
    "1.2.840.10008.5.1.4.1.1.88.72": "Simplified Adult Echo SR (PS3.3: no dciodvfy definition)",
    "1.2.840.10008.5.1.4.1.1.88.73": "Patient Radiation Dose SR (PS3.3: no dciodvfy definition)",
    "1.2.840.10008.5.1.4.1.1.88.74": "Planned Imaging Agent Administration SR (PS3.3)",
    "1.2.840.10008.5.1.4.1.1.88.75": "Performed Imaging Agent Administration SR (PS3.3)",
    "1.2.840.10008.5.1.4.1.1.88.76": "Enhanced X-Ray Radiation Dose SR (PS3.3)",
    "1.2.840.10008.5.1.4.1.1.88.77": "Waveform Annotation SR (PS3.3)",
}
_STRUCTURED_DISPLAY = "1.2.840.10008.5.1.4.1.1.131"
_ANY = (ANY_IOD,)
_SEQ3 = (
    "dciodvfy on an empty one in 14 SOP classes (CT, MR, US, Enhanced CT/MR, RT Plan, "
    "Parametric Map, SR, KOS, presentation states): 'Bad Sequence number of Items = 0'"
)

#: Every row: (0070,0082/0083) in the presentation states and Basic Structured Display, the
#: three ``X/Z`` sequences that are Type 3 everywhere but Referenced Performed Procedure Step
#: Sequence in SR and KOS.
REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement(
        0x00700082,
        "PresentationCreationDate",
        "1",
        "PresentationStateIdentification",
        tuple(_PRESENTATION_STATES),
        "dciodvfy on de-identified presentation states: "
        + "; ".join(_PRESENTATION_STATES.values()),
    ),
    Requirement(
        0x00700083,
        "PresentationCreationTime",
        "1",
        "PresentationStateIdentification",
        tuple(_PRESENTATION_STATES),
        "as Presentation Creation Date",
    ),
    *(
        Requirement(
            tag,
            keyword,
            "1",
            "StructuredDisplay",
            (_STRUCTURED_DISPLAY,),
            "Basic Structured Display (no file): dciodvfy's definition, found by "
            "scripts/deid_iod_survey.py --types",
        )
        for tag, keyword in (
            (0x00700082, "PresentationCreationDate"),
            (0x00700083, "PresentationCreationTime"),
        )
    ),
    Requirement(
        0x00081110,
        "ReferencedStudySequence",
        "3",
        "GeneralStudy",
        _ANY,
        "pydicom-data JPGLosslessP14SV1_1s_1f_8b (US Image) de-identified; " + _SEQ3,
    ),
    Requirement(
        0x00081111,
        "ReferencedPerformedProcedureStepSequence",
        "3",
        "GeneralSeries (and CT, MR, RT, Parametric Map Series)",
        _ANY,
        "pydicom-data JPGLosslessP14SV1_1s_1f_8b (US Image) de-identified; " + _SEQ3,
    ),
    Requirement(
        0x00081111,
        "ReferencedPerformedProcedureStepSequence",
        "2",
        "SRDocumentSeries, KeyObjectDocumentSeries",
        tuple(_SR_SERIES),
        "dciodvfy on highdicom's Comprehensive 3D SR given each class, absent and empty: "
        + "; ".join(_SR_SERIES.values()),
    ),
    Requirement(
        0x00081072,
        "OperatorIdentificationSequence",
        "3",
        "GeneralSeries (and RT Series)",
        _ANY,
        _SEQ3,
    ),
)

_INDEX: dict[str, dict[int, Requirement]] = {}
for _row in REQUIREMENTS:
    for _sop in _row.sop_classes:
        _INDEX.setdefault(_sop, {})[_row.tag] = _row


def requirement(sop_class: str, tag: int) -> Requirement | None:
    """The row for ``tag`` in the IOD of ``sop_class`` (its own, else every IOD's), or None."""
    own = _INDEX.get(sop_class.strip(), {}).get(tag)
    return own if own is not None else _INDEX.get(ANY_IOD, {}).get(tag)


def action_for(sop_class: str, tag: int, action: str, is_sequence: bool) -> str:
    """The action that keeps the object valid, given the one the table resolved to.

    ``action`` is what :func:`pixels.deid.profile.resolve` chose (``X``, ``Z``, ``D``...);
    only an ``X`` on a Type 1 or Type 2 attribute, or a ``Z`` on a Type 3 sequence, is
    changed: Type 1 to ``D`` (a dummy), Type 2 to ``Z``, Type 3 to ``X``.
    """
    row = requirement(sop_class, tag)
    if row is None:
        return action
    if action == "X" and row.type == "1" and not is_sequence:
        return "D"
    if action == "X" and row.type == "2":
        return "Z"
    if action == "Z" and row.type == "3" and is_sequence:
        return "X"
    return action
