"""Code systems and the fixed concepts the encoders emit, in one table so a wrong code is
corrected in one place.

Sources: FHIR R4 terminology (https://hl7.org/fhir/R4/terminologies-systems.html), HL7 v2.5.1
table 0396 (coding system designators), DICOM PS3.16 (DCM codes), SNOMED CT, LOINC.
"""

from __future__ import annotations

from typing import Final

# Code system URIs (FHIR R4 section 4.2, "Using Codes in Resources").
SNOMED: Final = "http://snomed.info/sct"
LOINC: Final = "http://loinc.org"
UCUM: Final = "http://unitsofmeasure.org"
DCM: Final = "http://dicom.nema.org/resources/ontology/DCM"
V2_0074: Final = "http://terminology.hl7.org/CodeSystem/v2-0074"
V2_0203: Final = "http://terminology.hl7.org/CodeSystem/v2-0203"
OBSERVATION_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERPRETATION: Final = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
# Identifier systems: DICOM UIDs as urn:oid (FHIR ImagingStudy.identifier guidance), and
# RFC 3986 URIs for identifiers that are themselves URIs (our urn:uuid report keys).
DICOM_UID: Final = "urn:dicom:uid"
URI: Final = "urn:ietf:rfc:3986"

# HL7 v2.5.1 table 0396: FHIR system URI -> v2 coding system designator.
V2_CODING_SYSTEM: Final[dict[str, str]] = {
    SNOMED: "SCT",
    LOINC: "LN",
    UCUM: "UCUM",
    DCM: "DCM",
}

# DiagnosticReport.category: LOINC part "Radiology" and the v2-0074 section code.
RADIOLOGY_LOINC: Final = ("LP29684-5", "Radiology")
RADIOLOGY_V2: Final = ("RAD", "Radiology")
IMAGING_CATEGORY: Final = ("imaging", "Imaging")
ACCESSION_TYPE: Final = ("ACSN", "Accession ID")
PLACER_TYPE: Final = ("PLAC", "Placer Identifier")
MEDICAL_RECORD_TYPE: Final = ("MR", "Medical record number")

# DCM "Study Instance UID" (PS3.16), the OBX that carries the study's UID in an ORU, as IHE
# Radiology does.
STUDY_INSTANCE_UID: Final = ("110180", "Study Instance UID")

# SNOMED CT qualifier values used as the value of a presence observation.
PRESENT: Final = ("52101004", "Present")
# The same concepts, with the same displays, as the DICOM SR (PS3.16 as pydicom's code
# dictionary holds it), so a report reads the same in the PACS and the EHR (tests/unit/
# test_terminology.py keeps them equal).
ABSENT: Final = ("272519000", "Absence findings (qualifier value)")
# SNOMED CT "Volume" (as in DICOM TID 1410/1411) and DCM "Probability" (PS3.16 Annex D), the
# measures that accompany a finding; the SR's measurement groups use the same two codes.
VOLUME: Final = ("118565006", "Volume")
PROBABILITY: Final = ("122157", "Probability")
FINDING_SITE: Final = ("363698007", "Finding site")
# SNOMED CT "Number of lesions" (observable) and "Laterality" (attribute), as in the DICOM SR's
# lesion count and finding-site modifier; UCUM's annotation unit for a count of lesions (HL7).
NUMBER_OF_LESIONS: Final = ("246206008", "Number of lesions (observable entity)")
LATERALITY: Final = ("272741003", "Laterality")
LESIONS: Final = ("{lesions}", "lesions")
# LOINC "Radiology Imaging study [Impression] (narrative)" for the v2 conclusion OBX.
IMPRESSION: Final = ("19005-8", "Radiology Imaging study [Impression] (narrative)")

# HL7 v3 ObservationInterpretation (FHIR) and v2 table 0078 share these codes.
CRITICAL: Final = ("AA", "Critical abnormal")
ABNORMAL: Final = ("A", "Abnormal")
NORMAL: Final = ("N", "Normal")

# UCUM units: millilitre and the dimensionless unit for probabilities in [0, 1].
ML: Final = ("mL", "mL")
UNITY: Final = ("1", "probability")
