"""Human texts the node writes (conclusions, not-analysed reasons), shaped before any encoder
places them: control characters removed, DICOM UIDs and the study's own identifiers taken
out, and the length capped with an ellipsis.

Why: a reason comes from anywhere in the pipeline (an exception text, a header value) and
may quote a UID, a Patient ID or a name; the report must not (STANDARDS.md "Texts are shaped
to each format's limits and carry no UIDs or PHI"). Format limits per field are applied by
each encoder after this (HL7 v2 splits into segments of at most 199 characters).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from hl7_fhir.identity import name_groups
from hl7_fhir.types import StudyFacts

#: Longest human text any output carries; longer ones end with an ellipsis.
MAX_TEXT_CHARS = 4000
ELLIPSIS = "\u2026"
UID_PLACEHOLDER = "[UID]"
REDACTED = "[redacted]"

# A DICOM UID (PS3.5 9.1) or OID: a root 0, 1 or 2, at least two more numeric components
# (2.25.<UUID> has only two) and ten characters or more; version numbers such as 1.0.0 or
# 2.5.1 stay.
_UID = re.compile(r"(?<![\w.])[0-2](?:\.\d+){2,}(?!\.?\w)")
_MIN_UID_CHARS = 10
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def identifying_terms(study: StudyFacts) -> tuple[str, ...]:
    """The values of `study` that identify the patient or the order, longest first: Patient
    ID, accession, placer order number and every name component of two or more characters."""
    terms = {study.patient_id, study.accession_number or "", study.placer_order_number or ""}
    for group in name_groups(study.patient_name):
        terms.update((group.family, group.given, group.middle))
    return tuple(sorted((t for t in terms if len(t.strip()) >= 2), key=len, reverse=True))


def strip_uids(text: str) -> str:
    """Replace everything that looks like a DICOM UID with a placeholder."""
    return _UID.sub(
        lambda m: UID_PLACEHOLDER if len(m.group()) >= _MIN_UID_CHARS else m.group(), text
    )


def redact(text: str, terms: Iterable[str]) -> str:
    """Replace each whole-word occurrence of `terms` (case-insensitive) with a placeholder."""
    for term in terms:
        pattern = re.compile(rf"(?<!\w){re.escape(term.strip())}(?!\w)", re.IGNORECASE)
        text = pattern.sub(REDACTED, text)
    return text


def truncate(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, ending with an ellipsis when cut; the cut
    falls on a space when one lies in the last tenth."""
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    space = head.rfind(" ")
    if space >= limit - 1 - limit // 10 and space > 0:
        head = head[:space]
    return head.rstrip() + ELLIPSIS


def shape(text: str, study: StudyFacts | None = None, *, limit: int = MAX_TEXT_CHARS) -> str:
    """`text` ready for a report: line ends normalised to LF, tabs as spaces, other control
    characters dropped, UIDs and (with `study`) its identifying values replaced, surrounding
    blanks trimmed and the length capped at `limit`. Never empty: a blank text becomes "-"."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    text = _CONTROL.sub("", text)
    text = strip_uids(text)
    if study is not None:
        text = redact(text, identifying_terms(study))
    text = "\n".join(line.rstrip() for line in text.strip().split("\n"))
    return truncate(text, limit) or "-"
