"""The facade store on the real PostgreSQL (a schema of its own per test run), the Alembic
revision on PostgreSQL, and the facade served by uvicorn on a loopback port."""

from __future__ import annotations

import importlib.util
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.operations import Operations
from fastapi import FastAPI
from fhir.resources.R4B.bundle import Bundle
from sqlalchemy.engine import Engine

import hl7_fhir.migrations
from hl7_fhir.facade import create_facade_router, put_bundle
from hl7_fhir.facade.store import metadata
from hl7_fhir.fhir import build_report_bundle
from hl7_fhir.samples import fixed_clock, sample_device, sample_findings, sample_study

TOKEN = "pg-token"


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[Engine]:
    """An engine on a fresh schema of the real PostgreSQL (the shared `pg_url` fixture)."""
    engine = sa.create_engine(pg_url)
    try:
        yield engine
    finally:
        engine.dispose()


def _upgrade(engine: Engine) -> None:
    path = Path(hl7_fhir.migrations.__file__).parent / "hl7f_0001_fhir_resources.py"
    spec = importlib.util.spec_from_file_location("hl7f_0001_pg", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with engine.begin() as conn:
        with Operations.context(MigrationContext.configure(conn)):
            module.upgrade()
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []


@contextmanager
def _serve(app: FastAPI) -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_postgres_store_and_facade_over_http(pg_engine: Engine) -> None:
    _upgrade(pg_engine)
    stored = {}
    for kind, suffix in (("ich", "1"), ("stroke", "2"), ("ich", "1")):
        bundle = build_report_bundle(
            sample_study(kind, study_suffix=suffix), sample_findings(kind), sample_device(),
            f"{kind} report", fixed_clock(),
        )
        stored[kind] = put_bundle(pg_engine, bundle)
    app = FastAPI()
    app.include_router(create_facade_router(pg_engine, [TOKEN]))
    with _serve(app) as base:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=base, timeout=10) as http:
            assert http.get("/fhir/metadata").status_code == 200
            assert http.get("/fhir/DiagnosticReport").status_code == 401

            def ids(path: str, params: list[tuple[str, str]]) -> list[str]:
                response = http.get(path, params=tuple(params), headers=auth)
                assert response.status_code == 200, response.text
                bundle = response.json()
                Bundle.model_validate(bundle)
                return [e["resource"]["id"] for e in bundle.get("entry", [])]

            reports = ids("/fhir/DiagnosticReport", [("category", "LP29684-5"),
                                                     ("date", "ge2024-03-05T00:00:00+00:00"),
                                                     ("date", "le2024-03-05T23:59:59Z")])
            assert sorted(reports) == sorted(
                {stored["ich"][-1].split("/")[1], stored["stroke"][-1].split("/")[1]}
            )
            ich_patient = stored["ich"][0]
            assert ids("/fhir/DiagnosticReport", [("patient", ich_patient)]) == [
                stored["ich"][-1].split("/")[1]
            ]
            uid = sample_study("stroke", study_suffix="2").study_instance_uid
            assert ids("/fhir/ImagingStudy", [("identifier", f"urn:oid:{uid}")]) == [
                stored["stroke"][1].split("/")[1]
            ]
            observations = ids("/fhir/Observation", [("patient", ich_patient),
                                                     ("category", "imaging")])
            assert len(observations) == 2
            read = http.get(f"/fhir/{stored['ich'][-1]}", headers=auth)
            assert read.json()["meta"]["versionId"] == "2"
