"""FhirClient against a real HTTP FHIR server on loopback: success, retry classification,
bearer and OAuth2 client-credentials authentication, and no PHI in reasons."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
import sqlalchemy as sa
from fhir.resources.R4B.bundle import Bundle

from hl7_fhir.client import BearerToken, ClientCredentials, FhirClient, send_bundle
from hl7_fhir.errors import PermanentDeliveryError, TransientDeliveryError
from hl7_fhir.facade.search import search
from hl7_fhir.facade.store import fhir_resources
from hl7_fhir.fhir import build_report_bundle
from hl7_fhir.samples import fixed_clock, sample_device, sample_findings, sample_study

# (base URL, FhirServerState) from the fhir_server fixture in conftest.py
Server = tuple[str, Any]
FhirServerState = Any


def _bundle() -> Bundle:
    return build_report_bundle(
        sample_study("stroke"), sample_findings("stroke"), sample_device(), "Infarct.",
        fixed_clock(),
    )


def _outcome(diagnostics: str, code: str = "invalid") -> bytes:
    return json.dumps({"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": code, "diagnostics": diagnostics}]}).encode()


def _rows(state: FhirServerState) -> int:
    with state.engine.connect() as conn:
        return int(conn.scalar(sa.select(sa.func.count()).select_from(fhir_resources)) or 0)


def test_transaction_is_stored_and_a_rerun_does_not_duplicate(fhir_server: Server) -> None:
    base, state = fhir_server
    result = send_bundle(_bundle(), f"{base}/fhir", BearerToken("static"))
    assert result.status_code == 200
    assert [e.status for e in result.entries] == ["200 OK"] * 5
    request = state.seen[-1]
    assert request.headers["Authorization"] == "Bearer static"
    assert request.headers["Content-Type"] == "application/fhir+json"
    assert json.loads(request.body)["type"] == "transaction"
    send_bundle(_bundle(), f"{base}/fhir", BearerToken("static"))
    assert _rows(state) == 5
    reports = search(state.engine, "DiagnosticReport", [("status", "preliminary")])
    assert reports.total == 1


def test_503_is_transient_then_200_delivers(fhir_server: Server) -> None:
    base, state = fhir_server
    state.answers.append((503, {"Retry-After": "120"}, _outcome("busy", "transient")))
    with FhirClient(f"{base}/fhir") as client:
        with pytest.raises(TransientDeliveryError) as info:
            client.send_bundle(_bundle())
        assert info.value.status == 503
        assert info.value.retry_after == 120.0
        assert "transient" in info.value.reason
        assert client.send_bundle(_bundle()).status_code == 200
    assert _rows(state) == 5


@pytest.mark.parametrize("status", [500, 502, 429, 409, 412])
def test_transient_statuses(fhir_server: Server, status: int) -> None:
    base, state = fhir_server
    state.answers.append((status, {}, b"{}"))
    with pytest.raises(TransientDeliveryError):
        send_bundle(_bundle(), f"{base}/fhir")


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_permanent_statuses_carry_no_phi(fhir_server: Server, status: int) -> None:
    base, state = fhir_server
    name = sample_study("stroke").patient_name or ""
    state.answers.append((status, {}, _outcome(f"Patient {name} PAT277 is invalid")))
    with pytest.raises(PermanentDeliveryError) as info:
        send_bundle(_bundle(), f"{base}/fhir", BearerToken("t"))
    reason = info.value.reason
    assert str(status) in reason and "invalid" in reason
    assert "Sample" not in reason and "PAT277" not in reason and "Patient " not in reason
    assert _rows(state) == 0


def test_connection_refused_and_timeout_are_transient(fhir_server: Server) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with pytest.raises(TransientDeliveryError, match="unreachable"):
        send_bundle(_bundle(), f"http://127.0.0.1:{closed_port}/fhir", timeout_s=2)
    base, state = fhir_server
    state.delay_s = 5.0
    with pytest.raises(TransientDeliveryError, match="timed out"):
        send_bundle(_bundle(), f"{base}/fhir", timeout_s=0.3)


def test_oauth_token_is_fetched_once_and_cached_until_expiry(fhir_server: Server) -> None:
    base, state = fhir_server
    state.accepted_tokens.add("placeholder")  # the server now demands a token
    state.token_lifetime_s = 100
    clock = [0.0]
    creds = ClientCredentials(
        f"{base}/token", state.client_id, state.client_secret, "system/*.write"
    )
    with FhirClient(f"{base}/fhir", creds, monotonic=lambda: clock[0]) as client:
        client.send_bundle(_bundle())
        clock[0] = 60.0
        client.send_bundle(_bundle())
        assert state.issued == ["tok-1"]
        clock[0] = 75.0  # within the 30 s margin before expiry
        client.send_bundle(_bundle())
    assert state.issued == ["tok-1", "tok-2"]
    token_request = next(s for s in state.seen if s.path == "/token")
    assert b"scope=system%2F%2A.write" in token_request.body
    fhir_auth = [s.headers["Authorization"] for s in state.seen if s.path == "/fhir"]
    assert fhir_auth == ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]


def test_revoked_token_is_replaced_once(fhir_server: Server) -> None:
    base, state = fhir_server
    clock = [0.0]
    creds = ClientCredentials(f"{base}/token", state.client_id, state.client_secret)
    with FhirClient(f"{base}/fhir", creds, monotonic=lambda: clock[0]) as client:
        client.send_bundle(_bundle())
        state.accepted_tokens.discard("tok-1")
        state.accepted_tokens.add("placeholder")
        client.send_bundle(_bundle())  # cached tok-1 refused -> tok-2 fetched, retried once
        assert state.issued == ["tok-1", "tok-2"]
        # A freshly fetched token that is refused is not retried: permanent.
        state.refuse_all = True
        clock[0] = 10_000.0
        before = len([s for s in state.seen if s.path == "/fhir"])
        with pytest.raises(PermanentDeliveryError, match="401"):
            client.send_bundle(_bundle())
        assert len([s for s in state.seen if s.path == "/fhir"]) == before + 1
    assert state.issued == ["tok-1", "tok-2", "tok-3"]


def test_token_endpoint_failures(fhir_server: Server) -> None:
    base, state = fhir_server
    wrong = ClientCredentials(f"{base}/token", "node", "wrong-secret")
    with pytest.raises(PermanentDeliveryError, match="invalid_client"):
        send_bundle(_bundle(), f"{base}/fhir", wrong)
    state.token_error = 503
    good = ClientCredentials(f"{base}/token", state.client_id, state.client_secret)
    with pytest.raises(TransientDeliveryError, match="token endpoint answered HTTP 503"):
        send_bundle(_bundle(), f"{base}/fhir", good)
    assert not [s for s in state.seen if s.path == "/fhir"]
