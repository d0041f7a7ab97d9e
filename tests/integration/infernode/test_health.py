"""`/health/live` and `/health/ready` of a running node, each dependency broken for real: a
spool on a small tmpfs filled by the test, a private redis-server stopped by the test, a real
Celery worker stopped by the test, a PostgreSQL database that stops accepting connections."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from infernode.node import Node
from infernode.settings import load_settings
from tests.integration.workers.workers_support import RedisServer, WorkerProcess, make_config
from tests.support.net import free_port
from tests.support.postgres import PG_ADMIN_URL
from tests.support.waiting import wait_until
from workers.db import jobs
from workers.outbox.tables import deliveries, outputs

MiB = 1024 * 1024


@pytest.fixture
def web_node(tmp_path: Path) -> Iterator[Callable[..., tuple[Node, str]]]:
    started: list[Node] = []

    def make(db_url: str | None = None, workers: dict[str, Any] | None = None,
             health: dict[str, Any] | None = None, spool: Path | None = None) -> tuple[Node, str]:
        base = tmp_path / f"node{len(started)}"
        port = free_port()
        settings = load_settings(
            None, data_dir=str(base),
            database={"url": db_url or f"sqlite:///{base / 'infernode.db'}"},
            dicom={"port": 0, "spool_dir": str(spool or base / "spool"), "min_free_bytes": 0,
                   "assembly_poll_s": 0.1},
            web={"port": port}, health={"probe_timeout_s": 1.0, **(health or {})},
            **({"workers": workers} if workers else {}),
        )
        node = Node.build(settings)
        node.start()
        started.append(node)
        return node, f"http://127.0.0.1:{port}"

    yield make
    for node in started:
        node.stop()


def ready(base: str) -> tuple[int, dict[str, Any]]:
    answer = httpx.get(f"{base}/health/ready", timeout=30)
    return answer.status_code, answer.json()


def states(body: dict[str, Any]) -> dict[str, str]:
    return {name: check["state"] for name, check in body["checks"].items()}


def test_live_and_ready_name_every_check(web_node) -> None:
    _, base = web_node()
    for path in ("/health", "/health/live"):
        assert httpx.get(base + path).json() == {"status": "ok"}
    status, body = ready(base)
    assert status == 200, body
    assert body["status"] == "ready"
    assert states(body) == {"database": "ok", "spool": "ok", "workers": "ok",
                            "delivery_dead_letters": "ok", "oldest_queued_job": "ok"}


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path | None]:
    """A 16 MiB tmpfs (needs root with CAP_SYS_ADMIN), None where it cannot be mounted."""
    target = tmp_path / "tmpfs"
    target.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(target)],
                             capture_output=True).returncode == 0
    yield target if mounted else None
    if mounted:
        subprocess.run(["umount", "-l", str(target)], check=False)


def test_a_full_spool_makes_the_node_unready(web_node, small_tmpfs: Path | None,
                                             tmp_path: Path) -> None:
    if small_tmpfs is not None:
        _, base = web_node(spool=small_tmpfs / "spool", health={"spool_min_free_bytes": 8 * MiB})
        assert ready(base)[0] == 200
        filler = small_tmpfs / "filler"
        filler.write_bytes(b"\0" * (10 * MiB))
    else:  # no tmpfs here: a watermark above the filesystem's real free space
        free = shutil.disk_usage(tmp_path).free
        _, base = web_node(health={"spool_min_free_bytes": free * 2})
    status, body = ready(base)
    assert status == 503
    assert body["status"] == "not_ready"
    assert states(body)["spool"] == "failing" and states(body)["database"] == "ok"
    assert "watermark" in body["checks"]["spool"]["detail"]
    if small_tmpfs is not None:
        filler.unlink()
        assert ready(base)[0] == 200


def test_a_stopped_broker_or_worker_makes_the_node_unready(web_node, tmp_path: Path) -> None:
    redis_server = RedisServer(tmp_path)
    redis_server.start()
    worker: WorkerProcess | None = None

    def until(broker: str, workers: str) -> dict[str, Any]:
        def seen() -> dict[str, Any] | None:
            status, body = ready(base)
            found = states(body)
            return body if (found["broker"], found["workers"]) == (broker, workers) else None

        return wait_until(seen, 30, f"broker {broker}, workers {workers}", every=0.2)

    try:
        cfg = make_config(tmp_path, redis_server.url)
        db_url = f"sqlite:///{tmp_path / 'shared.db'}"
        _, base = web_node(db_url=db_url, workers=cfg.model_dump(mode="json"),
                           health={"worker_probe_interval_s": 0.5})
        body = until("ok", "failing")
        assert "alpha" in body["checks"]["workers"]["detail"]
        assert ready(base)[0] == 503

        worker = WorkerProcess("workers.worker_main", cfg, db_url, tmp_path,
                               ["-P", "solo", "-l", "INFO"]).start(" ready.")
        body = until("ok", "ok")
        assert ready(base)[0] == 200, body

        worker.stop()
        until("ok", "failing")

        redis_server.stop()
        until("failing", "failing")
        status, body = ready(base)
        assert status == 503 and body["status"] == "not_ready"
    finally:
        if worker is not None:
            worker.kill()
        redis_server.stop()


@pytest.fixture
def own_database() -> Iterator[tuple[str, sa.Engine]]:
    """A PostgreSQL database of the test's own, which it can close to new connections."""
    name = f"h5_health_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}", admin
    with admin.connect() as conn:
        conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_an_unreachable_database_makes_the_node_unready(web_node, own_database) -> None:
    url, admin = own_database
    name = url.rsplit("/", 1)[1]
    _, base = web_node(db_url=url)
    assert ready(base)[0] == 200
    with admin.connect() as conn:
        conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
        conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE datname = :name"), {"name": name})
    status, body = ready(base)
    assert status == 503
    assert states(body)["database"] == "failing"
    assert states(body)["oldest_queued_job"] == "failing"
    with admin.connect() as conn:
        conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
    wait_until(lambda: ready(base)[0] == 200, 30, "ready again once the database is back")


def test_dead_letters_and_an_old_queued_job_over_their_thresholds(web_node) -> None:
    node, base = web_node(workers={"queues": ["noop"]},
                          health={"max_delivery_dead_letters": 1, "max_oldest_queued_s": 600})
    now = datetime.now(UTC)
    with node.engine.begin() as conn:
        conn.execute(jobs.insert().values(
            id=str(uuid.uuid4()), study_instance_uid="1.2.3", pipeline="ich",
            model_version="v", state="queued", priority="routine", queue="ich", attempts=0,
            max_attempts=3, rules=[], series=[], created_at=now - timedelta(hours=2),
            queued_at=now - timedelta(hours=2), updated_at=now))
        output = conn.execute(outputs.insert().values(
            job_id=conn.execute(sa.select(jobs.c.id)).scalar_one(), study_instance_uid="1.2.3",
            pipeline="ich", kind="sr", uid="1.2.3.4", rank=2, created_at=now,
            updated_at=now)).inserted_primary_key[0]
        for destination, when in (("pacs", now), ("ehr", now), ("old", now - timedelta(days=2))):
            conn.execute(deliveries.insert().values(
                output_id=output, destination=destination, destination_type="dicom",
                state="dead", rank=2, attempts=5, created_at=when, next_try_at=when,
                updated_at=when))
    status, body = ready(base)
    assert status == 503
    found = states(body)
    assert found["delivery_dead_letters"] == "failing" and found["oldest_queued_job"] == "failing"
    # the dead letter of two days ago is outside the 24 h window
    assert body["checks"]["delivery_dead_letters"]["detail"] == "2 in the last 86400 s (at most 1)"
    assert found["database"] == "ok" and found["spool"] == "ok"
