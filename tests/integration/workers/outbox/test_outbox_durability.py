"""What the outbox guarantees across crashes, re-runs and concurrent runners: outputs are on
record with the job's success, a runner killed before or while sending leaves nothing lost,
a re-run replaces instead of duplicating, backoff grows to hours and then gives up, and two
runners never claim the same row (SQLite and PostgreSQL)."""

from __future__ import annotations

import importlib.util
import threading
import time
import uuid
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.operations import Operations
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, Table, func, insert, inspect, select, text

from infernode.db import create_engine, migrate
from tests.integration.workers.outbox.outbox_support import (
    MovableClock,
    http_peer,
    running_job,
    succeed,
    wait_until,
    write_bundle,
)
from tests.integration.workers.workers_support import PG_BASE
from workers import admin as job_admin
from workers.config import WorkersConfig
from workers.db import make_engine, metadata
from workers.jobs import claim
from workers.outbox import admin
from workers.outbox.claims import claim_due
from workers.outbox.config import DeliveryConfig
from workers.outbox.metrics import register_delivery_metrics
from workers.outbox.record import plan_deliveries
from workers.outbox.runner import DeliveryRunner
from workers.outbox.tables import deliveries, outputs

REPO = Path(__file__).resolve().parents[4]


def _fhir(url: str, **backoff: float) -> WorkersConfig:
    return WorkersConfig(delivery=DeliveryConfig.model_validate({
        "backoff": {"base_s": 60, "factor": 2, "max_delay_s": 3600, "jitter": 0, **backoff},
        "poll_interval_s": 0.05,
        "destinations": [{"type": "fhir", "name": "ehr", "base_url": url}]}))


def _count(engine: Engine, table: Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _delivered_by_a_new_runner(engine: Engine, cfg: WorkersConfig, what: str) -> None:
    """A runner started on `engine` delivers what is due (waited for as `what`), then stops."""
    runner = DeliveryRunner(engine, cfg)
    runner.start()
    try:
        wait_until(lambda: admin.list_deliveries(engine, states=["delivered"]), 10, what)
    finally:
        runner.stop()


def test_a_runner_stopped_before_it_sent_anything_is_replaced_and_delivers(
        engine: Engine, db_url: str, clock: MovableClock, tmp_path: Path) -> None:
    with http_peer() as ehr:
        cfg = _fhir(ehr.url)
        first = DeliveryRunner(engine, cfg)
        first.start()
        first.stop()  # the node dies before any pass saw the output below
        job = running_job(engine, cfg, clock())
        succeed(engine, job, clock(), (write_bundle(tmp_path),))
        # the job's success and its outputs are one commit; nothing was sent yet
        assert job_admin.get_job(engine, job.job_id).state == "succeeded"
        assert _count(engine, outputs) == 1 and ehr.posts() == []
        engine.dispose()

        restarted = create_engine(db_url)
        _delivered_by_a_new_runner(restarted, cfg, "the restarted runner to deliver")
        assert len(ehr.posts()) == 1
        restarted.dispose()


def test_a_send_still_in_flight_at_stop_is_handed_back_and_the_runner_stops_at_once(
        engine: Engine, clock: MovableClock, tmp_path: Path) -> None:
    """The destination takes the request and never answers: `stop` waits its grace, hands
    the batch back (due again, the attempt not counted) and returns; the next runner delivers
    it. The abandoned send's late outcome would find the row no longer claimed."""
    with http_peer() as ehr:
        answered = threading.Event()
        ehr.hold = answered  # the first request waits until the test ends
        cfg = _fhir(ehr.url)
        job = running_job(engine, cfg, clock())
        succeed(engine, job, clock(), (write_bundle(tmp_path),))
        first = DeliveryRunner(engine, cfg)
        first.start()
        try:
            wait_until(lambda: len(ehr.seen) == 1, 10, "the send to start")
            started = time.monotonic()
            first.stop(grace=0.5)
            stopped_in = time.monotonic() - started
            [row] = admin.list_deliveries(engine)
            assert stopped_in < 5, stopped_in
            assert (row.state, row.attempts) == ("pending", 0)
            with engine.connect() as conn:
                assert conn.execute(select(deliveries.c.claim_token)).scalar_one() is None
            ehr.hold = None
            _delivered_by_a_new_runner(engine, cfg, "the next runner to deliver")
        finally:
            answered.set()
        assert len(ehr.posts()) == 2  # at least once: the abandoned send, then the delivery


def test_a_claim_whose_runner_died_is_taken_again_after_its_lease(
        engine: Engine, clock: MovableClock, tmp_path: Path) -> None:
    with http_peer() as ehr:
        cfg = _fhir(ehr.url)
        job = running_job(engine, cfg, clock())
        succeed(engine, job, clock(), (write_bundle(tmp_path),), )
        with engine.begin() as conn:
            plan_deliveries(conn, cfg.delivery, clock())
        lost = claim_due(engine, ["ehr"], clock(), lease_s=900, limit=10)
        assert lost is not None and len(lost.items) == 1  # then the process is killed
        runner = DeliveryRunner(engine, cfg, clock=clock)
        clock.advance(10)
        assert runner.run_due_once().claimed == 0  # the lease still holds
        clock.advance(900)
        assert runner.run_due_once().delivered == 1
        assert admin.list_deliveries(engine)[0].attempts == 2  # the lost attempt counts
        assert len(ehr.posts()) == 1


def test_deliveries_planned_in_the_completing_transaction_when_given_the_config(
        engine: Engine, clock: MovableClock, tmp_path: Path) -> None:
    from workers.jobs import complete
    from workers.messages import PipelineResult

    cfg = WorkersConfig()
    job = running_job(engine, cfg, clock())
    result = PipelineResult(outputs=(write_bundle(tmp_path),))
    assert complete(engine, job.job_id, job.attempt, result, clock(), clock,
                    delivery=cfg.delivery)
    (view,) = admin.list_deliveries(engine)
    assert (view.destination, view.state, view.attempts) == ("facade", "pending", 0)


def test_a_rerun_replaces_its_outputs_and_sends_them_again(
        engine: Engine, clock: MovableClock, tmp_path: Path) -> None:
    cfg = WorkersConfig()
    ref = write_bundle(tmp_path)
    job = running_job(engine, cfg, clock())
    succeed(engine, job, clock(), (ref,))
    runner = DeliveryRunner(engine, cfg, clock=clock)
    assert runner.run_due_once().delivered == 1

    clock.advance(30)
    job_admin.retry(engine, job.job_id, clock())
    again = claim(engine, cfg, job.job_id, "w", "cpu", clock()).context
    assert again is not None
    succeed(engine, again, clock(), (ref,))
    (view,) = admin.list_deliveries(engine)
    assert (view.state, view.attempts, view.delivered_at) == ("pending", 0, None)
    assert runner.run_due_once().delivered == 1

    amended = running_job(engine, cfg, clock(), study_uid=job.study_instance_uid, amendment=1)
    succeed(engine, amended, clock(), (ref,))
    assert _count(engine, outputs) == 1 and _count(engine, deliveries) == 1
    (view,) = admin.list_deliveries(engine)
    assert (view.job_id, view.state) == (amended.job_id, "pending")


def test_backoff_grows_to_hours_then_gives_up(
        engine: Engine, clock: MovableClock, tmp_path: Path) -> None:
    with http_peer() as ehr:
        ehr.default = (503, {"resourceType": "OperationOutcome", "issue": []})
        cfg = _fhir(ehr.url, give_up_after_s=6 * 3600)
        job = running_job(engine, cfg, clock())
        succeed(engine, job, clock(), (write_bundle(tmp_path),))
        registry = CollectorRegistry()
        runner = DeliveryRunner(engine, cfg, clock=clock,
                                metrics=register_delivery_metrics(registry, engine))
        delays = []
        while True:
            report = runner.run_due_once()
            view = admin.list_deliveries(engine)[0]
            if view.state == "dead":
                break
            assert report.retried == 1
            delays.append((view.next_try_at - clock()).total_seconds())
            assert registry.get_sample_value("infernode_delivery_backlog",
                                             {"destination": "ehr"}) == 1
            clock.now = view.next_try_at
        # the attempt at 6 h 3 min (60 + ... + 1920 + 5 x 3600 s) is the first past 6 h
        assert delays == [60, 120, 240, 480, 960, 1920] + [3600] * 5
        assert view.last_reason == "gave_up" and view.attempts == len(delays) + 1
        assert "HTTP 503" in (view.last_error or "")
        assert len(ehr.posts()) == view.attempts
        assert registry.get_sample_value("infernode_delivery_dead", {"destination": "ehr"}) == 1


def test_rows_of_a_destination_removed_from_the_configuration_are_dead(
        engine: Engine, clock: MovableClock, tmp_path: Path) -> None:
    with http_peer() as ehr:
        cfg = _fhir(ehr.url)
        job = running_job(engine, cfg, clock())
        succeed(engine, job, clock(), (write_bundle(tmp_path),))
        with engine.begin() as conn:
            plan_deliveries(conn, cfg.delivery, clock())
    DeliveryRunner(engine, WorkersConfig(), clock=clock).run_due_once()
    states = {v.destination: (v.state, v.last_reason) for v in admin.list_deliveries(engine)}
    assert states == {"ehr": ("dead", "unconfigured")}


def _fill(engine: Engine, clock: MovableClock, n: int) -> set[int]:
    """n pending deliveries of n outputs of one job."""
    cfg = WorkersConfig()
    job = running_job(engine, cfg, clock())
    succeed(engine, job, clock(), ())
    with engine.begin() as conn:
        for i in range(n):
            conn.execute(insert(outputs).values(
                job_id=job.job_id, study_instance_uid=job.study_instance_uid, pipeline="ich",
                kind="fhir-bundle", uid=f"u{i}", path=None, rank=1, created_at=clock(),
                updated_at=clock()))
        plan_deliveries(conn, cfg.delivery, clock())
        return set(conn.execute(select(deliveries.c.id)).scalars())


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_runners_never_claim_the_same_row(
        backend: str, request: pytest.FixtureRequest, clock: MovableClock) -> None:
    url = request.getfixturevalue("db_url" if backend == "sqlite" else "pg_url")
    engine = create_engine(url)
    migrate(engine)
    try:
        expected = _fill(engine, clock, 60)
        taken: list[list[int]] = [[], []]
        start = threading.Barrier(2)

        def claimer(index: int) -> None:
            start.wait()
            while (got := claim_due(engine, ["facade"], clock(), 900, limit=7)) is not None:
                taken[index].extend(item.id for item in got.items)

        threads = [threading.Thread(target=claimer, args=(i,)) for i in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        # every row claimed once: none lost, none by both
        assert sorted(taken[0] + taken[1]) == sorted(expected)
    finally:
        engine.dispose()


def test_the_outbox_revision_builds_the_declared_tables() -> None:
    revisions = []
    # every revision of the branch, in order: the declared metadata is their sum
    for path in sorted((REPO / "workers" / "migrations").glob("wk_*.py")):
        name = path.stem
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        revisions.append(module)
    assert (revisions[1].down_revision, revisions[1].branch_labels) == (
        revisions[0].revision, None)
    schema = f"wkob_{uuid.uuid4().hex[:8]}"
    admin_engine = make_engine(PG_BASE)
    with admin_engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(f"{PG_BASE}?options=-csearch_path%3D{schema}")
    try:
        with engine.begin() as conn:
            context = MigrationContext.configure(conn)
            with Operations.context(context):
                for revision in revisions:
                    revision.upgrade()
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
            with Operations.context(context):
                revisions[1].downgrade()
            assert {"outputs", "deliveries"}.isdisjoint(inspect(conn).get_table_names())
    finally:
        engine.dispose()
        with admin_engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin_engine.dispose()
