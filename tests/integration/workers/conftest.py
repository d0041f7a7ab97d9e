"""Fixtures for the workers integration tests: a private PostgreSQL schema, private Redis
servers for fault injection, and real Celery / embedded worker processes."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from tests.integration.workers.workers_support import PG_BASE, RedisServer, WorkerProcess
from workers.config import WorkersConfig
from workers.db import make_engine, metadata


@pytest.fixture(scope="session")
def wk_pg_url() -> Iterator[str]:
    """A schema of our own in the shared test database, dropped afterwards."""
    schema = f"wk_{uuid.uuid4().hex[:10]}"
    admin = make_engine(PG_BASE)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{PG_BASE}?options=-csearch_path%3D{schema}"
    engine = make_engine(url)
    metadata.create_all(engine)
    engine.dispose()
    yield url
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def pg_engine(wk_pg_url: str) -> Iterator[Engine]:
    engine = make_engine(wk_pg_url)
    with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())
    yield engine
    engine.dispose()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(cfg: WorkersConfig, db_url: str, *, pipelines: str = "", pool: str = "solo",
              concurrency: int = 1) -> WorkerProcess:
        extra = ["-P", pool, "-c", str(concurrency), "-l", "INFO"]
        if pipelines:
            extra += ["-Q", pipelines]
        worker = WorkerProcess("workers.worker_main", cfg, db_url, tmp_path, extra)
        started.append(worker)
        return worker.start(" ready.")

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def start_embedded(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(cfg: WorkersConfig, db_url: str) -> WorkerProcess:
        worker = WorkerProcess("workers.embedded", cfg, db_url, tmp_path, [])
        started.append(worker)
        return worker.start("embedded worker ready")

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture(scope="session", autouse=True)
def _tools() -> None:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (Debian package redis-server)")
