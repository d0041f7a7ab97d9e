"""FHIR results to a real local HTTP endpoint (503 then 200; 401 dead-lettered, replayed from
the CLI after the fix), to the node's own facade, and the priority signal: one per study to a
webhook and as a FHIR Task."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.task import Task
from sqlalchemy import Engine
from typer.testing import CliRunner

from hl7_fhir.facade.store import get_resource
from hl7_fhir.samples import sample_study
from infernode.cli_deliveries import app as deliveries_cli
from tests.integration.workers.outbox.outbox_support import (
    MovableClock,
    http_peer,
    running_job,
    succeed,
    write_bundle,
)
from workers import admin as job_admin
from workers.config import WorkersConfig
from workers.jobs import claim
from workers.outbox import admin
from workers.outbox.config import DeliveryConfig
from workers.outbox.runner import DeliveryRunner

BACKOFF = {"base_s": 300, "factor": 2, "max_delay_s": 3600, "jitter": 0}
PHI = ("PAT177", "Sample", "ACC10042")  # the sample study's patient id, name, accession


def _config(*destinations: dict[str, object]) -> WorkersConfig:
    return WorkersConfig(delivery=DeliveryConfig.model_validate(
        {"backoff": BACKOFF, "destinations": list(destinations)}))


def test_fhir_503_then_200_is_delivered_on_the_retry(
        engine: Engine, clock: MovableClock, tmp_path: Path) -> None:
    with http_peer() as ehr:
        ehr.script.append((503, {"resourceType": "OperationOutcome",
                                 "issue": [{"severity": "error", "code": "transient"}]}))
        cfg = _config({"type": "fhir", "name": "ehr", "base_url": f"{ehr.url}/fhir",
                       "token": "s3cret"})
        ref = write_bundle(tmp_path)
        job = running_job(engine, cfg, clock())
        succeed(engine, job, clock(), (ref,))
        runner = DeliveryRunner(engine, cfg, clock=clock)
        assert runner.run_due_once().retried == 1
        view = admin.list_deliveries(engine)[0]
        assert (view.state, view.attempts, view.last_reason) == ("pending", 1, "transient:503")
        assert view.next_try_at == clock() + timedelta(seconds=300)
        clock.advance(299)
        assert runner.run_due_once().claimed == 0
        clock.advance(2)
        assert runner.run_due_once().delivered == 1
        view = admin.get_delivery(engine, view.id)
        assert (view.state, view.attempts, view.delivered_at) == ("delivered", 2, clock())
        posts = ehr.posts("/fhir")
        assert len(posts) == 2
        assert all(p.headers["Authorization"] == "Bearer s3cret" for p in posts)
        sent = Bundle.model_validate_json(posts[-1].body)
        assert sent.type == "transaction"
        assert posts[-1].body == posts[0].body  # the same Bundle, resent unchanged
        runner.stop()


def test_fhir_401_is_dead_with_its_reason_and_replayed_after_the_fix(
        engine: Engine, db_url: str, clock: MovableClock, tmp_path: Path) -> None:
    with http_peer() as ehr:
        ehr.default = (401, {"resourceType": "OperationOutcome",
                             "issue": [{"severity": "error", "code": "login"}]})
        cfg = _config({"type": "fhir", "name": "ehr", "base_url": ehr.url, "token": "old"})
        job = running_job(engine, cfg, clock())
        succeed(engine, job, clock(), (write_bundle(tmp_path),))
        runner = DeliveryRunner(engine, cfg, clock=clock)
        assert runner.run_due_once().dead == 1
        clock.advance(48 * 3600)
        assert runner.run_due_once().claimed == 0  # dead letters are not retried

        cli = CliRunner()
        listed = cli.invoke(deliveries_cli, ["dead-letters", "--db", db_url, "--json"])
        assert listed.exit_code == 0, listed.output
        (dead,) = json.loads(listed.output)
        assert dead["last_reason"] == "permanent:401"
        assert "HTTP 401" in dead["last_error"] and "login" in dead["last_error"]
        assert not any(word in dead["last_error"] for word in PHI)

        ehr.default = (200, {"resourceType": "Bundle", "type": "transaction-response"})
        replayed = cli.invoke(deliveries_cli, ["replay", str(dead["id"]), "--db", db_url])
        assert replayed.exit_code == 0, replayed.output
        view = admin.get_delivery(engine, dead["id"])
        assert (view.state, view.attempts) == ("pending", 0)
        # the CLI stamps the replay with the real time, before the test clock's (48 h ahead)
        assert runner.run_due_once().delivered == 1
        assert admin.get_delivery(engine, dead["id"]).state == "delivered"
        assert len(ehr.posts()) == 2
        shown = cli.invoke(deliveries_cli, ["show", str(dead["id"]), "--db", db_url])
        assert json.loads(shown.output)["state"] == "delivered"
        delivered = cli.invoke(deliveries_cli, ["list", "--state", "delivered", "--json",
                                                "--db", db_url])
        assert [d["id"] for d in json.loads(delivered.output)] == [dead["id"]]
        wrong = cli.invoke(deliveries_cli, ["list", "--state", "lost", "--db", db_url])
        assert wrong.exit_code == 1
        again = cli.invoke(deliveries_cli, ["replay", str(dead["id"]), "--db", db_url])
        assert again.exit_code == 1  # only dead letters are replayed
        runner.stop()


def test_the_facade_serves_the_delivered_report(
        engine: Engine, clock: MovableClock, tmp_path: Path) -> None:
    cfg = WorkersConfig()  # the default: the node's own facade only
    job = running_job(engine, cfg, clock())
    ref = write_bundle(tmp_path)
    succeed(engine, job, clock(), (ref,))
    assert DeliveryRunner(engine, cfg, clock=clock).run_due_once().delivered == 1
    bundle = json.loads(Path(ref.path or "").read_text())
    report = next(e["resource"] for e in bundle["entry"]
                  if e["resource"]["resourceType"] == "DiagnosticReport")
    stored = [get_resource(engine, "DiagnosticReport", rid) for rid in
              _ids(engine, "DiagnosticReport")]
    assert [s["identifier"] for s in stored if s] == [report["identifier"]]


def _ids(engine: Engine, resource_type: str) -> list[str]:
    from sqlalchemy import select

    from hl7_fhir.facade.store import fhir_resources

    with engine.connect() as conn:
        return list(conn.execute(select(fhir_resources.c.id).where(
            fhir_resources.c.resource_type == resource_type)).scalars())


def test_one_priority_signal_per_study_to_the_webhook_and_as_a_fhir_task(
        engine: Engine, clock: MovableClock, tmp_path: Path) -> None:
    with http_peer() as hooks:
        hooks.default = (204, {})
        cfg = _config(
            {"type": "webhook", "name": "pager", "url": f"{hooks.url}/signal", "token": "w"},
            {"type": "fhir-task", "name": "worklist", "base_url": f"{hooks.url}/fhir"})
        study_uid = sample_study("ich").study_instance_uid
        bundle = write_bundle(tmp_path)
        first = running_job(engine, cfg, clock(), study_uid=study_uid)
        succeed(engine, first, clock(), (bundle,), flag="critical: ICH suspected")
        runner = DeliveryRunner(engine, cfg, clock=clock)
        assert runner.run_due_once().delivered == 2

        # the same job run again (operator retry), then an amendment of the study: both flag
        clock.advance(60)
        job_admin.retry(engine, first.job_id, clock())
        again = claim(engine, cfg, first.job_id, "w", "cpu", clock()).context
        assert again is not None
        succeed(engine, again, clock(), (bundle,), flag="critical: ICH suspected")
        amended = running_job(engine, cfg, clock(), study_uid=study_uid, amendment=1)
        succeed(engine, amended, clock(), (bundle,), flag="critical: ICH suspected (amended)")
        clock.advance(60)
        runner.run_due_once()

        signals = hooks.posts("/signal")
        assert len(signals) == 1
        body = signals[0].json()
        assert body["study_instance_uid"] == study_uid
        assert (body["flag"], body["priority"], body["pipeline"]) == (
            "critical: ICH suspected", "stat", "ich")
        assert signals[0].headers["Authorization"] == "Bearer w"
        assert not any(word in signals[0].body.decode() for word in PHI)

        tasks = hooks.posts("/fhir")
        assert len(tasks) == 1
        sent = Bundle.model_validate_json(tasks[0].body)
        (entry,) = sent.entry or []
        assert entry.request is not None and entry.request.ifNoneExist
        assert entry.resource is not None
        task = Task.model_validate(entry.resource.model_dump(by_alias=True))
        report = json.loads(Path(bundle.path or "").read_text())
        dr = next(e["resource"] for e in report["entry"]
                  if e["resource"]["resourceType"] == "DiagnosticReport")
        assert (task.priority, task.status, task.intent) == ("stat", "requested", "order")
        assert task.focus is not None and task.focus.identifier is not None
        assert task.focus.identifier.value == dr["identifier"][0]["value"]
        assert task.description == "critical: ICH suspected"
        runner.stop()
