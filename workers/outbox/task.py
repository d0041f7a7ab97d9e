"""The priority signal as a FHIR R4 Task (FHIR R4 12.1 Task; built with fhir.resources R4B).

The Task asks for the study's AI report to be reviewed with priority `stat` (R4 request-priority
value set). Its `focus` is the DiagnosticReport of the report Bundle, referenced by identifier
(a logical reference, R4 2.3.0.1 Reference.identifier) because the EHR assigned the resource id;
`for` is the patient, by identifier, for the same reason. The Task is sent in a transaction as
a conditional create (R4 3.1.0.8.1, `ifNoneExist`) on an identifier derived from the study UID,
so the EHR holds one Task per study however often the signal is retried.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any
from urllib.parse import quote

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.task import Task

from hl7_fhir import codes

# Fixed namespace of the Task identifiers; changing it would create a second Task per study.
_NAMESPACE = uuid.UUID("3c0b8f5e-7d2a-5e41-9b6c-1f0e2d4a8b37")
TASK_CODE_TEXT = "Review critical AI finding"


def task_identifier(study_instance_uid: str) -> dict[str, str]:
    """The identifier of the one priority Task of a study."""
    value = f"urn:uuid:{uuid.uuid5(_NAMESPACE, f'priority-task|{study_instance_uid}')}"
    return {"system": codes.URI, "value": value}


def _report(bundle: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The DiagnosticReport's identifier and a logical reference to its subject."""
    resources = {e.get("fullUrl"): e.get("resource") or {} for e in bundle.get("entry", [])}
    report = next((r for r in resources.values()
                   if r.get("resourceType") == "DiagnosticReport"), None)
    if report is None or not report.get("identifier"):
        raise ValueError("the report Bundle has no DiagnosticReport with an identifier")
    subject = report.get("subject") or {}
    patient: dict[str, Any] | None = None
    if subject.get("identifier"):
        patient = {"type": "Patient", "identifier": subject["identifier"]}
    elif subject.get("reference") in resources:
        identifiers = resources[subject["reference"]].get("identifier") or []
        if identifiers:
            patient = {"type": "Patient", "identifier": identifiers[0]}
    return report["identifier"][0], patient


def build_priority_task(report_bundle: Bundle, study_instance_uid: str, flag: str,
                        authored: datetime) -> Bundle:
    """A transaction Bundle that creates, unless it exists, the stat review Task of the study
    whose report is `report_bundle`. Raises ValueError when the Bundle holds no identified
    DiagnosticReport or `authored` is naive."""
    if authored.tzinfo is None:
        raise ValueError("authored must be timezone-aware")
    data = json.loads(report_bundle.model_dump_json(exclude_none=True))
    report_identifier, patient = _report(data)
    identifier = task_identifier(study_instance_uid)
    task: dict[str, Any] = {
        "resourceType": "Task",
        "identifier": [identifier],
        "status": "requested",
        "intent": "order",
        "priority": "stat",
        "code": {"text": TASK_CODE_TEXT},
        "description": flag,
        "focus": {"type": "DiagnosticReport", "identifier": report_identifier},
        "authoredOn": authored.isoformat(),
        "reasonCode": {"text": flag},
    }
    if patient is not None:
        task["for"] = patient
    resource = Task.model_validate(task)
    token = quote(f"{identifier['system']}|{identifier['value']}", safe=":/|.-_")
    return Bundle.model_validate({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{
            "fullUrl": identifier["value"],
            "resource": resource,
            "request": {"method": "POST", "url": "Task", "ifNoneExist": f"identifier={token}"},
        }],
    })
