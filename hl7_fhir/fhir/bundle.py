"""The transaction Bundle that carries one report to an EHR (FHIR R4 2.36, 3.1.0.11).

Update strategy (why conditional URLs, not client-chosen ids): many EHR FHIR servers refuse
client-assigned resource ids, but every R4 server that supports transactions supports
conditional update. So each resource the node authors (DiagnosticReport, Observation,
ImagingStudy, Device) is sent as ``PUT Type?identifier=system|value`` with a stable identifier
of the node's own, derived from the job key (see `ids`): the first run creates, a re-run
matches and updates. The ImagingStudy is matched on the node's own identifier, never on the
Study UID, so an ImagingStudy the PACS or EHR keeps for the study is never overwritten.

Patient (the EHR owns it, STANDARDS.md "Identity and time"): it is never created blind. With
`include_patient` and a known identifier system (`identity.patient_system`), a conditional
create (``POST`` with ``ifNoneExist=identifier=system|value``) makes `subject` resolve in the
Bundle without ever overwriting the EHR's Patient. Otherwise the subject is a logical reference
(R4 2.3.0.1, ``Reference.identifier``) with type MR: with the system when one is known; with
only the value (and the DICOM issuer as assigner display) when none is, for the EHR to match
or refuse; no Patient is then sent at all.

fullUrls are deterministic urn:uuid values, so the whole Bundle is reproducible and the node's
own facade uses the same UUIDs as resource ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.resource import Resource
from pydantic import ValidationError

from hl7_fhir import codes
from hl7_fhir.fhir import ids
from hl7_fhir.fhir.resources import (
    build_device,
    build_diagnostic_report,
    build_imaging_study,
    build_observation,
    build_patient,
    coding,
    fhir_time,
    placer_order_reference,
)
from hl7_fhir.identity import patient_system
from hl7_fhir.text import shape
from hl7_fhir.types import (
    Clock,
    Conclusion,
    DeviceInfo,
    EncodeOptions,
    Finding,
    Preview,
    StudyFacts,
    now,
    study_datetime,
)


def _put(resource: Resource, ident: ids.Identity) -> dict[str, Any]:
    return {
        "fullUrl": ident.full_url,
        "resource": resource,
        "request": {"method": "PUT", "url": ident.conditional_url},
    }


def _patient_identifier(study: StudyFacts, ident: ids.Identity) -> dict[str, Any]:
    """The Patient ID as a typed identifier (MR, v2 table 0203); without a system the DICOM
    issuer, when there is one, names the assigner."""
    identifier: dict[str, Any] = {
        "type": {"coding": [coding(codes.V2_0203, codes.MEDICAL_RECORD_TYPE)]},
        **ident.identifier(),
    }
    if ident.system is None and study.patient_id_issuer:
        identifier["assigner"] = {"display": study.patient_id_issuer}
    return identifier


def _subject(
    study: StudyFacts, opts: EncodeOptions
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The DiagnosticReport's subject, and the Patient entry when one may be sent."""
    system = patient_system(study, opts)
    ident = ids.patient_identity(study, system)
    identifier = _patient_identifier(study, ident)
    if not (opts.include_patient and system):
        # A logical reference (R4 2.3.0.1 Reference.identifier): the EHR resolves it itself.
        return {"type": "Patient", "identifier": identifier}, None
    entry = {
        "fullUrl": ident.full_url,
        "resource": build_patient(study, ident, identifier),
        "request": {
            "method": "POST",
            "url": "Patient",
            "ifNoneExist": ident.conditional_url.split("?", 1)[1],
        },
    }
    return ident.reference(), entry


def build_report_bundle(
    study: StudyFacts,
    findings: Sequence[Finding],
    device: DeviceInfo,
    conclusion: Conclusion | str,
    clock: Clock,
    *,
    preview: Preview | None = None,
    options: EncodeOptions | None = None,
) -> Bundle:
    """Build the transaction Bundle for one report: DiagnosticReport + one Observation per
    finding + ImagingStudy + Device (+ Patient as conditional create when allowed, see the
    module docstring). The conclusion is shaped by `hl7_fhir.text.shape` (no UIDs, none of
    the study's identifying values, at most `MAX_TEXT_CHARS`).

    Pure: the only input from outside is `clock()`, read once for `issued` and the Bundle
    timestamp. Raises `ValueError` when the clock returns a naive datetime or a resource does
    not validate against R4; the message names the failing paths only, never values (PHI).
    """
    try:
        return _build(study, findings, device, conclusion, clock, preview, options)
    except ValidationError as exc:
        paths = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})
        raise ValueError(
            f"{exc.title} is not valid FHIR R4 at {', '.join(paths)}"
        ) from None


def _build(
    study: StudyFacts,
    findings: Sequence[Finding],
    device: DeviceInfo,
    conclusion: Conclusion | str,
    clock: Clock,
    preview: Preview | None,
    options: EncodeOptions | None,
) -> Bundle:
    opts = options or EncodeOptions()
    issued = now(clock)
    if isinstance(conclusion, str):
        conclusion = Conclusion(text=shape(conclusion, study))
    else:
        conclusion = conclusion.model_copy(update={"text": shape(conclusion.text, study)})
    found = tuple(findings)
    started = study_datetime(study, opts.timezone)
    # The report is about the imaging; only when the study has no date does "now" stand in.
    effective = started or issued

    study_id = ids.imaging_study_identity(study)
    device_id = ids.device_identity(device)
    report_id = ids.report_identity(study, device)
    obs_ids = ids.observation_identities(study, device, found)

    entries: list[dict[str, Any]] = []
    subject, patient_entry = _subject(study, opts)
    if patient_entry is not None:
        entries.append(patient_entry)

    refs: dict[str, Any] = {
        "subject": subject,
        "imaging_study": study_id.reference(),
        "device": device_id.reference(),
        "based_on": placer_order_reference(study, opts.placer_order_system),
    }
    imaging = build_imaging_study(study, study_id, subject, started, opts.accession_system)
    entries.append(_put(imaging, study_id))
    entries.append(_put(build_device(device, device_id), device_id))
    for finding, ident in zip(found, obs_ids, strict=True):
        obs = build_observation(finding, ident, refs, effective, issued, device)
        entries.append(_put(obs, ident))
    refs["results"] = [i.reference() for i in obs_ids]
    report = build_diagnostic_report(
        study, report_id, refs, effective, issued, conclusion, preview, opts.accession_system
    )
    entries.append(_put(report, report_id))

    return Bundle.model_validate(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "identifier": {
                "system": report_id.system,
                "value": f"urn:uuid:{ids.stable_uuid('bundle', report_id.value)}",
            },
            "timestamp": fhir_time(issued),
            "entry": entries,
        }
    )
