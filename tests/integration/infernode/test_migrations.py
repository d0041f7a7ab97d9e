"""Every package's Alembic revisions build exactly the tables its SQLAlchemy metadata declares,
on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import importlib

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from infernode.db import create_engine, migrate

METADATA_MODULES = ("dicom_node.index.tables", "workers.db", "hl7_fhir.facade.store",
                    "infernode.audit", "infernode.console.tables")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migrations_match_the_declared_tables(backend, tmp_path, request):
    url = (f"sqlite:///{tmp_path / 'db'}" if backend == "sqlite"
           else request.getfixturevalue("pg_url"))
    engine = create_engine(url)
    migrate(engine)
    migrate(engine)  # idempotent
    combined = sa.MetaData()
    for name in METADATA_MODULES:
        for table in importlib.import_module(name).metadata.tables.values():
            table.to_metadata(combined)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = [d for d in compare_metadata(context, combined)
                 if not (d[0] == "remove_table" and d[1].name == "alembic_version")]
    assert diffs == []
    engine.dispose()
