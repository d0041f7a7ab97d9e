"""Operator views and actions over deliveries: list, detail, dead letters, replay and retry.
Used by `infernode deliveries ...` and the web API."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Engine, Select, or_, select, update
from sqlalchemy.engine import RowMapping

from workers.db import as_utc
from workers.errors import InvalidTransition, WorkerError
from workers.outbox.tables import DEAD, DELIVERED, PENDING, STATES, deliveries, outputs


class DeliveryNotFound(WorkerError):
    """No delivery has the given id."""

    reason = "not_found"


class DeliveryView(BaseModel):
    """One delivery with the output it sends."""

    model_config = ConfigDict(frozen=True)

    id: int
    state: str
    destination: str
    destination_type: str
    attempts: int
    next_try_at: datetime
    created_at: datetime
    delivered_at: datetime | None = None
    last_attempt_at: datetime | None = None
    last_duration_s: float | None = None
    last_reason: str | None = None
    last_error: str | None = None
    output_id: int
    job_id: str
    study_instance_uid: str
    pipeline: str
    kind: str
    uid: str
    path: str | None = None


def _view(row: RowMapping) -> DeliveryView:
    values: dict[str, Any] = {k: (as_utc(v) if isinstance(v, datetime) else v)
                              for k, v in row.items()}
    return DeliveryView.model_validate(values)


def _query() -> Select[Any]:
    d = deliveries.c
    return select(
        d.id, d.state, d.destination, d.destination_type, d.attempts, d.next_try_at,
        d.created_at, d.delivered_at, d.last_attempt_at, d.last_duration_s, d.last_reason,
        d.last_error, d.output_id, outputs.c.job_id, outputs.c.study_instance_uid,
        outputs.c.pipeline, outputs.c.kind, outputs.c.uid, outputs.c.path,
    ).join(outputs, outputs.c.id == d.output_id)


def list_deliveries(engine: Engine, *, states: Sequence[str] = (),
                    destination: str | None = None, study: str | None = None,
                    job_id: str | None = None, limit: int = 100) -> list[DeliveryView]:
    """Deliveries, newest first, optionally filtered. Raises ValueError on an unknown state."""
    unknown = set(states) - set(STATES)
    if unknown:
        raise ValueError(f"unknown delivery states {sorted(unknown)}; known: {list(STATES)}")
    query = _query().order_by(deliveries.c.created_at.desc(), deliveries.c.id.desc())
    if states:
        query = query.where(deliveries.c.state.in_(list(states)))
    if destination:
        query = query.where(deliveries.c.destination == destination)
    if study:
        query = query.where(outputs.c.study_instance_uid == study)
    if job_id:
        query = query.where(outputs.c.job_id == job_id)
    with engine.connect() as conn:
        return [_view(r) for r in conn.execute(query.limit(limit)).mappings()]


def get_delivery(engine: Engine, delivery_id: int) -> DeliveryView:
    """One delivery. Raises DeliveryNotFound."""
    with engine.connect() as conn:
        row = conn.execute(_query().where(deliveries.c.id == delivery_id)).mappings().first()
    if row is None:
        raise DeliveryNotFound(f"no delivery {delivery_id}")
    return _view(row)


def delivery_detail(engine: Engine, delivery_id: int) -> dict[str, Any]:
    """Everything recorded about one delivery, JSON-ready: the row, its output, and the other
    deliveries of the same output. Raises DeliveryNotFound."""
    view = get_delivery(engine, delivery_id)
    with engine.connect() as conn:
        siblings = conn.execute(select(
            deliveries.c.id, deliveries.c.destination, deliveries.c.state,
            deliveries.c.attempts,
        ).where(deliveries.c.output_id == view.output_id, deliveries.c.id != delivery_id)
        ).mappings().all()
        row = conn.execute(select(deliveries.c.first_attempt_at, deliveries.c.lease_until)
                           .where(deliveries.c.id == delivery_id)).mappings().one()
    detail = view.model_dump(mode="json")
    for key in ("first_attempt_at", "lease_until"):
        value = as_utc(row[key])
        detail[key] = value.isoformat() if value is not None else None
    detail["other_destinations"] = [dict(s) for s in siblings]
    return detail


def dead_letters(engine: Engine, *, destination: str | None = None,
                 limit: int = 100) -> list[DeliveryView]:
    """Deliveries that failed permanently or gave up, with the reason."""
    return list_deliveries(engine, states=(DEAD,), destination=destination, limit=limit)


def _requeue(engine: Engine, delivery_id: int, from_states: Sequence[str],
             now: datetime) -> DeliveryView:
    values: dict[str, Any] = {"state": PENDING, "next_try_at": now, "claim_token": None,
                              "lease_until": None, "updated_at": now, "delivered_at": None,
                              "attempts": 0, "first_attempt_at": None}
    with engine.begin() as conn:
        done = conn.execute(update(deliveries).where(
            deliveries.c.id == delivery_id, deliveries.c.state.in_(list(from_states)),
        ).values(**values))
    if done.rowcount != 1:
        raise InvalidTransition("the delivery changed state meanwhile; look again")
    return get_delivery(engine, delivery_id)


def give_up(engine: Engine, delivery_id: int, now: datetime, reason: str) -> DeliveryView:
    """Dead-letter a pending delivery by hand (e.g. a destination that will never take it):
    no more tries; it can be replayed later. Raises DeliveryNotFound or InvalidTransition (a
    delivery that is not pending, or whose send is in flight: try again when it ends)."""
    current = get_delivery(engine, delivery_id)
    if current.state != PENDING:
        raise InvalidTransition(f"delivery {delivery_id} is {current.state}, not pending")
    with engine.begin() as conn:
        done = conn.execute(update(deliveries).where(
            deliveries.c.id == delivery_id, deliveries.c.state == PENDING,
            or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < now),
        ).values(state=DEAD, claim_token=None, lease_until=None, updated_at=now,
                 last_reason="operator", last_error=f"dead-lettered by an operator: {reason}"))
    if done.rowcount != 1:
        raise InvalidTransition(f"delivery {delivery_id} is being sent; try again when it ends")
    return get_delivery(engine, delivery_id)


def replay(engine: Engine, now: datetime, *, delivery_ids: Sequence[int] = (),
           destination: str | None = None) -> list[DeliveryView]:
    """Dead letters back to pending, due now, with their attempts reset: the given ids, or
    every dead letter (of `destination`). Raises DeliveryNotFound or InvalidTransition (a
    given id that is not dead)."""
    ids = list(delivery_ids) or [d.id for d in dead_letters(engine, destination=destination,
                                                            limit=100_000)]
    for delivery_id in ids:
        current = get_delivery(engine, delivery_id)
        if current.state != DEAD:
            raise InvalidTransition(f"delivery {delivery_id} is {current.state}, not dead")
    return [_requeue(engine, i, (DEAD,), now) for i in ids]


def retry(engine: Engine, delivery_id: int, now: datetime) -> DeliveryView:
    """Send again now: a pending delivery that is backing off becomes due (its attempts
    kept); a dead or delivered one goes back to pending with its attempts reset (e.g. to
    send a result again to a PACS that lost it). Raises DeliveryNotFound."""
    current = get_delivery(engine, delivery_id)
    if current.state != PENDING:
        return _requeue(engine, delivery_id, (DEAD, DELIVERED), now)
    # a send in flight keeps its claim: only the time of the next try moves
    with engine.begin() as conn:
        conn.execute(update(deliveries).where(
            deliveries.c.id == delivery_id, deliveries.c.state == PENDING,
        ).values(next_try_at=now, updated_at=now))
    return get_delivery(engine, delivery_id)
