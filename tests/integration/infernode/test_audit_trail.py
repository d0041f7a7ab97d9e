"""The audit trail of a running node: associations (DCMTK storescu), instances per association,
routing, the job run, FHIR facade reads, configuration loaded, exported to a real rsyslog; job
and delivery ends read from their tables once each; the writer drains on stop; `infernode
audit` queries it."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pydicom
import pytest
import sqlalchemy as sa
import yaml
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from infernode.audit import AuditEvent, AuditLog, Category, Outcome, audit_events
from infernode.audit_hooks import AuditMetrics, AuditRecorder
from infernode.audit_outcomes import OutcomeTail
from infernode.cli import app
from infernode.db import create_engine, migrate
from infernode.node import Node
from infernode.settings import load_settings
from tests.integration.infernode.test_audit_export import Rsyslog, parse
from tests.support.net import free_port
from tests.support.peers.dcmtk import ct_series, storescu
from tests.support.postgres import PG_ADMIN_URL
from tests.support.waiting import wait_until
from workers.db import jobs
from workers.outbox.tables import deliveries, outputs

FHIR_TOKEN = "fhir-secret-token-42"
STOW_TOKEN = "stow-secret-token-7"


def stow(base: str, files: list[Path]) -> int:
    boundary = uuid.uuid4().hex
    body = b"".join(b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n"
                    + f.read_bytes() + b"\r\n" for f in files) + b"--" + boundary.encode() + b"--"
    answer = httpx.post(f"{base}/dicom-web/studies", content=body, timeout=60, headers={
        "Authorization": f"Bearer {STOW_TOKEN}",
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'})
    return answer.status_code


def test_every_hop_of_a_study_is_audited_and_exported(tmp_path: Path) -> None:
    repository = Rsyslog(tmp_path / "rsyslog")
    repository.start()
    web_port = free_port()
    settings = load_settings(
        None, data_dir=str(tmp_path / "node"),
        database={"url": f"sqlite:///{tmp_path / 'node.db'}"},
        dicom={"port": 0, "spool_dir": str(tmp_path / "spool"), "min_free_bytes": 0,
               "assembly_poll_s": 0.1},
        web={"port": web_port, "fhir_tokens": [FHIR_TOKEN], "stow_tokens": [STOW_TOKEN]},
        workers={"pipelines": {"noop": {"kind": "noop"}}, "exclusions": [],
                 "rules": [{"name": "ct", "pipeline": "noop", "quiet_period_s": 0.5,
                            "when": {"tag": "Modality", "matches": "CT"}}]},
        audit={"poll_s": 0.2, "syslog": {"host": "127.0.0.1", "port": repository.port,
                                         "tls": False, "poll_s": 0.2}},
    )
    node = Node.build(settings)
    node.start()
    try:
        files = ct_series(tmp_path / "ct", slices=3)
        assert storescu(node.server.port, files).returncode == 0
        assert storescu(node.server.port, files[:1], calling="STRANGER").returncode != 0
        assert storescu(node.server.port, files[:1], called="ELSEWHERE").returncode != 0
        other = ct_series(tmp_path / "ct2", slices=2, seed=1)
        assert stow(f"http://127.0.0.1:{web_port}", other) == 200
        stowed = str(pydicom.dcmread(other[0], stop_before_pixels=True).StudyInstanceUID)
        study = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
        sops = sorted(str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)
                      for f in files)
        fhir = f"http://127.0.0.1:{web_port}/fhir"
        auth = {"Authorization": f"Bearer {FHIR_TOKEN}"}
        assert httpx.get(f"{fhir}/Patient/p-404", headers=auth).status_code == 404
        assert httpx.get(f"{fhir}/DiagnosticReport", params={"patient": "Patient/p9"},
                         headers=auth).status_code == 200
        assert httpx.get(f"{fhir}/Patient/p1",
                         headers={"Authorization": "Bearer guessed"}).status_code == 401

        log = AuditLog(node.engine)
        wait_until(lambda: len(log.query(category="job")) == 2, 60, "the job runs audited")
        assert node.audit is not None and node.audit.recorder.flush()
    finally:
        node.stop()
    rows = log.query(limit=1000)  # the stop is recorded too
    by = {(r.category, r.action): r for r in rows}
    assert [r.category for r in rows].count("config") == 1
    assert [r.action for r in rows if r.category == "application"] == ["stop", "start"]
    accepted = by[("association", "accepted")]
    refusals = {r.actor: r for r in rows if (r.category, r.action) == ("association", "rejected")}
    rejected, miscalled = refusals["STRANGER"], refusals["INFERNODE_SCU"]
    assert (miscalled.subject, miscalled.detail) == ("ELSEWHERE", {"reason": "called_ae"})
    assert (accepted.actor, accepted.source, accepted.subject) == ("INFERNODE_SCU",
                                                                   "127.0.0.1", "INFERNODE")
    assert (rejected.actor, rejected.outcome, rejected.detail) == ("STRANGER", "failure",
                                                                   {"reason": "calling_ae"})
    received = [r for r in rows if r.category == "instances" and r.actor != "STOW-RS"]
    assert len(received) == 1  # one per association, not one per instance
    [by_stow] = [r for r in rows if r.category == "instances" and r.actor == "STOW-RS"]
    assert (by_stow.subject, by_stow.detail["count"], by_stow.source) == (stowed, 2,
                                                                          "127.0.0.1")
    assert received[0].subject == study and received[0].actor == "INFERNODE_SCU"
    assert received[0].detail["count"] == 3
    assert sorted(received[0].detail["sop_instance_uids"]) == sops
    assert by[("routing", "study_ready")].subject == study
    runs = {r.subject: r for r in rows if r.category == "job"}
    assert set(runs) == {study, stowed}
    assert (runs[study].outcome, runs[study].detail["pipeline"]) == ("success", "noop")

    reads = [r for r in rows if r.category == "fhir_read"]
    identity = "token:" + hashlib.sha256(FHIR_TOKEN.encode()).hexdigest()[:12]
    assert sorted((r.action, r.actor, r.subject, r.outcome) for r in reads) == sorted([
        ("read", identity, "Patient/p-404", "failure"),
        ("search", identity, "Patient/p9", "success"),
        ("read", "unknown:" + hashlib.sha256(b"guessed").hexdigest()[:12], "Patient/p1",
         "failure"),
    ])
    dumped = json.dumps([r.__dict__ for r in rows], default=str)
    assert FHIR_TOKEN not in dumped and "guessed" not in dumped and STOW_TOKEN not in dumped

    messages = repository.wait_for(len(rows))
    repository.stop()
    assert len(messages) == len(rows)
    event_ids = {parse(m).find("EventIdentification/EventID").get("originalText")
                 for m in messages}
    assert {"Security Alert", "User Authentication", "DICOM Instances Transferred",
            "DICOM Instances Accessed", "Patient Record", "Query",
            "Application Activity"} <= event_ids


def _ended_job_and_deliveries(engine: sa.Engine, now: datetime) -> str:
    job_id = str(uuid.uuid4())
    with engine.begin() as conn:
        conn.execute(jobs.insert().values(
            id=job_id, study_instance_uid="1.2.3", pipeline="ich", model_version="v",
            state="dead_lettered", priority="routine", queue="ich", attempts=3, max_attempts=3,
            replays=0, rules=[], series=[], created_at=now, queued_at=now, finished_at=now,
            updated_at=now, worker="celery@gpu1", error_reason="model_crashed"))
        output = conn.execute(outputs.insert().values(
            job_id=job_id, study_instance_uid="1.2.3", pipeline="ich", kind="sr",
            uid="1.2.3.9", rank=2, created_at=now, updated_at=now)).inserted_primary_key[0]
        for destination, state in (("pacs", "delivered"), ("ehr", "dead")):
            conn.execute(deliveries.insert().values(
                output_id=output, destination=destination, destination_type="dicom",
                state=state, rank=2, attempts=2, created_at=now, next_try_at=now,
                updated_at=now, last_reason=None if state == "delivered" else "refused"))
    return job_id


def test_job_and_delivery_ends_are_audited_once_across_restarts(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'db'}")
    migrate(engine)
    log = AuditLog(engine)
    job_id = _ended_job_and_deliveries(engine, datetime.now(UTC) - timedelta(seconds=5))
    tail = OutcomeTail(engine, log.record)
    assert tail.poll() == 3
    assert tail.poll() == 0
    assert OutcomeTail(engine, log.record).poll() == 0  # a restarted node: nothing twice
    job = log.query(category="job")[0]
    assert (job.outcome, job.actor, job.detail["job_id"], job.detail["reason"]) == (
        "failure", "celery@gpu1", job_id, "model_crashed")
    sent = {r.actor: (r.outcome, r.detail["reason"]) for r in log.query(category="delivery")}
    assert sent == {"pacs": ("success", None), "ehr": ("failure", "refused")}


def test_the_writer_drains_its_queue_on_stop(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'db'}")
    migrate(engine)
    recorder = AuditRecorder(AuditLog(engine), AuditMetrics(CollectorRegistry()), batch=50)
    for i in range(500):  # queued before the writer even starts
        recorder.submit(AuditEvent(Category.CONSOLE, "action", actor=f"user{i}"))
    recorder.start()
    recorder.stop()
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(audit_events)).scalar() == 500


def test_cli_queries_by_time_category_actor_and_subject(tmp_path: Path) -> None:
    db = tmp_path / "db"
    engine = create_engine(f"sqlite:///{db}")
    migrate(engine)
    log = AuditLog(engine)
    old = datetime.now(UTC) - timedelta(days=3)
    log.record(AuditEvent(Category.LOGIN, "login", Outcome.FAILURE, actor="mallory", at=old))
    log.record(AuditEvent(Category.LOGIN, "login", actor="operator1", source="192.0.2.7"))
    log.record(AuditEvent(Category.INSTANCES, "received", actor="CT1", subject="1.2.3",
                          detail={"count": 2}))
    engine.dispose()
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"database": {"url": f"sqlite:///{db}"}}))
    runner = CliRunner()

    def lines(*args: str) -> list[dict[str, object]]:
        result = runner.invoke(app, ["audit", "-c", str(cfg), "--format", "json", *args])
        assert result.exit_code == 0, result.output
        return [json.loads(line) for line in result.output.splitlines()]

    assert [r["actor"] for r in lines("--category", "login")] == ["operator1", "mallory"]
    assert [r["actor"] for r in lines("--category", "login", "--since", "24h")] == ["operator1"]
    assert [r["actor"] for r in lines("--until", "2d")] == ["mallory"]
    assert [r["detail"] for r in lines("--subject", "1.2.3")] == [{"count": 2}]
    assert [r["category"] for r in lines("--actor", "CT1")] == ["instances"]
    table = runner.invoke(app, ["audit", "-c", str(cfg), "--limit", "1"], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "received" in table.output and "mallory" not in table.output
    refused = runner.invoke(app, ["audit", "-c", str(cfg), "--category", "nonsense"])
    assert refused.exit_code != 0


def test_events_the_database_cannot_take_at_shutdown_are_counted_and_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    name = f"h5_audit_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine = create_engine(PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}")
    try:
        migrate(engine)
        metrics = AuditMetrics(CollectorRegistry())
        recorder = AuditRecorder(AuditLog(engine), metrics)
        recorder.start()
        recorder.submit(AuditEvent(Category.CONSOLE, "before"))
        assert recorder.flush()
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE datname = :name"), {"name": name})
        for i in range(3):
            recorder.submit(AuditEvent(Category.CONSOLE, "during", actor=f"user{i}"))
        recorder.stop()
        assert metrics.written._value.get() == 1
        assert metrics.lost._value.get() == 3
        assert "3 events lost" in caplog.text
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
