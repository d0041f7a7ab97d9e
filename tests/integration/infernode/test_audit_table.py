"""The audit trail's table: append-only on both database engines, queried newest first."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from infernode.audit import AuditEvent, AuditLog, Category, Outcome
from infernode.db import create_engine, migrate


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> sa.Engine:
    url = (f"sqlite:///{tmp_path / 'audit.db'}" if request.param == "sqlite"
           else request.getfixturevalue("pg_url"))
    engine = create_engine(url)
    migrate(engine)
    return engine


def test_events_are_recorded_and_queried(engine: sa.Engine) -> None:
    log = AuditLog(engine)
    first = log.record(AuditEvent(Category.LOGIN, "login", Outcome.FAILURE, actor="operator1",
                                  source="192.0.2.7"))
    log.record(AuditEvent(Category.CONFIG, "loaded", detail={"file": "node.yaml"}))

    newest_first = log.query()
    assert [(r.category, r.action, r.outcome) for r in newest_first] == [
        ("config", "loaded", "success"), ("login", "login", "failure")]
    assert newest_first[1].actor == "operator1" and newest_first[1].source == "192.0.2.7"
    after = log.query(after_id=first)
    assert [r.detail for r in after] == [{"file": "node.yaml"}]
    assert [r.action for r in log.query(category="login")] == ["login"]


@pytest.mark.parametrize("statement", [
    "UPDATE audit_events SET actor = 'someone else'",
    "DELETE FROM audit_events",
])
def test_rows_cannot_be_changed_or_removed(engine: sa.Engine, statement: str) -> None:
    log = AuditLog(engine)
    log.record(AuditEvent(Category.CONSOLE, "replay_delivery", actor="operator1"))
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        with engine.begin() as conn:
            conn.execute(sa.text(statement))
    assert [r.actor for r in log.query()] == ["operator1"]
