"""Tables owned by the workers package. The database is the truth about every job; the broker
only carries job ids. Study and series are referenced by UID strings, never by foreign keys
into another package's tables."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    make_url,
)

metadata = MetaData()

_UID = 64  # PS3.5 9.1: a UID has at most 64 characters

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("study_instance_uid", String(_UID), nullable=False),
    Column("pipeline", String(64), nullable=False),
    Column("model_version", String(128), nullable=False),
    Column("amendment", Integer, nullable=False, default=0),
    Column("state", String(20), nullable=False),
    Column("priority", String(10), nullable=False),
    Column("queue", String(100), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("max_attempts", Integer, nullable=False),
    Column("replays", Integer, nullable=False, default=0),
    Column("rules", JSON, nullable=False),
    Column("series", JSON, nullable=False),
    Column("study_completed_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("queued_at", DateTime(timezone=True)),
    Column("sent_at", DateTime(timezone=True)),
    Column("not_before", DateTime(timezone=True)),
    Column("started_at", DateTime(timezone=True)),
    Column("lease_until", DateTime(timezone=True)),
    Column("run_finished_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("worker", String(200)),
    Column("last_error", Text),
    Column("error_reason", String(64)),
    Column("result", JSON),
    # result | not_analysed (ReportOutcome), and the short reason of a not-analysed report
    Column("outcome", String(20)),
    Column("outcome_reason", String(64)),
    # stage durations of the last finished attempt, kept as columns so metrics are plain sums
    Column("route_s", Float),
    Column("wait_s", Float),
    Column("run_s", Float),
    Column("record_s", Float),
    UniqueConstraint(
        "study_instance_uid", "pipeline", "model_version", "amendment", name="uq_jobs_key"
    ),
    Index("ix_jobs_state_queue", "state", "queue"),
    Index("ix_jobs_study", "study_instance_uid"),
    # readers of what changed lately (the node's audit of job ends) range-scan this
    Index("ix_jobs_updated", "updated_at"),
)

job_attempts = Table(
    "job_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(36), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("replay", Integer, nullable=False, default=0),
    Column("attempt", Integer, nullable=False),
    Column("worker", String(200)),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True)),
    Column("outcome", String(20)),
    Column("reason", String(64)),
    Column("error", Text),
    Column("run_s", Float),
    # attempts restart at 1 after an operator's retry or replay; `replay` keeps them apart
    UniqueConstraint("job_id", "replay", "attempt", name="uq_job_attempts"),
)

routing_decisions = Table(
    "routing_decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("study_instance_uid", String(_UID), nullable=False),
    Column("amendment", Integer, nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    Column("routed", Boolean, nullable=False),
    Column("pipelines", JSON, nullable=False),
    Column("reason", Text, nullable=False),
    Column("explanation", JSON, nullable=False),
    # the StudyReady itself, so `route --explain STUDY_UID` can re-evaluate it against new rules
    Column("study", JSON, nullable=False),
    UniqueConstraint("study_instance_uid", "amendment", name="uq_routing_decisions"),
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; every stored time is UTC, so make it aware again."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """The node's one engine factory (the index, jobs, outbox and facade share it).

    SQLite: WAL so readers do not block the writer, synchronous=FULL (a committed row survives
    power loss: the C-STORE acknowledgement relies on it), a busy timeout instead of an
    immediate "database is locked", foreign keys on, and the file's folder created. The pool
    hands out the connection returned last (LIFO): each connection has its own page cache,
    which another connection's commit makes stale, so the index writes of the receive path keep
    finding their pages in memory instead of reading them again (about 18 reads per stored
    instance with the pool's default order; docs/BENCHMARKS.md round 7).
    PostgreSQL: a pre-pinged pool. Both: SQL parameters are never shown in logs or exception
    text (`hide_parameters`): they carry patient IDs and accession numbers.
    """
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"timeout": 30, "check_same_thread": False})
        path = make_url(url).database
        if path and path != ":memory:":  # a file: a pool of connections (an in-memory one has
            kwargs.setdefault("pool_use_lifo", True)  # one per thread and no such option)
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    else:
        kwargs.setdefault("pool_pre_ping", True)
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 20)
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


# The outbox's and monitoring's tables live on this same metadata; importing them here makes
# `metadata` complete for every user (migration checks, create_all in tests) whatever they
# imported first.
import workers.monitoring.tables  # noqa: E402, F401
import workers.outbox.tables  # noqa: E402, F401
