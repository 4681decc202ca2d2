"""The action table of the Basic Application Level Confidentiality Profile, as data.

Source: DICOM PS3.15 2024b, Annex E, Table E.1-1 "Application Level Confidentiality Profile
Attributes", typed for this module from the standard (no other project's table was used).
Each line of :data:`TABLE` is one attribute::

    gggg,eeee  Keyword  BASIC  [OPTION:ACTION ...]

``BASIC`` is the Basic Profile column; an ``OPTION:ACTION`` pair overrides it when that
option is switched on. The option letters are the columns this module implements:

====  ======================================================  ===============
P     Retain Patient Characteristics Option                   CID 7050 113108
D     Retain Device Identity Option                           CID 7050 113109
L     Retain Longitudinal Temporal Information Modified Dates CID 7050 113107
S     Clean Descriptors Option                                CID 7050 113105
====  ======================================================  ===============

(The Retain Safe Private option, 113111, is the short list :data:`SAFE_PRIVATE`.)

Actions (PS3.15 E.1.1): ``D`` replace with a dummy value, ``Z`` replace with an empty (or
dummy) value, ``X`` remove, ``K`` keep (sequences are still cleaned inside), ``C`` clean
(dates: shifted by the patient's offset; descriptors: kept only when the user names them,
since free text cannot be cleaned automatically), ``U`` replace a UID with a consistent one.
Compound actions (``X/Z``, ``X/D``, ``Z/D``, ``X/Z/D``, ``X/Z/U*``) depend on the IOD's Type
for the attribute; without the IOD this module resolves them by :func:`resolve`.

Rules for attributes the table does not list (stricter than the table, documented in the
README): every private element is removed unless the Retain Safe Private option keeps it;
curve (50xx) and overlay (60xx) groups are removed whole; group lengths are dropped; any
other instance UID (VR UI whose keyword does not name a class, syntax or coding scheme, and
whose value is not a DICOM-defined ``1.2.840.10008.`` UID) is replaced (``U``); any other
date or date-time (DA, DT) is shifted with the dates option and removed without it; any
other time (TM) is kept with the dates option (offsets are whole days) and removed
without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "DEID_METHOD_CODES",
    "SAFE_PRIVATE",
    "STANDARD",
    "TABLE",
    "Option",
    "Rule",
    "resolve",
    "rule_for",
    "rules",
]

#: The edition of the standard :data:`TABLE` was typed from.
STANDARD = "DICOM PS3.15 2024b Table E.1-1"


class Option(StrEnum):
    """An option of the profile a user can switch on (``pixels deid --option``)."""

    RETAIN_DATES = "retain-dates"
    """Retain Longitudinal Temporal Information with Modified Dates: shift dates per patient."""
    RETAIN_PATIENT_CHARACTERISTICS = "retain-patient-characteristics"
    """Keep sex, age, size, weight, ethnic group, smoking and pregnancy status."""
    RETAIN_DEVICE_IDENTITY = "retain-device-identity"
    """Keep station name, serial numbers, device and detector identifiers."""
    RETAIN_SAFE_PRIVATE = "retain-safe-private"
    """Keep the private elements of :data:`SAFE_PRIVATE` (and their creators); remove the rest."""
    CLEAN_DESCRIPTORS = "clean-descriptors"
    """Keep the descriptors (descriptions, comments, protocol names) the user names as clean."""

    @classmethod
    def parse(cls, text: str) -> Option:
        """The option named ``text``; the error lists the valid names."""
        try:
            return cls(text.strip().lower())
        except ValueError:
            valid = ", ".join(o.value for o in cls)
            raise ValueError(f"unknown de-identification option {text!r}; valid: {valid}") from None


_LETTERS = {
    "P": Option.RETAIN_PATIENT_CHARACTERISTICS,
    "D": Option.RETAIN_DEVICE_IDENTITY,
    "L": Option.RETAIN_DATES,
    "S": Option.CLEAN_DESCRIPTORS,
}

#: PS3.16 CID 7050 "De-identification Method" codes (scheme DCM) written into
#: DeidentificationMethodCodeSequence: the Basic Profile, then one per option used.
DEID_METHOD_CODES: dict[str, tuple[str, str]] = {
    "basic": ("113100", "Basic Application Confidentiality Profile"),
    "clean-pixel-data": ("113101", "Clean Pixel Data Option"),
    Option.CLEAN_DESCRIPTORS.value: ("113105", "Clean Descriptors Option"),
    Option.RETAIN_DATES.value: (
        "113107",
        "Retain Longitudinal Temporal Information Modified Dates Option",
    ),
    Option.RETAIN_PATIENT_CHARACTERISTICS.value: (
        "113108",
        "Retain Patient Characteristics Option",
    ),
    Option.RETAIN_DEVICE_IDENTITY.value: ("113109", "Retain Device Identity Option"),
    Option.RETAIN_SAFE_PRIVATE.value: ("113111", "Retain Safe Private Option"),
}

#: Private elements the Retain Safe Private option keeps: (private creator, group, element
#: offset within the block) -> what it holds. Numeric acquisition parameters only, needed
#: by diffusion and quantitative analysis, none able to hold text about a person.
SAFE_PRIVATE: dict[tuple[str, int, int], str] = {
    ("SIEMENS MR HEADER", 0x0019, 0x0C): "B_value (DS): diffusion b-value",
    ("SIEMENS MR HEADER", 0x0019, 0x0D): "DiffusionDirectionality (CS)",
    ("SIEMENS MR HEADER", 0x0019, 0x0E): "DiffusionGradientDirection (FD, 3 values)",
    ("GEMS_PARM_01", 0x0043, 0x39): "slop_int_6..9 (IS): GE diffusion b-value",
    ("Philips MR Imaging DD 001", 0x2001, 0x03): "Diffusion B-Factor (FL)",
}

# fmt: off
TABLE = """
0008,0050 AccessionNumber Z
0018,4000 AcquisitionComments X S:C
0040,0555 AcquisitionContextSequence X
0008,0022 AcquisitionDate X/Z L:C
0008,002A AcquisitionDateTime X/Z/D L:C
0018,1400 AcquisitionDeviceProcessingDescription X/D D:K S:C
0018,9424 AcquisitionProtocolDescription X S:C
0008,0032 AcquisitionTime X/Z L:C
0008,0017 AcquisitionUID U
0040,4035 ActualHumanPerformersSequence X
0010,21B0 AdditionalPatientHistory X P:C S:C
0038,0010 AdmissionID X
0038,0020 AdmittingDate X L:C
0008,1084 AdmittingDiagnosesCodeSequence X P:C S:C
0008,1080 AdmittingDiagnosesDescription X P:C S:C
0038,0021 AdmittingTime X L:C
0010,2110 Allergies X P:C S:C
4000,0010 Arbitrary X
0040,A078 AuthorObserverSequence X
0010,1081 BranchOfService X
0018,1007 CassetteID X D:K
0040,0280 CommentsOnThePerformedProcedureStep X S:C
0040,0310 CommentsOnRadiationDose X S:C
0020,9161 ConcatenationUID U
0040,3001 ConfidentialityConstraintOnPatientDataDescription X
0070,0086 ContentCreatorIdentificationCodeSequence X
0070,0084 ContentCreatorName Z
0008,0023 ContentDate Z/D L:C
0040,A730 ContentSequence X
0008,0033 ContentTime Z/D L:C
0008,010D ContextGroupExtensionCreatorUID U
0018,0010 ContrastBolusAgent Z/D S:C
0018,1042 ContrastBolusStartTime X L:C
0018,1043 ContrastBolusStopTime X L:C
0018,A003 ContributionDescription X S:C
0010,2150 CountryOfResidence X
0008,9123 CreatorVersionUID U
0038,0300 CurrentPatientLocation X
0008,0025 CurveDate X L:C
0008,0035 CurveTime X L:C
0040,A07C CustodialOrganizationSequence X
FFFC,FFFC DataSetTrailingPadding X
0018,1200 DateOfLastCalibration X L:C
0018,1202 DateTimeOfLastCalibration X L:C
0018,1012 DateOfSecondaryCapture X L:C
0018,9701 DecayCorrectionDateTime X L:C
0008,2111 DerivationDescription X S:C
0018,700A DetectorID X/D D:K
0018,1000 DeviceSerialNumber X/Z/D D:K
0018,1002 DeviceUID U D:K
0400,0100 DigitalSignatureUID X
FFFA,FFFA DigitalSignaturesSequence X
0400,0105 DigitalSignatureDateTime X
0020,9164 DimensionOrganizationUID U
0038,0040 DischargeDiagnosisDescription X P:C S:C
4008,011A DistributionAddress X
4008,0119 DistributionName X
300A,0016 DoseReferenceDescription X S:C
300A,0013 DoseReferenceUID U
0018,9517 EndAcquisitionDateTime X L:C
0010,2160 EthnicGroup X P:K
0018,9804 ExclusionStartDateTime X L:C
0008,0058 FailedSOPInstanceUIDList U
0070,031A FiducialUID U
0040,2017 FillerOrderNumberImagingServiceRequest Z
0018,9074 FrameAcquisitionDateTime X L:C
0020,9158 FrameComments X S:C
0020,0052 FrameOfReferenceUID U
0018,9151 FrameReferenceDateTime X L:C
0018,9623 FunctionalSyncPulse X L:C
0018,1008 GantryID X D:K
0018,1005 GeneratorID X D:K
0070,0001 GraphicAnnotationSequence D
0040,4037 HumanPerformerName X
0040,4036 HumanPerformerOrganization X
0088,0200 IconImageSequence X
0008,4000 IdentifyingComments X S:C
0020,4000 ImageComments X S:C
0028,4000 ImagePresentationComments X
0040,2400 ImagingServiceRequestComments X S:C
4008,0300 Impressions X S:C
0008,0015 InstanceCoercionDateTime X L:C
0008,0012 InstanceCreationDate X/D L:C
0008,0013 InstanceCreationTime X/Z/D L:C
0008,0014 InstanceCreatorUID U
0018,9919 InstructionPerformedDateTime X L:C
0008,0081 InstitutionAddress X
0008,0082 InstitutionCodeSequence X/Z/D
0008,0080 InstitutionName X/Z/D
0008,1040 InstitutionalDepartmentName X
0010,1050 InsurancePlanIdentification X
0040,1011 IntendedRecipientsOfResultsIdentificationSequence X
4008,0111 InterpretationApproverSequence X
4008,010C InterpretationAuthor X
4008,0115 InterpretationDiagnosisDescription X
4008,0202 InterpretationIDIssuer X
4008,0102 InterpretationRecorder X
4008,010B InterpretationText X
4008,010A InterpretationTranscriber X
0008,3010 IrradiationEventUID U
0038,0011 IssuerOfAdmissionID X
0010,0021 IssuerOfPatientID X
0010,0024 IssuerOfPatientIDQualifiersSequence X
0038,0061 IssuerOfServiceEpisodeID X
0028,1214 LargePaletteColorLookupTableUID U
0010,21D0 LastMenstrualDate X L:C
0400,0404 MAC X
0002,0003 MediaStorageSOPInstanceUID U
0010,2000 MedicalAlerts X P:C
0010,1090 MedicalRecordLocator X
0010,1080 MilitaryRank X
0400,0550 ModifiedAttributesSequence X
0020,3406 ModifiedImageDescription X
0020,3401 ModifyingDeviceID X
0008,1060 NameOfPhysiciansReadingStudy X
0040,1010 NamesOfIntendedRecipientsOfResults X
0040,A032 ObservationDateTime X L:C
0010,2180 Occupation X P:C S:C
0008,1072 OperatorIdentificationSequence X/D
0008,1070 OperatorsName X/Z/D
0040,2010 OrderCallbackPhoneNumber X
0040,2008 OrderEnteredBy X
0040,2009 OrderEntererLocation X
0400,0561 OriginalAttributesSequence X
0010,1000 OtherPatientIDs X
0010,1002 OtherPatientIDsSequence X
0010,1001 OtherPatientNames X
0008,0024 OverlayDate X L:C
0008,0034 OverlayTime X L:C
0028,1199 PaletteColorLookupTableUID U
0040,A082 ParticipationDateTime X L:C
0040,A07A ParticipantSequence X
0010,1040 PatientAddress X
0010,1010 PatientAge X P:K
0010,0030 PatientBirthDate Z
0010,1005 PatientBirthName X
0010,0032 PatientBirthTime X
0010,4000 PatientComments X S:C
0010,0020 PatientID Z
0038,0400 PatientInstitutionResidence X
0010,0050 PatientInsurancePlanCodeSequence X
0010,1060 PatientMotherBirthName X
0010,0010 PatientName Z
0010,0101 PatientPrimaryLanguageCodeSequence X
0010,0102 PatientPrimaryLanguageModifierCodeSequence X
0010,21F0 PatientReligiousPreference X
0010,0040 PatientSex Z P:K
0010,2203 PatientSexNeutered X/Z P:K
0010,1020 PatientSize X P:K
0038,0500 PatientState X P:C S:C
0010,2155 PatientTelecomInformation X
0010,2154 PatientTelephoneNumbers X
0040,1004 PatientTransportArrangements X
0010,1030 PatientWeight X P:K
0040,0243 PerformedLocation X
0040,0254 PerformedProcedureStepDescription X S:C
0040,0250 PerformedProcedureStepEndDate X L:C
0040,4051 PerformedProcedureStepEndDateTime X L:C
0040,0251 PerformedProcedureStepEndTime X L:C
0040,0253 PerformedProcedureStepID X
0040,0244 PerformedProcedureStepStartDate X L:C
0040,4050 PerformedProcedureStepStartDateTime X L:C
0040,0245 PerformedProcedureStepStartTime X L:C
0040,0241 PerformedStationAETitle X
0040,4030 PerformedStationGeographicLocationCodeSequence X
0040,0242 PerformedStationName X
0040,4028 PerformedStationNameCodeSequence X
0008,1052 PerformingPhysicianIdentificationSequence X
0008,1050 PerformingPhysicianName X
0040,1102 PersonAddress X
0040,1101 PersonIdentificationCodeSequence D
0040,A123 PersonName D
0040,1103 PersonTelephoneNumbers X
4008,0114 PhysicianApprovingInterpretation X
0008,1048 PhysiciansOfRecord X
0008,1049 PhysiciansOfRecordIdentificationSequence X
0008,1062 PhysiciansReadingStudyIdentificationSequence X
0040,2016 PlacerOrderNumberImagingServiceRequest Z
0018,1004 PlateID X D:K
0040,0012 PreMedication X P:C
0010,21C0 PregnancyStatus X P:K
300A,000E PrescriptionDescription X S:C
0018,1030 ProtocolName X/D S:C
0008,0019 PyramidUID U
3006,0028 ROIDescription X S:C
3006,0038 ROIGenerationDescription X S:C
3006,00A6 ROIInterpreter Z
3006,0088 ROIObservationDescription X S:C
3006,0085 ROIObservationLabel X S:C
300A,0004 RTPlanDescription X S:C
300A,0002 RTPlanLabel D S:C
300A,0003 RTPlanName X S:C
300A,0006 RTPlanDate X L:C
300A,0007 RTPlanTime X L:C
0018,1078 RadiopharmaceuticalStartDateTime X L:C
0018,1072 RadiopharmaceuticalStartTime X L:C
0018,1079 RadiopharmaceuticalStopDateTime X L:C
0018,1073 RadiopharmaceuticalStopTime X L:C
0032,1030 ReasonForStudy X S:C
0400,0402 ReferencedDigitalSignatureSequence X
3006,0024 ReferencedFrameOfReferenceUID U
0040,4023 ReferencedGeneralPurposeScheduledProcedureStepTransactionUID U
0008,1140 ReferencedImageSequence X/Z/U*
0038,0004 ReferencedPatientAliasSequence X
0010,1100 ReferencedPatientPhotoSequence X
0008,1120 ReferencedPatientSequence X
0008,1111 ReferencedPerformedProcedureStepSequence X/Z/D
0400,0403 ReferencedSOPInstanceMACSequence X
0008,1155 ReferencedSOPInstanceUID U
0004,1511 ReferencedSOPInstanceUIDInFile U
0008,1110 ReferencedStudySequence X/Z
0008,0092 ReferringPhysicianAddress X
0008,0096 ReferringPhysicianIdentificationSequence X
0008,0090 ReferringPhysicianName Z
0008,0094 ReferringPhysicianTelephoneNumbers X
0010,2152 RegionOfResidence X
3006,00C2 RelatedFrameOfReferenceUID U
0040,0275 RequestAttributesSequence X
0032,1070 RequestedContrastAgent X S:C
0040,1400 RequestedProcedureComments X S:C
0032,1060 RequestedProcedureDescription X/Z S:C
0040,1001 RequestedProcedureID X
0040,1005 RequestedProcedureLocation X
0032,1032 RequestingPhysician X
0032,1033 RequestingService X
0010,2299 ResponsibleOrganization X
0010,2297 ResponsiblePerson X
4008,4000 ResultsComments X S:C
4008,0118 ResultsDistributionListSequence X
4008,0042 ResultsIDIssuer X
300E,0008 ReviewerName X/Z
0040,4034 ScheduledHumanPerformersSequence X
0038,001E ScheduledPatientInstitutionResidence X
0040,000B ScheduledPerformingPhysicianIdentificationSequence X
0040,0006 ScheduledPerformingPhysicianName X
0040,0007 ScheduledProcedureStepDescription X S:C
0040,0004 ScheduledProcedureStepEndDate X L:C
0040,0005 ScheduledProcedureStepEndTime X L:C
0040,0009 ScheduledProcedureStepID X
0040,0011 ScheduledProcedureStepLocation X
0040,0002 ScheduledProcedureStepStartDate X L:C
0040,0003 ScheduledProcedureStepStartTime X L:C
0040,0001 ScheduledStationAETitle X
0040,4027 ScheduledStationGeographicLocationCodeSequence X
0040,0010 ScheduledStationName X
0040,4025 ScheduledStationNameCodeSequence X
0032,1020 ScheduledStudyLocation X
0032,1021 ScheduledStudyLocationAETitle X
0008,0021 SeriesDate X/D L:C
0008,103E SeriesDescription X S:C
0020,000E SeriesInstanceUID U
0008,0031 SeriesTime X/D L:C
0038,0062 ServiceEpisodeDescription X S:C
0038,0060 ServiceEpisodeID X
0008,0018 SOPInstanceUID U
0010,21A0 SmokingStatus X P:K
0008,2112 SourceImageSequence X/Z/U*
0038,0050 SpecialNeeds X P:C
0018,9516 StartAcquisitionDateTime X L:C
0008,0055 StationAETitle X
0008,1010 StationName X/Z/D D:K
0088,0140 StorageMediaFileSetUID U
3006,0008 StructureSetDate Z L:C
3006,0006 StructureSetDescription X S:C
3006,0002 StructureSetLabel D S:C
3006,0004 StructureSetName X S:C
3006,0009 StructureSetTime Z L:C
0032,4000 StudyComments X S:C
0008,0020 StudyDate Z L:C
0008,1030 StudyDescription X S:C
0020,0010 StudyID Z
0032,0012 StudyIDIssuer X
0020,000D StudyInstanceUID U
0008,0030 StudyTime Z L:C
0020,0200 SynchronizationFrameOfReferenceUID U
0040,DB0D TemplateExtensionCreatorUID U
0040,DB0C TemplateExtensionOrganizationUID U
4000,4000 TextComments X
2030,0020 TextString X
0018,1201 TimeOfLastCalibration X L:C
0018,1014 TimeOfSecondaryCapture X L:C
0008,0201 TimezoneOffsetFromUTC X L:K
0088,0910 TopicAuthor X
0088,0912 TopicKeywords X
0088,0906 TopicSubject X
0088,0904 TopicTitle X
0008,1195 TransactionUID U
0040,A124 UID U
0040,A030 VerificationDateTime D L:C
0040,A088 VerifyingObserverIdentificationCodeSequence Z
0040,A075 VerifyingObserverName D
0040,A073 VerifyingObserverSequence D
0040,A027 VerifyingOrganization X
0038,4000 VisitComments X S:C
"""
# fmt: on

_ACTIONS = {"D", "Z", "X", "K", "C", "U", "X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*"}


@dataclass(frozen=True, slots=True)
class Rule:
    """One line of the table: what happens to an attribute, by option."""

    tag: int
    keyword: str
    basic: str
    options: tuple[tuple[Option, str], ...] = ()

    def action(self, on: frozenset[Option]) -> str:
        """The action with the options ``on`` (the last matching option column wins)."""
        act = self.basic
        for option, override in self.options:
            if option in on:
                act = override
        return act

    def describe(self) -> str:
        """``(gggg,eeee) Keyword``, for messages and the audit."""
        return f"({self.tag >> 16:04X},{self.tag & 0xFFFF:04X}) {self.keyword}"


def _parse(text: str) -> dict[int, Rule]:
    out: dict[int, Rule] = {}
    for n, line in enumerate(text.strip().splitlines(), 1):
        parts = line.split()
        if len(parts) < 3:
            raise ValueError(f"profile table line {n}: {line!r}")
        group, elem = parts[0].split(",")
        tag = int(group, 16) << 16 | int(elem, 16)
        if parts[2] not in _ACTIONS:
            raise ValueError(f"profile table line {n}: unknown action {parts[2]!r}")
        overrides = []
        for token in parts[3:]:
            letter, act = token.split(":")
            if act not in _ACTIONS:
                raise ValueError(f"profile table line {n}: unknown action {act!r}")
            overrides.append((_LETTERS[letter], act))
        if tag in out:
            raise ValueError(f"profile table line {n}: {parts[0]} listed twice")
        out[tag] = Rule(tag, parts[1], parts[2], tuple(overrides))
    return out


_RULES = _parse(TABLE)


def rules() -> dict[int, Rule]:
    """Every rule of :data:`TABLE`, by tag (``0x00100010`` -> PatientName's rule)."""
    return dict(_RULES)


def rule_for(tag: int) -> Rule | None:
    """The table's rule for ``tag``, or None when the table does not list it."""
    return _RULES.get(tag)


def resolve(action: str, is_sequence: bool) -> str:
    """One action for a compound one, chosen without the IOD.

    ``X/Z/U*`` (references to images) keeps the sequence and replaces the UIDs inside:
    ``K`` here, since every instance UID is replaced anyway. Otherwise the choice keeps the
    attribute valid whatever its Type in the IOD, and hides the value: ``D`` (a dummy) for
    every compound with ``D`` (Device Serial Number is Type 1 in a SEG's Enhanced General
    Equipment), ``Z`` for ``X/Z``; a sequence is emptied (``Z``) rather than given dummy
    items. A plain ``D`` on a sequence keeps its items and cleans them with the same rules.
    """
    if action == "X/Z/U*":
        return "K"
    if action == "X/Z" or (is_sequence and action in ("X/Z/D", "X/D", "Z/D")):
        return "Z"
    if action in ("X/Z/D", "X/D", "Z/D"):
        return "D"
    if action == "D" and is_sequence:
        return "K"
    return action
