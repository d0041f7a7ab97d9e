"""Every coded concept the encoders write, in one table, each with the source it was taken from.

Codes are plain values (:class:`Coded`), so the finding types and the workers that fill them do
not need pydicom. Where sources disagree (subdural, epidural and intraventricular haemorrhage)
the chosen code and the alternatives are named next to it, so a correction is a one-line change
here and nowhere else.

Sources named below:

- ``PS3.16 D``: DICOM PS3.16 Annex D, the DICOM Controlled Terminology (DCM).
- ``PS3.16 CID n``: the DICOM context group that lists the concept.
- ``IHE AIR``: IHE Radiology AI Results (AIR) profile, Contributing Equipment purpose code.
- ``STANDARDS.md``: the project's own checked list of codes (SNOMED CT unless noted).
- ``LOINC``: LOINC / RSNA RadLex Playbook procedure codes, as quoted in STANDARDS.md or
  PS3.16 CID 100 "Quantitative Diagnostic Imaging Procedures".
"""

from __future__ import annotations

from dataclasses import dataclass, field

SCT = "SCT"
DCM = "DCM"
LN = "LN"
UCUM = "UCUM"
IHE = "99IHE"


@dataclass(frozen=True)
class Coded:
    """A coded concept as plain values: (code value, coding scheme designator, code meaning).

    `source` names where the code was taken from; it is not part of the concept's identity.
    """

    value: str
    scheme: str
    meaning: str
    source: str = field(default="", compare=False)


# --- Document structure (DCM) ---------------------------------------------------------------
IMAGING_MEASUREMENT_REPORT = Coded("126000", DCM, "Imaging Measurement Report", "PS3.16 CID 7021")
FINDING = Coded("121071", DCM, "Finding", "PS3.16 D")
TRACKING_IDENTIFIER = Coded("112039", DCM, "Tracking Identifier", "PS3.16 D")
TRACKING_UID = Coded("112040", DCM, "Tracking Unique Identifier", "PS3.16 D")
ALGORITHM_NAME = Coded("111001", DCM, "Algorithm Name", "PS3.16 D")
ALGORITHM_VERSION = Coded("111003", DCM, "Algorithm Version", "PS3.16 D")
PROCEDURE_REPORTED = Coded("121058", DCM, "Procedure reported", "PS3.16 D")
REFERENCED_SEGMENT = Coded("121191", DCM, "Referenced Segment", "PS3.16 CID 7250")
ARTIFICIAL_INTELLIGENCE = Coded("123110", DCM, "Artificial Intelligence", "PS3.16 CID 7162")
PROBABILITY = Coded("122157", DCM, "Probability", "PS3.16 D")
KEY_OBJECT_OF_INTEREST = Coded("113000", DCM, "Of Interest", "PS3.16 CID 7010")
QUALITATIVE_EVALUATIONS = Coded(
    "C0034375", "UMLS", "Qualitative Evaluations", "PS3.16 TID 1501 (qualitative evaluation row)"
)
PROCESSING_ALGORITHM = Coded("Newcode1", IHE, "Processing Algorithm", "IHE AIR, Rad TF-3 6.5.3")

# --- Units (UCUM) ----------------------------------------------------------------------------
UNIT_ML = Coded("ml", UCUM, "milliliter", "UCUM; STANDARDS.md requires ml")
UNIT_NONE = Coded("1", UCUM, "no units", "UCUM; unit of a probability")

# --- Measurements and qualifiers (SNOMED CT) -----------------------------------------------
VOLUME = Coded("118565006", SCT, "Volume", "PS3.16 CID 7469")
PRESENT = Coded("52101004", SCT, "Present", "PS3.16 CID 240")
# PS3.16 CID 240 lists 272519000; other finding models use 2667000 "Absent (qualifier value)".
ABSENT = Coded("272519000", SCT, "Absent", "PS3.16 CID 240 (alt. 2667000)")
INDETERMINATE = Coded("82334004", SCT, "Indeterminate", "PS3.16 CID 4220")

# --- Lesion counts and laterality (SNOMED CT; pydicom's SR concept dictionary names each) ----
NUMBER_OF_LESIONS = Coded("246206008", SCT, "Number of lesions", "SNOMED CT observable entity")
MAXIMUM = Coded("56851009", SCT, "Maximum", "PS3.16 CID 3488 (measurement derivation)")
UNIT_LESIONS = Coded("{lesions}", UCUM, "lesions", "UCUM annotation; unit of a lesion count")
LEFT = Coded("7771000", SCT, "Left", "PS3.16 CID 244 (laterality)")
RIGHT = Coded("24028007", SCT, "Right", "PS3.16 CID 244 (laterality)")
BILATERAL = Coded("51440002", SCT, "Bilateral", "PS3.16 CID 244 (laterality)")
LATERALITY = {"left": LEFT, "right": RIGHT, "bilateral": BILATERAL}
"""Laterality words (as the model reports them) -> their codes."""

# --- Segmentation property categories and types (SNOMED CT) ---------------------------------
MORPHOLOGICALLY_ABNORMAL_STRUCTURE = Coded(
    "49755003", SCT, "Morphologically abnormal structure", "STANDARDS.md; PS3.16 CID 7150"
)
HEMORRHAGE_MORPHOLOGY = Coded("50960005", SCT, "Hemorrhage", "STANDARDS.md; PS3.16 CID 7151")
INFARCT_MORPHOLOGY = Coded("55641003", SCT, "Infarct", "STANDARDS.md")
FRACTURE_MORPHOLOGY = Coded("72704001", SCT, "Fracture", "STANDARDS.md")

# --- Findings (SNOMED CT disorders) ---------------------------------------------------------
INTRACRANIAL_HEMORRHAGE = Coded("1386000", SCT, "Intracranial hemorrhage", "STANDARDS.md")
SUBARACHNOID_HEMORRHAGE = Coded("21454007", SCT, "Subarachnoid hemorrhage", "STANDARDS.md")
INTRAPARENCHYMAL_HEMORRHAGE = Coded(
    "274100004", SCT, "Cerebral hemorrhage", "STANDARDS.md (intraparenchymal)"
)
# Sources conflict for the next three (STANDARDS.md). Finding codes come from the model card,
# whose source is inference/codes.py: the values here are the same, so SR, SEG, FHIR and HL7
# say one thing; the alternatives seen are named so a reviewer corrects both tables at once.
SUBDURAL_HEMORRHAGE = Coded(
    "35486000", SCT, "Subdural hemorrhage",
    "UNVERIFIED: model card (inference/codes.py); alt. 95453001, 95455008",
)
EPIDURAL_HEMORRHAGE = Coded(
    "83329005", SCT, "Epidural hemorrhage",
    "UNVERIFIED: model card (inference/codes.py); alt. 75063001, 68752002",
)
INTRAVENTRICULAR_HEMORRHAGE = Coded(
    "274110009", SCT, "Intraventricular hemorrhage",
    "UNVERIFIED: model card (inference/codes.py); alt. 230706003",
)
CEREBRAL_INFARCTION = Coded("432504007", SCT, "Cerebral infarction", "STANDARDS.md")
FRACTURE = Coded("72704001", SCT, "Fracture", "STANDARDS.md (morphologic abnormality)")
CEREBRAL_EDEMA = Coded("2032001", SCT, "Cerebral edema", "UNVERIFIED: BLAST-CT oedema class")

# --- Anatomy (SNOMED CT) ----------------------------------------------------------------------
BRAIN = Coded("12738006", SCT, "Brain", "STANDARDS.md; PS3.16 CID 4")
HEAD = Coded("69536005", SCT, "Head", "STANDARDS.md; PS3.16 CID 4")
SKULL = Coded("89546000", SCT, "Skull", "STANDARDS.md; PS3.16 CID 4")
BONE = Coded("272673000", SCT, "Bone", "STANDARDS.md")

# --- Procedures reported (LOINC) ---------------------------------------------------------------
CT_HEAD_WO_CONTRAST = Coded("30799-1", LN, "CT Head WO contrast", "STANDARDS.md")
MR_BRAIN_WO_CONTRAST = Coded("30657-1", LN, "MR Brain WO contrast", "STANDARDS.md")
XR_UNSPECIFIED_BODY_REGION = Coded(
    "43468-8", LN, "XR unspecified body region", "PS3.16 CID 100"
)
DIAGNOSTIC_IMAGING_STUDY = Coded("18748-4", LN, "Diagnostic imaging study", "STANDARDS.md")

_PROCEDURE_BY_MODALITY = {
    "CT": CT_HEAD_WO_CONTRAST,
    "MR": MR_BRAIN_WO_CONTRAST,
    "DX": XR_UNSPECIFIED_BODY_REGION,
    "CR": XR_UNSPECIFIED_BODY_REGION,
}


def procedure_for_modality(modality: str) -> Coded:
    """The LOINC procedure (TID 1500 "Procedure reported") for a source modality.

    CT and MR map to the head/brain procedures of the ICH and stroke pipelines; radiographs to
    the generic XR procedure of PS3.16 CID 100; anything else to "Diagnostic imaging study".
    """
    return _PROCEDURE_BY_MODALITY.get(modality.upper(), DIAGNOSTIC_IMAGING_STUDY)


_TARGETS = {
    # pipeline: (the finding the pipeline looks for, its site)
    "ich": (INTRACRANIAL_HEMORRHAGE, BRAIN),
    "stroke": (CEREBRAL_INFARCTION, BRAIN),
    "fracture": (FRACTURE, BONE),
}


def pipeline_target(pipeline: str) -> tuple[Coded, Coded]:
    """(finding, finding site) a pipeline screens for: the subject of the study-level
    "no acute finding" and "not analysed" statements.

    Raises:
        KeyError: unknown pipeline.
    """
    return _TARGETS[pipeline]
