"""From a completed study to queued jobs: the entry point study assembly calls."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.exc import IntegrityError

from dicom_node.events import SCHEMA_VERSION as EVENTS_SCHEMA_VERSION
from dicom_node.events import StudyReady
from workers.config import WorkersConfig
from workers.db import routing_decisions, utcnow
from workers.errors import BrokerUnavailable, PermanentError
from workers.jobs import create_jobs, mark_sent
from workers.messages import Job, JobState
from workers.routing import StudyExplanation, explain
from workers.transport import CeleryTransport, EmbeddedTransport, Transport

log = logging.getLogger(__name__)


def default_transport(cfg: WorkersConfig) -> Transport:
    """Celery when a broker is configured, else the embedded transport. Long-lived processes
    should build one and pass it in rather than have one made per call."""
    if not cfg.broker_url:
        return EmbeddedTransport()
    from workers.celery_app import create_celery_app

    return CeleryTransport(create_celery_app(cfg))


def _record_decision(conn: Connection, study: StudyReady, explanation: StudyExplanation,
                     now: datetime) -> None:
    exists = conn.execute(select(routing_decisions.c.id).where(
        routing_decisions.c.study_instance_uid == study.study_instance_uid,
        routing_decisions.c.amendment == study.amendment)).first()
    if exists is not None:
        return
    values = {
        "study_instance_uid": study.study_instance_uid, "amendment": study.amendment,
        "decided_at": now, "routed": explanation.routed,
        "pipelines": [d.pipeline for d in explanation.decisions],
        "reason": explanation.not_routed_reason() or "routed",
        "explanation": explanation.model_dump(mode="json"),
        "study": study.model_dump(mode="json"),
    }
    try:
        with conn.begin_nested():
            conn.execute(insert(routing_decisions).values(**values))
    except IntegrityError:
        pass  # the same StudyReady delivered twice concurrently


def on_study_ready(engine: Engine, cfg: WorkersConfig, study: StudyReady, *,
                   transport: Transport | None = None,
                   clock: Callable[[], datetime] = utcnow) -> list[Job]:
    """Route `study`, record the decision (a study that matches nothing is recorded as not
    routed, with the reason), create its jobs idempotently (superseding the same pipelines'
    jobs of earlier amendments) and hand new jobs to the transport. A broker that is down
    does not fail the call: the jobs wait in the database for the reconciler.

    Raises PermanentError for a StudyReady of a newer schema than this code understands."""
    if study.schema_version > EVENTS_SCHEMA_VERSION:
        raise PermanentError(f"StudyReady schema {study.schema_version} is newer than "
                             f"{EVENTS_SCHEMA_VERSION}")
    now = clock()
    explanation = explain(study, cfg.rules, cfg.exclusions)
    with engine.begin() as conn:
        _record_decision(conn, study, explanation, now)
        found = create_jobs(conn, cfg, study, explanation.decisions, now)
    if not explanation.routed:
        log.info("study %s not routed: %s", study.study_instance_uid,
                 explanation.not_routed_reason())
    sender = transport or default_transport(cfg)
    if sender.sends_messages:
        for job in found:
            if job.state is not JobState.QUEUED or job.sent_at is not None:
                continue  # a repeated StudyReady: the job is already on its way or done
            try:
                sender.send(job)
            except BrokerUnavailable as exc:
                log.warning("job %s waits in the database: %s", job.id, exc)
                continue
            mark_sent(engine, job.id, clock())
    return found
