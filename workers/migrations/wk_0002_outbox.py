"""workers: outputs and deliveries (the durable outbox)

Revision ID: wk0002
Revises: wk0001
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "wk0002"
down_revision = "wk0001"
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "outputs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(36), sa.ForeignKey("jobs.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("pipeline", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("uid", sa.String(128), nullable=False),
        sa.Column("path", sa.Text),
        sa.Column("note", sa.Text),
        sa.Column("rank", sa.Integer, nullable=False),
        _ts("created_at", nullable=False),
        _ts("updated_at", nullable=False),
        _ts("planned_at"),
        sa.UniqueConstraint("kind", "uid", name="uq_outputs_kind_uid"),
    )
    op.create_index("ix_outputs_job", "outputs", ["job_id"])
    op.create_index("ix_outputs_unplanned", "outputs", ["planned_at"])
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("output_id", sa.Integer, sa.ForeignKey("outputs.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("destination", sa.String(64), nullable=False),
        sa.Column("destination_type", sa.String(16), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("rank", sa.Integer, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        _ts("created_at", nullable=False),
        _ts("next_try_at", nullable=False),
        _ts("first_attempt_at"),
        _ts("last_attempt_at"),
        sa.Column("last_duration_s", sa.Float),
        _ts("delivered_at"),
        sa.Column("last_error", sa.Text),
        sa.Column("last_reason", sa.String(64)),
        sa.Column("claim_token", sa.String(36)),
        _ts("lease_until"),
        _ts("updated_at", nullable=False),
        sa.UniqueConstraint("output_id", "destination",
                            name="uq_deliveries_output_destination"),
    )
    op.create_index("ix_deliveries_due", "deliveries", ["state", "next_try_at"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_due", table_name="deliveries")
    op.drop_table("deliveries")
    op.drop_index("ix_outputs_unplanned", table_name="outputs")
    op.drop_index("ix_outputs_job", table_name="outputs")
    op.drop_table("outputs")
