"""Tables of the outbox, on the workers package's own `metadata`.

`outputs`: one row per output of a succeeded job (and one `priority-signal` row per study),
unique on (kind, uid): output UIDs derive from the job key, so a re-run updates its row.
`deliveries`: one row per output x destination, with the state machine
`pending -> delivered | dead` (`dead -> pending` by an operator's replay). A row being sent
carries a claim token and a lease; finishing it needs the token (a fence), so a runner that
lost its lease, or a re-run that reset the row meanwhile, cannot overwrite the newer state.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from workers.db import metadata

_UID = 64  # PS3.5 9.1

PENDING = "pending"
DELIVERED = "delivered"
DEAD = "dead"
STATES = (PENDING, DELIVERED, DEAD)

outputs = Table(
    "outputs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(36), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("study_instance_uid", String(_UID), nullable=False),
    Column("pipeline", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    # a SOP Instance UID, a Bundle identifier, an HL7 control id, or the study UID of a signal
    Column("uid", String(128), nullable=False),
    Column("path", Text),
    # the priority flag text of a signal (no PHI: the pipeline's own wording)
    Column("note", Text),
    # 0: priority signal, 1: output of a stat job, 2: routine; lower is sent first
    Column("rank", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # None until delivery rows exist for every destination configured at that time
    Column("planned_at", DateTime(timezone=True)),
    UniqueConstraint("kind", "uid", name="uq_outputs_kind_uid"),
    Index("ix_outputs_job", "job_id"),
    Index("ix_outputs_unplanned", "planned_at"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("output_id", Integer, ForeignKey("outputs.id", ondelete="CASCADE"), nullable=False),
    Column("destination", String(64), nullable=False),
    Column("destination_type", String(16), nullable=False),
    Column("state", String(12), nullable=False),
    Column("rank", Integer, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("next_try_at", DateTime(timezone=True), nullable=False),
    Column("first_attempt_at", DateTime(timezone=True)),
    Column("last_attempt_at", DateTime(timezone=True)),
    Column("last_duration_s", Float),
    Column("delivered_at", DateTime(timezone=True)),
    Column("last_error", Text),
    Column("last_reason", String(64)),
    Column("claim_token", String(36)),
    Column("lease_until", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("output_id", "destination", name="uq_deliveries_output_destination"),
    Index("ix_deliveries_due", "state", "next_try_at"),
    Index("ix_deliveries_updated", "updated_at"),
)
