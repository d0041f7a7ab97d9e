"""workers: monitoring aggregates (daily per pipeline and model version), labels from final
reports, readers' agree / disagree

Revision ID: wk0004
Revises: wk0003
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "wk0004"
down_revision = "wk0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "monitoring_daily",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("pipeline", sa.String(64), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("jobs", sa.Integer, nullable=False),
        sa.Column("results", sa.Integer, nullable=False),
        sa.Column("positives", sa.Integer, nullable=False),
        sa.Column("not_analysed", sa.JSON, nullable=False),
        sa.Column("scores", sa.JSON, nullable=False),
        sa.Column("inputs", sa.JSON, nullable=False),
        sa.Column("psi", sa.JSON, nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("day", "pipeline", "model_version", name="uq_monitoring_daily"),
    )
    op.create_table(
        "monitoring_labels",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("accession", sa.String(40), nullable=False),
        sa.Column("pipeline", sa.String(64), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("report_id", sa.String(128), nullable=False),
        sa.Column("positive", sa.Boolean),
        sa.Column("rule", sa.String(128), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True)),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("source", "report_id", "pipeline", name="uq_monitoring_labels"),
    )
    op.create_index("ix_monitoring_labels_accession", "monitoring_labels", ["accession"])
    op.create_table(
        "reader_feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("agree", sa.Boolean, nullable=False),
        sa.Column("reader", sa.String(64), nullable=False),
        sa.Column("comment", sa.Text),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("job_id", "reader", name="uq_reader_feedback"),
    )
    op.create_index("ix_reader_feedback_job_id", "reader_feedback", ["job_id"])


def downgrade() -> None:
    op.drop_table("reader_feedback")
    op.drop_table("monitoring_labels")
    op.drop_table("monitoring_daily")
