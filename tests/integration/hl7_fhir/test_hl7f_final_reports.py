"""Polling final DiagnosticReports: the search parameters, the bearer token, paging by the
Bundle's `next` link (same server only), and the reports labelled through the monitoring
service. No FHIR server runs on these machines, so a small HTTP server on loopback answers
as one would (FHIR R4 search Bundles)."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from sqlalchemy import select

from hl7_fhir.client import BearerToken, FhirClient
from hl7_fhir.errors import PermanentDeliveryError
from infernode.db import create_engine, migrate
from workers.monitoring.config import FhirPollConfig, MonitoringConfig
from workers.monitoring.service import MonitoringService
from workers.monitoring.tables import monitoring_labels

ACSN = {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}


def _report(rid: str, accession: str, conclusion: str) -> dict:
    return {"resource": {"resourceType": "DiagnosticReport", "id": rid, "status": "final",
                         "identifier": [{"type": {"coding": [ACSN]}, "value": accession}],
                         "conclusion": conclusion}}


class _Fhir(BaseHTTPRequestHandler):
    seen: list[tuple[str, dict, str | None]] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - the http.server interface
        url = urlparse(self.path)
        query = parse_qs(url.query)
        _Fhir.seen.append((url.path, query, self.headers.get("Authorization")))
        if self.headers.get("Authorization") != "Bearer ris-token":
            self.send_response(401)
            self.end_headers()
            return
        base = f"http://127.0.0.1:{self.server.server_address[1]}/fhir"
        if "page" not in query:
            body = {"resourceType": "Bundle", "type": "searchset",
                    "link": [{"relation": "next", "url": f"{base}/DiagnosticReport?page=2"}],
                    "entry": [_report("r1", "F1", "Acute subdural haemorrhage."),
                              _report("r2", "F2", "No evidence of haemorrhage.")]}
        else:
            body = {"resourceType": "Bundle", "type": "searchset",
                    "link": [{"relation": "next", "url": "http://elsewhere.invalid/x"}],
                    "entry": [_report("r3", "F3", "Unremarkable.")]}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def fhir_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Fhir)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Fhir.seen.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}/fhir"
    server.shutdown()
    server.server_close()


def test_final_reports_are_searched_paged_and_labelled(fhir_server: str, tmp_path: Path):
    with FhirClient(fhir_server, BearerToken("ris-token")) as client:
        found = client.final_reports("2026-11-01T00:00:00+00:00")
    assert [r["id"] for r in found] == ["r1", "r2", "r3"]
    path, query, _auth = _Fhir.seen[0]
    assert path == "/fhir/DiagnosticReport"
    assert query["status"] == ["final,corrected,amended"]
    assert query["_lastUpdated"] == ["ge2026-11-01T00:00:00+00:00"]
    assert len(_Fhir.seen) == 2  # the next link to another server is not followed
    with FhirClient(fhir_server, BearerToken("wrong")) as client, pytest.raises(
            PermanentDeliveryError, match="401"):
        client.final_reports("2026-11-01T00:00:00+00:00")

    engine = create_engine(f"sqlite:///{tmp_path / 'db'}")
    migrate(engine)
    cfg = MonitoringConfig(fhir_poll=FhirPollConfig(base_url=fhir_server, token="ris-token"))
    service = MonitoringService(engine, cfg, lambda p, v: None,
                                lambda: datetime(2026, 11, 20, tzinfo=UTC))
    assert service.poll_fhir() == 3
    with engine.connect() as conn:
        labels = {r.report_id: r.positive for r in conn.execute(select(
            monitoring_labels.c.report_id, monitoring_labels.c.positive).where(
            monitoring_labels.c.pipeline == "ich"))}
    assert sorted(labels.values(), key=str) == sorted([True, False, False], key=str)
    engine.dispose()
