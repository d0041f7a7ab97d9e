"""One table of the codes used for findings, with where each code came from.

SNOMED CT codes use scheme designator ``SCT`` (PS3.16 Section 8). Public sources disagree on
the codes for subdural, epidural and intraventricular haemorrhage; the alternatives seen are kept
beside the chosen code so that a terminologist can correct one line. Verify against the SNOMED CT
release in use before clinical deployment.
"""

from __future__ import annotations

from dataclasses import dataclass

from .types import Code


@dataclass(frozen=True)
class CodeEntry:
    """A chosen code, its source, and alternatives seen elsewhere."""

    code: Code
    source: str
    alternatives: tuple[str, ...] = ()


CODE_TABLE: dict[str, CodeEntry] = {
    "intracranial_hemorrhage": CodeEntry(
        Code("1386000", "SCT", "Intracranial hemorrhage"), "project STANDARDS.md"
    ),
    "subarachnoid_hemorrhage": CodeEntry(
        Code("21454007", "SCT", "Subarachnoid hemorrhage"), "project STANDARDS.md"
    ),
    "intraparenchymal_hemorrhage": CodeEntry(
        Code("274100004", "SCT", "Cerebral hemorrhage"), "project STANDARDS.md"
    ),
    "subdural_hemorrhage": CodeEntry(
        Code("35486000", "SCT", "Subdural hemorrhage"),
        "public FHIR/SR code lists (conflicting)",
        ("95455008",),
    ),
    "epidural_hemorrhage": CodeEntry(
        Code("83329005", "SCT", "Epidural hemorrhage"),
        "public SR code lists (conflicting)",
        ("68752002",),
    ),
    "intraventricular_hemorrhage": CodeEntry(
        Code("274110009", "SCT", "Intraventricular hemorrhage"),
        "public FHIR code lists (conflicting)",
        ("230706003",),
    ),
    "extra_axial_hemorrhage": CodeEntry(
        Code("1386000", "SCT", "Intracranial hemorrhage"),
        "no single SNOMED CT concept for extra-axial (epidural + subdural); parent used",
    ),
    "cerebral_edema": CodeEntry(Code("2032001", "SCT", "Cerebral edema"), "SNOMED CT"),
    "hemorrhage_morphology": CodeEntry(
        Code("50960005", "SCT", "Hemorrhage"), "project STANDARDS.md (SEG property type)"
    ),
    "edema_morphology": CodeEntry(Code("79654002", "SCT", "Edema"), "SNOMED CT"),
    "cerebral_infarction": CodeEntry(
        Code("432504007", "SCT", "Cerebral infarction"),
        "SNOMED CT (disorder); issue 10 and the stroke model cards",
    ),
    "infarct_morphology": CodeEntry(
        Code("55641003", "SCT", "Infarct"),
        "SNOMED CT (morphologic abnormality); issue 10 (SEG property type of the infarct)",
    ),
    "morphologically_abnormal_structure": CodeEntry(
        Code("49755003", "SCT", "Morphologically Abnormal Structure"),
        "SNOMED CT; issue 10 (SEG property category of the infarct), as in DICOM CID 7150",
    ),
    "fracture": CodeEntry(
        Code("72704001", "SCT", "Fracture"),
        "SNOMED CT (morphologic abnormality); issue 11 and STANDARDS.md (fracture finding)",
    ),
}


def code_for(concept: str) -> Code:
    """The chosen code for ``concept`` (a key of :data:`CODE_TABLE`); KeyError when unknown."""
    return CODE_TABLE[concept].code
