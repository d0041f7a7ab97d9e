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


def _standard(scheme: str, keyword: str, value: str, meaning: str) -> Coded:
    """A structural concept of DICOM PS3.16 under its keyword in pydicom's SR code dictionary
    (generated from PS3.16): the one source of the DCM / SCT / UCUM concepts the encoders use
    by name. The values are written out so that importing this table (the pipelines' definitions
    do, in every acceptor process too) does not load that dictionary, about 15 MB; a unit test
    (tests/unit/dicom_node/encode/test_codes_dictionary.py) checks each against it."""
    return Coded(value, scheme, meaning, f"PS3.16 via pydicom.sr.codedict ({scheme}.{keyword})")


def _from_dictionary(scheme: str, keyword: str) -> Coded:
    """A concept read from pydicom's SR code dictionary when it is asked for (the anatomic
    sites of `body_part_site`; only encoders ask)."""
    from pydicom.sr.codedict import codes

    code = getattr(getattr(codes, scheme), keyword)
    return _standard(scheme, keyword, str(code.value), str(code.meaning))


# --- Document structure (DCM) ---------------------------------------------------------------
IMAGING_MEASUREMENT_REPORT = _standard(
    "DCM", "ImagingMeasurementReport", "126000", "Imaging Measurement Report")
FINDING = _standard("DCM", "Finding", "121071", "Finding")
TRACKING_IDENTIFIER = _standard("DCM", "TrackingIdentifier", "112039", "Tracking Identifier")
TRACKING_UID = _standard("DCM", "TrackingUniqueIdentifier", "112040", "Tracking Unique Identifier")
ALGORITHM_NAME = _standard("DCM", "AlgorithmName", "111001", "Algorithm Name")
ALGORITHM_VERSION = _standard("DCM", "AlgorithmVersion", "111003", "Algorithm Version")
PROCEDURE_REPORTED = _standard("DCM", "ProcedureReported", "121058", "Procedure reported")
REFERENCED_SEGMENT = _standard("DCM", "ReferencedSegment", "121191", "Referenced Segment")
ARTIFICIAL_INTELLIGENCE = _standard(
    "DCM", "ArtificialIntelligence", "123110", "Artificial Intelligence")
PROBABILITY = _standard("DCM", "Probability", "122157", "Probability")
KEY_OBJECT_OF_INTEREST = _standard("DCM", "OfInterest", "113000", "Of Interest")
QUALITATIVE_EVALUATIONS = Coded(
    "C0034375", "UMLS", "Qualitative Evaluations", "PS3.16 TID 1501 (qualitative evaluation row)"
)
PROCESSING_ALGORITHM = Coded("Newcode1", IHE, "Processing Algorithm", "IHE AIR, Rad TF-3 6.5.3")

# --- Units (UCUM) ----------------------------------------------------------------------------
UNIT_ML = Coded("ml", UCUM, "milliliter", "UCUM; STANDARDS.md requires ml")
UNIT_NONE = _standard("UCUM", "NoUnits", "1", "no units")

# --- Measurements and qualifiers (SNOMED CT) -----------------------------------------------
VOLUME = _standard("SCT", "Volume", "118565006", "Volume")
PRESENT = _standard("SCT", "Present", "52101004", "Present")
# PS3.16 CID 240 lists 272519000 ("Absence findings"); some models use 2667000 "Absent".
ABSENT = _standard("SCT", "AbsenceFindings", "272519000", "Absence findings (qualifier value)")
INDETERMINATE = _standard("SCT", "Indeterminate", "82334004", "Indeterminate")

# --- Lesion counts and laterality (SNOMED CT; pydicom's SR concept dictionary names each) ----
NUMBER_OF_LESIONS = _standard(
    "SCT", "NumberOfLesions", "246206008", "Number of lesions (observable entity)")
MAXIMUM = _standard("SCT", "Maximal", "56851009", "Maximal (qualifier value)")
UNIT_LESIONS = Coded("{lesions}", UCUM, "lesions", "UCUM annotation; unit of a lesion count")
LEFT = _standard("SCT", "Left", "7771000", "Left")
RIGHT = _standard("SCT", "Right", "24028007", "Right")
BILATERAL = _standard("SCT", "Bilateral", "51440002", "Bilateral")
LATERALITY = {"left": LEFT, "right": RIGHT, "bilateral": BILATERAL}
"""Laterality words (as the model reports them) -> their codes."""

# --- Segmentation property categories and types (SNOMED CT) ---------------------------------
MORPHOLOGICALLY_ABNORMAL_STRUCTURE = _standard(
    "SCT", "MorphologicallyAbnormalStructure", "49755003", "Morphologically Abnormal Structure")
HEMORRHAGE_MORPHOLOGY = Coded("50960005", SCT, "Hemorrhage", "STANDARDS.md; PS3.16 CID 7151")
INFARCT_MORPHOLOGY = Coded("55641003", SCT, "Infarct", "STANDARDS.md")
FRACTURE_MORPHOLOGY = Coded("72704001", SCT, "Fracture", "STANDARDS.md")

# --- What each pipeline screens for: the subject of its study-level statements --------------
# Finding codes of a result come from the model card (vetted table: inference/codes.py), never
# from here; these three name the target of "no acute finding" / "not analysed" statements.
INTRACRANIAL_HEMORRHAGE = Coded("1386000", SCT, "Intracranial hemorrhage",
                                "model card (inference/codes.py)")
CEREBRAL_INFARCTION = Coded("432504007", SCT, "Cerebral infarction", "STANDARDS.md")
FRACTURE = Coded("72704001", SCT, "Fracture", "STANDARDS.md (morphologic abnormality)")

# --- Anatomy (SNOMED CT) ----------------------------------------------------------------------
BRAIN = _standard("SCT", "Brain", "12738006", "Brain")
HEAD = _standard("SCT", "Head", "69536005", "Head")
SKULL = _standard(
    "SCT", "BoneStructureOfCranium", "89546000", "Bone structure of cranium (body structure)")
BONE = _standard("SCT", "Bone", "272673000", "Bone")

_BODY_PART_KEYWORDS = {
    # Body Part Examined defined terms (PS3.16 Annex L) -> pydicom's SCT keyword; joints as
    # the Annex names them (WRIST: wrist joint)
    "HAND": "Hand", "FINGER": "Finger", "WRIST": "WristJoint", "FOREARM": "Forearm",
    "RADIUS": "Radius", "ULNA": "Ulna", "ELBOW": "ElbowJoint", "HUMERUS": "Humerus",
    "ARM": "UpperArm", "UPRARM": "UpperArm", "SHOULDER": "Shoulder", "CLAVICLE": "Clavicle",
    "FOOT": "Foot", "TOE": "Toe", "ANKLE": "AnkleJoint", "CALCANEUS": "Calcaneus",
    "LEG": "LowerLeg", "LOWER LEG": "LowerLeg", "LOWLEG": "LowerLeg", "TIBIA": "Tibia",
    "FIBULA": "Fibula", "KNEE": "Knee", "FEMUR": "Femur", "THIGH": "Thigh", "HIP": "Hip",
    "PELVIS": "Pelvis", "CHEST": "Chest", "SKULL": "Skull", "SPINE": "Spine",
    "CSPINE": "CervicalSpine", "TSPINE": "ThoracicSpine", "LSPINE": "LumbarSpine",
    "SCAPHOID": "Scaphoid",
}


def body_part_site(term: str | None) -> Coded | None:
    """The SNOMED CT anatomic site of a Body Part Examined term (None when it has none here):
    the finding site of a detection on a radiograph of that part."""
    keyword = _BODY_PART_KEYWORDS.get((term or "").strip().upper())
    return _from_dictionary("SCT", keyword) if keyword else None

# --- Procedures reported (LOINC) ---------------------------------------------------------------
CT_HEAD_WO_CONTRAST = Coded("30799-1", LN, "CT Head WO contrast", "STANDARDS.md")
MR_BRAIN_WO_CONTRAST = Coded("30657-1", LN, "MR Brain WO contrast", "STANDARDS.md")
XR_UNSPECIFIED_BODY_REGION = Coded(
    "43468-8", LN, "XR unspecified body region", "PS3.16 CID 100"
)
DIAGNOSTIC_IMAGING_STUDY = _standard(
    "LN", "DiagnosticImagingReport", "18748-4", "Diagnostic Imaging Report")

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
