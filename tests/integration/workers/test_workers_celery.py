"""Celery on a real Redis with real worker processes: flow, two pipelines, stat priority,
dead letters and replay."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import Engine

from dicom_node.events import StudyReady
from tests.integration.workers.workers_support import make_config, record_lines, wait_until
from workers import samples
from workers.admin import dead_letters, get_job, job_detail, replay
from workers.config import WorkersConfig
from workers.db import utcnow
from workers.messages import JobState
from workers.reconciler import reconcile_once
from workers.submit import default_transport, on_study_ready

SHARED_REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture(autouse=True)
def _clean_shared_redis(tmp_path: Path) -> Iterator[None]:
    """Remove the keys our prefixed queues left in the machine's shared Redis."""
    yield
    client = redis.Redis.from_url(SHARED_REDIS)
    prefixes = {cfg.broker_transport_options["global_keyprefix"] for cfg in _configs}
    for prefix in prefixes:
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
    _configs.clear()


_configs: list[WorkersConfig] = []


def _config(tmp_path: Path, **overrides: Any) -> WorkersConfig:
    cfg = make_config(tmp_path, SHARED_REDIS, **overrides)
    _configs.append(cfg)
    return cfg


def _study(*descriptions: str) -> StudyReady:
    return samples.study(*(samples.series(series_description=d) for d in descriptions))


def _states(engine: Engine, ids: list[str]) -> list[JobState]:
    return [get_job(engine, i).state for i in ids]


def test_study_flows_to_finished_jobs_on_two_pipelines(tmp_path: Path, pg_engine: Engine,
                                                       wk_pg_url: str, start_worker) -> None:
    cfg = _config(tmp_path)
    start_worker(cfg, wk_pg_url, pipelines="alpha,beta")
    transport = default_transport(cfg)
    first = on_study_ready(pg_engine, cfg, _study("alpha routine", "beta routine", "other"),
                           transport=transport)
    second = on_study_ready(pg_engine, cfg, _study("alpha routine"), transport=transport)
    ids = [j.id for j in (*first, *second)]
    assert sorted(j.pipeline for j in first) == ["alpha", "beta"]
    wait_until(lambda: set(_states(pg_engine, ids)) == {JobState.SUCCEEDED}, 30, "jobs to succeed")
    for job_id in ids:
        detail = job_detail(pg_engine, job_id)
        assert detail["attempts"] == 1
        assert detail["result"]["outputs"][0]["uid"].startswith("2.25.")
        assert detail["wait_s"] is not None and detail["run_s"] is not None
    assert sorted(record_lines(tmp_path, "finished.log")) == sorted(ids)
    # models load once per worker process, not once per job
    assert len(record_lines(tmp_path, "loads.log")) == 2


def test_stat_job_overtakes_routine_jobs(tmp_path: Path, pg_engine: Engine, wk_pg_url: str,
                                         start_worker) -> None:
    cfg = _config(tmp_path, slow_sleep_s=1.5)
    start_worker(cfg, wk_pg_url, pipelines="slow,alpha")
    transport = default_transport(cfg)
    (blocker,) = on_study_ready(pg_engine, cfg, _study("slow routine"), transport=transport)
    wait_until(lambda: get_job(pg_engine, blocker.id).state is JobState.RUNNING, 20,
               "the blocking job to start")
    routine = [on_study_ready(pg_engine, cfg, _study("alpha routine"), transport=transport)[0]
               for _ in range(3)]
    (stat,) = on_study_ready(pg_engine, cfg, _study("alpha stat"), transport=transport)
    assert stat.queue == "alpha.stat"
    ids = [blocker.id, stat.id, *(j.id for j in routine)]
    wait_until(lambda: set(_states(pg_engine, ids)) == {JobState.SUCCEEDED}, 30, "jobs to succeed")
    started = {i: get_job(pg_engine, i).started_at for i in ids}
    assert all(started[stat.id] < started[j.id] for j in routine), started  # type: ignore[operator]


def test_always_failing_job_is_dead_lettered_then_replayed(tmp_path: Path, pg_engine: Engine,
                                                           wk_pg_url: str, start_worker) -> None:
    cfg = _config(tmp_path, max_attempts=2)
    (tmp_path / "broken").write_text("the pipeline is broken")
    start_worker(cfg, wk_pg_url, pipelines="flaky")
    transport = default_transport(cfg)
    (job,) = on_study_ready(pg_engine, cfg, _study("flaky routine"), transport=transport)

    def settled() -> bool:
        # the reconciler sends the job again after each failed attempt
        reconcile_once(pg_engine, cfg, utcnow(), transport)
        return get_job(pg_engine, job.id).state is JobState.DEAD_LETTERED

    wait_until(settled, 30, "the job to be dead-lettered", every=0.2)
    dead = get_job(pg_engine, job.id)
    assert dead.attempts == 2
    assert dead.error_reason == "transient"
    assert "gave up after 2 attempts" in (dead.last_error or "")
    assert [j.id for j in dead_letters(pg_engine)] == [job.id]
    history = job_detail(pg_engine, job.id)["attempt_history"]
    assert [a["outcome"] for a in history] == ["transient", "transient"]

    (tmp_path / "broken").unlink()  # the operator fixes the cause, then replays
    (replayed,) = replay(pg_engine, utcnow())
    assert replayed.state is JobState.QUEUED and replayed.attempts == 0
    reconcile_once(pg_engine, cfg, utcnow(), transport)
    wait_until(lambda: get_job(pg_engine, job.id).state is JobState.SUCCEEDED, 20,
               f"the replayed job to succeed: {job_detail(pg_engine, job.id)}")
    assert record_lines(tmp_path, "finished.log") == [job.id]
    assert dead_letters(pg_engine) == []
