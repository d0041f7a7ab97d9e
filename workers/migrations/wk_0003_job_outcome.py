"""workers: what the reader was told about each job's study (result or not analysed, and why)

Revision ID: wk0003
Revises: wk0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "wk0003"
down_revision = "wk0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("outcome", sa.String(20)))
        batch.add_column(sa.Column("outcome_reason", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("outcome_reason")
        batch.drop_column("outcome")
