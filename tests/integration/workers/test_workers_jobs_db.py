"""The job state machine, routing records, operator actions and metrics against SQLite and the
real PostgreSQL; and the Alembic revision against the table definitions."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from dicom_node.events import StudyReady
from tests.integration.workers.workers_support import make_config
from workers import samples
from workers.admin import get_job, job_detail, replay, retry, routing_history
from workers.db import jobs, make_engine, metadata, utcnow
from workers.errors import InvalidTransition
from workers.jobs import (
    FREE_INTERRUPTIONS,
    backoff_s,
    claim,
    claim_next,
    complete,
    fail,
    heartbeat,
    release,
)
from workers.messages import JobState, PipelineResult
from workers.metrics import register_metrics
from workers.reconciler import reconcile_once
from workers.submit import on_study_ready

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    if request.param == "postgresql":
        return request.getfixturevalue("pg_engine")
    sqlite = make_engine(f"sqlite:///{tmp_path / 'jobs.db'}")
    metadata.create_all(sqlite)
    return sqlite


def _study(*descriptions: str, **kw) -> StudyReady:
    return samples.study(*(samples.series(series_description=d) for d in descriptions), **kw)


def test_repeated_study_ready_is_idempotent_and_not_routed_is_recorded(
        tmp_path: Path, engine: Engine) -> None:
    cfg = make_config(tmp_path, None)
    study = _study("alpha routine", "beta stat")
    first = on_study_ready(engine, cfg, study)
    again = on_study_ready(engine, cfg, study)
    assert sorted(j.id for j in first) == sorted(j.id for j in again)
    assert {(j.pipeline, j.queue) for j in first} == {("alpha", "alpha"), ("beta", "beta.stat")}
    other = _study("nothing matches this")
    assert on_study_ready(engine, cfg, other) == []
    (decision,) = routing_history(engine, other.study_instance_uid)
    assert decision["routed"] is False
    assert "no rule matched" in decision["reason"]
    assert "SeriesDescription matches" in decision["reason"]


def test_amended_study_supersedes_and_a_late_old_amendment_does_nothing(
        tmp_path: Path, engine: Engine) -> None:
    cfg = make_config(tmp_path, None)
    uid = f"2.25.{uuid.uuid4().int}"
    (old,) = on_study_ready(engine, cfg, _study("alpha routine", study_uid=uid))
    (new,) = on_study_ready(engine, cfg, _study("alpha routine", study_uid=uid, amendment=1))
    assert new.id != old.id
    assert get_job(engine, old.id).state is JobState.SUPERSEDED
    assert get_job(engine, new.id).state is JobState.QUEUED
    assert on_study_ready(engine, cfg, _study("alpha routine", study_uid=uid)) == []
    # The job of the amendment knows it is one (its DICOM outputs get new instance UIDs).
    claimed = claim(engine, cfg, new.id, "w", "cpu", utcnow()).context
    assert claimed is not None and claimed.amendment == 1


def test_claim_is_exclusive_and_a_stale_attempt_cannot_finish(tmp_path: Path,
                                                              engine: Engine) -> None:
    cfg = make_config(tmp_path, None)
    (job,) = on_study_ready(engine, cfg, _study("alpha routine"))
    now = utcnow()
    first = claim(engine, cfg, job.id, "w1", "cpu", now)
    assert first.context is not None and first.context.attempt == 1
    second = claim(engine, cfg, job.id, "w2", "cpu", now)
    assert second.context is None and "running" in second.reason
    # the lease runs out: the reconciler takes the job back, a new worker claims it
    later = now + timedelta(seconds=cfg.lease_s + 1)
    assert reconcile_once(engine, cfg, later).requeued == 1
    third = claim_next(engine, cfg, ["alpha"], "w3", "cpu", later)
    assert third is not None and third.attempt == 2
    assert not complete(engine, job.id, 1, PipelineResult(), later, lambda: later)  # fenced
    assert complete(engine, job.id, 2, PipelineResult(), later, lambda: later)
    assert get_job(engine, job.id).worker == "w3"


def test_transient_backoff_dead_letter_permanent_and_retry(tmp_path: Path,
                                                           engine: Engine) -> None:
    cfg = make_config(tmp_path, None, max_attempts=2, retry_backoff_s=30.0)
    (job,) = on_study_ready(engine, cfg, _study("alpha routine"))
    now = utcnow()
    claim(engine, cfg, job.id, "w", "cpu", now)
    state = fail(engine, cfg, job.id, 1, permanent=False, reason="pacs_down", error="x", now=now)
    assert state is JobState.QUEUED
    backing_off = get_job(engine, job.id)
    assert backing_off.not_before == now + timedelta(seconds=30)
    assert claim(engine, cfg, job.id, "w", "cpu", now).context is None
    assert claim_next(engine, cfg, ["alpha"], "w", "cpu", now) is None
    later = now + timedelta(seconds=31)
    assert claim_next(engine, cfg, ["alpha"], "w", "cpu", later) is not None
    state = fail(engine, cfg, job.id, 2, permanent=False, reason="pacs_down", error="y", now=later)
    assert state is JobState.DEAD_LETTERED
    with pytest.raises(InvalidTransition):
        retry(engine, (on_study_ready(engine, cfg, _study("beta routine"))[0]).id, later)
    (replayed,) = replay(engine, later, job_ids=[job.id])
    assert replayed.state is JobState.QUEUED
    again = claim(engine, cfg, job.id, "w", "cpu", later).context
    assert again is not None and again.attempt == 1
    assert fail(engine, cfg, job.id, 1, permanent=True, reason="bad_input", error="z",
                now=later) is JobState.FAILED
    history = job_detail(engine, job.id)["attempt_history"]
    assert [(h["replay"], h["attempt"], h["outcome"]) for h in history] == [
        (0, 1, "transient"), (0, 2, "transient"), (1, 1, "permanent")]


def test_a_released_attempt_is_queued_due_uncounted_and_fenced(tmp_path: Path,
                                                               engine: Engine) -> None:
    cfg = make_config(tmp_path, None, max_attempts=2, retry_backoff_s=30.0)
    (job,) = on_study_ready(engine, cfg, _study("alpha routine"))
    now = utcnow()
    first = claim_next(engine, cfg, ["alpha"], "w1", "cpu", now)
    assert first is not None and first.attempt == 1
    later = now + timedelta(seconds=5)
    assert release(engine, job.id, 1, later)
    assert not release(engine, job.id, 1, later)  # once only
    queued = get_job(engine, job.id)
    assert queued.state is JobState.QUEUED and queued.attempts == 1
    assert _budget(engine, job.id) == 3  # the budget grew by the interrupted attempt
    assert queued.not_before == later and queued.sent_at is None
    assert queued.queued_at == job.queued_at  # it keeps its place in the queue
    # the released attempt's late outcomes find nothing to update
    assert not heartbeat(engine, cfg, job.id, 1, later)
    assert not complete(engine, job.id, 1, PipelineResult(), later, lambda: later)
    assert fail(engine, cfg, job.id, 1, permanent=True, reason="late", error="x",
                now=later) is None
    assert get_job(engine, job.id).state is JobState.QUEUED
    # due at once, the next claim is attempt 2; the released one did not use up the budget
    second = claim_next(engine, cfg, ["alpha"], "w2", "cpu", later)
    assert second is not None and second.attempt == 2
    assert fail(engine, cfg, job.id, 2, permanent=False, reason="pacs_down", error="y",
                now=later) is JobState.QUEUED
    backing_off = get_job(engine, job.id)
    assert backing_off.not_before == later + timedelta(seconds=backoff_s(cfg, 2))
    last = later + timedelta(seconds=backoff_s(cfg, 2) + 1)
    assert claim(engine, cfg, job.id, "w3", "cpu", last).context is not None
    assert fail(engine, cfg, job.id, 3, permanent=False, reason="pacs_down", error="z",
                now=last) is JobState.DEAD_LETTERED
    dead = get_job(engine, job.id)
    assert dead.last_error is not None and dead.last_error.startswith("gave up after 3 attempts")
    history = job_detail(engine, job.id)["attempt_history"]
    assert [(h["attempt"], h["outcome"], h["reason"]) for h in history] == [
        (1, "interrupted", "worker_stopping"), (2, "transient", "pacs_down"),
        (3, "transient", "pacs_down")]
    assert history[0]["run_s"] == pytest.approx(5.0, abs=0.01)


def test_a_job_interrupted_at_every_run_is_dead_lettered_in_the_end_and_retry_resets_it(
        tmp_path: Path, engine: Engine) -> None:
    """Interrupted attempts are free up to FREE_INTERRUPTIONS a run; a job whose every attempt
    ends with its worker stopping (it makes the node restart, say) is then dead-lettered
    instead of holding the queue. An operator's retry starts with the configured budget."""
    cfg = make_config(tmp_path, None, max_attempts=2)
    (job,) = on_study_ready(engine, cfg, _study("alpha routine"))
    now = utcnow()
    states = []
    for attempt in range(1, 10):
        context = claim_next(engine, cfg, ["alpha"], "w", "cpu", now)
        if context is None:
            break
        assert context.attempt == attempt
        states.append(release(engine, job.id, attempt, now))
    assert states == [JobState.QUEUED] * (FREE_INTERRUPTIONS + 1) + [JobState.DEAD_LETTERED]
    dead = get_job(engine, job.id)
    assert _budget(engine, job.id) == 2 + FREE_INTERRUPTIONS
    assert dead.last_error is not None and "interrupted" in dead.last_error
    again = retry(engine, job.id, now)
    assert again.state is JobState.QUEUED and again.attempts == 0
    assert _budget(engine, job.id) == 2


def _budget(engine: Engine, job_id: str) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(sa.select(jobs.c.max_attempts).where(jobs.c.id == job_id)))


def test_metrics_come_from_the_jobs_table(tmp_path: Path, engine: Engine) -> None:
    cfg = make_config(tmp_path, None, max_attempts=1)
    (ok,) = on_study_ready(engine, cfg, _study("alpha routine"))
    (dead,) = on_study_ready(engine, cfg, _study("beta routine"))
    on_study_ready(engine, cfg, _study("alpha stat"))
    now = utcnow()
    claim(engine, cfg, ok.id, "w", "cpu", now)
    complete(engine, ok.id, 1, PipelineResult(), now + timedelta(seconds=2),
             lambda: now + timedelta(seconds=3))
    claim(engine, cfg, dead.id, "w", "cpu", now)
    fail(engine, cfg, dead.id, 1, permanent=False, reason="timeout", error="t", now=now)
    registry = CollectorRegistry()
    register_metrics(registry, engine)
    value = registry.get_sample_value
    assert value("infernode_queue_depth", {"queue": "alpha.stat"}) == 1
    assert value("infernode_dead_letters", {"pipeline": "beta"}) == 1
    assert value("infernode_job_failures_total", {"pipeline": "beta", "reason": "timeout"}) == 1
    labels = {"pipeline": "alpha", "stage": "run"}
    assert value("infernode_job_stage_seconds_count", labels) == 1
    assert value("infernode_job_stage_seconds_sum", labels) == pytest.approx(2.0, abs=0.01)
    assert value("infernode_job_stage_seconds_bucket", {**labels, "le": "1"}) == 0
    assert value("infernode_job_stage_seconds_bucket", {**labels, "le": "2.5"}) == 1
    assert value("infernode_job_stage_seconds_sum", {"pipeline": "alpha", "stage": "record"}
                 ) == pytest.approx(1.0, abs=0.01)
