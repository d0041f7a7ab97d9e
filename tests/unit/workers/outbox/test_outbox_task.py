"""The priority Task (FHIR R4 Task) built from a report Bundle, parsed back with fhir.resources
R4B and its codes and references asserted."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.task import Task

from hl7_fhir.encode import build_report_bundle
from hl7_fhir.samples import fixed_clock, sample_device, sample_findings, sample_study
from workers.outbox.task import build_priority_task, task_identifier

WHEN = datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC)


def _report() -> Bundle:
    return build_report_bundle(sample_study("ich"), sample_findings("ich"), sample_device(),
                               "ICH suspected", fixed_clock())


def test_the_task_is_stat_and_points_at_the_report_and_patient_by_identifier() -> None:
    report = _report()
    study_uid = sample_study("ich").study_instance_uid
    built = build_priority_task(report, study_uid, "critical: ICH suspected", WHEN)
    data = json.loads(built.model_dump_json(exclude_none=True))
    (entry,) = data["entry"]
    task = Task.model_validate(entry["resource"])
    assert (task.status, task.intent, task.priority) == ("requested", "order", "stat")
    report_json = json.loads(report.model_dump_json(exclude_none=True))
    resources = [e["resource"] for e in report_json["entry"]]
    dr = next(r for r in resources if r["resourceType"] == "DiagnosticReport")
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    assert entry["resource"]["focus"] == {"type": "DiagnosticReport",
                                          "identifier": dr["identifier"][0]}
    assert entry["resource"]["for"] == {"type": "Patient",
                                        "identifier": patient["identifier"][0]}
    assert entry["resource"]["authoredOn"].startswith("2026-02-03T04:05:06")
    ident = task_identifier(study_uid)
    assert entry["resource"]["identifier"] == [ident]
    assert entry["request"]["method"] == "POST" and entry["request"]["url"] == "Task"
    assert entry["request"]["ifNoneExist"] == f"identifier={ident['system']}|{ident['value']}"


def test_one_identifier_per_study() -> None:
    assert task_identifier("1.2.3") == task_identifier("1.2.3")
    assert task_identifier("1.2.3") != task_identifier("1.2.4")


def test_a_bundle_without_a_report_or_a_naive_time_is_refused() -> None:
    empty = Bundle.model_validate({"resourceType": "Bundle", "type": "transaction"})
    with pytest.raises(ValueError, match="DiagnosticReport"):
        build_priority_task(empty, "1.2.3", "critical", WHEN)
    with pytest.raises(ValueError, match="timezone"):
        build_priority_task(_report(), "1.2.3", "critical", WHEN.replace(tzinfo=None))
