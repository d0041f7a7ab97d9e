"""The read-only FHIR facade over HTTP (FastAPI's in-process test client)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.operationoutcome import OperationOutcome

from hl7_fhir.facade import create_facade_router, metadata, put_bundle
from hl7_fhir.fhir import build_report_bundle
from hl7_fhir.samples import fixed_clock, sample_device, sample_findings, sample_study

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
Client = tuple[TestClient, list[str]]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, list[str]]]:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'facade.db'}")
    metadata.create_all(engine)
    stored = put_bundle(
        engine,
        build_report_bundle(
            sample_study("ich"), sample_findings("ich"), sample_device(), "ICH suspected.",
            fixed_clock(),
        ),
    )
    app = FastAPI()
    app.include_router(create_facade_router(engine, ["other-token", TOKEN]))
    with TestClient(app) as test_client:
        yield test_client, stored
    engine.dispose()


def test_metadata_is_open_and_a_valid_capability_statement(client: Client) -> None:
    http, _ = client
    response = http.get("/fhir/metadata")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+json")
    statement = response.json()
    CapabilityStatement.model_validate(statement)
    assert statement["fhirVersion"] == "4.0.1"
    served = {
        r["type"]: {p["name"] for p in r["searchParam"]} for r in statement["rest"][0]["resource"]
    }
    assert {"patient", "identifier", "category", "date", "status"} <= served["DiagnosticReport"]
    assert {"patient", "category"} <= served["Observation"]
    assert "identifier" in served["ImagingStudy"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
     {"Authorization": "Bearer "}],
)
def test_everything_else_needs_a_configured_token(
    client: Client, headers: dict[str, str]
) -> None:
    http, stored = client
    for path in ("/fhir/DiagnosticReport", f"/fhir/{stored[-1]}"):
        response = http.get(path, headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        OperationOutcome.model_validate(response.json())


def test_searches_return_r4_searchsets(client: Client) -> None:
    http, stored = client
    study = sample_study("ich")
    patient, imaging, report = stored[0], stored[1], stored[-1]

    def ids(path: str, **params: str) -> list[str]:
        response = http.get(path, params=params, headers=AUTH)
        assert response.status_code == 200, response.text
        bundle = response.json()
        Bundle.model_validate(bundle)
        assert bundle["type"] == "searchset"
        entries = bundle.get("entry", [])
        assert bundle["total"] == len(entries)
        return [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in entries]

    assert ids("/fhir/DiagnosticReport", patient=patient) == [report]
    assert ids("/fhir/DiagnosticReport", identifier=study.accession_number or "") == [report]
    assert ids("/fhir/ImagingStudy", identifier=study.accession_number or "") == [imaging]
    assert ids("/fhir/ImagingStudy", identifier=f"urn:oid:{study.study_instance_uid}") == [imaging]
    assert ids("/fhir/DiagnosticReport", category="LP29684-5", date="ge2024-03-05") == [report]
    assert ids("/fhir/DiagnosticReport", category="LP29684-5", date="le2024-03-04") == []
    assert ids("/fhir/DiagnosticReport", status="preliminary") == [report]
    observations = ids("/fhir/Observation", patient=patient, category="imaging")
    assert sorted(observations) == sorted(stored[3:5])

    response = http.get(f"/fhir/{report}", headers=AUTH)
    assert response.status_code == 200
    assert response.headers["etag"] == 'W/"1"'
    read = response.json()
    DiagnosticReport.model_validate(read)
    assert read["subject"]["reference"] == patient
    follow = http.get(f"/fhir/{read['result'][0]['reference']}", headers=AUTH)
    assert follow.status_code == 200 and follow.json()["resourceType"] == "Observation"


def test_paging_links(client: Client) -> None:
    http, stored = client
    response = http.get("/fhir/Observation", params={"_count": "1"}, headers=AUTH)
    body = response.json()
    assert body["total"] == 2 and len(body["entry"]) == 1
    nxt = next(link["url"] for link in body["link"] if link["relation"] == "next")
    second = http.get(nxt, headers=AUTH).json()
    assert len(second["entry"]) == 1
    assert second["entry"][0]["resource"]["id"] != body["entry"][0]["resource"]["id"]
    assert not [link for link in second["link"] if link["relation"] == "next"]
    assert body["entry"][0]["fullUrl"].startswith("http://testserver/fhir/Observation/")


def test_errors_are_operation_outcomes(client: Client) -> None:
    http, _ = client
    cases = [
        ("/fhir/DiagnosticReport?foo=bar", 400),
        ("/fhir/DiagnosticReport?date=sa2024", 400),
        ("/fhir/Encounter", 404),
        ("/fhir/DiagnosticReport/does-not-exist", 404),
    ]
    for path, status in cases:
        response = http.get(path, headers=AUTH)
        assert response.status_code == status, path
        outcome = OperationOutcome.model_validate(response.json())
        assert outcome.issue[0].severity == "error"


def test_no_configured_tokens_refuses_all(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    metadata.create_all(engine)
    app = FastAPI()
    app.include_router(create_facade_router(engine, []))
    with TestClient(app) as http:
        assert http.get("/fhir/metadata").status_code == 200
        for header in ("Bearer ", "Bearer x"):
            response = http.get("/fhir/DiagnosticReport", headers={"Authorization": header})
            assert response.status_code == 401
    engine.dispose()
