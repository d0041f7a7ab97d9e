"""A small real FHIR server for the client tests: HTTP on a free loopback port, a scripted
queue of answers for ``POST /fhir`` (then transactions applied to a facade store), an OAuth2
token endpoint, and a record of every request it saw."""

from __future__ import annotations

import base64
import json
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from hl7_fhir.facade.store import metadata, put_bundle


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FhirServerState:
    engine: Engine
    answers: deque[tuple[int, dict[str, str], bytes]] = field(default_factory=deque)
    accepted_tokens: set[str] = field(default_factory=set)
    token_lifetime_s: int = 3600
    token_error: int | None = None
    refuse_all: bool = False
    issued: list[str] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    hold: threading.Event = field(default_factory=threading.Event)
    delay_s: float = 0.0
    client_id: str = "node"
    client_secret: str = "node-secret"


def _handler(state: FhirServerState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            pass

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            state.seen.append(Seen("POST", self.path, dict(self.headers.items()), body))
            if self.path == "/token":
                self._token(body)
            elif self.path == "/fhir":
                self._transaction(body)
            else:
                self._send(404, {"resourceType": "OperationOutcome", "issue": []})

        def _token(self, body: bytes) -> None:
            expected = base64.b64encode(
                f"{state.client_id}:{state.client_secret}".encode()
            ).decode()
            form = parse_qs(body.decode())
            if state.token_error is not None:
                self._send(state.token_error, {"error": "invalid_client"})
            elif (self.headers.get("Authorization") != f"Basic {expected}"
                  or form.get("grant_type") != ["client_credentials"]):
                self._send(401, {"error": "invalid_client"})
            else:
                token = f"tok-{len(state.issued) + 1}"
                state.issued.append(token)
                state.accepted_tokens.add(token)
                self._send(200, {"access_token": token, "token_type": "Bearer",
                                 "expires_in": state.token_lifetime_s})

        def _transaction(self, body: bytes) -> None:
            if state.delay_s:
                state.hold.wait(state.delay_s)
            if state.answers:
                status, headers, payload = state.answers.popleft()
                self._send(status, payload, headers)
                return
            auth = self.headers.get("Authorization", "")
            token = auth.removeprefix("Bearer ")
            if state.refuse_all or (state.accepted_tokens and token not in state.accepted_tokens):
                self._send(401, {"resourceType": "OperationOutcome", "issue": [
                    {"severity": "error", "code": "login"}]})
                return
            stored = put_bundle(state.engine, json.loads(body))
            self._send(200, {
                "resourceType": "Bundle", "type": "transaction-response",
                "entry": [{"response": {"status": "200 OK", "location": ref}} for ref in stored],
            })

    return Handler


@pytest.fixture
def fhir_server(tmp_path: Path) -> Iterator[tuple[str, FhirServerState]]:
    """(base URL, state) of a FHIR server on a free loopback port."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'ehr.db'}")
    metadata.create_all(engine)
    state = FhirServerState(engine=engine)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        state.hold.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        engine.dispose()
