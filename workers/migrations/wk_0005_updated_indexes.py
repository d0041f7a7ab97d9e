"""workers: indexes on jobs.updated_at and deliveries.updated_at, so a reader of what changed
lately (the node's audit of job and delivery ends) range-scans instead of reading every row

Revision ID: wk0005
Revises: wk0004
Create Date: 2026-12-04
"""

from alembic import op

revision = "wk0005"
down_revision = "wk0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_jobs_updated", "jobs", ["updated_at"])
    op.create_index("ix_deliveries_updated", "deliveries", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_updated", table_name="deliveries")
    op.drop_index("ix_jobs_updated", table_name="jobs")
