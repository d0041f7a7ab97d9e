"""instance index: studies, series, instances, ingest failures

Revision ID: d1a0
Revises:
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "d1a0"
down_revision = None
branch_labels = ("dicom_node",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "studies",
        sa.Column("study_instance_uid", sa.String(64), primary_key=True),
        sa.Column("patient_id", sa.String(64)),
        sa.Column("accession_number", sa.String(64)),
        sa.Column("study_date", sa.String(8)),
        sa.Column("first_received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("completions", sa.Integer, nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_studies_state", "studies", ["state"])
    op.create_table(
        "series",
        sa.Column("series_instance_uid", sa.String(64), primary_key=True),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("modality", sa.String(16)),
        sa.Column("body_part_examined", sa.String(64)),
        sa.Column("series_description", sa.String(64)),
        sa.Column("protocol_name", sa.String(64)),
        sa.Column("image_type", sa.String(256)),
        sa.Column("series_number", sa.Integer),
        sa.Column("slice_thickness", sa.Float),
        sa.Column("calling_ae", sa.String(16)),
        sa.Column("called_ae", sa.String(16)),
        sa.Column("instance_count", sa.Integer, nullable=False),
        sa.Column("expected_count", sa.Integer),
        sa.Column("bytes_received", sa.BigInteger, nullable=False),
        sa.Column("first_received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("quiet_period_s", sa.Float, nullable=False),
        sa.Column("complete_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.Column("late_instances", sa.Integer, nullable=False),
    )
    op.create_index("ix_series_study_instance_uid", "series", ["study_instance_uid"])
    op.create_index("ix_series_complete_after", "series", ["complete_after"])
    op.create_index("ix_series_state", "series", ["state"])
    op.create_table(
        "instances",
        sa.Column("sop_instance_uid", sa.String(64), primary_key=True),
        sa.Column("sop_class_uid", sa.String(64), nullable=False),
        sa.Column("series_instance_uid", sa.String(64), nullable=False),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("instance_number", sa.Integer),
        sa.Column("transfer_syntax_uid", sa.String(64), nullable=False),
        sa.Column("image_type", sa.String(256)),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("calling_ae", sa.String(16)),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duplicates", sa.Integer, nullable=False),
    )
    op.create_index("ix_instances_series_instance_uid", "instances", ["series_instance_uid"])
    op.create_table(
        "ingest_failures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("calling_ae", sa.String(16)),
        sa.Column("peer_address", sa.String(64)),
        sa.Column("sop_class_uid", sa.String(64)),
        sa.Column("sop_instance_uid", sa.String(64)),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("reason_code", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("kept_path", sa.Text),
    )
    op.create_index("ix_ingest_failures_at", "ingest_failures", ["at"])


def downgrade() -> None:
    for table in ("ingest_failures", "instances", "series", "studies"):
        op.drop_table(table)
