"""The reconciler: makes the broker agree with the database.

- A running job whose lease expired lost its worker (killed, crashed, cut off): the attempt is
  recorded as lost and the job goes back to `queued`, or to `dead_lettered` after
  `max_attempts` attempts.
- A queued job that is due and was never sent (broker down at submit time, backoff over), or
  whose message is older than `resend_after_s` (the broker may have lost it in a restart), is
  sent again. Duplicates are harmless: only one claim of a queued job can succeed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, or_, select
from sqlalchemy.exc import SQLAlchemyError

from workers.config import WorkersConfig
from workers.db import jobs, utcnow
from workers.errors import BrokerUnavailable, WorkerError
from workers.jobs import fail, mark_sent, row_to_job
from workers.messages import JobState
from workers.transport import EmbeddedTransport, Transport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReconcileReport:
    requeued: int = 0
    dead_lettered: int = 0
    sent: int = 0
    broker_down: bool = False


def reconcile_once(engine: Engine, cfg: WorkersConfig, now: datetime,
                   transport: Transport | None = None) -> ReconcileReport:
    """One pass of lease expiry and re-sending (see the module docstring)."""
    requeued = dead = sent = 0
    with engine.connect() as conn:
        expired = conn.execute(select(jobs.c.id, jobs.c.attempts).where(
            jobs.c.state == JobState.RUNNING.value, jobs.c.lease_until < now)).all()
    for job_id, attempt in expired:
        state = fail(engine, cfg, job_id, attempt, permanent=False, reason="worker_lost",
                     error="lease expired: the worker stopped before finishing", now=now,
                     backoff=False)
        requeued += state is JobState.QUEUED
        dead += state is JobState.DEAD_LETTERED
    sender = transport or EmbeddedTransport()
    if not sender.sends_messages:
        return ReconcileReport(requeued, dead)
    stale = now - timedelta(seconds=cfg.resend_after_s)
    with engine.connect() as conn:
        due = conn.execute(select(jobs).where(
            jobs.c.state == JobState.QUEUED.value,
            or_(jobs.c.not_before.is_(None), jobs.c.not_before <= now),
            or_(jobs.c.sent_at.is_(None), jobs.c.sent_at < stale),
        ).order_by(jobs.c.priority.desc(), jobs.c.queued_at)).mappings().all()
    for row in due:
        try:
            sender.send(row_to_job(row))
        except BrokerUnavailable as exc:
            log.warning("reconciler: broker unavailable (%s); %d jobs wait", exc, len(due) - sent)
            return ReconcileReport(requeued, dead, sent, broker_down=True)
        mark_sent(engine, row["id"], now)
        sent += 1
    return ReconcileReport(requeued, dead, sent)


class Reconciler:
    """Runs `reconcile_once` every `reconcile_interval_s` on a daemon thread. Start one in the
    node process (not on every worker host): it needs the database and the broker."""

    def __init__(self, engine: Engine, cfg: WorkersConfig, transport: Transport | None = None,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self._engine, self._cfg, self._transport, self._clock = engine, cfg, transport, clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="reconciler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                reconcile_once(self._engine, self._cfg, self._clock(), self._transport)
            except (SQLAlchemyError, WorkerError) as exc:
                # the database or broker is away; the next pass tries again
                log.warning("reconciler pass failed: %s", type(exc).__name__)
            self._stop.wait(self._cfg.reconcile_interval_s)
