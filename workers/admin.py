"""Operator views and actions over jobs: listing, detail with attempt history, dead letters,
retry and replay. Used by `infernode jobs ...` and the web API."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select, update

from dicom_node.events import StudyReady
from workers.db import as_utc, job_attempts, jobs, routing_decisions
from workers.errors import InvalidTransition, JobNotFound
from workers.jobs import FREE_INTERRUPTIONS, interrupted_attempts, row_to_job
from workers.messages import Job, JobState


def list_jobs(engine: Engine, *, states: Sequence[JobState] = (), study: str | None = None,
              pipeline: str | None = None, limit: int = 100) -> list[Job]:
    """Jobs, newest first, optionally filtered."""
    query = select(jobs).order_by(jobs.c.created_at.desc(), jobs.c.id).limit(limit)
    if states:
        query = query.where(jobs.c.state.in_([s.value for s in states]))
    if study:
        query = query.where(jobs.c.study_instance_uid == study)
    if pipeline:
        query = query.where(jobs.c.pipeline == pipeline)
    with engine.connect() as conn:
        return [row_to_job(r) for r in conn.execute(query).mappings()]


def get_job(engine: Engine, job_id: str) -> Job:
    """One job. Raises JobNotFound."""
    with engine.connect() as conn:
        row = conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().first()
    if row is None:
        raise JobNotFound(f"no job {job_id}")
    return row_to_job(row)


def job_detail(engine: Engine, job_id: str) -> dict[str, Any]:
    """Everything recorded about one job: the row (with result and stage durations) and one
    entry per attempt. Raises JobNotFound."""
    with engine.connect() as conn:
        row = conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().first()
        if row is None:
            raise JobNotFound(f"no job {job_id}")
        attempts = conn.execute(select(job_attempts).where(job_attempts.c.job_id == job_id)
                                .order_by(job_attempts.c.replay, job_attempts.c.attempt)
                                ).mappings().all()
    detail = {k: (as_utc(v).isoformat() if isinstance(v, datetime) else v)  # type: ignore[union-attr]
              for k, v in row.items()}
    detail["attempt_history"] = [
        {k: (as_utc(v).isoformat() if isinstance(v, datetime) else v)  # type: ignore[union-attr]
         for k, v in a.items() if k not in ("id", "job_id")}
        for a in attempts
    ]
    return detail


def dead_letters(engine: Engine, *, pipeline: str | None = None, limit: int = 100) -> list[Job]:
    """Jobs that gave up after their attempts, with the reason in `last_error`."""
    return list_jobs(engine, states=(JobState.DEAD_LETTERED,), pipeline=pipeline, limit=limit)


_RETRYABLE = (JobState.FAILED, JobState.DEAD_LETTERED, JobState.SUCCEEDED)


def retry(engine: Engine, job_id: str, now: datetime) -> Job:
    """Queue a failed, dead-lettered or succeeded job again with a fresh set of attempts. Its
    outputs keep their UIDs, so the re-run replaces them. Raises JobNotFound or
    InvalidTransition (running, queued or superseded jobs)."""
    job = get_job(engine, job_id)
    if job.state not in _RETRYABLE:
        raise InvalidTransition(f"cannot retry a {job.state} job")
    with engine.begin() as conn:
        # the budget as it was before `release` raised it for this run's interrupted attempts
        run = int(conn.scalar(select(jobs.c.replays).where(jobs.c.id == job_id)) or 0)
        raised = min(interrupted_attempts(conn, job_id, run), FREE_INTERRUPTIONS)
        done = conn.execute(update(jobs).where(
            jobs.c.id == job_id, jobs.c.state == job.state.value,
        ).values(state=JobState.QUEUED.value, attempts=0, replays=jobs.c.replays + 1,
                 max_attempts=jobs.c.max_attempts - raised,
                 queued_at=now, sent_at=None, not_before=None, started_at=None,
                 finished_at=None, run_finished_at=None, lease_until=None, updated_at=now))
    if done.rowcount != 1:
        raise InvalidTransition("the job changed state meanwhile; look again")
    return get_job(engine, job_id)


def give_up(engine: Engine, job_id: str, now: datetime, reason: str) -> Job:
    """Dead-letter a queued job by hand (e.g. a study that must not be analysed): no worker
    will claim it, and it can be replayed later like any dead letter. Raises JobNotFound or
    InvalidTransition (only queued jobs; a running job ends its attempt first)."""
    job = get_job(engine, job_id)
    if job.state is not JobState.QUEUED:
        raise InvalidTransition(f"cannot dead-letter a {job.state} job (only queued jobs)")
    with engine.begin() as conn:
        done = conn.execute(update(jobs).where(
            jobs.c.id == job_id, jobs.c.state == JobState.QUEUED.value,
        ).values(state=JobState.DEAD_LETTERED.value, finished_at=now, updated_at=now,
                 last_error=f"dead-lettered by an operator: {reason}"[:2000]))
    if done.rowcount != 1:
        raise InvalidTransition("the job changed state meanwhile; look again")
    return get_job(engine, job_id)


def replay(engine: Engine, now: datetime, *, job_ids: Sequence[str] = (),
           pipeline: str | None = None) -> list[Job]:
    """Queue dead-lettered jobs again: the given ids, or every dead letter (of `pipeline`)."""
    ids = list(job_ids) or [j.id for j in dead_letters(engine, pipeline=pipeline, limit=10_000)]
    replayed = []
    for job_id in ids:
        job = get_job(engine, job_id)
        if job.state is not JobState.DEAD_LETTERED:
            raise InvalidTransition(f"job {job_id} is {job.state}, not dead-lettered")
        replayed.append(retry(engine, job_id, now))
    return replayed


def routing_history(engine: Engine, study_instance_uid: str) -> list[dict[str, Any]]:
    """The recorded routing decisions (routed or not, with the reason) of one study."""
    with engine.connect() as conn:
        rows = conn.execute(select(routing_decisions).where(
            routing_decisions.c.study_instance_uid == study_instance_uid,
        ).order_by(routing_decisions.c.amendment)).mappings().all()
    return [dict(r) for r in rows]


def recorded_study(engine: Engine, study_instance_uid: str) -> StudyReady | None:
    """The latest StudyReady routed for this study (highest amendment), or None."""
    with engine.connect() as conn:
        row = conn.execute(select(routing_decisions.c.study).where(
            routing_decisions.c.study_instance_uid == study_instance_uid,
        ).order_by(routing_decisions.c.amendment.desc()).limit(1)).first()
    return StudyReady.model_validate(row[0]) if row is not None else None


def outcome_counts(engine: Engine) -> list[tuple[str, str, str, int]]:
    """(pipeline, outcome, reason, jobs) of finished jobs: how many studies got a result and
    how many a not-analysed report, and why (the reason code; "" for results)."""
    query = (select(jobs.c.pipeline, jobs.c.outcome, jobs.c.outcome_reason, func.count())
             .where(jobs.c.outcome.is_not(None))
             .group_by(jobs.c.pipeline, jobs.c.outcome, jobs.c.outcome_reason)
             .order_by(jobs.c.pipeline, jobs.c.outcome, jobs.c.outcome_reason))
    with engine.connect() as conn:
        return [(p, o, r or "", int(n)) for p, o, r, n in conn.execute(query)]

