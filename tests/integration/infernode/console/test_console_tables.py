"""Migration inf_0002 builds exactly the console's declared tables, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from infernode.console.tables import metadata
from infernode.db import create_engine, migrate


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_console_migration_matches_the_tables(backend, tmp_path, request):
    url = (f"sqlite:///{tmp_path / 'db'}" if backend == "sqlite"
           else request.getfixturevalue("pg_url"))
    engine = create_engine(url)
    migrate(engine)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        # other packages' tables and indexes are theirs to check
        mine = set(metadata.tables)
        diffs = [d for d in compare_metadata(context, metadata)
                 if not (isinstance(d, tuple) and d[0] in ("remove_table", "remove_index")
                         and getattr(d[1], "name", None) not in mine
                         and getattr(getattr(d[1], "table", None), "name", None) not in mine)]
    engine.dispose()
    assert diffs == []
