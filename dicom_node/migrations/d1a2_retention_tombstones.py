"""retention: studies keep a tombstone (deleted_at) after their files are deleted

Revision ID: d1a2
Revises: d1a1
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "d1a2"
down_revision = "d1a1"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("studies", sa.Column("deleted_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        batch.drop_column("deleted_at")
