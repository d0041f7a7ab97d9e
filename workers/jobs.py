"""The job state machine over the jobs table.

`queued -> running -> succeeded | failed | dead_lettered`, plus `superseded`; a running job
goes back to `queued` after a transient failure (`fail`: backoff, and dead-lettered once
`max_attempts` attempts failed) or when its worker stops (`release`: due at once, and the
budget grows by the interrupted attempt, up to FREE_INTERRUPTIONS a run). Every transition is
one conditional UPDATE, so two workers holding the same job id (a re-delivered message, a
reconciler re-send) cannot both run it: claiming needs `state = 'queued'`, finishing needs the
attempt number the claim returned (a fencing token, never decremented: a released attempt's late
result finds nothing to update), and a job whose lease ran out is taken back by the reconciler.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, insert, or_, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError

from dicom_node.events import SeriesSummary, StudyReady
from workers.config import WorkersConfig
from workers.db import as_utc, job_attempts, jobs
from workers.messages import (
    Job,
    JobContext,
    JobState,
    PipelineResult,
    Priority,
    queue_name,
)
from workers.outbox.config import DeliveryConfig
from workers.outbox.record import JobFacts, record_outputs
from workers.routing import RouteDecision

_PRIORITY_RANK = {Priority.STAT.value: 0, Priority.ROUTINE.value: 1}
INTERRUPTED = "interrupted"
"""The outcome of an attempt handed back by `release` (job_attempts.outcome)."""
FREE_INTERRUPTIONS = 3
"""Attempts of one run that `release` hands back without using up the job's budget."""


def row_to_job(row: RowMapping) -> Job:
    """The typed view of one jobs row."""
    series = row["series"] or []
    return Job(
        id=row["id"], study_instance_uid=row["study_instance_uid"], pipeline=row["pipeline"],
        model_version=row["model_version"], amendment=row["amendment"],
        state=JobState(row["state"]), priority=Priority(row["priority"]), queue=row["queue"],
        attempts=row["attempts"],
        series_instance_uids=tuple(s["series_instance_uid"] for s in series),
        created_at=as_utc(row["created_at"]) or row["created_at"],
        queued_at=as_utc(row["queued_at"]),
        sent_at=as_utc(row["sent_at"]), started_at=as_utc(row["started_at"]),
        run_finished_at=as_utc(row["run_finished_at"]), finished_at=as_utc(row["finished_at"]),
        not_before=as_utc(row["not_before"]), last_error=row["last_error"],
        error_reason=row["error_reason"], worker=row["worker"],
        outcome=row.get("outcome"), outcome_reason=row.get("outcome_reason"),
        rule=",".join(row["rules"] or []) or None,
    )


def _seconds(later: datetime | None, earlier: datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    return max(0.0, (later - earlier).total_seconds())


def create_jobs(
    conn: Connection,
    cfg: WorkersConfig,
    study: StudyReady,
    decisions: Sequence[RouteDecision],
    now: datetime,
) -> list[Job]:
    """Insert one queued job per decision, idempotently on (study, pipeline, model version,
    amendment), and supersede the same pipeline's jobs of earlier amendments. A decision for an
    amendment older than an existing job of that pipeline creates nothing."""
    by_uid = {s.series_instance_uid: s for s in study.series}
    created: list[Job] = []
    for decision in decisions:
        spec = cfg.pipelines[decision.pipeline]
        same_pipeline = and_(jobs.c.study_instance_uid == study.study_instance_uid,
                             jobs.c.pipeline == decision.pipeline)
        newer = conn.execute(select(jobs.c.id).where(
            same_pipeline, jobs.c.amendment > study.amendment).limit(1)).first()
        if newer is not None:
            continue
        key = and_(same_pipeline, jobs.c.model_version == spec.model_version,
                   jobs.c.amendment == study.amendment)
        row = conn.execute(select(jobs).where(key)).mappings().first()
        if row is None:
            values = _new_job_values(cfg, study, decision, spec.model_version, by_uid, now)
            try:
                with conn.begin_nested():
                    conn.execute(insert(jobs).values(**values))
            except IntegrityError:
                pass  # a concurrent delivery of the same StudyReady inserted it first
            row = conn.execute(select(jobs).where(key)).mappings().one()
        conn.execute(update(jobs).where(
            same_pipeline, jobs.c.amendment < study.amendment,
            jobs.c.state != JobState.SUPERSEDED.value,
        ).values(state=JobState.SUPERSEDED.value, lease_until=None, updated_at=now,
                 last_error=f"superseded by amendment {study.amendment}"))
        created.append(row_to_job(row))
    return created


def _new_job_values(
    cfg: WorkersConfig,
    study: StudyReady,
    decision: RouteDecision,
    model_version: str,
    by_uid: dict[str, SeriesSummary],
    now: datetime,
) -> dict[str, Any]:
    series = [by_uid[uid].model_dump(mode="json") for uid in decision.series_instance_uids]
    return {
        "id": str(uuid.uuid4()), "study_instance_uid": study.study_instance_uid,
        "pipeline": decision.pipeline, "model_version": model_version,
        "amendment": study.amendment, "state": JobState.QUEUED.value,
        "priority": decision.priority.value,
        "queue": queue_name(decision.pipeline, decision.priority), "attempts": 0,
        "max_attempts": cfg.max_attempts, "replays": 0, "rules": list(decision.rules),
        "series": series, "study_completed_at": study.completed_at, "created_at": now,
        "queued_at": now, "updated_at": now,
        "route_s": _seconds(now, as_utc(study.completed_at)),
    }


def mark_sent(engine: Engine, job_id: str, now: datetime) -> None:
    """Record that the broker accepted a message for a queued job."""
    with engine.begin() as conn:
        conn.execute(update(jobs).where(jobs.c.id == job_id,
                                        jobs.c.state == JobState.QUEUED.value)
                     .values(sent_at=now, updated_at=now))


@dataclass(frozen=True)
class Claim:
    """The outcome of trying to start a job: a context to run, or why not."""

    context: JobContext | None
    reason: str = ""


def _start(conn: Connection, row: RowMapping, worker: str, cfg: WorkersConfig,
           device: str, now: datetime) -> JobContext | None:
    attempt = row["attempts"] + 1
    done = conn.execute(update(jobs).where(
        jobs.c.id == row["id"], jobs.c.state == JobState.QUEUED.value,
        jobs.c.attempts == row["attempts"],
    ).values(state=JobState.RUNNING.value, attempts=attempt, started_at=now, worker=worker,
             lease_until=now + timedelta(seconds=cfg.lease_s), run_finished_at=None,
             updated_at=now))
    if done.rowcount != 1:
        return None
    conn.execute(insert(job_attempts).values(job_id=row["id"], replay=row["replays"],
                                             attempt=attempt, worker=worker, started_at=now))
    return JobContext(
        job_id=row["id"], attempt=attempt, study_instance_uid=row["study_instance_uid"],
        pipeline=row["pipeline"], model_version=row["model_version"],
        series=tuple(SeriesSummary.model_validate(s) for s in row["series"]), device=device,
        amendment=row["amendment"],
    )


def claim(engine: Engine, cfg: WorkersConfig, job_id: str, worker: str, device: str,
          now: datetime) -> Claim:
    """Start the job `job_id` if it is queued and due; otherwise say why not (already running
    under a live lease, finished, superseded, unknown). A message for a job that is not queued
    is a duplicate and is dropped by the caller."""
    with engine.begin() as conn:
        row = conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().first()
        if row is None:
            return Claim(None, "unknown job")
        if row["state"] != JobState.QUEUED.value:
            return Claim(None, f"job is {row['state']}")
        not_before = as_utc(row["not_before"])
        if not_before is not None and not_before > now:
            return Claim(None, "job is backing off; the reconciler re-sends it when due")
        context = _start(conn, row, worker, cfg, device, now)
        return Claim(context, "" if context else "claimed by another worker")


def claim_next(engine: Engine, cfg: WorkersConfig, queues: Sequence[str], worker: str,
               device: str | Callable[[], str], now: datetime) -> JobContext | None:
    """Start the most urgent due job of `queues` (stat first, then oldest). PostgreSQL skips rows
    another claimer holds (FOR UPDATE SKIP LOCKED); SQLite serialises writers, and the
    conditional UPDATE in `_start` makes a lost race a no-op.

    A plain read comes first, so an idle poll takes no lock (on SQLite, not the write lock the
    ingest commits need). `device` may be a callable, asked only once a job is due (finding the
    device imports torch: an idle embedded worker then costs the receiving process nothing)."""
    query = (
        select(jobs).where(
            jobs.c.state == JobState.QUEUED.value, jobs.c.queue.in_(list(queues)),
            or_(jobs.c.not_before.is_(None), jobs.c.not_before <= now),
        ).order_by(jobs.c.priority.desc(), jobs.c.queued_at, jobs.c.id).limit(1)
    )
    # "stat" sorts after "routine" alphabetically, so descending puts stat first
    with engine.connect() as conn:
        if conn.execute(query).first() is None:
            return None
    if callable(device):
        device = device()
    if engine.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    for _ in range(3):
        with engine.begin() as conn:
            if engine.dialect.name == "sqlite":
                # take the write lock first so the read and the update are one critical section
                conn.exec_driver_sql("UPDATE jobs SET id = id WHERE 0")
            row = conn.execute(query).mappings().first()
            if row is None:
                return None
            context = _start(conn, row, worker, cfg, device, now)
            if context is not None:
                return context
    return None


def heartbeat(engine: Engine, cfg: WorkersConfig, job_id: str, attempt: int,
              now: datetime) -> bool:
    """Extend the lease of a running attempt; False when the job was taken away from it."""
    with engine.begin() as conn:
        done = conn.execute(update(jobs).where(
            jobs.c.id == job_id, jobs.c.state == JobState.RUNNING.value,
            jobs.c.attempts == attempt,
        ).values(lease_until=now + timedelta(seconds=cfg.lease_s)))
        return done.rowcount == 1


@dataclass(frozen=True)
class Failed:
    """A deterministic failure whose not-analysed report is recorded with the job: the job
    ends `failed` with this reason, and its outputs are delivered all the same."""

    reason: str
    detail: str


def complete(engine: Engine, job_id: str, attempt: int, result: PipelineResult,
             run_finished_at: datetime, clock: Callable[[], datetime], *,
             delivery: DeliveryConfig | None = None, failed: Failed | None = None) -> bool:
    """Record a finished attempt and its outputs; False (and nothing written) when the attempt
    is stale. The job ends `succeeded`, or `failed` when `failed` says why (the outputs are
    then the not-analysed report, recorded and delivered like any result).
    `finished_at` and the record stage end when the commit of the result has returned.
    The outputs (and the study's priority signal) are recorded for delivery in the same
    transaction; with `delivery`, their delivery rows are planned in it too, otherwise the
    node's delivery runner plans them."""
    now = clock()
    state = JobState.FAILED if failed is not None else JobState.SUCCEEDED
    with engine.begin() as conn:
        row = conn.execute(select(
            jobs.c.queued_at, jobs.c.started_at, jobs.c.study_instance_uid, jobs.c.pipeline,
            jobs.c.priority).where(jobs.c.id == job_id)).mappings().first()
        if row is None:
            return False
        started = as_utc(row["started_at"])
        done = conn.execute(update(jobs).where(
            jobs.c.id == job_id, jobs.c.state == JobState.RUNNING.value,
            jobs.c.attempts == attempt,
        ).values(state=state.value, result=result.model_dump(mode="json"),
                 run_finished_at=run_finished_at, finished_at=now, lease_until=None,
                 updated_at=now,
                 last_error=failed.detail[:2000] if failed else None,
                 error_reason=failed.reason if failed else None,
                 outcome=result.outcome.value, outcome_reason=result.reason,
                 wait_s=_seconds(started, as_utc(row["queued_at"])),
                 run_s=_seconds(run_finished_at, started),
                 record_s=_seconds(now, run_finished_at)))
        if done.rowcount != 1:
            return False
        _end_attempt(conn, job_id, attempt, now, "permanent" if failed else "succeeded",
                     failed.reason if failed else None,
                     failed.detail[:2000] if failed else None,
                     _seconds(run_finished_at, started))
        facts = JobFacts(job_id, row["study_instance_uid"], row["pipeline"], row["priority"])
        record_outputs(conn, facts, result, now, delivery)
    # a second, small write: the commit above is part of the stage being measured
    recorded_at = max(now, clock())
    with engine.begin() as conn:
        conn.execute(update(jobs).where(
            jobs.c.id == job_id, jobs.c.attempts == attempt,
            jobs.c.state == state.value,
        ).values(finished_at=recorded_at, record_s=_seconds(recorded_at, run_finished_at)))
    return True


def _end_attempt(conn: Connection, job_id: str, attempt: int, now: datetime, outcome: str,
                 reason: str | None, error: str | None, run_s: float | None) -> None:
    conn.execute(update(job_attempts).where(
        job_attempts.c.job_id == job_id, job_attempts.c.attempt == attempt,
        job_attempts.c.ended_at.is_(None),
    ).values(ended_at=now, outcome=outcome, reason=reason, error=error, run_s=run_s))


def backoff_s(cfg: WorkersConfig, attempt: int) -> float:
    """Exponential backoff before attempt `attempt + 1`."""
    return float(min(cfg.retry_backoff_s * 2 ** max(0, attempt - 1), cfg.retry_backoff_max_s))


def fail(engine: Engine, cfg: WorkersConfig, job_id: str, attempt: int, *, permanent: bool,
         reason: str, error: str, now: datetime, backoff: bool = True) -> JobState | None:
    """Record a failed attempt. Permanent -> `failed`; transient -> `queued` again after a
    backoff, or `dead_lettered` once `max_attempts` attempts failed (`release` raises
    `max_attempts` for the attempts it hands back, up to FREE_INTERRUPTIONS). None when stale."""
    with engine.begin() as conn:
        row = _running(conn, job_id, attempt)
        if row is None:
            return None
        started = as_utc(row["started_at"])
        values: dict[str, Any] = {"lease_until": None, "updated_at": now, "error_reason": reason,
                                  "last_error": error[:2000], "run_finished_at": now}
        if permanent:
            state = JobState.FAILED
            values["finished_at"] = now
        elif attempt >= row["max_attempts"]:
            state = JobState.DEAD_LETTERED
            values["finished_at"] = now
            values["last_error"] = f"gave up after {attempt} attempts; last: {error}"[:2000]
        else:
            state = JobState.QUEUED
            delay = backoff_s(cfg, attempt) if backoff else 0.0
            values.update(queued_at=now, sent_at=None,
                          not_before=now + timedelta(seconds=delay))
        values["state"] = state.value
        done = conn.execute(update(jobs).where(
            jobs.c.id == job_id, jobs.c.attempts == attempt,
            jobs.c.state == JobState.RUNNING.value).values(**values))
        if done.rowcount != 1:  # handed back or taken meanwhile (`release`, the reconciler)
            return None
        _end_attempt(conn, job_id, attempt, now, "permanent" if permanent else "transient",
                     reason, error[:2000], _seconds(now, started))
        return state


def _running(conn: Connection, job_id: str, attempt: int) -> RowMapping | None:
    """The job's row while `attempt` runs it, else None (finished, handed back, taken)."""
    return conn.execute(select(jobs).where(
        jobs.c.id == job_id, jobs.c.state == JobState.RUNNING.value,
        jobs.c.attempts == attempt)).mappings().first()


def interrupted_attempts(conn: Connection, job_id: str, replay: int) -> int:
    """How many attempts of the job's current run (`replay`) `release` handed back."""
    return int(conn.execute(select(func.count()).select_from(job_attempts).where(
        job_attempts.c.job_id == job_id, job_attempts.c.replay == replay,
        job_attempts.c.outcome == INTERRUPTED)).scalar_one())


def release(engine: Engine, job_id: str, attempt: int, now: datetime, *,
            reason: str = "worker_stopping") -> JobState | None:
    """Hand a running attempt back to the queue at once because its worker is stopping (the
    node's shutdown): the job is `queued` and due now, keeps its place (`queued_at`), is sent
    again by the reconciler when a broker is used, and the attempt is recorded as
    `interrupted`. Such an attempt raises `max_attempts` by one, so a restart does not use up
    the job's budget, for up to FREE_INTERRUPTIONS attempts of a run; beyond that they count
    like failures (a job whose every run ends in a restart is dead-lettered in the end instead
    of holding the queue). `attempts` stays as it is, so the released attempt's late
    `complete`, `fail` or `heartbeat` is refused, and the next claim runs attempt + 1. The new
    state, or None (nothing written) when the attempt is no longer running."""
    with engine.begin() as conn:
        row = _running(conn, job_id, attempt)
        if row is None:
            return None
        free = interrupted_attempts(conn, job_id, row["replays"]) < FREE_INTERRUPTIONS
        budget = row["max_attempts"] + (1 if free else 0)
        values: dict[str, Any] = {"lease_until": None, "run_finished_at": None,
                                  "updated_at": now, "max_attempts": budget}
        if attempt >= budget:
            state = JobState.DEAD_LETTERED
            values.update(finished_at=now, error_reason=reason, last_error=(
                f"gave up after {attempt} attempts, each interrupted by its worker stopping"))
        else:
            state = JobState.QUEUED
            values.update(not_before=now, sent_at=None)
        done = conn.execute(update(jobs).where(
            jobs.c.id == job_id, jobs.c.state == JobState.RUNNING.value,
            jobs.c.attempts == attempt).values(state=state.value, **values))
        if done.rowcount != 1:
            return None
        _end_attempt(conn, job_id, attempt, now, INTERRUPTED, reason, None,
                     _seconds(now, as_utc(row["started_at"])))
        return state
