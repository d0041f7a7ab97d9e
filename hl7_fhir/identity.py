"""Patient identity shared by the FHIR and HL7 encoders: the person name groups of a DICOM PN
value and the identifier system of the Patient ID.

Name groups: a DICOM PN has up to three component groups, alphabetic, ideographic and
phonetic (PS3.5 6.2.1.1), each ``family^given^middle^prefix^suffix``. HL7 v2 keeps them as
repeated XPN with the name representation code of table 4000 (A, I, P); FHIR R4 as one
HumanName each with the ISO 21090 EN representation extension (ABC, IDE, SYL).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hl7_fhir.types import EncodeOptions, StudyFacts

Representation = Literal["A", "I", "P"]
_REPRESENTATIONS: tuple[Representation, ...] = ("A", "I", "P")


@dataclass(frozen=True)
class NameGroup:
    """One component group of a PN value; `representation` is HL7 table 4000's code."""

    representation: Representation
    family: str
    given: str
    middle: str
    prefix: str
    suffix: str

    @property
    def text(self) -> str:
        """The name as one would write it: prefix given middle family suffix."""
        words = (self.prefix, self.given, self.middle, self.family, self.suffix)
        return " ".join(w for w in words if w)


def name_groups(pn: str | None) -> tuple[NameGroup, ...]:
    """The non-empty component groups of a DICOM PN value, in order A, I, P (PS3.5 6.2.1)."""
    if not pn:
        return ()
    out = []
    for representation, group in zip(_REPRESENTATIONS, pn.split("="), strict=False):
        parts = [p.strip() for p in (group.split("^") + [""] * 5)[:5]]
        if any(parts):
            out.append(NameGroup(representation, *parts))
    return tuple(out)


def issuer_system(study: StudyFacts) -> str | None:
    """The identifier system the DICOM issuer qualifiers give (PS3.3 C.7.1.1, table 10-17):
    an ISO OID as ``urn:oid:``, a URI or UUID as itself; None for other types."""
    uid = (study.patient_id_issuer_universal_id or "").strip()
    kind = (study.patient_id_issuer_universal_id_type or "").strip().upper()
    if not uid:
        return None
    if kind == "ISO":
        return f"urn:oid:{uid}"
    if kind == "UUID":
        return uid if uid.lower().startswith("urn:uuid:") else f"urn:uuid:{uid}"
    if kind == "URI" and ":" in uid:
        return uid
    return None


def patient_system(study: StudyFacts, options: EncodeOptions) -> str | None:
    """The FHIR identifier system of the study's Patient ID, or None when none is known.

    Order: the configured system for the study's IssuerOfPatientID, the system its issuer
    qualifiers name, then the site's own `patient_id_system` (for IDs whose issuer is absent
    or not mapped).
    """
    issuer = (study.patient_id_issuer or "").strip()
    if issuer and issuer in options.patient_id_systems:
        return options.patient_id_systems[issuer]
    return issuer_system(study) or options.patient_id_system
