"""Job runs and deliveries in the audit trail. They end in Celery workers on other hosts as
well as in this process, so their ends are read from the `jobs` and `deliveries` tables
instead of being reported by hooks in the workers."""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from infernode.audit import AuditEvent, Category, Outcome, audit_events
from workers.db import as_utc, jobs, utcnow
from workers.messages import JobState
from workers.outbox.tables import DEAD, DELIVERED, deliveries, outputs

log = logging.getLogger(__name__)


class OutcomeTail:
    """Audits job runs and deliveries that ended, read from their tables (every process's
    workers write there). Resumes after the newest such event already in the audit table;
    events carry a key so that a row seen twice (a later write of the same end) is audited
    once."""

    LOOKBACK = timedelta(minutes=5)

    def __init__(self, engine: Engine, submit: Callable[[AuditEvent], None],
                 clock: Callable[[], datetime] = utcnow) -> None:
        self._engine = engine
        self._submit = submit
        self._clock = clock
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._since: datetime | None = None

    def _resume(self) -> datetime:
        with self._engine.connect() as conn:
            newest = conn.execute(sa.select(sa.func.max(audit_events.c.at)).where(
                audit_events.c.category.in_([Category.JOB.value, Category.DELIVERY.value])
            )).scalar()
            since = (as_utc(newest) or self._clock()) - self.LOOKBACK
            for (detail,) in conn.execute(sa.select(audit_events.c.detail).where(
                    audit_events.c.category.in_([Category.JOB.value, Category.DELIVERY.value]),
                    audit_events.c.at >= since.replace(tzinfo=None))):
                self._remember(json.loads(detail).get("key", ""))
        return since

    def _remember(self, key: str) -> bool:
        if key in self._seen:
            return False
        self._seen[key] = None
        while len(self._seen) > 100000:
            self._seen.popitem(last=False)
        return True

    def poll(self) -> int:
        """Audits what ended since the last poll; returns how many events it submitted."""
        if self._since is None:
            self._since = self._resume()
        since = self._since
        found: list[tuple[datetime, AuditEvent]] = []
        with self._engine.connect() as conn:
            for row in conn.execute(sa.select(
                    jobs.c.id, jobs.c.study_instance_uid, jobs.c.pipeline, jobs.c.model_version,
                    jobs.c.state, jobs.c.attempts, jobs.c.replays, jobs.c.worker,
                    jobs.c.outcome, jobs.c.outcome_reason, jobs.c.error_reason,
                    jobs.c.finished_at, jobs.c.updated_at).where(
                    jobs.c.state.in_([JobState.SUCCEEDED.value, JobState.FAILED.value,
                                      JobState.DEAD_LETTERED.value]),
                    jobs.c.updated_at >= since)).mappings():
                found.append((as_utc(row["updated_at"]) or since, _job_event(row)))
            for row in conn.execute(sa.select(
                    deliveries.c.id, deliveries.c.destination, deliveries.c.destination_type,
                    deliveries.c.state, deliveries.c.attempts, deliveries.c.last_reason,
                    deliveries.c.updated_at, outputs.c.study_instance_uid, outputs.c.kind,
                    outputs.c.uid, outputs.c.pipeline).join(
                    outputs, outputs.c.id == deliveries.c.output_id).where(
                    deliveries.c.state.in_([DELIVERED, DEAD]),
                    deliveries.c.updated_at >= since)).mappings():
                found.append((as_utc(row["updated_at"]) or since, _delivery_event(row)))
        submitted = 0
        for at, event in sorted(found, key=lambda pair: pair[0]):
            if self._remember(str(event.detail["key"])):
                self._submit(event)
                submitted += 1
            self._since = max(self._since or at, at - self.LOOKBACK)
        return submitted

    def run(self, stop: threading.Event, interval_s: float = 2.0) -> None:
        while not stop.wait(interval_s):
            try:
                self.poll()
            except SQLAlchemyError as exc:
                log.warning("audit of job and delivery outcomes: %s", type(exc).__name__)


def _job_event(row: sa.RowMapping) -> AuditEvent:
    state = row["state"]
    return AuditEvent(
        Category.JOB, "run", Outcome.SUCCESS if state == JobState.SUCCEEDED.value
        else Outcome.FAILURE, actor=row["worker"], subject=row["study_instance_uid"],
        at=as_utc(row["finished_at"]) or as_utc(row["updated_at"]),
        detail={"key": f"job:{row['id']}:{row['replays']}:{row['attempts']}:{state}",
                "job_id": row["id"], "pipeline": row["pipeline"],
                "model_version": row["model_version"], "state": state,
                "outcome": row["outcome"], "reason": row["outcome_reason"] or row["error_reason"],
                "attempts": row["attempts"]})


def _delivery_event(row: sa.RowMapping) -> AuditEvent:
    state = row["state"]
    return AuditEvent(
        Category.DELIVERY, "deliver", Outcome.SUCCESS if state == DELIVERED else Outcome.FAILURE,
        actor=row["destination"], subject=row["study_instance_uid"],
        at=as_utc(row["updated_at"]),
        detail={"key": f"delivery:{row['id']}:{row['attempts']}:{state}",
                "destination": row["destination"], "destination_type": row["destination_type"],
                "kind": row["kind"], "uid": row["uid"], "pipeline": row["pipeline"],
                "state": state, "attempts": row["attempts"], "reason": row["last_reason"]})
