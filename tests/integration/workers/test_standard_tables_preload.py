"""highdicom's tables of the standard (the 22 MB module attribute map every SEG/SR/KOS/GSPS
constructor reads) are loaded when a process that runs jobs starts, never by its first job: in
a prefork Celery child, in a solo Celery worker, in the embedded worker, and in the node before
its listener starts (there the first job would stall every association being received)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from highdicom._standard_utils import get_module_attribute_map
from sqlalchemy import Engine

from infernode.node import Node
from infernode.settings import load_settings
from tests.integration.workers.standard_tables_probe import states
from tests.integration.workers.workers_support import make_config, wait_until
from workers import samples
from workers.admin import get_job
from workers.config import WorkersConfig
from workers.messages import JobState
from workers.submit import default_transport, on_study_ready

SHARED_REDIS = "redis://127.0.0.1:6379/0"
PROBE = "tests.integration.workers.standard_tables_probe:Probe"

_configs: list[WorkersConfig] = []


@pytest.fixture(autouse=True)
def _clean_shared_redis() -> Iterator[None]:
    """Remove the keys our prefixed queues left in the machine's shared Redis."""
    yield
    client = redis.Redis.from_url(SHARED_REDIS)
    for cfg in _configs:
        prefix = cfg.broker_transport_options.get("global_keyprefix")
        if prefix:
            for key in client.scan_iter(match=f"{prefix}*"):
                client.delete(key)
    _configs.clear()


def _config(tmp_path: Path, broker_url: str | None) -> WorkersConfig:
    overrides: dict[str, Any] = {
        "pipelines": {"probe": {"factory": PROBE, "model_version": "p1",
                                "options": {"record_dir": str(tmp_path / "record")}}},
        "rules": [{"name": "probe", "pipeline": "probe", "priority": "routine",
                   "when": {"tag": "SeriesDescription", "matches": "(?i)probe.*"}}],
    }
    cfg = make_config(tmp_path, broker_url, **overrides)
    _configs.append(cfg)
    return cfg


def _first_job(engine: Engine, cfg: WorkersConfig, record: Path) -> dict[int, str]:
    study = samples.study(samples.series(series_description="probe"))
    [job] = on_study_ready(engine, cfg, study, transport=default_transport(cfg))
    wait_until(lambda: get_job(engine, job.id).state == JobState.SUCCEEDED, 60,
               "the probe job to succeed")
    return states(record)


@pytest.mark.parametrize("pool", ["prefork", "solo"])
def test_a_celery_workers_first_job_finds_the_tables_loaded(
        tmp_path: Path, pg_engine: Engine, wk_pg_url: str, start_worker, pool: str) -> None:
    cfg = _config(tmp_path, SHARED_REDIS)
    worker = start_worker(cfg, wk_pg_url, pipelines="probe", pool=pool)
    found = _first_job(pg_engine, cfg, tmp_path / "record")
    assert list(found.values()) == ["loaded"], found
    [pid] = found
    assert worker.proc is not None
    # prefork: the job ran in a child, which loaded them itself; solo: in the worker
    assert (pid != worker.proc.pid) == (pool == "prefork")


def test_the_embedded_workers_first_job_finds_the_tables_loaded(
        tmp_path: Path, pg_engine: Engine, wk_pg_url: str, start_embedded) -> None:
    cfg = _config(tmp_path, None)
    worker = start_embedded(cfg, wk_pg_url)
    found = _first_job(pg_engine, cfg, tmp_path / "record")
    assert worker.proc is not None
    assert found == {worker.proc.pid: "loaded"}


def test_the_node_loads_them_before_its_listener_starts(tmp_path: Path) -> None:
    settings = load_settings(
        None, data_dir=str(tmp_path), database={"url": f"sqlite:///{tmp_path / 'node.db'}"},
        dicom={"port": 0, "spool_dir": str(tmp_path / "spool"), "min_free_bytes": 0},
        web={"enabled": False})
    assert settings.workers.broker_url is None  # jobs run in the node: the embedded runner
    get_module_attribute_map.cache_clear()
    node = Node.build(settings)
    try:
        assert node.embedded is not None
        assert get_module_attribute_map.cache_info().currsize == 1
    finally:
        node.engine.dispose()
