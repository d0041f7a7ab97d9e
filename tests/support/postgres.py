"""The machine's PostgreSQL for the tests: each test (or session) gets a schema of its own."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

PG_ADMIN_URL = os.environ.get(
    "INFERNODE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
"""The shared test database (trust authentication on loopback)."""


def schema_url(schema: str) -> str:
    """A URL whose connections use `schema` as their search path."""
    return f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"


@contextmanager
def fresh_schema(prefix: str = "t") -> Iterator[str]:
    """Creates an empty schema, yields its URL, drops it with everything in it afterwards.

    Raises:
        sqlalchemy.exc.OperationalError: PostgreSQL is not reachable.
    """
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URL)
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        yield schema_url(schema)
    finally:
        try:
            _drop(admin, schema)
        finally:
            admin.dispose()


def _drop(admin: sa.Engine, schema: str, attempts: int = 5) -> None:
    """Drops the schema; a connection of the test's own node that is still finishing a write
    (a handler thread ending after its association) can make PostgreSQL pick the DROP as a
    deadlock victim: it is retried once that write is done."""
    for attempt in range(attempts):
        try:
            with admin.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            return
        except sa.exc.OperationalError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
