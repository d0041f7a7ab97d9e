"""Rows written when a job succeeds, and the delivery rows planned from them.

`record_outputs` runs inside the transaction that marks the job succeeded (workers.jobs
.complete), so a job is never `succeeded` without its outputs on record: a crash right after
the commit loses nothing, and the runner plans and sends on its next pass. `plan_deliveries`
turns unplanned outputs into one `pending` row per destination that takes them, in one
transaction; it runs in the node's delivery runner (the node's configuration names the
destinations, not a worker host's), or inside `complete` when a configuration is passed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from workers.messages import PipelineResult, Priority
from workers.outbox.config import PRIORITY_SIGNAL, DeliveryConfig
from workers.outbox.tables import PENDING, deliveries, outputs

SIGNAL_RANK = 0
_RANKS = {Priority.STAT.value: 1, Priority.ROUTINE.value: 2}
_MAX_UID = 128


@dataclass(frozen=True)
class JobFacts:
    """What the outbox needs to know about the job that produced outputs."""

    job_id: str
    study_instance_uid: str
    pipeline: str
    priority: str


def _insert_once(conn: Connection, table: Any, values: dict[str, Any]) -> bool:
    """Insert unless a unique key already holds the row (a concurrent writer got there
    first); a savepoint keeps the surrounding transaction usable either way."""
    try:
        with conn.begin_nested():
            conn.execute(insert(table).values(**values))
    except IntegrityError:
        return False
    return True


def _reset_deliveries(conn: Connection, output_id: int, now: datetime) -> None:
    # clearing the claim token fences off a send of the old content still in flight
    conn.execute(update(deliveries).where(deliveries.c.output_id == output_id).values(
        state=PENDING, attempts=0, next_try_at=now, first_attempt_at=None, delivered_at=None,
        last_error=None, last_reason=None, claim_token=None, lease_until=None, updated_at=now))


def _upsert_output(conn: Connection, job: JobFacts, values: dict[str, Any],
                   now: datetime) -> int:
    key = (outputs.c.kind == values["kind"]) & (outputs.c.uid == values["uid"])
    for _ in range(2):
        existing = conn.execute(select(outputs.c.id).where(key)).scalar()
        if existing is not None:
            conn.execute(update(outputs).where(outputs.c.id == existing).values(
                job_id=job.job_id, study_instance_uid=job.study_instance_uid,
                pipeline=job.pipeline, path=values["path"], note=values["note"],
                rank=values["rank"], updated_at=now, planned_at=None))
            _reset_deliveries(conn, existing, now)
            return int(existing)
        row = {**values, "job_id": job.job_id, "study_instance_uid": job.study_instance_uid,
               "pipeline": job.pipeline, "created_at": now, "updated_at": now}
        if _insert_once(conn, outputs, row):
            return int(conn.execute(select(outputs.c.id).where(key)).scalar_one())
    raise RuntimeError("output row vanished while it was being recorded")


def _record_signal(conn: Connection, job: JobFacts, flag: str, now: datetime) -> int | None:
    """The study's priority signal, once: later jobs of the same study (amendments, re-runs,
    other pipelines) find it recorded and add nothing, whatever its delivery state."""
    key = (outputs.c.kind == PRIORITY_SIGNAL) & (outputs.c.uid == job.study_instance_uid)
    if conn.execute(select(outputs.c.id).where(key)).first() is not None:
        return None
    row = {"kind": PRIORITY_SIGNAL, "uid": job.study_instance_uid, "path": None,
           "note": flag[:500], "rank": SIGNAL_RANK, "job_id": job.job_id,
           "study_instance_uid": job.study_instance_uid, "pipeline": job.pipeline,
           "created_at": now, "updated_at": now}
    if not _insert_once(conn, outputs, row):
        return None
    return int(conn.execute(select(outputs.c.id).where(key)).scalar_one())


def record_outputs(conn: Connection, job: JobFacts, result: PipelineResult, now: datetime,
                   delivery: DeliveryConfig | None = None) -> list[int]:
    """Record the outputs of a succeeded job (and its priority signal) on `conn`, inside the
    caller's transaction; returns the ids of the rows written. An output whose (kind, uid) is
    already recorded is a re-run: its row is updated and its deliveries are reset to pending.
    With `delivery`, the delivery rows are planned in the same transaction.

    Raises ValueError for an output UID longer than 128 characters (a pipeline bug)."""
    rank = _RANKS.get(job.priority, _RANKS[Priority.ROUTINE.value])
    ids: list[int] = []
    for ref in result.outputs:
        if len(ref.uid) > _MAX_UID:
            raise ValueError(f"output uid of kind {ref.kind!r} exceeds {_MAX_UID} characters")
        values = {"kind": ref.kind, "uid": ref.uid, "path": ref.path, "note": None,
                  "rank": rank}
        ids.append(_upsert_output(conn, job, values, now))
    if result.priority_flag:
        signal = _record_signal(conn, job, result.priority_flag, now)
        if signal is not None:
            ids.append(signal)
    if delivery is not None and ids:
        plan_deliveries(conn, delivery, now, output_ids=ids)
    return ids


def plan_deliveries(conn: Connection, cfg: DeliveryConfig, now: datetime, *,
                    output_ids: Sequence[int] | None = None, limit: int = 1000) -> int:
    """Create the missing delivery rows of unplanned outputs (all, or `output_ids`) for every
    enabled destination that takes them, and mark those outputs planned. Returns the number
    of rows created. Destinations added to the configuration later apply to outputs recorded
    (or re-run) after the change."""
    if not cfg.enabled:
        return 0
    query = select(outputs.c.id, outputs.c.kind, outputs.c.pipeline, outputs.c.rank).where(
        outputs.c.planned_at.is_(None)).order_by(outputs.c.rank, outputs.c.id).limit(limit)
    if output_ids is not None:
        query = query.where(outputs.c.id.in_(list(output_ids)))
    rows = conn.execute(query).all()
    if not rows:
        return 0
    ids = [r.id for r in rows]
    have = {(o, d) for o, d in conn.execute(select(
        deliveries.c.output_id, deliveries.c.destination).where(deliveries.c.output_id.in_(ids)))}
    created = 0
    for row in rows:
        for dest in cfg.destinations:
            if (row.id, dest.name) in have or not dest.takes(row.kind, row.pipeline):
                continue
            created += _insert_once(conn, deliveries, {
                "output_id": row.id, "destination": dest.name, "destination_type": dest.type,
                "state": PENDING, "rank": row.rank, "attempts": 0, "created_at": now,
                "next_try_at": now, "updated_at": now,
            })
    conn.execute(update(outputs).where(outputs.c.id.in_(ids), outputs.c.planned_at.is_(None))
                 .values(planned_at=now))
    return created
