"""Tables of the monitoring aggregates (workers). Jobs are referred to by id, studies by the
hashed accession number only (`features.accession_key`)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from workers.db import metadata

monitoring_daily = Table(
    "monitoring_daily",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("day", Date, nullable=False),
    Column("pipeline", String(64), nullable=False),
    Column("model_version", String(128), nullable=False),
    Column("jobs", Integer, nullable=False),
    Column("results", Integer, nullable=False),
    Column("positives", Integer, nullable=False),
    Column("not_analysed", JSON, nullable=False),  # reason -> count
    Column("scores", JSON, nullable=False),  # histogram counts over features.SCORE_BINS
    Column("inputs", JSON, nullable=False),  # feature -> {bin label: count}
    Column("psi", JSON, nullable=False),  # feature -> PSI against the reference ({} without one)
    Column("computed_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("day", "pipeline", "model_version", name="uq_monitoring_daily"),
)

monitoring_labels = Table(
    "monitoring_labels",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("accession", String(40), nullable=False, index=True),  # features.accession_key
    Column("pipeline", String(64), nullable=False),  # whose rules labelled it
    Column("source", String(16), nullable=False),  # hl7 | fhir
    Column("report_id", String(128), nullable=False),
    Column("positive", Boolean),  # None: the rules could not tell
    Column("rule", String(128), nullable=False),  # which rule decided
    Column("reported_at", DateTime(timezone=True)),
    Column("received_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("source", "report_id", "pipeline", name="uq_monitoring_labels"),
)

reader_feedback = Table(
    "reader_feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(36), nullable=False, index=True),
    Column("agree", Boolean, nullable=False),
    Column("reader", String(64), nullable=False),
    Column("comment", Text),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("job_id", "reader", name="uq_reader_feedback"),
)

SCORE_EDGES: tuple[float, ...] = tuple(i / 10 for i in range(11))
"""Score histogram: ten bins of 0.1 over [0, 1]."""

__all__ = ["SCORE_EDGES", "monitoring_daily", "monitoring_labels", "reader_feedback"]
