"""workers: jobs, job attempts, routing decisions

Revision ID: wk0001
Revises:
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "wk0001"
down_revision = None
branch_labels = ("workers",)
depends_on = None


def _ts(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("pipeline", sa.String(64), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("amendment", sa.Integer, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("priority", sa.String(10), nullable=False),
        sa.Column("queue", sa.String(100), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("replays", sa.Integer, nullable=False),
        sa.Column("rules", sa.JSON, nullable=False),
        sa.Column("series", sa.JSON, nullable=False),
        _ts("study_completed_at"),
        _ts("created_at", nullable=False),
        _ts("queued_at"),
        _ts("sent_at"),
        _ts("not_before"),
        _ts("started_at"),
        _ts("lease_until"),
        _ts("run_finished_at"),
        _ts("finished_at"),
        _ts("updated_at", nullable=False),
        sa.Column("worker", sa.String(200)),
        sa.Column("last_error", sa.Text),
        sa.Column("error_reason", sa.String(64)),
        sa.Column("result", sa.JSON),
        sa.Column("route_s", sa.Float),
        sa.Column("wait_s", sa.Float),
        sa.Column("run_s", sa.Float),
        sa.Column("record_s", sa.Float),
        sa.UniqueConstraint("study_instance_uid", "pipeline", "model_version", "amendment",
                            name="uq_jobs_key"),
    )
    op.create_index("ix_jobs_state_queue", "jobs", ["state", "queue"])
    op.create_index("ix_jobs_study", "jobs", ["study_instance_uid"])
    op.create_table(
        "job_attempts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(36), sa.ForeignKey("jobs.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("replay", sa.Integer, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("worker", sa.String(200)),
        _ts("started_at", nullable=False),
        _ts("ended_at"),
        sa.Column("outcome", sa.String(20)),
        sa.Column("reason", sa.String(64)),
        sa.Column("error", sa.Text),
        sa.Column("run_s", sa.Float),
        sa.UniqueConstraint("job_id", "replay", "attempt", name="uq_job_attempts"),
    )
    op.create_table(
        "routing_decisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("amendment", sa.Integer, nullable=False),
        _ts("decided_at", nullable=False),
        sa.Column("routed", sa.Boolean, nullable=False),
        sa.Column("pipelines", sa.JSON, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("explanation", sa.JSON, nullable=False),
        sa.Column("study", sa.JSON, nullable=False),
        sa.UniqueConstraint("study_instance_uid", "amendment", name="uq_routing_decisions"),
    )


def downgrade() -> None:
    op.drop_table("routing_decisions")
    op.drop_table("job_attempts")
    op.drop_index("ix_jobs_study", table_name="jobs")
    op.drop_index("ix_jobs_state_queue", table_name="jobs")
    op.drop_table("jobs")
