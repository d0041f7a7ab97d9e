"""instance content hash and conflicting duplicates

Revision ID: d1a1
Revises: d1a0
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "d1a1"
down_revision = "d1a0"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("instances", sa.Column("content_sha256", sa.String(64)))
    op.create_table(
        "ingest_conflicts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("calling_ae", sa.String(16)),
        sa.Column("peer_address", sa.String(64)),
        sa.Column("sop_class_uid", sa.String(64), nullable=False),
        sa.Column("sop_instance_uid", sa.String(64), nullable=False),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("series_instance_uid", sa.String(64), nullable=False),
        sa.Column("differences", sa.String(128), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("kept_path", sa.Text),
        sa.Column("indexed_path", sa.Text, nullable=False),
    )
    op.create_index("ix_ingest_conflicts_at", "ingest_conflicts", ["at"])
    op.create_index("ix_ingest_conflicts_sop_instance_uid", "ingest_conflicts",
                    ["sop_instance_uid"])


def downgrade() -> None:
    op.drop_table("ingest_conflicts")
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("content_sha256")
