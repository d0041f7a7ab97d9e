"""`infernode db upgrade` indexes instances.received_at in a database made by an older release
(dicom_node at d1a2, rows already there), on SQLite and the real PostgreSQL; on SQLite the
console Overview's per-minute query then searches that index instead of scanning the table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from typer.testing import CliRunner

from dicom_node.index.tables import instances
from infernode.cli import app
from infernode.console.views import overview
from infernode.db import alembic_config, create_engine

INDEX = "ix_instances_received_at"
NOW = datetime(2026, 12, 5, 12, 0, 30, tzinfo=UTC)


def _rows(count: int) -> list[dict[str, Any]]:
    return [{
        "sop_instance_uid": f"1.2.826.0.1.3680043.10.543.9.{n}",
        "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
        "series_instance_uid": "1.2.826.0.1.3680043.10.543.8",
        "study_instance_uid": "1.2.826.0.1.3680043.10.543.7",
        "transfer_syntax_uid": "1.2.840.10008.1.2.1",
        "path": f"/spool/{n}.dcm",
        "size_bytes": 1000,
        # one per minute, the oldest two hours back: 30 of them fall in the Overview's window
        "received_at": NOW - timedelta(minutes=count - 1 - n),
        "duplicates": 0,
    } for n in range(count)]


def _per_minute_query_plan(engine: sa.Engine, spool: Path) -> str:
    """SQLite's plan for the statement the Overview actually runs against `instances` with a
    received_at bound (captured from the engine while overview() runs)."""
    seen: list[tuple[str, Any]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _many) -> None:
        seen.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", capture)
    try:
        result = overview(engine, spool, [], NOW)
    finally:
        sa.event.remove(engine, "before_cursor_execute", capture)
    assert sum(n for _, n in result.per_minute) == 30
    statements = [(s, p) for s, p in seen if "FROM instances" in s and "received_at >=" in s]
    assert len(statements) == 1, [s for s, _ in seen]
    statement, parameters = statements[0]
    with engine.connect() as conn:
        plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
    return " | ".join(str(row[-1]) for row in plan)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_upgrade_indexes_received_at(backend, tmp_path, request):
    url = (f"sqlite:///{tmp_path / 'db'}" if backend == "sqlite"
           else request.getfixturevalue("pg_url"))
    engine = create_engine(url)
    # An older release's schema: the index branch at d1a2, the other branches at their heads.
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "d1a2")
        for branch in ("workers", "hl7_fhir", "infernode"):
            command.upgrade(alembic_config(conn), f"{branch}@head")
        conn.execute(instances.insert(), _rows(120))
    assert INDEX not in {ix["name"] for ix in sa.inspect(engine).get_indexes("instances")}
    if backend == "sqlite":
        before = _per_minute_query_plan(engine, tmp_path)
        assert "SCAN instances" in before, before

    upgraded = CliRunner().invoke(app, ["db", "upgrade", "--db", url])
    assert upgraded.exit_code == 0, upgraded.output
    assert "dicom_node: d1a2 -> d1a3" in upgraded.stdout, upgraded.stdout
    # New connections: EXPLAIN alone never checks the schema cookie, so a connection opened
    # before the upgrade would still plan against the schema it had loaded.
    engine.dispose()

    indexes = {ix["name"]: ix for ix in sa.inspect(engine).get_indexes("instances")}
    assert INDEX in indexes, sorted(indexes)
    assert indexes[INDEX]["column_names"] == ["received_at"]
    if backend == "sqlite":
        after = _per_minute_query_plan(engine, tmp_path)
        assert f"USING COVERING INDEX {INDEX}" in after, after
        assert "SCAN instances" not in after, after
    engine.dispose()
