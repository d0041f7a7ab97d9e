"""Stable identities for the resources of a report Bundle.

A report is keyed by (study, algorithm name, algorithm version), the job key of the node. Every
identifier and every Bundle fullUrl is derived from that key with UUIDv5 (RFC 9562 section 5.5),
so building the Bundle twice for the same job yields the same identifiers and the same urn:uuid
fullUrls: a re-run updates the resources instead of adding new ones.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from urllib.parse import quote

from hl7_fhir import codes
from hl7_fhir.types import DeviceInfo, Finding, StudyFacts

# Fixed namespace of this product's name-based UUIDs; changing it would break re-run updates.
_NAMESPACE = uuid.UUID("6f1d3c52-8a0e-5b7c-9d41-2e6a4b8f0c17")


def stable_uuid(*parts: str) -> uuid.UUID:
    """A name-based UUID of `parts` (joined with a unit separator, which no part contains)."""
    return uuid.uuid5(_NAMESPACE, "\x1f".join(parts))


@dataclass(frozen=True)
class Identity:
    """Identifier (system, value) of one resource plus its urn:uuid fullUrl in the Bundle."""

    resource_type: str
    system: str | None
    value: str
    full_url: str

    @property
    def conditional_url(self) -> str:
        """`Type?identifier=system|value`, escaped as FHIR search (R4 3.1.1.5.7) requires."""
        token = _escape(self.value) if self.system is None else (
            f"{_escape(self.system)}|{_escape(self.value)}"
        )
        return f"{self.resource_type}?identifier={quote(token, safe=':/|.-_')}"

    def identifier(self) -> dict[str, str]:
        out = {"value": self.value}
        if self.system is not None:
            out["system"] = self.system
        return out

    def reference(self) -> dict[str, str]:
        return {"reference": self.full_url}


def _escape(value: str) -> str:
    # FHIR search escapes "\", "|", "," and "$" with a backslash inside token values.
    for char in ("\\", "|", ",", "$"):
        value = value.replace(char, "\\" + char)
    return value


def _identity(resource_type: str, system: str | None, value: str) -> Identity:
    full_url = f"urn:uuid:{stable_uuid(resource_type, system or '', value)}"
    return Identity(resource_type, system, value, full_url)


def report_key(study: StudyFacts, device: DeviceInfo) -> str:
    """The job key a report belongs to: study, algorithm name and algorithm version."""
    return "\x1f".join((study.study_instance_uid, device.name, device.version))


def report_identity(study: StudyFacts, device: DeviceInfo) -> Identity:
    value = f"urn:uuid:{stable_uuid('report', report_key(study, device))}"
    return _identity("DiagnosticReport", codes.URI, value)


def observation_identities(
    study: StudyFacts, device: DeviceInfo, findings: tuple[Finding, ...]
) -> list[Identity]:
    """One identity per finding: from its Tracking UID when it has one, else from its code and
    site plus a counter among findings with the same code and site (two fractures, say)."""
    seen: dict[str, int] = {}
    out = []
    for finding in findings:
        if finding.tracking_uid is not None:
            local = finding.tracking_uid
        else:
            site = finding.body_site.code if finding.body_site else ""
            base = f"{finding.code.system}|{finding.code.code}|{site}"
            seen[base] = seen.get(base, 0) + 1
            local = f"{base}#{seen[base]}"
        value = f"urn:uuid:{stable_uuid('observation', report_key(study, device), local)}"
        out.append(_identity("Observation", codes.URI, value))
    return out


def imaging_study_identity(study: StudyFacts) -> Identity:
    """The node's own identifier of its ImagingStudy for the study (one per study, whatever
    the pipeline). Not the Study UID: a conditional update on ``urn:dicom:uid`` would match,
    and overwrite, the ImagingStudy a PACS or EHR keeps for the same study."""
    value = f"urn:uuid:{stable_uuid('imaging-study', study.study_instance_uid)}"
    return _identity("ImagingStudy", codes.URI, value)


def device_identity(device: DeviceInfo) -> Identity:
    return _identity("Device", codes.DICOM_UID, f"urn:oid:{device.device_uid}")


def patient_identity(study: StudyFacts, system: str | None) -> Identity:
    return _identity("Patient", system, study.patient_id)
