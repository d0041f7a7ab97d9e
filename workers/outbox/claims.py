"""Claiming due deliveries and recording how each attempt ended.

A claim marks due `pending` rows with a fresh token and a lease and counts the attempt, in one
transaction. PostgreSQL skips rows another runner holds (FOR UPDATE SKIP LOCKED); SQLite
serialises writers, so the claim takes the write lock before it reads. A runner killed while
sending leaves rows whose lease runs out; the next claim takes them again. Every finishing
write names the token, so it is refused once the row was re-claimed, replayed or reset by a
re-run of its job.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Engine, and_, func, or_, select, update

from workers.db import as_utc
from workers.outbox.config import BackoffConfig
from workers.outbox.tables import DEAD, DELIVERED, PENDING, deliveries, outputs

_ERROR_CHARS = 2000


@dataclass(frozen=True)
class OutputFacts:
    """The output a delivery sends."""

    id: int
    job_id: str
    study_instance_uid: str
    pipeline: str
    kind: str
    uid: str
    path: str | None
    note: str | None
    recorded_at: datetime


@dataclass(frozen=True)
class DueDelivery:
    """One claimed delivery: the row, its attempt number (this attempt included) and its
    output."""

    id: int
    destination: str
    attempt: int
    first_attempt_at: datetime
    output: OutputFacts


@dataclass(frozen=True)
class Claim:
    token: str
    claimed_at: datetime
    items: tuple[DueDelivery, ...]


def _due(now: datetime, names: Sequence[str]) -> list[ColumnElement[bool]]:
    return [deliveries.c.state == PENDING, deliveries.c.next_try_at <= now,
            deliveries.c.destination.in_(list(names)),
            or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < now)]


def claim_due(engine: Engine, destinations: Sequence[str], now: datetime, lease_s: float,
              limit: int) -> Claim | None:
    """Claim up to `limit` due deliveries to `destinations`, priority signals first, then
    stat, then oldest due. None when nothing is due."""
    if not destinations:
        return None
    query = (select(deliveries.c.id).where(*_due(now, destinations))
             .order_by(deliveries.c.rank, deliveries.c.next_try_at, deliveries.c.id)
             .limit(limit))
    if engine.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    token = str(uuid.uuid4())
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            # the write lock first, so the read and the update are one critical section
            conn.exec_driver_sql("UPDATE deliveries SET id = id WHERE 0")
        ids = list(conn.execute(query).scalars())
        if not ids:
            return None
        conn.execute(update(deliveries).where(deliveries.c.id.in_(ids), *_due(now, destinations))
                     .values(claim_token=token, lease_until=now + timedelta(seconds=lease_s),
                             attempts=deliveries.c.attempts + 1, last_attempt_at=now,
                             first_attempt_at=func.coalesce(deliveries.c.first_attempt_at, now),
                             updated_at=now))
        rows = conn.execute(
            select(deliveries, outputs.c.job_id, outputs.c.study_instance_uid,
                   outputs.c.pipeline, outputs.c.kind, outputs.c.uid, outputs.c.path,
                   outputs.c.note, outputs.c.updated_at.label("recorded_at"))
            .join(outputs, outputs.c.id == deliveries.c.output_id)
            .where(deliveries.c.claim_token == token)
            .order_by(deliveries.c.rank, deliveries.c.next_try_at, deliveries.c.id)
        ).mappings().all()
    items = tuple(
        DueDelivery(
            id=r["id"], destination=r["destination"], attempt=r["attempts"],
            first_attempt_at=as_utc(r["first_attempt_at"]) or now,
            output=OutputFacts(
                id=r["output_id"], job_id=r["job_id"],
                study_instance_uid=r["study_instance_uid"], pipeline=r["pipeline"],
                kind=r["kind"], uid=r["uid"], path=r["path"], note=r["note"],
                recorded_at=as_utc(r["recorded_at"]) or now),
        ) for r in rows)
    return Claim(token, now, items) if items else None


def _fenced(token: str, delivery_id: int) -> ColumnElement[bool]:
    return and_(deliveries.c.id == delivery_id, deliveries.c.claim_token == token,
                deliveries.c.state == PENDING)


def mark_delivered(engine: Engine, token: str, delivery_id: int, now: datetime,
                   duration_s: float) -> bool:
    """Record a delivered attempt; False when the row is no longer ours."""
    with engine.begin() as conn:
        done = conn.execute(update(deliveries).where(_fenced(token, delivery_id)).values(
            state=DELIVERED, delivered_at=now, last_duration_s=duration_s, last_error=None,
            last_reason=None, claim_token=None, lease_until=None, updated_at=now))
    return done.rowcount == 1


@dataclass(frozen=True)
class Failure:
    """How an attempt failed. `reason` is a short label (`transient`, `permanent:401`,
    `missing_output`...); `error` a message without PHI."""

    permanent: bool
    reason: str
    error: str
    retry_after_s: float | None = None


def next_delay_s(backoff: BackoffConfig, attempt: int, failure: Failure,
                 rng: random.Random) -> float:
    """Exponential backoff with jitter; a peer's Retry-After is honoured up to the cap."""
    delay = backoff.delay_s(attempt)
    if backoff.jitter:
        delay *= 1.0 + rng.uniform(-backoff.jitter, backoff.jitter)
    if failure.retry_after_s is not None:
        delay = max(delay, min(failure.retry_after_s, backoff.max_delay_s))
    return delay


def mark_failed(engine: Engine, token: str, item: DueDelivery, failure: Failure, now: datetime,
                duration_s: float, backoff: BackoffConfig, rng: random.Random) -> str | None:
    """Record a failed attempt: permanent -> `dead`; transient -> `pending` after a backoff,
    or `dead` once the delivery has been failing for `give_up_after_s`. Returns the new
    state, None when the row is no longer ours."""
    values: dict[str, object] = {
        "last_duration_s": duration_s, "claim_token": None, "lease_until": None,
        "updated_at": now, "last_reason": failure.reason[:64],
        "last_error": failure.error[:_ERROR_CHARS]}
    failing_for = (now - item.first_attempt_at).total_seconds()
    if failure.permanent:
        state = DEAD
    elif failing_for >= backoff.give_up_after_s:
        state = DEAD
        values["last_reason"] = "gave_up"
        values["last_error"] = (f"gave up after {item.attempt} attempts over "
                                f"{failing_for / 3600:.1f} h; last: {failure.error}"
                                )[:_ERROR_CHARS]
    else:
        state = PENDING
        delay = next_delay_s(backoff, item.attempt, failure, rng)
        values["next_try_at"] = now + timedelta(seconds=delay)
    values["state"] = state
    with engine.begin() as conn:
        done = conn.execute(update(deliveries).where(_fenced(token, item.id)).values(**values))
    return state if done.rowcount == 1 else None


def release(engine: Engine, token: str, ids: Sequence[int], now: datetime) -> None:
    """Give back claimed rows that were not attempted (the runner is stopping): the attempt
    does not count and they are due again at once."""
    if not ids:
        return
    with engine.begin() as conn:
        conn.execute(update(deliveries).where(
            deliveries.c.id.in_(list(ids)), deliveries.c.claim_token == token,
            deliveries.c.state == PENDING,
        ).values(claim_token=None, lease_until=None, attempts=deliveries.c.attempts - 1,
                 updated_at=now))
