"""Fixtures of the outbox tests: a migrated SQLite database (the node's own migrations, so the
outbox revision is exercised) and a clock the test moves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from infernode.db import create_engine, migrate
from tests.integration.workers.outbox.outbox_support import MovableClock


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'node.db'}"


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = create_engine(db_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()
