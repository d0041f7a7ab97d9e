"""The report Bundle against FHIR R4 (fhir.resources R4B parsing and the official R4 JSON
schema) and the rules in STANDARDS.md that neither checks: codes, systems, statuses,
references."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle

from hl7_fhir import codes
from hl7_fhir.fhir import build_report_bundle
from hl7_fhir.samples import fixed_clock, sample_device, sample_findings, sample_study
from hl7_fhir.types import Coded, Conclusion, EncodeOptions, Preview
from tests.conformance.fhir_hl7.fhir_schema import assert_valid_r4

KINDS = ("ich", "stroke", "fracture")
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
MRN = "http://hospital.example.org/mrn"


def _json(kind: str, **kwargs: Any) -> dict[str, Any]:
    bundle = build_report_bundle(
        sample_study(kind),
        sample_findings(kind),
        sample_device(),
        kwargs.pop("conclusion", "Findings suggest an acute abnormality."),
        fixed_clock(),
        **kwargs,
    )
    # Serialise and re-parse: what the EHR receives must parse on its own.
    text = bundle.model_dump_json(exclude_none=True)
    Bundle.model_validate_json(text)
    data: dict[str, Any] = json.loads(text)
    assert_valid_r4(data)
    return data


def _by_type(bundle: dict[str, Any], rtype: str) -> list[dict[str, Any]]:
    return [e for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


def _codings(concept: dict[str, Any]) -> set[tuple[str, str]]:
    return {(c["system"], c["code"]) for c in concept["coding"]}


def _references(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return found + [r for v in node.values() for r in _references(v)]
    if isinstance(node, list):
        return [r for v in node for r in _references(v)]
    return []


@pytest.mark.parametrize("kind", KINDS)
def test_every_resource_parses_alone_as_r4(kind: str) -> None:
    bundle = _json(kind)
    assert bundle["type"] == "transaction"
    for entry in bundle["entry"]:
        resource = entry["resource"]
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    types = sorted(e["resource"]["resourceType"] for e in bundle["entry"])
    expected = ["Device", "DiagnosticReport", "ImagingStudy", "Patient"]
    expected += ["Observation"] * len(sample_findings(kind))
    assert types == sorted(expected)


@pytest.mark.parametrize("kind", KINDS)
def test_every_reference_resolves_inside_the_bundle(kind: str) -> None:
    bundle = _json(kind)
    full_urls = [e["fullUrl"] for e in bundle["entry"]]
    assert len(set(full_urls)) == len(full_urls)
    refs = _references([e["resource"] for e in bundle["entry"]])
    assert refs, "the report must reference its parts"
    assert set(refs) <= set(full_urls)
    by_url = {e["fullUrl"]: e["resource"]["resourceType"] for e in bundle["entry"]}
    report = _by_type(bundle, "DiagnosticReport")[0]["resource"]
    assert by_url[report["subject"]["reference"]] == "Patient"
    assert by_url[report["imagingStudy"][0]["reference"]] == "ImagingStudy"
    assert [by_url[r["reference"]] for r in report["result"]] == ["Observation"] * len(
        sample_findings(kind)
    )


@pytest.mark.parametrize("kind", KINDS)
def test_diagnostic_report_codes_and_status(kind: str) -> None:
    study = sample_study(kind)
    bundle = _json(kind, preview=Preview(content_type="image/png", data=PNG))
    entry = _by_type(bundle, "DiagnosticReport")[0]
    report = entry["resource"]
    assert report["status"] == "preliminary"
    assert _codings(report["category"][0]) == {
        (codes.LOINC, "LP29684-5"),
        (codes.V2_0074, "RAD"),
    }
    assert _codings(report["code"]) == {(codes.LOINC, study.procedure_code.code)}
    assert report["issued"] == "2024-03-05T15:00:00Z"
    assert report["effectiveDateTime"] == "2024-03-05T14:30:15Z"
    assert report["conclusion"] == "Findings suggest an acute abnormality."
    form = report["presentedForm"][0]
    assert form["contentType"] == "image/png"
    assert base64.b64decode(form["data"]) == PNG
    assert entry["request"]["method"] == "PUT"
    system, value = report["identifier"][0]["system"], report["identifier"][0]["value"]
    assert entry["request"]["url"] == f"DiagnosticReport?identifier={system}|{value}"


@pytest.mark.parametrize("kind", KINDS)
def test_observation_per_finding(kind: str) -> None:
    findings = sample_findings(kind)
    bundle = _json(kind)
    device_url = _by_type(bundle, "Device")[0]["fullUrl"]
    study_url = _by_type(bundle, "ImagingStudy")[0]["fullUrl"]
    observations = [e["resource"] for e in _by_type(bundle, "Observation")]
    assert len(observations) == len(findings)
    for obs, finding in zip(observations, findings, strict=True):
        assert obs["status"] == "preliminary"
        assert _codings(obs["category"][0]) == {(codes.OBSERVATION_CATEGORY, "imaging")}
        assert _codings(obs["code"]) == {(codes.SNOMED, finding.code.code)}
        assert finding.body_site is not None
        assert _codings(obs["bodySite"]) == {(codes.SNOMED, finding.body_site.code)}
        assert obs["device"]["reference"] == device_url
        assert obs["derivedFrom"] == [{"reference": study_url}]
        components = {
            next(iter(_codings(c["code"]))): c["valueQuantity"] for c in obs.get("component", [])
            if "valueQuantity" in c
        }
        if finding.presence is not None:
            expected = codes.PRESENT[0] if finding.presence else codes.ABSENT[0]
            assert _codings(obs["valueCodeableConcept"]) == {(codes.SNOMED, expected)}
            flag = "AA" if finding.critical else "A"
            assert _codings(obs["interpretation"][0]) == {(codes.INTERPRETATION, flag)}
        if finding.probability is not None:
            q = components[(codes.DCM, codes.PROBABILITY[0])]
            assert (q["value"], q["system"], q["code"]) == (finding.probability, codes.UCUM, "1")
        if finding.volume_ml is not None:
            q = components[(codes.SNOMED, codes.VOLUME[0])]
            assert (q["value"], q["system"], q["code"]) == (finding.volume_ml, codes.UCUM, "mL")


def test_imaging_study_identifiers_series_and_instances() -> None:
    study = sample_study("ich", n_instances=4)
    bundle = build_report_bundle(
        study, (), sample_device(), "No acute finding.", fixed_clock(),
        options=EncodeOptions(accession_system="http://ris.example.org/accession"),
    )
    dumped = json.loads(bundle.model_dump_json(exclude_none=True))
    data = _by_type(dumped, "ImagingStudy")[0]["resource"]
    ids = {(i.get("system"), i["value"]) for i in data["identifier"]}
    assert ("urn:dicom:uid", f"urn:oid:{study.study_instance_uid}") in ids
    accession = next(i for i in data["identifier"] if i["value"] == study.accession_number)
    assert accession["system"] == "http://ris.example.org/accession"
    assert _codings(accession["type"]) == {(codes.V2_0203, "ACSN")}
    assert data["status"] == "available"
    (series,) = data["series"]
    assert series["uid"] == study.series[0].series_instance_uid
    assert series["modality"] == {"system": codes.DCM, "code": "CT"}
    assert [i["uid"] for i in series["instance"]] == [
        i.sop_instance_uid for i in study.series[0].instances
    ]
    assert {i["sopClass"]["code"] for i in series["instance"]} == {
        "urn:oid:1.2.840.10008.5.1.4.1.1.2"
    }
    assert data["numberOfInstances"] == 4


def test_device_carries_name_version_manufacturer_uid() -> None:
    device = sample_device("2.1.0")
    bundle = build_report_bundle(sample_study(), (), device, "x", fixed_clock())
    data = _by_type(json.loads(bundle.model_dump_json(exclude_none=True)), "Device")[0]["resource"]
    assert data["deviceName"] == [{"name": device.name, "type": "model-name"}]
    assert data["version"] == [{"value": "2.1.0"}]
    assert data["manufacturer"] == device.manufacturer
    assert data["identifier"] == [
        {"system": "urn:dicom:uid", "value": f"urn:oid:{device.device_uid}"}
    ]


def test_rerun_is_identical_and_new_version_is_a_new_report() -> None:
    def build(version: str, at: datetime) -> dict[str, Any]:
        bundle = build_report_bundle(
            sample_study("fracture"), sample_findings("fracture"), sample_device(version),
            "x", fixed_clock(at),
        )
        return json.loads(bundle.model_dump_json(exclude_none=True))

    first = build("1.0.0", datetime(2024, 3, 5, 15, tzinfo=UTC))
    again = build("1.0.0", datetime(2024, 3, 6, 9, tzinfo=UTC))
    other = build("1.1.0", datetime(2024, 3, 5, 15, tzinfo=UTC))

    def keys(b: dict[str, Any]) -> list[tuple[str, str]]:
        return [(e["fullUrl"], e["request"]["url"]) for e in b["entry"]]

    assert keys(first) == keys(again)
    # The two fractures share code and site but must stay two Observations.
    obs_urls = [e["request"]["url"] for e in _by_type(first, "Observation")]
    assert len(set(obs_urls)) == 2
    report_urls = {e["request"]["url"] for b in (first, other)
                   for e in _by_type(b, "DiagnosticReport")}
    assert len(report_urls) == 2
    # Only the clock-driven values differ between the re-runs.
    assert _by_type(again, "DiagnosticReport")[0]["resource"]["issued"] == "2024-03-06T09:00:00Z"


def test_conclusion_codes_and_patient_options() -> None:
    conclusion = Conclusion(
        text="Intracranial hemorrhage suspected.",
        codes=(Coded(code="1386000", display="Intracranial hemorrhage"),),
    )
    mapped = EncodeOptions(patient_id_systems={"HOSPITAL": MRN})
    bundle = _json("ich", conclusion=conclusion, options=mapped)
    report = _by_type(bundle, "DiagnosticReport")[0]["resource"]
    assert _codings(report["conclusionCode"][0]) == {(codes.SNOMED, "1386000")}
    patient = _by_type(bundle, "Patient")[0]
    assert patient["request"] == {
        "method": "POST", "url": "Patient", "ifNoneExist": f"identifier={MRN}|PAT177",
    }
    assert patient["resource"]["name"][0]["family"] == "Sample"
    assert patient["resource"]["name"][0]["given"] == ["Pat", "Q"]

    logical = _json("ich", options=mapped.model_copy(update={"include_patient": False}))
    assert not _by_type(logical, "Patient")
    subject = _by_type(logical, "DiagnosticReport")[0]["resource"]["subject"]
    assert subject["type"] == "Patient"
    assert (subject["identifier"]["system"], subject["identifier"]["value"]) == (MRN, "PAT177")
    assert _codings(subject["identifier"]["type"]) == {(codes.V2_0203, "MR")}


def test_naive_clock_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        build_report_bundle(
            sample_study(), (), sample_device(), "x", lambda: datetime(2024, 1, 1)
        )


def test_lesion_count_and_laterality_reach_fhir_and_hl7() -> None:
    """Stroke: the infarct Observation carries the lesion count (SCT 246206008) and the side
    (SCT 272741003); the ORU has an NM and a CWE OBX for them; both validate."""
    from hl7apy.parser import parse_message

    from hl7_fhir.hl7v2.oru import build_oru

    findings = sample_findings("stroke")
    data = _json("stroke")
    [obs] = [e["resource"] for e in data["entry"] if e["resource"]["resourceType"] == "Observation"]
    by_code = {c["code"]["coding"][0]["code"]: c for c in obs["component"]}
    assert by_code["246206008"]["valueInteger"] == 2
    assert by_code["272741003"]["valueCodeableConcept"]["coding"][0]["code"] == "7771000"
    text = build_oru(sample_study("stroke"), findings, sample_device(), fixed_clock(), "CTRL1")
    parse_message(text.replace("\n", "\r"), validation_level=1)
    obx = [seg.split("|") for seg in text.split("\r") if seg.startswith("OBX|")]
    assert any(f[2] == "NM" and f[3].startswith("246206008^") and f[5] == "2" for f in obx)
    assert any(f[2] == "CWE" and f[3].startswith("272741003^") and f[5].startswith("7771000^")
               for f in obx)
