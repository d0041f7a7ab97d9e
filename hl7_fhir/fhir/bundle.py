"""The transaction Bundle that carries one report to an EHR (FHIR R4 2.36, 3.1.0.11).

Update strategy (why conditional URLs, not client-chosen ids): many EHR FHIR servers refuse
client-assigned resource ids, but every R4 server that supports transactions supports
conditional update. So each resource the node authors (DiagnosticReport, Observation,
ImagingStudy, Device) is sent as ``PUT Type?identifier=system|value`` with a stable identifier
derived from the job key (see `ids`): the first run creates, a re-run matches and updates. The
Patient belongs to the EHR, so it is sent as a conditional create (``POST`` with
``ifNoneExist``): it is created only when the EHR does not know it and never overwritten.
fullUrls are deterministic urn:uuid values, so the whole Bundle is reproducible and the node's
own facade uses the same UUIDs as resource ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.resource import Resource

from hl7_fhir.fhir import ids
from hl7_fhir.fhir.resources import (
    build_device,
    build_diagnostic_report,
    build_imaging_study,
    build_observation,
    build_patient,
    fhir_time,
)
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
    finding + ImagingStudy + Device (+ Patient as conditional create).

    Pure: the only input from outside is `clock()`, read once for `issued` and the Bundle
    timestamp. Raises `ValueError` when the clock returns a naive datetime, and pydantic's
    `ValidationError` if a resource does not validate against R4.
    """
    opts = options or EncodeOptions()
    issued = now(clock)
    if isinstance(conclusion, str):
        conclusion = Conclusion(text=conclusion)
    found = tuple(findings)
    started = study_datetime(study, opts.timezone)
    # The report is about the imaging; only when the study has no date does "now" stand in.
    effective = started or issued

    patient_id = ids.patient_identity(study, opts.patient_id_system)
    study_id = ids.imaging_study_identity(study)
    device_id = ids.device_identity(device)
    report_id = ids.report_identity(study, device)
    obs_ids = ids.observation_identities(study, device, found)

    entries: list[dict[str, Any]] = []
    if opts.include_patient:
        subject: dict[str, Any] = patient_id.reference()
        entries.append(
            {
                "fullUrl": patient_id.full_url,
                "resource": build_patient(study, patient_id),
                "request": {
                    "method": "POST",
                    "url": "Patient",
                    "ifNoneExist": patient_id.conditional_url.split("?", 1)[1],
                },
            }
        )
    else:
        # A logical reference (R4 2.3.0.1 Reference.identifier): the EHR resolves it itself.
        subject = {"type": "Patient", "identifier": patient_id.identifier()}

    refs: dict[str, Any] = {
        "subject": subject,
        "imaging_study": study_id.reference(),
        "device": device_id.reference(),
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
