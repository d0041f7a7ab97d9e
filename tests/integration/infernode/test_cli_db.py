"""`infernode db current / upgrade` on SQLite and the real PostgreSQL: a partly migrated schema
is reported branch by branch, `current` changes nothing and fails while a branch is behind, and
`upgrade` brings every branch to its head."""

from __future__ import annotations

import json

import pytest
from alembic import command
from typer.testing import CliRunner

from infernode.cli import app
from infernode.db import alembic_config, create_engine, schema_state


def _json(result) -> dict[str, dict]:
    assert result.stdout.strip(), result.output
    return {row["branch"]: row for row in json.loads(result.stdout)}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_current_then_upgrade(backend, tmp_path, request):
    url = (f"sqlite:///{tmp_path / 'db'}" if backend == "sqlite"
           else request.getfixturevalue("pg_url"))
    engine = create_engine(url)
    # An older release's schema: the index branch one revision behind, workers not created.
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "d1a1")
        command.upgrade(alembic_config(conn), "hl7_fhir@head")
        command.upgrade(alembic_config(conn), "infernode@head")
    runner = CliRunner()

    first = runner.invoke(app, ["db", "current", "--db", url, "--json"])
    assert first.exit_code == 1, first.output
    rows = _json(first)
    assert set(rows) == {"dicom_node", "hl7_fhir", "infernode", "workers"}
    assert rows["dicom_node"]["current"] == "d1a1"
    assert rows["dicom_node"]["at_head"] is False
    assert rows["workers"]["current"] is None
    assert rows["hl7_fhir"]["at_head"] and rows["infernode"]["at_head"]
    # `current` only reads.
    assert {s.branch: s.current for s in schema_state(engine)}["dicom_node"] == "d1a1"

    upgraded = runner.invoke(app, ["db", "upgrade", "--db", url])
    assert upgraded.exit_code == 0, upgraded.output
    assert "dicom_node: d1a1 -> " in upgraded.stdout
    assert "workers: empty -> " in upgraded.stdout
    assert "hl7_fhir:" not in upgraded.stdout.split("schema after upgrade")[0]

    after = runner.invoke(app, ["db", "current", "--db", url, "--json"])
    assert after.exit_code == 0, after.output
    assert all(row["at_head"] for row in _json(after).values())
    engine.dispose()
