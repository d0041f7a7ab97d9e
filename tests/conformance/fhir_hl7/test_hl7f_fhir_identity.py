"""FHIR identity and time rules (STANDARDS.md "Identity and time"): the Patient is never created
blind, the node's ImagingStudy never overwrites one it does not own, names keep every group,
local times carry their offset and texts are shaped. Each Bundle is parsed by fhir.resources
R4B and validated against the official R4 JSON schema; codes and systems are asserted."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from fhir.resources.R4B.bundle import Bundle

from hl7_fhir import codes
from hl7_fhir.facade.store import get_resource, metadata, put_bundle
from hl7_fhir.fhir import build_report_bundle
from hl7_fhir.fhir.resources import EN_REPRESENTATION
from hl7_fhir.samples import (
    SAMPLE_ISSUER_OID,
    fixed_clock,
    sample_device,
    sample_findings,
    sample_study,
)
from hl7_fhir.text import ELLIPSIS, MAX_TEXT_CHARS
from hl7_fhir.types import Coded, EncodeOptions, Finding, StudyFacts
from tests.conformance.fhir_hl7.fhir_schema import assert_valid_r4

MRN = "http://hospital.example.org/mrn"
ORDERS = "http://ehr.example.org/orders"
# The sample's issuer without its qualifiers: nothing says which system the ID belongs to.
NO_SYSTEM = {"patient_id_issuer_universal_id": None, "patient_id_issuer_universal_id_type": None}


def _bundle(study: StudyFacts, options: EncodeOptions | None = None,
            conclusion: str = "No acute finding.") -> dict[str, Any]:
    built = build_report_bundle(study, sample_findings("ich"), sample_device(), conclusion,
                                fixed_clock(), options=options)
    text = built.model_dump_json(exclude_none=True)
    Bundle.model_validate_json(text)
    data: dict[str, Any] = json.loads(text)
    assert_valid_r4(data)
    return data


def _of(bundle: dict[str, Any], rtype: str) -> list[dict[str, Any]]:
    return [e for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


def _report(bundle: dict[str, Any]) -> dict[str, Any]:
    resource: dict[str, Any] = _of(bundle, "DiagnosticReport")[0]["resource"]
    return resource


def _codings(concept: dict[str, Any]) -> set[tuple[str, str]]:
    return {(c["system"], c["code"]) for c in concept["coding"]}


def test_no_system_means_no_patient_and_a_typed_logical_subject() -> None:
    bundle = _bundle(sample_study("ich").model_copy(update=NO_SYSTEM))
    assert not _of(bundle, "Patient")
    assert not any("ifNoneExist" in e["request"] for e in bundle["entry"])
    subject = _report(bundle)["subject"]
    assert subject["type"] == "Patient"
    identifier = subject["identifier"]
    assert "system" not in identifier and identifier["value"] == "PAT177"
    assert _codings(identifier["type"]) == {(codes.V2_0203, "MR")}
    assert identifier["assigner"] == {"display": "HOSPITAL"}
    for obs in _of(bundle, "Observation"):
        assert obs["resource"]["subject"] == subject


def test_patient_system_comes_from_the_issuer_mapping_qualifiers_or_configuration() -> None:
    study = sample_study("ich")
    # Issuer qualifiers (ISO OID) name the system.
    bundle = _bundle(study)
    (patient,) = _of(bundle, "Patient")
    system = f"urn:oid:{SAMPLE_ISSUER_OID}"
    assert patient["request"]["ifNoneExist"] == f"identifier={system}|PAT177"
    assert patient["resource"]["identifier"][0]["system"] == system
    # The configured mapping of IssuerOfPatientID wins.
    bundle = _bundle(study, EncodeOptions(patient_id_systems={"HOSPITAL": MRN}))
    assert _of(bundle, "Patient")[0]["request"]["ifNoneExist"] == f"identifier={MRN}|PAT177"
    # Without issuer data, the site's own system.
    bundle = _bundle(study.model_copy(update={**NO_SYSTEM, "patient_id_issuer": None}),
                     EncodeOptions(patient_id_system=MRN))
    assert _of(bundle, "Patient")[0]["resource"]["identifier"][0]["system"] == MRN
    # Creation switched off: a logical reference with the system, no Patient entry.
    bundle = _bundle(study, EncodeOptions(include_patient=False))
    assert not _of(bundle, "Patient")
    assert _report(bundle)["subject"]["identifier"]["system"] == system


def test_patient_names_keep_every_group() -> None:
    study = sample_study("ich").model_copy(
        update={"patient_name": "Yamada^Tarou=山田^太郎=やまだ^たろう"})
    (patient,) = _of(_bundle(study), "Patient")
    names = patient["resource"]["name"]
    assert [n["text"] for n in names] == ["Tarou Yamada", "太郎 山田", "たろう やまだ"]
    assert [(n["family"], n["given"]) for n in names] == [
        ("Yamada", ["Tarou"]), ("山田", ["太郎"]), ("やまだ", ["たろう"])]
    assert [n["extension"] for n in names] == [
        [{"url": EN_REPRESENTATION, "valueCode": code}] for code in ("ABC", "IDE", "SYL")]


def test_imaging_study_uses_the_nodes_own_identifier() -> None:
    study = sample_study("ich")
    (entry,) = _of(_bundle(study), "ImagingStudy")
    identifiers = entry["resource"]["identifier"]
    own = identifiers[0]
    assert own["system"] == codes.URI and own["value"].startswith("urn:uuid:")
    assert {"system": codes.DICOM_UID, "value": f"urn:oid:{study.study_instance_uid}"} \
        in identifiers
    assert entry["request"]["method"] == "PUT"
    assert entry["request"]["url"] == f"ImagingStudy?identifier={codes.URI}|{own['value']}"
    assert codes.DICOM_UID not in entry["request"]["url"]


def test_an_imaging_study_owned_by_the_pacs_is_not_overwritten(tmp_path: Path) -> None:
    """Through the facade store, which applies conditional updates as a FHIR server does."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'fhir.db'}")
    metadata.create_all(engine)
    study = sample_study("ich")
    pacs = {
        "resourceType": "ImagingStudy", "id": "pacs-owned", "status": "available",
        "subject": {"display": "owned by the PACS"},
        "identifier": [{"system": codes.DICOM_UID,
                        "value": f"urn:oid:{study.study_instance_uid}"}],
        "description": "PACS copy",
    }
    put_bundle(engine, {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": pacs, "request": {"method": "PUT", "url": "ImagingStudy/pacs-owned"}}]})
    for _ in range(2):
        stored = put_bundle(engine, build_report_bundle(
            study, (), sample_device(), "x", fixed_clock()))
    kept = get_resource(engine, "ImagingStudy", "pacs-owned")
    assert kept is not None
    assert kept["description"] == "PACS copy" and kept["meta"]["versionId"] == "1"
    mine = next(r for r in stored if r.startswith("ImagingStudy/"))
    assert mine != "ImagingStudy/pacs-owned"
    assert (get_resource(engine, *mine.split("/")) or {})["meta"]["versionId"] == "2"


def test_local_times_carry_the_study_offset() -> None:
    study = sample_study("ich")
    plain = _report(_bundle(study))
    assert plain["effectiveDateTime"] == "2024-03-05T14:30:15Z"  # documented UTC fallback
    berlin = _bundle(study, EncodeOptions(timezone=ZoneInfo("Europe/Berlin")))
    assert _report(berlin)["effectiveDateTime"] == "2024-03-05T14:30:15+01:00"
    tokyo = _bundle(study.model_copy(update={"timezone_offset": timedelta(hours=9)}),
                    EncodeOptions(timezone=ZoneInfo("Europe/Berlin")))
    assert _report(tokyo)["effectiveDateTime"] == "2024-03-05T14:30:15+09:00"
    assert _of(tokyo, "ImagingStudy")[0]["resource"]["started"] == "2024-03-05T14:30:15+09:00"
    for obs in _of(tokyo, "Observation"):
        assert obs["resource"]["effectiveDateTime"] == "2024-03-05T14:30:15+09:00"
    date_only = _bundle(study.model_copy(update={"study_time": None}))
    assert _report(date_only)["effectiveDateTime"] == "2024-03-05"


def test_placer_order_is_based_on_only_with_a_system() -> None:
    study = sample_study("ich").model_copy(update={"placer_order_number": "PO-1"})
    assert "basedOn" not in _report(_bundle(study))
    report = _report(_bundle(study, EncodeOptions(placer_order_system=ORDERS)))
    (based_on,) = report["basedOn"]
    assert based_on["type"] == "ServiceRequest"
    assert (based_on["identifier"]["system"], based_on["identifier"]["value"]) == (ORDERS, "PO-1")
    assert _codings(based_on["identifier"]["type"]) == {(codes.V2_0203, "PLAC")}


def test_conclusion_is_shaped() -> None:
    study = sample_study("ich")
    reason = (f"Not analysed: series {study.series[0].series_instance_uid} of "
              f"{study.patient_id} (Sample) ünreadable | ^ & ~ \\ 頭部 ") * 15
    conclusion = _report(_bundle(study, conclusion=reason))["conclusion"]
    assert "ünreadable | ^ & ~ \\ 頭部" in conclusion
    assert study.series[0].series_instance_uid not in conclusion and "[UID]" in conclusion
    assert study.patient_id not in conclusion and "Sample" not in conclusion
    huge = _report(_bundle(study, conclusion="word " * 10_000))["conclusion"]
    assert len(huge) <= MAX_TEXT_CHARS and huge.endswith(ELLIPSIS)


def test_an_invalid_resource_fails_without_quoting_values() -> None:
    study = sample_study("ich")
    bad = Finding(code=Coded(code="13860  00", display="Sample PAT177"),
                  presence=True)
    with pytest.raises(ValueError, match="not valid FHIR R4") as info:
        build_report_bundle(study, (bad,), sample_device(), "", fixed_clock())
    assert "Sample" not in str(info.value) and "PAT177" not in str(info.value)
    # An empty conclusion is shaped to "-", not refused.
    bundle = _bundle(study, conclusion="")
    assert _report(bundle)["conclusion"] == "-"
