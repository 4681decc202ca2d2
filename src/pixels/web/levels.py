"""Which attributes belong to the study and series levels of a QIDO-RS answer.

``includefield=all`` asks for "all available attributes" of the query's level
(PS3.18 10.6.1.2.3): a study answer holds the attributes of the Patient and
Study information entities, a series answer adds the Series and Equipment ones,
an instance answer the rest of the instance's header. The sets below are the
modules of PS3.3 that hold those attributes (Patient C.7.1.1, Clinical Trial
Subject C.7.1.3, General Study C.7.2.1, Patient Study C.7.2.2, Clinical Trial
Study C.7.2.3; General Series C.7.3.1, Clinical Trial Series C.7.3.2, Frame of
Reference C.7.4.1, General Equipment C.7.5.1, and the modality series modules'
common attributes), plus the QIDO-RS attributes of each level (PS3.18 Table
10.6.3-3 to -5).
"""

from __future__ import annotations

from pydicom.datadict import tag_for_keyword

__all__ = ["SERIES_TAGS", "STUDY_TAGS", "is_instance_level"]


def _tags(*keywords: str) -> frozenset[str]:
    out = set()
    for kw in keywords:
        tag = tag_for_keyword(kw)
        if tag is None:  # pragma: no cover - the lists below are checked by the tests
            raise ValueError(f"unknown keyword {kw!r}")
        out.add(f"{tag:08X}")
    return frozenset(out)


#: Patient and study level attributes (a study answer).
STUDY_TAGS = _tags(
    # QIDO-RS study attributes
    "SpecificCharacterSet", "TimezoneOffsetFromUTC", "ModalitiesInStudy", "SOPClassesInStudy",
    "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances", "RetrieveURL",
    "RetrieveAETitle", "InstanceAvailability", "OtherStudyNumbers",
    # Patient
    "PatientName", "PatientID", "IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence",
    "TypeOfPatientID", "PatientBirthDate", "PatientBirthTime", "PatientSex",
    "PatientBirthDateInAlternativeCalendar", "PatientDeathDateInAlternativeCalendar",
    "PatientAlternativeCalendar", "ReferencedPatientPhotoSequence", "QualityControlSubject",
    "ReferencedPatientSequence", "OtherPatientIDs", "OtherPatientIDsSequence",
    "OtherPatientNames", "EthnicGroup", "PatientComments", "PatientSpeciesDescription",
    "PatientSpeciesCodeSequence", "PatientBreedDescription", "PatientBreedCodeSequence",
    "BreedRegistrationSequence", "StrainDescription", "StrainNomenclature",
    "StrainCodeSequence", "StrainAdditionalInformation", "StrainStockSequence",
    "GeneticModificationsSequence", "ResponsiblePerson", "ResponsiblePersonRole",
    "ResponsibleOrganization", "PatientIdentityRemoved", "DeidentificationMethod",
    "DeidentificationMethodCodeSequence",
    # Clinical Trial Subject
    "ClinicalTrialSponsorName", "ClinicalTrialProtocolID", "ClinicalTrialProtocolName",
    "ClinicalTrialSiteID", "ClinicalTrialSiteName", "ClinicalTrialSubjectID",
    "ClinicalTrialSubjectReadingID",
    # General Study
    "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName",
    "ReferringPhysicianIdentificationSequence", "ConsultingPhysicianName",
    "ConsultingPhysicianIdentificationSequence", "StudyID", "AccessionNumber",
    "IssuerOfAccessionNumberSequence", "StudyDescription", "PhysiciansOfRecord",
    "PhysiciansOfRecordIdentificationSequence", "NameOfPhysiciansReadingStudy",
    "PhysiciansReadingStudyIdentificationSequence", "RequestingServiceCodeSequence",
    "ReferencedStudySequence", "ProcedureCodeSequence",
    "ReasonForPerformedProcedureCodeSequence",
    # Patient Study
    "AdmittingDiagnosesDescription", "AdmittingDiagnosesCodeSequence", "PatientAge",
    "PatientSize", "PatientWeight", "PatientBodyMassIndex", "MeasuredAPDimension",
    "MeasuredLateralDimension", "PatientSizeCodeSequence", "MedicalAlerts", "Allergies",
    "SmokingStatus", "PregnancyStatus", "LastMenstrualDate", "PatientState", "Occupation",
    "AdditionalPatientHistory", "AdmissionID", "IssuerOfAdmissionIDSequence",
    "ServiceEpisodeID", "ServiceEpisodeDescription", "IssuerOfServiceEpisodeIDSequence",
    "PatientSexNeutered",
    # Clinical Trial Study
    "ClinicalTrialTimePointID", "ClinicalTrialTimePointDescription",
    "ConsentForClinicalTrialUseSequence",
)  # fmt: skip

#: Series level attributes (with the equipment and frame of reference).
SERIES_TAGS = _tags(
    # QIDO-RS series attributes
    "NumberOfSeriesRelatedInstances", "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime", "RequestAttributesSequence",
    # General Series
    "Modality", "SeriesInstanceUID", "SeriesNumber", "Laterality", "SeriesDate",
    "SeriesTime", "PerformingPhysicianName", "PerformingPhysicianIdentificationSequence",
    "ProtocolName", "SeriesDescription", "SeriesDescriptionCodeSequence", "OperatorsName",
    "OperatorIdentificationSequence", "ReferencedPerformedProcedureStepSequence",
    "RelatedSeriesSequence", "BodyPartExamined", "PatientPosition",
    "SmallestPixelValueInSeries", "LargestPixelValueInSeries", "PerformedProcedureStepID",
    "PerformedProcedureStepEndDate", "PerformedProcedureStepEndTime",
    "PerformedProcedureStepDescription", "PerformedProtocolCodeSequence",
    "CommentsOnThePerformedProcedureStep", "AnatomicalOrientationType",
    # Clinical Trial Series
    "ClinicalTrialCoordinatingCenterName", "ClinicalTrialSeriesID",
    "ClinicalTrialSeriesDescription",
    # Frame of Reference
    "FrameOfReferenceUID", "PositionReferenceIndicator",
    # General Equipment
    "Manufacturer", "InstitutionName", "InstitutionAddress", "StationName",
    "InstitutionalDepartmentName", "InstitutionalDepartmentTypeCodeSequence",
    "ManufacturerModelName", "ManufacturerDeviceClassUID", "DeviceSerialNumber",
    "DeviceUID", "GantryID", "UDISequence", "SoftwareVersions", "SpatialResolution",
    "DateOfLastCalibration", "TimeOfLastCalibration", "PixelPaddingValue",
)  # fmt: skip


def is_instance_level(tag: str) -> bool:
    """True for a public, non group-length attribute of neither the study nor the series level."""
    return (
        not tag.endswith("0000")
        and int(tag[3], 16) % 2 == 0
        and tag not in STUDY_TAGS
        and tag not in SERIES_TAGS
    )
