"""instances.received_at indexed (the console's per-minute count scanned the whole table)

Revision ID: d1a3
Revises: d1a2
Create Date: 2026-12-05
"""

from alembic import op

revision = "d1a3"
down_revision = "d1a2"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_instances_received_at", "instances", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_instances_received_at", table_name="instances")
