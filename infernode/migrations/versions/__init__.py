"""Alembic revisions of this package (branch named after it)."""
