"""The node's audit trail: an append-only table of who did what, when, from where.

Every hop records here (associations, instances received, routing, jobs, deliveries, FHIR facade
reads, console logins and actions, configuration loaded). Rows are never updated or deleted: the
table's migration installs triggers that refuse UPDATE and DELETE on SQLite and PostgreSQL alike.
Unlike logs, the audit trail may name patients and studies: it is the record of access to them.
Export to an audit repository (syslog, DICOM PS3.15 A.5 messages) reads from this table.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

metadata = sa.MetaData()

audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(), nullable=False),
    sa.Column("category", sa.String(32), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("actor", sa.String(256), nullable=True),
    sa.Column("source", sa.String(256), nullable=True),
    sa.Column("subject", sa.String(256), nullable=True),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Index("ix_audit_events_at", "at"),
    sa.Index("ix_audit_events_subject", "subject"),
)


class Category(StrEnum):
    """What kind of event: one per hop of the flow, plus the console and configuration."""

    ASSOCIATION = "association"
    INSTANCES = "instances"
    ROUTING = "routing"
    JOB = "job"
    DELIVERY = "delivery"
    FHIR_READ = "fhir_read"
    LOGIN = "login"
    CONSOLE = "console"
    CONFIG = "config"
    APPLICATION = "application"
    """The node started or stopped (ATNA Application Activity)."""


class Outcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"


@dataclass(frozen=True)
class AuditEvent:
    """One audited event. `actor`: AE title, user or token identity; `source`: network address;
    `subject`: what it concerned (a study UID, job id, patient reference); `detail`: the rest."""

    category: Category
    action: str
    outcome: Outcome = Outcome.SUCCESS
    actor: str | None = None
    source: str | None = None
    subject: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    at: datetime | None = None


@dataclass(frozen=True)
class AuditRecord:
    id: int
    at: datetime
    category: str
    action: str
    outcome: str
    actor: str | None
    source: str | None
    subject: str | None
    detail: dict[str, Any]


class AuditLog:
    """Appends to and reads the audit trail. Thread-safe (one short transaction per call)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(self, event: AuditEvent) -> int:
        return self.record_many([event])[0]

    def record_many(self, events: Sequence[AuditEvent]) -> list[int]:
        ids = []
        with self.engine.begin() as conn:
            for event in events:
                row = conn.execute(
                    audit_events.insert().values(
                        at=_naive_utc(event.at or datetime.now(UTC)),
                        category=str(event.category),
                        action=event.action,
                        outcome=str(event.outcome),
                        actor=_clip(event.actor),
                        source=_clip(event.source),
                        subject=_clip(event.subject),
                        detail=json.dumps(dict(event.detail), sort_keys=True, default=str),
                    )
                )
                key = row.inserted_primary_key
                assert key is not None
                ids.append(int(key[0]))
        return ids

    def query(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        category: str | None = None,
        actor: str | None = None,
        subject: str | None = None,
        after_id: int | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        """Newest first, unless `after_id` is given (then oldest first, for exporters)."""
        q = sa.select(audit_events)
        if since is not None:
            q = q.where(audit_events.c.at >= _naive_utc(since))
        if until is not None:
            q = q.where(audit_events.c.at < _naive_utc(until))
        if category is not None:
            q = q.where(audit_events.c.category == category)
        if actor is not None:
            q = q.where(audit_events.c.actor == actor)
        if subject is not None:
            q = q.where(audit_events.c.subject == subject)
        if after_id is not None:
            q = q.where(audit_events.c.id > after_id).order_by(audit_events.c.id)
        else:
            q = q.order_by(audit_events.c.id.desc())
        with self.engine.connect() as conn:
            rows = conn.execute(q.limit(limit)).mappings().all()
        return [
            AuditRecord(
                id=r["id"], at=r["at"].replace(tzinfo=UTC), category=r["category"],
                action=r["action"], outcome=r["outcome"], actor=r["actor"], source=r["source"],
                subject=r["subject"], detail=json.loads(r["detail"]),
            )
            for r in rows
        ]


def _naive_utc(value: datetime) -> datetime:
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None)


def _clip(value: str | None) -> str | None:
    return None if value is None else value[:256]
