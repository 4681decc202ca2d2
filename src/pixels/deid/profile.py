"""The action table of the Basic Application Level Confidentiality Profile, as data.

Source: DICOM PS3.15, Annex E, Table E.1-1 "Application Level Confidentiality Profile
Attributes", as of the January 2025 edition (every row of it, 617 attributes and the 4
pattern rows), generated from the standard's table and checked row by row against
innolitics/dicom-standard's machine-readable extraction of it
(``standard/confidentiality_profile_attributes.json``, commit 7f4749d of January 2025, MIT).
Keywords are pydicom's data dictionary keywords. Each line of :data:`TABLE` is one
attribute::

    gggg,eeee  Keyword  BASIC  [OPTION:ACTION ...]

``BASIC`` is the Basic Profile column; an ``OPTION:ACTION`` pair overrides it when that
option is switched on (with several on, the last pair on the line that is on wins; ``S``
comes last, so cleaning wins over retaining). The option letters are the columns this
module implements:

====  ======================================================  ===============
P     Retain Patient Characteristics Option                   CID 7050 113108
D     Retain Device Identity Option                           CID 7050 113109
I     Retain Institution Identity Option                      CID 7050 113112
U     Retain UIDs Option                                      CID 7050 113110
L     Retain Longitudinal Temporal Information Modified Dates CID 7050 113107
F     Retain Longitudinal Temporal Information Full Dates     CID 7050 113106
S     Clean Descriptors Option                                CID 7050 113105
T     Clean Structured Content Option                         CID 7050 113104
G     Clean Graphics Option                                   CID 7050 113103
====  ======================================================  ===============

Not carried: the Retain Safe Private column (113111), which is the short list
:data:`SAFE_PRIVATE`. Of the Clean Graphics column's four rows, Graphic Annotation Sequence
is a line of the table (``G:C``); Overlay Data and Overlay Comments (60xx) and Curve Data
(50xx) are pattern rows, in :mod:`pixels.deid.file` with :mod:`pixels.deid.graphics`.

Clean Structured Content (``C`` on Content Sequence, Acquisition Context Sequence and
Specimen Preparation Sequence) keeps the content tree and cleans each item's value
(:mod:`pixels.deid.file`): DATE / DATETIME values shifted by the patient's offset (kept with
the full dates option), TIME kept (whole-day offsets), PNAME given a consistent pseudonym
from the key, UIDREF replaced as every UID, TEXT (free text, which cannot be cleaned
automatically) a dummy; codes and numbers kept. Without it, the Basic Profile's ``D`` keeps
the tree with every date, name and text a dummy, and the other two sequences are emptied.

Actions (PS3.15 E.1.1): ``D`` replace with a dummy value, ``Z`` replace with an empty (or
dummy) value, ``X`` remove, ``K`` keep (sequences are still cleaned inside), ``C`` clean
(dates: shifted by the patient's offset; descriptors: kept only when the user names them,
since free text cannot be cleaned automatically), ``U`` replace a UID with a consistent one.
Compound actions (``X/Z``, ``X/D``, ``Z/D``, ``X/Z/D``, ``X/Z/U*``) depend on the IOD's Type
for the attribute; without the IOD this module resolves them by :func:`resolve`. The table
is IOD-blind, and sometimes wrong for an IOD: its ``X`` removes Presentation Creation Date
and Time, Type 1 in every presentation state, and an ``X/Z`` sequence emptied is invalid
where the IOD has it as Type 3 (Referenced Study Sequence). :mod:`pixels.deid.iod` holds
those cases, by SOP class (found with dciodvfy on real files), and :mod:`pixels.deid.file`
applies them at the top level after this table: a dummy for Type 1 (never the original
value; the longitudinal options shift or keep dates as the table says), empty for Type 2,
removed for a Type 3 sequence.

The pattern rows of the standard are rules in :mod:`pixels.deid.file`: private attributes
(odd groups) are removed (``X``) unless the Retain Safe Private option keeps them
(:mod:`pixels.deid.private`); Curve
Data (50xx,xxxx) is removed, with the Clean Graphics Option too (stricter than its ``C``:
curves are retired); Overlay Data (60xx,3000) and Overlay Comments (60xx,4000) are removed,
and with them the rest of each 60xx overlay group (stricter: an overlay plane without its
data is no use), but for the planes the Clean Graphics Option keeps and cleans
(:mod:`pixels.deid.graphics`).

One line is not in the standard, and is stricter than it: Issuer of Patient ID Qualifiers
Sequence (0010,0024) is removed (``X``) like Issuer of Patient ID (0010,0021): it names the
institution that issued the original Patient ID, which is replaced by a pseudonym.
(Context Group Extension Creator UID and Creator Version UID, not in the standard either,
are replaced by the rule for unlisted UIDs below, kept with Retain UIDs.)

:data:`STRICTER` holds more rows the standard's table lacks, each stricter than it, for
attributes that identify a person or an original instance (a birth date in another
calendar, the encrypted original attributes, a contact's name, the issuer of the accession
number, an HL7 document's instance identifier); :func:`rule_for` finds them as it finds the
table's rows.

Rules for attributes the table does not list (stricter than the table, documented in the
README): every private element is removed unless the Retain Safe Private option keeps it;
every public element the data dictionary cannot name (VR UN, or any VR in an explicit file)
is removed; curve (50xx) and overlay (60xx) groups are removed whole; group lengths and
command (0000) elements are dropped (the table's Affected SOP Instance UID ``X`` and
Requested SOP Instance UID ``U`` rows, ``K`` with Retain UIDs, never reach a stored file:
they are removed even then); the file meta (0002) is written anew from the cleaned data set
(0002 elements in the data set or its items are removed); any other instance UID (VR UI
whose keyword does not name a class, syntax or coding scheme, and whose value is not a
DICOM-defined ``1.2.840.10008.`` UID) is replaced (``U``; kept with Retain UIDs); any other
person name (PN), and Text Value and Unformatted Text Value wherever they are (Protocol
Context Sequence, Waveform Annotation Sequence), get a dummy; any other URL or URI (UR) is
removed (it names a host, and often the original instance: Retrieve URL), but for the
code-system ones (Coding Scheme URL, URN Code Value); any other free-text comment (LO, SH,
ST, LT, UT, UC whose keyword says Comment) is removed, kept only as a descriptor the user
names with Clean Descriptors; any other date or date-time (DA, DT) is shifted with the
modified dates option, kept with the full dates option and removed without either; any other
time (TM) is kept with either dates option (offsets are whole days) and removed without.
Inside a sequence whose action is a plain ``D`` (Content Sequence, Graphic Annotation
Sequence, Verifying Observer Sequence...), the items are kept and cleaned with the same
rules, and every unlisted text value (SH, LO, ST, LT, UT, UC, UR, PN, AE) becomes a dummy,
but for the coded-entry attributes (Code Value, Coding Scheme Designator, Code Meaning...)
which are kept, except under Person Identification Code Sequence, where the code is the
identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "DEID_METHOD_CODES",
    "SAFE_PRIVATE",
    "SAFE_PRIVATE_TERMS",
    "SAFE_PRIVATE_VR",
    "STANDARD",
    "STRICTER",
    "TABLE",
    "UNLISTED_DESCRIPTORS",
    "Option",
    "Rule",
    "cleaned_action",
    "resolve",
    "rule_for",
    "rules",
]

#: The standard and edition of :data:`TABLE` (written into DeidentificationMethod).
STANDARD = "DICOM PS3.15 Table E.1-1 (2025-01)"


class Option(StrEnum):
    """An option of the profile a user can switch on (``pixels deid --option``)."""

    RETAIN_DATES = "retain-dates"
    """Retain Longitudinal Temporal Information with Modified Dates: shift dates per patient."""
    RETAIN_FULL_DATES = "retain-full-dates"
    """Retain Longitudinal Temporal Information with Full Dates: dates and times kept as they are."""
    RETAIN_UIDS = "retain-uids"
    """Keep every UID (study, series, instance, frame of reference and references) as it is."""
    RETAIN_INSTITUTION_IDENTITY = "retain-institution-identity"
    """Keep institution name, address and department, trial site and coordinating center."""
    RETAIN_PATIENT_CHARACTERISTICS = "retain-patient-characteristics"
    """Keep sex, age, size, weight, ethnic group, smoking and pregnancy status."""
    RETAIN_DEVICE_IDENTITY = "retain-device-identity"
    """Keep station name, serial numbers, device and detector identifiers."""
    RETAIN_SAFE_PRIVATE = "retain-safe-private"
    """Keep the private elements of :data:`SAFE_PRIVATE` (and their creators); remove the rest."""
    CLEAN_DESCRIPTORS = "clean-descriptors"
    """Keep the descriptors (descriptions, comments, protocol names) the user names as clean."""
    CLEAN_STRUCTURED_CONTENT = "clean-structured-content"
    """Keep SR content trees with dates shifted, names pseudonymized, text replaced."""
    CLEAN_GRAPHICS = "clean-graphics"
    """Keep text annotations and overlay planes, cleaned (:mod:`pixels.deid.graphics`)."""

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
    "I": Option.RETAIN_INSTITUTION_IDENTITY,
    "U": Option.RETAIN_UIDS,
    "L": Option.RETAIN_DATES,
    "F": Option.RETAIN_FULL_DATES,
    "S": Option.CLEAN_DESCRIPTORS,
    "T": Option.CLEAN_STRUCTURED_CONTENT,
    "G": Option.CLEAN_GRAPHICS,
}

#: PS3.16 CID 7050 "De-identification Method" codes (scheme DCM) written into
#: DeidentificationMethodCodeSequence: the Basic Profile, then one per option used.
DEID_METHOD_CODES: dict[str, tuple[str, str]] = {
    "basic": ("113100", "Basic Application Confidentiality Profile"),
    "clean-pixel-data": ("113101", "Clean Pixel Data Option"),
    Option.CLEAN_GRAPHICS.value: ("113103", "Clean Graphics Option"),
    Option.CLEAN_STRUCTURED_CONTENT.value: ("113104", "Clean Structured Content Option"),
    Option.CLEAN_DESCRIPTORS.value: ("113105", "Clean Descriptors Option"),
    Option.RETAIN_DATES.value: (
        "113107",
        "Retain Longitudinal Temporal Information Modified Dates Option",
    ),
    Option.RETAIN_FULL_DATES.value: (
        "113106",
        "Retain Longitudinal Temporal Information Full Dates Option",
    ),
    Option.RETAIN_PATIENT_CHARACTERISTICS.value: (
        "113108",
        "Retain Patient Characteristics Option",
    ),
    Option.RETAIN_DEVICE_IDENTITY.value: ("113109", "Retain Device Identity Option"),
    Option.RETAIN_UIDS.value: ("113110", "Retain UIDs Option"),
    Option.RETAIN_SAFE_PRIVATE.value: ("113111", "Retain Safe Private Option"),
    Option.RETAIN_INSTITUTION_IDENTITY.value: ("113112", "Retain Institution Identity Option"),
}

#: Private elements the Retain Safe Private option keeps: (private creator, group, element
#: offset within the block) -> what it holds. Numeric acquisition parameters only, needed
#: by diffusion and quantitative analysis, none able to hold text about a person.
SAFE_PRIVATE: dict[tuple[str, int, int], str] = {
    ("SIEMENS MR HEADER", 0x0019, 0x0C): "B_value (IS): diffusion b-value",
    ("SIEMENS MR HEADER", 0x0019, 0x0D): "DiffusionDirectionality (CS)",
    ("SIEMENS MR HEADER", 0x0019, 0x0E): "DiffusionGradientDirection (FD, 3 values)",
    ("GEMS_PARM_01", 0x0043, 0x39): "slop_int_6..9 (IS): GE diffusion b-value",
    ("Philips MR Imaging DD 001", 0x2001, 0x03): "Diffusion B-Factor (FL)",
}

#: The VR each element of :data:`SAFE_PRIVATE` must have (or UN, read as that VR) and hold
#: a valid value of: a kept private element that holds anything else (text where a number
#: belongs) is removed like any other private element.
SAFE_PRIVATE_VR: dict[tuple[str, int, int], str] = {
    ("SIEMENS MR HEADER", 0x0019, 0x0C): "IS",
    ("SIEMENS MR HEADER", 0x0019, 0x0D): "CS",
    ("SIEMENS MR HEADER", 0x0019, 0x0E): "FD",
    ("GEMS_PARM_01", 0x0043, 0x39): "IS",
    ("Philips MR Imaging DD 001", 0x2001, 0x03): "FL",
}

#: The defined terms of the one coded (CS) element of :data:`SAFE_PRIVATE`.
SAFE_PRIVATE_TERMS: dict[tuple[str, int, int], frozenset[str]] = {
    ("SIEMENS MR HEADER", 0x0019, 0x0D): frozenset({"DIRECTIONAL", "NONE", "ISOTROPIC", "BMATRIX"}),
}

# fmt: off
TABLE = """
0008,0050 AccessionNumber Z
0018,4000 AcquisitionComments X S:C
0040,0555 AcquisitionContextSequence X/Z T:C
0008,0022 AcquisitionDate X/Z L:C F:K
0008,002A AcquisitionDateTime X/Z/D L:C F:K
0018,1400 AcquisitionDeviceProcessingDescription X/D S:C
0018,11BB AcquisitionFieldOfViewLabel D S:C
0018,9424 AcquisitionProtocolDescription X S:C
0008,0032 AcquisitionTime X/Z L:C F:K
0008,0017 AcquisitionUID U U:K
0040,4035 ActualHumanPerformersSequence X
0010,21B0 AdditionalPatientHistory X S:C
0040,A353 AddressTrial X
0038,0010 AdmissionID X
0038,0020 AdmittingDate X L:C F:K
0008,1084 AdmittingDiagnosesCodeSequence X S:C
0008,1080 AdmittingDiagnosesDescription X S:C
0038,0021 AdmittingTime X L:C F:K
0000,1000 AffectedSOPInstanceUID X U:K
0010,2110 Allergies X P:C S:C
006A,0006 AnnotationGroupDescription X S:C
006A,0005 AnnotationGroupLabel D S:C
006A,0003 AnnotationGroupUID D U:K
0044,0004 ApprovalStatusDateTime X L:C F:K
4000,0010 Arbitrary X
0044,0104 AssertionDateTime D L:C F:K
0044,0105 AssertionExpirationDateTime X L:C F:K
0400,0562 AttributeModificationDateTime D L:C F:K
0040,A078 AuthorObserverSequence X
2200,0005 BarcodeValue X/Z
300A,00C3 BeamDescription X S:C
300C,0127 BeamHoldTransitionDateTime D D:K L:C F:K
300A,00DD BolusDescription X S:C
0010,1081 BranchOfService X
0014,407E CalibrationDate X D:K L:C F:K
0018,1203 CalibrationDateTime Z D:K L:C F:K
0014,407C CalibrationTime X D:K L:C F:K
0016,004D CameraOwnerName X
0018,1007 CassetteID X D:K
0400,0115 CertificateOfSigner D
0400,0310 CertifiedTimestamp X L:C F:K
0012,0060 ClinicalTrialCoordinatingCenterName Z I:K
0012,0082 ClinicalTrialProtocolEthicsCommitteeApprovalNumber X
0012,0081 ClinicalTrialProtocolEthicsCommitteeName D I:K
0012,0020 ClinicalTrialProtocolID D
0012,0021 ClinicalTrialProtocolName Z
0012,0072 ClinicalTrialSeriesDescription X S:C
0012,0071 ClinicalTrialSeriesID X
0012,0030 ClinicalTrialSiteID Z I:K
0012,0031 ClinicalTrialSiteName Z I:K
0012,0010 ClinicalTrialSponsorName D
0012,0040 ClinicalTrialSubjectID D
0012,0042 ClinicalTrialSubjectReadingID D
0012,0051 ClinicalTrialTimePointDescription X S:C
0012,0050 ClinicalTrialTimePointID Z
0040,0310 CommentsOnRadiationDose X S:C
0040,0280 CommentsOnThePerformedProcedureStep X S:C
300A,02EB CompensatorDescription X S:C
0020,9161 ConcatenationUID U U:K
3010,000F ConceptualVolumeCombinationDescription Z S:C
3010,0017 ConceptualVolumeDescription Z S:C
3010,0006 ConceptualVolumeUID U U:K
0040,3001 ConfidentialityConstraintOnPatientDataDescription X
3010,0013 ConstituentConceptualVolumeUID U U:K
0008,009D ConsultingPhysicianIdentificationSequence X
0008,009C ConsultingPhysicianName Z
0050,001B ContainerComponentID X
0040,051A ContainerDescription X S:C
0040,0512 ContainerIdentifier D
0070,0086 ContentCreatorIdentificationCodeSequence X
0070,0084 ContentCreatorName Z/D
0008,0023 ContentDate Z/D L:C F:K
0040,A730 ContentSequence D T:C
0008,0033 ContentTime Z/D L:C F:K
0008,0107 ContextGroupLocalVersion D L:C F:K
0008,0106 ContextGroupVersion D L:C F:K
0018,0010 ContrastBolusAgent Z/D S:C
0018,1042 ContrastBolusStartTime X L:C F:K
0018,1043 ContrastBolusStopTime X L:C F:K
0018,A002 ContributionDateTime X L:C F:K
0018,A003 ContributionDescription X S:C
0010,2150 CountryOfResidence X
2100,0040 CreationDate X L:C F:K
2100,0050 CreationTime X L:C F:K
0040,A307 CurrentObserverTrial X
0038,0300 CurrentPatientLocation X
0008,0025 CurveDate X L:C F:K
0008,0035 CurveTime X L:C F:K
0040,A07C CustodialOrganizationSequence X
FFFC,FFFC DataSetTrailingPadding X
0040,A121 Date D L:C F:K
0040,A110 DateOfDocumentOrVerbalTransactionTrial X L:C F:K
0018,1205 DateOfInstallation X D:K L:C F:K
0018,1200 DateOfLastCalibration X D:K L:C F:K
0018,700C DateOfLastDetectorCalibration X/D D:K L:C F:K
0018,1204 DateOfManufacture X D:K L:C F:K
0018,1012 DateOfSecondaryCapture X L:C F:K
0040,A120 DateTime D L:C F:K
0018,1202 DateTimeOfLastCalibration X D:K L:C F:K
0018,9701 DecayCorrectionDateTime D L:C F:K
0018,937F DecompositionDescription X S:C
0008,2111 DerivationDescription X S:C
2100,0140 DestinationAE D D:C
0018,700A DetectorID X/D D:K
3010,001B DeviceAlternateIdentifier Z
0050,0020 DeviceDescription X D:K
3010,002D DeviceLabel D D:K
0018,1000 DeviceSerialNumber X/Z/D D:K
0016,004B DeviceSettingDescription X S:C
0018,1002 DeviceUID U D:K U:K
0400,0105 DigitalSignatureDateTime D L:C F:K
FFFA,FFFA DigitalSignaturesSequence X
0400,0100 DigitalSignatureUID U
0020,9164 DimensionOrganizationUID U U:K
0038,0030 DischargeDate X L:C F:K
0038,0040 DischargeDiagnosisDescription X S:C
0038,0032 DischargeTime X L:C F:K
300A,079A DisplacementReferenceLabel X S:C
4008,011A DistributionAddress X
4008,0119 DistributionName X
300A,0016 DoseReferenceDescription X S:C
300A,0013 DoseReferenceUID U U:K
3010,006E DosimetricObjectiveUID U U:K
0068,6226 EffectiveDateTime D L:C F:K
0042,0011 EncapsulatedDocument D
0018,9517 EndAcquisitionDateTime X/D L:C F:K
3010,0037 EntityDescription X S:C
3010,0035 EntityLabel D S:C
3010,0038 EntityLongLabel D S:C
3010,0036 EntityName X S:C
300A,0676 EquipmentFrameOfReferenceDescription X S:C
0012,0087 EthicsCommitteeApprovalEffectivenessEndDate X L:C F:K
0012,0086 EthicsCommitteeApprovalEffectivenessStartDate X L:C F:K
0010,2160 EthnicGroup X P:K
0018,9804 ExclusionStartDateTime D L:C F:K
0040,4011 ExpectedCompletionDateTime X L:C F:K
0008,0058 FailedSOPInstanceUIDList U U:K
0070,031A FiducialUID U U:K
0040,2017 FillerOrderNumberImagingServiceRequest Z
003A,032B FilterLookupTableDescription X S:C
0040,A023 FindingsGroupRecordingDateTrial X L:C F:K
0040,A024 FindingsGroupRecordingTimeTrial X L:C F:K
3008,0054 FirstTreatmentDate X/D L:C F:K
300A,0196 FixationDeviceDescription X S:C
0034,0002 FlowIdentifier D
0034,0001 FlowIdentifierSequence D
3010,007F FractionationNotes Z S:C
300A,0072 FractionGroupDescription X S:C
0018,9074 FrameAcquisitionDateTime D L:C F:K
0020,9158 FrameComments X S:C
0020,0052 FrameOfReferenceUID U U:K
0034,0007 FrameOriginTimestamp D L:C F:K
0018,9151 FrameReferenceDateTime D L:C F:K
0018,9623 FunctionalSyncPulse D L:C F:K
0018,1008 GantryID X D:K
0018,1005 GeneratorID X D:K
0016,0076 GPSAltitude X
0016,0075 GPSAltitudeRef X
0016,008C GPSAreaInformation X
0016,008D GPSDateStamp X L:C F:K
0016,0088 GPSDestBearing X
0016,0087 GPSDestBearingRef X
0016,008A GPSDestDistance X
0016,0089 GPSDestDistanceRef X
0016,0084 GPSDestLatitude X
0016,0083 GPSDestLatitudeRef X
0016,0086 GPSDestLongitude X
0016,0085 GPSDestLongitudeRef X
0016,008E GPSDifferential X
0016,007B GPSDOP X
0016,0081 GPSImgDirection X
0016,0080 GPSImgDirectionRef X
0016,0072 GPSLatitude X
0016,0071 GPSLatitudeRef X
0016,0074 GPSLongitude X
0016,0073 GPSLongitudeRef X
0016,0082 GPSMapDatum X
0016,007A GPSMeasureMode X
0016,008B GPSProcessingMethod X
0016,0078 GPSSatellites X
0016,007D GPSSpeed X
0016,007C GPSSpeedRef X
0016,0079 GPSStatus X
0016,0077 GPSTimeStamp X
0016,007F GPSTrack X
0016,007E GPSTrackRef X
0016,0070 GPSVersionID X
0070,0001 GraphicAnnotationSequence D G:C
0072,000A HangingProtocolCreationDateTime D L:C F:K
0040,E004 HL7DocumentEffectiveTime X L:C F:K
0040,4037 HumanPerformerName X
0040,4036 HumanPerformerOrganization X
0088,0200 IconImageSequence X
0008,4000 IdentifyingComments X S:C
0020,4000 ImageComments X S:C
0028,4000 ImagePresentationComments X
0040,2400 ImagingServiceRequestComments X S:C
003A,0314 ImpedanceMeasurementDateTime D L:C F:K
4008,0300 Impressions X S:C
0068,6270 InformationIssueDateTime D L:C F:K
0008,0015 InstanceCoercionDateTime X L:C F:K
0008,0012 InstanceCreationDate X/D L:C F:K
0008,0013 InstanceCreationTime X/Z/D L:C F:K
0008,0014 InstanceCreatorUID U U:K
0400,0600 InstanceOriginStatus X
0008,0081 InstitutionAddress X I:K
0008,1040 InstitutionalDepartmentName X I:K
0008,1041 InstitutionalDepartmentTypeCodeSequence X I:K
0008,0082 InstitutionCodeSequence X/Z/D I:K
0008,0080 InstitutionName X/Z/D I:K
0018,9919 InstructionPerformedDateTime Z/D L:C F:K
0010,1050 InsurancePlanIdentification X
3010,0085 IntendedFractionStartTime X L:C F:K
3010,004D IntendedPhaseEndDate X/D L:C F:K
3010,004C IntendedPhaseStartDate X/D L:C F:K
0040,1011 IntendedRecipientsOfResultsIdentificationSequence X
300A,0741 InterlockDateTime D L:C F:K
300A,0742 InterlockDescription D S:C
300A,0783 InterlockOriginDescription D S:C
4008,0112 InterpretationApprovalDate X L:C F:K
4008,0113 InterpretationApprovalTime X L:C F:K
4008,0111 InterpretationApproverSequence X
4008,010C InterpretationAuthor X
4008,0115 InterpretationDiagnosisDescription X S:C
4008,0200 InterpretationID X
4008,0202 InterpretationIDIssuer X
4008,0100 InterpretationRecordedDate X L:C F:K
4008,0101 InterpretationRecordedTime X L:C F:K
4008,0102 InterpretationRecorder X
4008,010B InterpretationText X S:C
4008,010A InterpretationTranscriber X
4008,0108 InterpretationTranscriptionDate X L:C F:K
4008,0109 InterpretationTranscriptionTime X L:C F:K
0018,0035 InterventionDrugStartTime X L:C F:K
0018,0027 InterventionDrugStopTime X L:C F:K
0008,3010 IrradiationEventUID U U:K
0040,2004 IssueDateOfImagingServiceRequest X L:C F:K
0038,0011 IssuerOfAdmissionID X
0038,0014 IssuerOfAdmissionIDSequence X
0012,0022 IssuerOfClinicalTrialProtocolID X
0012,0073 IssuerOfClinicalTrialSeriesID X
0012,0032 IssuerOfClinicalTrialSiteID X
0012,0041 IssuerOfClinicalTrialSubjectID X
0012,0043 IssuerOfClinicalTrialSubjectReadingID X
0012,0055 IssuerOfClinicalTrialTimePointID X
0010,0021 IssuerOfPatientID X
0010,0024 IssuerOfPatientIDQualifiersSequence X
0038,0061 IssuerOfServiceEpisodeID X
0038,0064 IssuerOfServiceEpisodeIDSequence X
0040,0513 IssuerOfTheContainerIdentifierSequence Z
0040,0562 IssuerOfTheSpecimenIdentifierSequence Z
0040,2005 IssueTimeOfImagingServiceRequest X L:C F:K
2200,0002 LabelText X/Z S:C
0028,1214 LargePaletteColorLookupTableUID U U:K
0010,21D0 LastMenstrualDate X L:C F:K
0016,004F LensMake X D:K
0016,0050 LensModel X D:K
0016,0051 LensSerialNumber X D:K
0016,004E LensSpecification X D:K
0050,0021 LongDeviceDescription X S:C
0400,0404 MAC X
0016,002B MakerNote X S:C
0018,100B ManufacturerDeviceClassUID U D:K U:K
3010,0043 ManufacturerDeviceIdentifier Z D:K
0002,0003 MediaStorageSOPInstanceUID U U:K
0010,2000 MedicalAlerts X S:C
0010,1090 MedicalRecordLocator X
0010,1080 MilitaryRank X
0400,0550 ModifiedAttributesSequence X
0020,3403 ModifiedImageDate X L:C F:K
0020,3406 ModifiedImageDescription X
0020,3405 ModifiedImageTime X L:C F:K
0020,3401 ModifyingDeviceID X D:K
0400,0563 ModifyingSystem D D:K
3008,0056 MostRecentTreatmentDate X/D L:C F:K
0018,937B MultienergyAcquisitionDescription X S:C
003A,0310 MultiplexGroupUID U U:K
0008,1060 NameOfPhysiciansReadingStudy X
0040,1010 NamesOfIntendedRecipientsOfResults X
0008,1000 NetworkID X D:C
0400,0552 NonconformingDataElementValue X
0400,0551 NonconformingModifiedAttributesSequence X
0040,A032 ObservationDateTime X/D L:C F:K
0040,A192 ObservationDateTrial X L:C F:K
0040,A033 ObservationStartDateTime X L:C F:K
0040,A402 ObservationSubjectUIDTrial U U:K
0040,A193 ObservationTimeTrial X L:C F:K
0040,A171 ObservationUID U U:K
0010,2180 Occupation X S:C
0008,1072 OperatorIdentificationSequence X/D
0008,1070 OperatorsName X/Z/D
0040,2010 OrderCallbackPhoneNumber X
0040,2011 OrderCallbackTelecomInformation X
0040,2008 OrderEnteredBy X
0040,2009 OrderEntererLocation X
0400,0561 OriginalAttributesSequence X
2100,0070 Originator X D:C
0012,0023 OtherClinicalTrialProtocolIDsSequence X
0010,1000 OtherPatientIDs X
0010,1002 OtherPatientIDsSequence X
0010,1001 OtherPatientNames X
0008,0024 OverlayDate X L:C F:K
0008,0034 OverlayTime X L:C F:K
300A,0760 OverrideDateTime D L:C F:K
0028,1199 PaletteColorLookupTableUID U U:K
0040,A07A ParticipantSequence X
0040,A082 ParticipationDateTime Z L:C F:K
0010,1040 PatientAddress X
0010,1010 PatientAge X P:K
0010,0030 PatientBirthDate Z
0010,1005 PatientBirthName X
0010,0032 PatientBirthTime X
0010,4000 PatientComments X S:C
0010,0020 PatientID Z/D
0038,0400 PatientInstitutionResidence X
0010,0050 PatientInsurancePlanCodeSequence X
0010,1060 PatientMotherBirthName X
0010,0010 PatientName Z
0010,0101 PatientPrimaryLanguageCodeSequence X
0010,0102 PatientPrimaryLanguageModifierCodeSequence X
0010,21F0 PatientReligiousPreference X
300A,0794 PatientSetupPhotoDescription X S:C
300A,0650 PatientSetupUID U U:K
0010,0040 PatientSex Z P:K
0010,2203 PatientSexNeutered X/Z P:K
0010,1020 PatientSize X P:K
0038,0500 PatientState X P:C S:C
0010,2155 PatientTelecomInformation X
0010,2154 PatientTelephoneNumbers X
0040,1004 PatientTransportArrangements X
300A,0792 PatientTreatmentPreparationMethodDescription X S:C
300A,078E PatientTreatmentPreparationProcedureParameterDescription X S:C
0010,1030 PatientWeight X P:K
0040,0243 PerformedLocation X
0040,0254 PerformedProcedureStepDescription X S:C
0040,0250 PerformedProcedureStepEndDate X L:C F:K
0040,4051 PerformedProcedureStepEndDateTime X L:C F:K
0040,0251 PerformedProcedureStepEndTime X L:C F:K
0040,0253 PerformedProcedureStepID X
0040,0244 PerformedProcedureStepStartDate X L:C F:K
0040,4050 PerformedProcedureStepStartDateTime X L:C F:K
0040,0245 PerformedProcedureStepStartTime X L:C F:K
0040,0241 PerformedStationAETitle X D:C
0040,4030 PerformedStationGeographicLocationCodeSequence X D:K
0040,0242 PerformedStationName X D:K
0040,4028 PerformedStationNameCodeSequence X D:K
0008,1052 PerformingPhysicianIdentificationSequence X
0008,1050 PerformingPhysicianName X
0040,1102 PersonAddress X
0040,1101 PersonIdentificationCodeSequence D
0040,A123 PersonName D
0040,1104 PersonTelecomInformation X
0040,1103 PersonTelephoneNumbers X
4008,0114 PhysicianApprovingInterpretation X
0008,1048 PhysiciansOfRecord X
0008,1049 PhysiciansOfRecordIdentificationSequence X
0008,1062 PhysiciansReadingStudyIdentificationSequence X
0040,2016 PlacerOrderNumberImagingServiceRequest Z
0018,1004 PlateID X D:K
3002,0123 PositionAcquisitionTemplateDescription X S:C
3002,0121 PositionAcquisitionTemplateName X S:C
0010,21C0 PregnancyStatus X P:K
0040,0012 PreMedication X P:C
300A,000E PrescriptionDescription X S:C
3010,007B PrescriptionNotes Z S:C
3010,0081 PrescriptionNotesSequence Z S:C
0070,0082 PresentationCreationDate X L:C F:K
0070,0083 PresentationCreationTime X L:C F:K
0070,1101 PresentationDisplayCollectionUID U U:K
0070,1102 PresentationSequenceCollectionUID U U:K
3010,0061 PriorTreatmentDoseDescription X S:C
0040,4052 ProcedureStepCancellationDateTime X L:C F:K
0044,000B ProductExpirationDateTime X L:C F:K
0018,1030 ProtocolName X/D S:C
0008,1088 PyramidDescription X S:C
0020,0027 PyramidLabel X S:C
0008,0019 PyramidUID U U:K
300A,0619 RadiationDoseIdentificationLabel D S:C
300A,0623 RadiationDoseInVivoMeasurementLabel D S:C
300A,067D RadiationGenerationModeDescription Z S:C
300A,067C RadiationGenerationModeLabel D S:C
0018,1078 RadiopharmaceuticalStartDateTime X L:C F:K
0018,1072 RadiopharmaceuticalStartTime X L:C F:K
0018,1079 RadiopharmaceuticalStopDateTime X L:C F:K
0018,1073 RadiopharmaceuticalStopTime X L:C F:K
300C,0113 ReasonForOmissionDescription X S:C
0040,100A ReasonForRequestedProcedureCodeSequence X S:C
0032,1030 ReasonForStudy X S:C
3010,005C ReasonForSuperseding Z S:C
0400,0565 ReasonForTheAttributeModification D S:C
0040,2001 ReasonForTheImagingServiceRequest X S:C
0040,1002 ReasonForTheRequestedProcedure X S:C
0032,1066 ReasonForVisit X S:C
0032,1067 ReasonForVisitCodeSequence X S:C
0074,1234 ReceivingAE X D:C
300A,073A RecordedRTControlPointDateTime D L:C F:K
3010,000B ReferencedConceptualVolumeUID U U:K
0040,A13A ReferencedDateTime D L:C F:K
0400,0402 ReferencedDigitalSignatureSequence X
300A,0083 ReferencedDoseReferenceUID U U:K
3010,006F ReferencedDosimetricObjectiveUID U U:K
3010,0031 ReferencedFiducialsUID U U:K
3006,0024 ReferencedFrameOfReferenceUID U U:K
0040,4023 ReferencedGeneralPurposeScheduledProcedureStepTransactionUID U U:K
0008,1140 ReferencedImageSequence X/Z/U* U:K
0040,A172 ReferencedObservationUIDTrial U U:K
0038,0004 ReferencedPatientAliasSequence X
0010,1100 ReferencedPatientPhotoSequence X
0008,1120 ReferencedPatientSequence X U:K
0008,1111 ReferencedPerformedProcedureStepSequence X/Z/D U:K
0400,0403 ReferencedSOPInstanceMACSequence X
0008,1155 ReferencedSOPInstanceUID U U:K
0004,1511 ReferencedSOPInstanceUIDInFile U U:K
0008,1110 ReferencedStudySequence X/Z U:K
300A,0785 ReferencedTreatmentPositionGroupUID U U:K
0008,0092 ReferringPhysicianAddress X
0008,0096 ReferringPhysicianIdentificationSequence X
0008,0090 ReferringPhysicianName Z
0008,0094 ReferringPhysicianTelephoneNumbers X
0010,2152 RegionOfResidence X
3006,00C2 RelatedFrameOfReferenceUID U U:K
0040,0275 RequestAttributesSequence X S:C
0032,1070 RequestedContrastAgent X S:C
0040,1400 RequestedProcedureComments X S:C
0032,1060 RequestedProcedureDescription X/Z S:C
0040,1001 RequestedProcedureID X
0040,1005 RequestedProcedureLocation X
0018,9937 RequestedSeriesDescription X S:C
0000,1001 RequestedSOPInstanceUID U U:K
0074,1236 RequestingAE X D:C
0032,1032 RequestingPhysician X
0032,1033 RequestingService X
0018,9185 RespiratoryMotionCompensationTechniqueDescription X S:C
0010,2299 ResponsibleOrganization X
0010,2297 ResponsiblePerson X
4008,4000 ResultsComments X S:C
4008,0118 ResultsDistributionListSequence X
4008,0040 ResultsID X
4008,0042 ResultsIDIssuer X
0008,0054 RetrieveAETitle X D:C
300E,0004 ReviewDate Z L:C F:K
300E,0008 ReviewerName X/Z
300E,0005 ReviewTime Z L:C F:K
3006,004D ROICreatorSequence X
3006,002D ROIDateTime X L:C F:K
3006,0028 ROIDescription X S:C
3006,0038 ROIGenerationDescription X S:C
3006,00A6 ROIInterpreter Z
3006,004E ROIInterpreterSequence X
3006,0026 ROIName Z S:C
3006,002E ROIObservationDateTime X L:C F:K
3006,0088 ROIObservationDescription X S:C
3006,0085 ROIObservationLabel X S:C
300A,0615 RTAccessoryDeviceSlotID Z
300A,0611 RTAccessoryHolderSlotID Z
3010,005A RTPhysicianIntentNarrative Z S:C
300A,0006 RTPlanDate X/D L:C F:K
300A,0004 RTPlanDescription X S:C
300A,0002 RTPlanLabel D S:C
300A,0003 RTPlanName X S:C
300A,0007 RTPlanTime X/D L:C F:K
3010,0054 RTPrescriptionLabel D S:C
300A,062A RTToleranceSetLabel D S:C
3010,0056 RTTreatmentApproachLabel X/D S:C
3010,003B RTTreatmentPhaseUID U U:K
3008,0162 SafePositionExitDate D L:C F:K
3008,0164 SafePositionExitTime D L:C F:K
3008,0166 SafePositionReturnDate D L:C F:K
3008,0168 SafePositionReturnTime D L:C F:K
0038,001A ScheduledAdmissionDate X L:C F:K
0038,001B ScheduledAdmissionTime X L:C F:K
0038,001C ScheduledDischargeDate X L:C F:K
0038,001D ScheduledDischargeTime X L:C F:K
0040,4034 ScheduledHumanPerformersSequence X
0038,001E ScheduledPatientInstitutionResidence X
0040,000B ScheduledPerformingPhysicianIdentificationSequence X
0040,0006 ScheduledPerformingPhysicianName X
0040,0007 ScheduledProcedureStepDescription X S:C
0040,0004 ScheduledProcedureStepEndDate X L:C F:K
0040,0005 ScheduledProcedureStepEndTime X L:C F:K
0040,4008 ScheduledProcedureStepExpirationDateTime X L:C F:K
0040,0009 ScheduledProcedureStepID X
0040,0011 ScheduledProcedureStepLocation X D:K
0040,4010 ScheduledProcedureStepModificationDateTime X L:C F:K
0040,0002 ScheduledProcedureStepStartDate X L:C F:K
0040,4005 ScheduledProcedureStepStartDateTime X L:C F:K
0040,0003 ScheduledProcedureStepStartTime X L:C F:K
0040,0001 ScheduledStationAETitle X D:C
0040,4027 ScheduledStationGeographicLocationCodeSequence X D:K
0040,0010 ScheduledStationName X D:K
0040,4025 ScheduledStationNameCodeSequence X D:K
0032,1020 ScheduledStudyLocation X D:K
0032,1021 ScheduledStudyLocationAETitle X D:C
0032,1000 ScheduledStudyStartDate X L:C F:K
0032,1001 ScheduledStudyStartTime X L:C F:K
0032,1010 ScheduledStudyStopDate X L:C F:K
0032,1011 ScheduledStudyStopTime X L:C F:K
0072,005E SelectorAEValue D D:C
0072,005F SelectorASValue D P:K
0072,0061 SelectorDAValue D L:C F:K
0072,0063 SelectorDTValue D L:C F:K
0072,0066 SelectorLOValue D S:C
0072,0068 SelectorLTValue D S:C
0072,0065 SelectorOBValue D
0072,006A SelectorPNValue D
0072,006C SelectorSHValue D S:C
0072,006E SelectorSTValue D S:C
0072,006B SelectorTMValue D L:C F:K
0072,006D SelectorUNValue D
0072,0071 SelectorURValue D
0072,0070 SelectorUTValue D S:C
0008,0021 SeriesDate X/D L:C F:K
0008,103E SeriesDescription X S:C
0020,000E SeriesInstanceUID U U:K
0008,0031 SeriesTime X/D L:C F:K
0038,0062 ServiceEpisodeDescription X S:C
0038,0060 ServiceEpisodeID X
300A,01B2 SetupTechniqueDescription X S:C
300A,01A6 ShieldingDeviceDescription X S:C
0040,06FA SlideIdentifier X
0010,21A0 SmokingStatus X P:K
0100,0420 SOPAuthorizationDateTime X L:C F:K
0008,0018 SOPInstanceUID U U:K
3010,0015 SourceConceptualVolumeUID U U:K
0018,936A SourceEndDateTime D L:C F:K
0064,0003 SourceFrameOfReferenceUID U U:K
0034,0005 SourceIdentifier D
0008,2112 SourceImageSequence X/Z/U* U:K
300A,0216 SourceManufacturer X D:K
0400,0564 SourceOfPreviousValues Z I:K
3008,0105 SourceSerialNumber X/Z D:K
0018,9369 SourceStartDateTime D L:C F:K
300A,022C SourceStrengthReferenceDate D L:C F:K
300A,022E SourceStrengthReferenceTime D L:C F:K
0038,0050 SpecialNeeds X P:C
0040,050A SpecimenAccessionNumber X
0040,0602 SpecimenDetailedDescription X S:C
0040,0551 SpecimenIdentifier D
0040,0610 SpecimenPreparationSequence Z T:C
0040,0600 SpecimenShortDescription X S:C
0040,0554 SpecimenUID U U:K
0018,9516 StartAcquisitionDateTime X/D L:C F:K
0008,0055 StationAETitle X D:C
0008,1010 StationName X/Z/D D:K
0088,0140 StorageMediaFileSetUID U U:K
3006,0008 StructureSetDate Z L:C F:K
3006,0006 StructureSetDescription X S:C
3006,0002 StructureSetLabel D S:C
3006,0004 StructureSetName X S:C
3006,0009 StructureSetTime Z L:C F:K
0032,1040 StudyArrivalDate X L:C F:K
0032,1041 StudyArrivalTime X L:C F:K
0032,4000 StudyComments X S:C
0032,1050 StudyCompletionDate X L:C F:K
0032,1051 StudyCompletionTime X L:C F:K
0008,0020 StudyDate Z L:C F:K
0008,1030 StudyDescription X S:C
0020,0010 StudyID Z
0032,0012 StudyIDIssuer X
0020,000D StudyInstanceUID U U:K
0032,0034 StudyReadDate X L:C F:K
0032,0035 StudyReadTime X L:C F:K
0008,0030 StudyTime Z L:C F:K
0032,0032 StudyVerifiedDate X L:C F:K
0032,0033 StudyVerifiedTime X L:C F:K
0044,0010 SubstanceAdministrationDateTime X L:C F:K
0020,0200 SynchronizationFrameOfReferenceUID U U:K
0018,2042 TargetUID U U:K
0040,A354 TelephoneNumberTrial X
0040,DB0D TemplateExtensionCreatorUID U U:K
0040,DB0C TemplateExtensionOrganizationUID U U:K
0040,DB07 TemplateLocalVersion X L:C F:K
0040,DB06 TemplateVersion X L:C F:K
4000,4000 TextComments X
2030,0020 TextString X
0040,A122 Time D L:C F:K
0040,A112 TimeOfDocumentCreationOrVerbalTransactionTrial X L:C F:K
0018,1201 TimeOfLastCalibration X D:K L:C F:K
0018,700E TimeOfLastDetectorCalibration X/D D:K L:C F:K
0018,1014 TimeOfSecondaryCapture X L:C F:K
0008,0201 TimezoneOffsetFromUTC X L:C F:K
0088,0910 TopicAuthor X
0088,0912 TopicKeywords X
0088,0906 TopicSubject X
0088,0904 TopicTitle X
0062,0021 TrackingUID U U:K
0008,1195 TransactionUID U U:K
0018,5011 TransducerIdentificationSequence X D:K
3008,0024 TreatmentControlPointDate D L:C F:K
3008,0025 TreatmentControlPointTime D L:C F:K
3008,0250 TreatmentDate X/D L:C F:K
300A,00B2 TreatmentMachineName X/Z D:K
300A,0608 TreatmentPositionGroupLabel D S:C
300A,0609 TreatmentPositionGroupUID U U:K
300A,0700 TreatmentSessionUID U U:K
3010,0077 TreatmentSite X/D S:C
300A,000B TreatmentSites X S:C
3010,007A TreatmentTechniqueNotes Z S:C
3008,0251 TreatmentTime X/D L:C F:K
300A,0736 TreatmentToleranceViolationDateTime D L:C F:K
300A,0734 TreatmentToleranceViolationDescription D S:C
0018,100A UDISequence X D:K
0040,A124 UID U
0018,1009 UniqueDeviceIdentifier X D:K
3010,0033 UserContentLabel D S:C
3010,0034 UserContentLongLabel D S:C
0040,A358 VerbalSourceIdentifierCodeSequenceTrial X
0040,A352 VerbalSourceTrial X
0040,A030 VerificationDateTime D L:C F:K
0040,A088 VerifyingObserverIdentificationCodeSequence Z
0040,A075 VerifyingObserverName D
0040,A073 VerifyingObserverSequence D
0040,A027 VerifyingOrganization D
0038,4000 VisitComments X S:C
003A,0329 WaveformFilterDescription X S:C
0018,9371 XRayDetectorID D D:K
0018,9373 XRayDetectorLabel X D:K
0018,9367 XRaySourceID D D:K
"""
# fmt: on

#: Rows beyond :data:`TABLE` (not in PS3.15 Table E.1-1), stricter than it: standard
#: attributes that identify a person, a place or an original instance and that the table,
#: which keeps every attribute it does not list, would let through unchanged.
STRICTER = """
0008,0051 IssuerOfAccessionNumberSequence X I:K
0010,0033 PatientBirthDateInAlternativeCalendar X
0010,0034 PatientDeathDateInAlternativeCalendar X
0040,E001 HL7InstanceIdentifier U U:K
0074,100C ContactDisplayName X
0400,0500 EncryptedAttributesSequence X
"""

#: Free-text descriptors Table E.1-1 does not list: the Basic Profile keeps them (which is
#: conformant: the table keeps what it does not list), and so does :mod:`pixels.deid` without
#: the Clean Descriptors Option. With it, they are cleaned as the table's ``C`` descriptors
#: are: kept when the user names them (``--keep-descriptor SegmentLabel``), otherwise given
#: the action on the line (``D`` for those a viewer or the IOD needs present: Type 1 Segment
#: Label, Content Label, Tracking ID, Track Set Label; ``Z`` for Type 2 Document Title and
#: Content Description; ``X`` for the Type 3 ones). Each can hold a name typed by a user
#: (a segment labelled after the patient, a PDF titled "Report for ...").
UNLISTED_DESCRIPTORS = """
0062,0005 SegmentLabel D
0062,0006 SegmentDescription X
0062,0020 TrackingID D
0042,0010 DocumentTitle Z
0070,0080 ContentLabel D
0070,0081 ContentDescription Z
0066,0106 TrackSetLabel D
0066,0107 TrackSetDescription X
300A,00C2 BeamName X
300A,0236 ApplicationSetupName X
0018,9423 AcquisitionProtocolName X
"""

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
_STRICTER = _parse(STRICTER)
if set(_RULES) & set(_STRICTER):  # pragma: no cover - checked at import
    raise ValueError("a STRICTER row repeats a row of TABLE")
#: The cleaned action of each unlisted descriptor (what ``C`` falls back to when not named).
_DESCRIPTOR_ACTION = {t: r.basic for t, r in _parse(UNLISTED_DESCRIPTORS).items()}
_DESCRIPTORS = {
    t: Rule(r.tag, r.keyword, "K", ((Option.CLEAN_DESCRIPTORS, "C"),))
    for t, r in _parse(UNLISTED_DESCRIPTORS).items()
}
if set(_DESCRIPTORS) & (set(_RULES) | set(_STRICTER)):  # pragma: no cover - checked at import
    raise ValueError("an UNLISTED_DESCRIPTORS row repeats a row of TABLE or STRICTER")


def rules() -> dict[int, Rule]:
    """Every rule of :data:`TABLE`, by tag (``0x00100010`` -> PatientName's rule)."""
    return dict(_RULES)


def rule_for(tag: int) -> Rule | None:
    """The rule for ``tag`` in :data:`TABLE`, :data:`STRICTER` or :data:`UNLISTED_DESCRIPTORS`
    (``K``, ``C`` with the Clean Descriptors Option), or None when none lists it."""
    return _RULES.get(tag) or _STRICTER.get(tag) or _DESCRIPTORS.get(tag)


def cleaned_action(rule: Rule) -> str:
    """What a ``C`` descriptor becomes when the user has not named it as clean: the Basic
    Profile action of a row of the table, the action listed in :data:`UNLISTED_DESCRIPTORS`
    for a descriptor the table does not list."""
    return _DESCRIPTOR_ACTION.get(rule.tag, rule.basic)


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
