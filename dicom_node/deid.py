"""De-identification for destinations that must not receive PHI (a research archive): the
Basic Application Level Confidentiality Profile of PS3.15 Annex E (Table E.1-1), applied to
the attributes the node's outputs (SEG, SR, KOS, overlays, GSPS) carry and the common ones.

Actions, as the profile names them: X remove, Z replace with a zero-length value (Type 2
attributes), D replace with a dummy value (Type 1 attributes), U replace a UID with another one
consistently. Private attributes are removed. UIDs are mapped deterministically with a per-site
secret (HMAC-SHA-256, as a `2.25.` UUID-derived UID), so the sources de-identified elsewhere with
the same secret and the node's outputs still reference each other, or retained with the Retain
UIDs Option (PS3.15 E.3.9). UIDs of the standard itself (`1.2.840.10008.`: SOP classes, transfer
syntaxes, coding schemes) are never mapped.

The node's SR content is its own wording, codes and measurements plus references: it is kept and
cleaned (UIDs mapped, names and dates replaced), which is the Clean Structured Content Option
(E.3.3), declared in De-identification Method Code Sequence (0012,0064) with 113100.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass

from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import UID

STANDARD_UID_ROOT = "1.2.840.10008."

#: Type 2 attributes of the outputs' IODs: kept present, emptied (Z).
ZERO = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
    "StudyDate", "StudyTime", "ReferringPhysicianName", "ContentCreatorName",
    "ReferencedPerformedProcedureStepSequence",
)
#: Type 1 attributes (in some IOD or content item): replaced by a dummy value (D).
DUMMY = (
    "ContentDate", "ContentTime", "ObservationDateTime", "VerifyingObserverName",
    "VerifyingOrganization", "VerificationDateTime", "PersonName", "Date", "Time", "DateTime",
    "DeviceSerialNumber",  # Type 1 in the Enhanced General Equipment module (SEG)
)
#: Removed (X): patient, visit, request, staff, institution, device identity and descriptions.
REMOVE = (
    "PatientAge", "PatientSize", "PatientWeight", "PatientAddress", "PatientTelephoneNumbers",
    "PatientBirthTime", "PatientBirthName", "PatientMotherBirthName", "OtherPatientIDs",
    "OtherPatientIDsSequence", "OtherPatientNames", "IssuerOfPatientID",
    "IssuerOfPatientIDQualifiersSequence", "EthnicGroup", "Occupation",
    "AdditionalPatientHistory", "PatientComments", "MedicalRecordLocator", "MilitaryRank",
    "BranchOfService", "CountryOfResidence", "RegionOfResidence", "PatientReligiousPreference",
    "ResponsiblePerson", "ResponsibleOrganization", "PatientInsurancePlanCodeSequence",
    "PatientState", "PregnancyStatus", "SmokingStatus", "AllergyContents",
    "MedicalAlerts", "SpecialNeeds", "LastMenstrualDate", "ReferencedPatientSequence",
    "ReferencedPatientPhotoSequence", "AdmissionID", "AdmittingDiagnosesDescription",
    "AdmittingDiagnosesCodeSequence", "CurrentPatientLocation", "PatientInstitutionResidence",
    "VisitComments", "ServiceEpisodeID", "ServiceEpisodeDescription",
    "IssuerOfAccessionNumberSequence", "StudyDescription", "SeriesDescription",
    "StudyComments", "ImageComments", "FrameComments", "DerivationDescription",
    "RequestAttributesSequence", "RequestedProcedureDescription", "RequestedProcedureID",
    "ReasonForTheRequestedProcedure", "ScheduledProcedureStepDescription",
    "ScheduledProcedureStepID", "PerformedProcedureStepDescription",
    "PerformedProcedureStepID", "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime", "PerformedProcedureStepEndDate",
    "PerformedProcedureStepEndTime", "ReferencedStudySequence", "ProtocolName",
    "InstitutionName", "InstitutionAddress",
    "InstitutionalDepartmentName", "InstitutionCodeSequence", "StationName", "OperatorsName",
    "OperatorIdentificationSequence", "PerformingPhysicianName",
    "PerformingPhysicianIdentificationSequence", "NameOfPhysiciansReadingStudy",
    "PhysiciansReadingStudyIdentificationSequence", "PhysiciansOfRecord",
    "PhysiciansOfRecordIdentificationSequence", "RequestingPhysician", "RequestingService",
    "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers",
    "ReferringPhysicianIdentificationSequence", "ConsultingPhysicianName",
    "PersonAddress", "PersonTelephoneNumbers", "PersonIdentificationCodeSequence",
    "SeriesDate", "SeriesTime", "AcquisitionDate", "AcquisitionTime",
    "AcquisitionDateTime", "InstanceCreationDate", "InstanceCreationTime",
    "ContributionDateTime", "ContributionDescription", "TimezoneOffsetFromUTC",
    "CommentsOnThePerformedProcedureStep", "Trial", "ClinicalTrialSponsorName",
    "ClinicalTrialSubjectID", "ClinicalTrialSubjectReadingID", "ClinicalTrialSiteName",
    "ClinicalTrialProtocolName", "ClinicalTrialTimePointID", "DataSetTrailingPadding",
)
#: UI attributes that name a class or syntax, never an instance: not mapped.
KEEP_UID = (
    "SOPClassUID", "ReferencedSOPClassUID", "MediaStorageSOPClassUID", "TransferSyntaxUID",
    "ImplementationClassUID", "CodingSchemeUID", "ContextUID", "MappingResourceUID",
    "ContextGroupExtensionCreatorUID", "ReferencedTransferSyntaxUIDInFile",
    "PrivateInformationCreatorUID", "RelatedGeneralSOPClassUID",
    "OriginalSpecializedSOPClassUID", "ReferencedSOPClassUIDInFile",
)

_DUMMY_VALUES = {"DA": "19000101", "TM": "000000", "DT": "19000101000000",
                 "PN": "ANONYMOUS", "LO": "ANONYMOUS", "SH": "ANONYMOUS"}


def _tags(names: tuple[str, ...]) -> frozenset[int]:
    found = {tag_for_keyword(n) for n in names}
    return frozenset(t for t in found if t is not None)


_ZERO, _DUMMY, _REMOVE, _KEEP_UID = _tags(ZERO), _tags(DUMMY), _tags(REMOVE), _tags(KEEP_UID)
_PATIENT_IDENTITY_REMOVED = 0x00120062


@dataclass(frozen=True)
class DeidOptions:
    """How to de-identify: map UIDs with `uid_secret` (at least 16 bytes), or retain them."""

    retain_uids: bool = False
    uid_secret: bytes | None = None
    method: str = "InferNode: PS3.15 E.1 Basic Profile"

    def __post_init__(self) -> None:
        if not self.retain_uids and (self.uid_secret is None or len(self.uid_secret) < 16):
            raise ValueError("mapping UIDs needs a per-site secret of at least 16 bytes")


def uid_mapper(secret: bytes) -> Callable[[str], str]:
    """UID -> `2.25.<128-bit integer>` from HMAC-SHA-256(secret, UID) (PS3.5 B.2): the same
    UID maps to the same new UID wherever the secret is the same; standard UIDs stay."""

    def mapped(uid: str) -> str:
        if not uid or uid.startswith(STANDARD_UID_ROOT):
            return uid
        digest = hmac.new(secret, uid.encode("ascii", "replace"), hashlib.sha256).digest()
        return f"2.25.{int.from_bytes(digest[:16], 'big')}"

    return mapped


def deidentify(ds: Dataset, options: DeidOptions) -> Dataset:
    """A de-identified copy of `ds` (the original is untouched): private attributes removed,
    the profile's X/Z/D actions applied at every nesting level, UIDs mapped (or retained),
    Patient Identity Removed YES and the method recorded (PS3.15 E.1.1, PS3.3 C.7.1.1)."""
    out = copy.deepcopy(ds)
    out.remove_private_tags()
    mapper = None if options.retain_uids else uid_mapper(options.uid_secret or b"")
    _clean(out, mapper)
    meta = getattr(out, "file_meta", None)
    if isinstance(meta, FileMetaDataset) and mapper is not None \
            and "MediaStorageSOPInstanceUID" in meta:
        meta.MediaStorageSOPInstanceUID = UID(mapper(str(meta.MediaStorageSOPInstanceUID)))
    out.PatientIdentityRemoved = "YES"
    out.DeidentificationMethod = options.method
    codes = [("113100", "Basic Application Confidentiality Profile"),
             ("113104", "Clean Structured Content Option")]
    if options.retain_uids:
        codes.append(("113110", "Retain UIDs Option"))
    out.DeidentificationMethodCodeSequence = Sequence([_code(v, m) for v, m in codes])
    return out


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
    return item


def _clean(ds: Dataset, mapper: Callable[[str], str] | None) -> None:
    for elem in list(ds):
        tag = int(elem.tag)
        if tag in _REMOVE:
            del ds[elem.tag]
        elif elem.VR == "SQ" and tag in _ZERO:
            elem.value = Sequence()
        elif elem.VR == "SQ":
            for item in elem.value:
                _clean(item, mapper)
        elif tag in _ZERO:
            elem.value = None
        elif tag in _DUMMY:
            elem.value = _DUMMY_VALUES.get(elem.VR or "", "ANONYMOUS")
        elif elem.VR == "UI" and mapper is not None and tag not in _KEEP_UID:
            _map_uid(elem, mapper)
        elif elem.VR == "PN":
            elem.value = None  # any other person name: emptied, whatever its tag


def _map_uid(elem: DataElement, mapper: Callable[[str], str]) -> None:
    if elem.value is None or elem.value == "":
        return
    if isinstance(elem.value, MultiValue | list):
        elem.value = [mapper(str(v)) for v in elem.value]
    else:
        elem.value = mapper(str(elem.value))


def is_deidentified(ds: Dataset) -> bool:
    """True when `ds` says it was de-identified (Patient Identity Removed YES)."""
    element = ds.get(_PATIENT_IDENTITY_REMOVED)
    return element is not None and str(element.value).upper() == "YES"
