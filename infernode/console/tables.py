"""The console's tables: login sessions (ids stored hashed) and the per-pipeline switches an
administrator sets on the Models page. Created by migration inf_0002."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

console_sessions = sa.Table(
    "console_sessions",
    metadata,
    # SHA-256 of the random session id: a stolen database copy holds no usable cookie
    sa.Column("id_sha256", sa.String(64), primary_key=True),
    sa.Column("user_name", sa.String(64), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    # local (console.users) or oidc (the role came from the provider's ID token at login)
    sa.Column("origin", sa.String(16), nullable=False),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("source", sa.String(256), nullable=True),
    sa.Column("created_at", sa.DateTime(), nullable=False),
    sa.Column("last_seen_at", sa.DateTime(), nullable=False),
    sa.Column("ended_at", sa.DateTime(), nullable=True),
)

pipeline_switches = sa.Table(
    "console_pipeline_switches",
    metadata,
    sa.Column("pipeline", sa.String(64), primary_key=True),
    sa.Column("enabled", sa.Boolean(), nullable=False),
    sa.Column("changed_by", sa.String(64), nullable=False),
    sa.Column("changed_at", sa.DateTime(), nullable=False),
)
