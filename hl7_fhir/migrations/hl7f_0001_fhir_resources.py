"""hl7_fhir: the FHIR facade store (fhir_resources, fhir_resource_tokens).

Revision ID: hl7f_0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "hl7f_0001"
down_revision = None
branch_labels = ("hl7_fhir",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fhir_resources",
        sa.Column("resource_type", sa.String(64), primary_key=True),
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("version_id", sa.Integer, nullable=False),
        sa.Column("last_updated", sa.DateTime(), nullable=False),
        sa.Column("patient_ref", sa.String(128), nullable=True),
        sa.Column("status", sa.String(32), nullable=True),
        sa.Column("date_start", sa.DateTime(), nullable=True),
        sa.Column("date_end", sa.DateTime(), nullable=True),
        sa.Column("json", sa.Text, nullable=False),
    )
    op.create_index("ix_fhir_resources_patient_ref", "fhir_resources", ["patient_ref"])
    op.create_table(
        "fhir_resource_tokens",
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("resource_id", sa.String(64), nullable=False),
        sa.Column("param", sa.String(32), nullable=False),
        sa.Column("system", sa.String(256), nullable=True),
        sa.Column("code", sa.String(256), nullable=False),
        sa.ForeignKeyConstraint(
            ["resource_type", "resource_id"],
            ["fhir_resources.resource_type", "fhir_resources.id"],
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "ix_fhir_tokens_lookup", "fhir_resource_tokens", ["resource_type", "param", "code"]
    )
    op.create_index(
        "ix_fhir_tokens_owner", "fhir_resource_tokens", ["resource_type", "resource_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_fhir_tokens_owner", table_name="fhir_resource_tokens")
    op.drop_index("ix_fhir_tokens_lookup", table_name="fhir_resource_tokens")
    op.drop_table("fhir_resource_tokens")
    op.drop_index("ix_fhir_resources_patient_ref", table_name="fhir_resources")
    op.drop_table("fhir_resources")
