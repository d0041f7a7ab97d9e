"""Faults with real processes on a Redis of our own: a worker killed mid-task, Redis restarted
mid-run, Redis down when jobs are submitted. The database must end with every job finished
exactly once."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from sqlalchemy import Engine

from dicom_node.events import StudyReady
from tests.integration.workers.workers_support import (
    RedisServer,
    make_config,
    record_lines,
    wait_until,
)
from workers import samples
from workers.admin import get_job, job_detail
from workers.db import utcnow
from workers.messages import JobState
from workers.reconciler import reconcile_once
from workers.submit import default_transport, on_study_ready


def _study(description: str) -> StudyReady:
    return samples.study(samples.series(series_description=description))


def test_worker_killed_mid_task_reruns_once_and_finishes_once(
    tmp_path: Path, pg_engine: Engine, wk_pg_url: str, own_redis: RedisServer, start_worker
) -> None:
    cfg = make_config(tmp_path, own_redis.url, slow_sleep_s=1.5)
    start_worker(cfg, wk_pg_url, pipelines="slow", pool="prefork", concurrency=1)
    transport = default_transport(cfg)
    (job,) = on_study_ready(pg_engine, cfg, _study("slow routine"), transport=transport)
    marker = tmp_path / "record" / f"{job.id}.1.started"
    wait_until(marker.exists, 30, "the first attempt to start")
    os.kill(int(marker.read_text()), signal.SIGKILL)  # the pool process running the task

    def finished() -> bool:
        reconcile_once(pg_engine, cfg, utcnow(), transport)
        return get_job(pg_engine, job.id).state is JobState.SUCCEEDED

    wait_until(finished, 40, "the job to finish after the kill", every=0.2)
    detail = job_detail(pg_engine, job.id)
    assert detail["attempts"] == 2
    assert [a["outcome"] for a in detail["attempt_history"]] == ["transient", "succeeded"]
    assert detail["attempt_history"][0]["reason"] == "worker_lost"
    assert record_lines(tmp_path, "finished.log") == [job.id]


def test_redis_restart_mid_run_loses_no_job(
    tmp_path: Path, pg_engine: Engine, wk_pg_url: str, own_redis: RedisServer, start_worker
) -> None:
    cfg = make_config(tmp_path, own_redis.url, slow_sleep_s=0.4)
    start_worker(cfg, wk_pg_url, pipelines="slow")
    transport = default_transport(cfg)
    ids = [on_study_ready(pg_engine, cfg, _study("slow routine"), transport=transport)[0].id
           for _ in range(5)]
    wait_until(lambda: (tmp_path / "record" / f"{ids[0]}.1.started").exists(), 30,
               "the first job to start")
    own_redis.stop()  # no persistence: the queued messages are gone
    own_redis.start()

    def all_done() -> bool:
        reconcile_once(pg_engine, cfg, utcnow(), transport)
        return all(get_job(pg_engine, i).state is JobState.SUCCEEDED for i in ids)

    wait_until(all_done, 60, "every job to finish after the restart", every=0.3)
    assert sorted(record_lines(tmp_path, "finished.log")) == sorted(ids)


def test_broker_down_at_submit_job_waits_then_is_sent(
    tmp_path: Path, pg_engine: Engine, wk_pg_url: str, own_redis: RedisServer, start_worker
) -> None:
    cfg = make_config(tmp_path, own_redis.url)
    start_worker(cfg, wk_pg_url, pipelines="alpha")
    transport = default_transport(cfg)
    own_redis.stop()
    (job,) = on_study_ready(pg_engine, cfg, _study("alpha routine"), transport=transport)
    waiting = get_job(pg_engine, job.id)
    assert waiting.state is JobState.QUEUED and waiting.sent_at is None
    report = reconcile_once(pg_engine, cfg, utcnow(), transport)
    assert report.broker_down and report.sent == 0
    assert get_job(pg_engine, job.id).sent_at is None

    own_redis.start()

    def done() -> bool:
        reconcile_once(pg_engine, cfg, utcnow(), transport)
        return get_job(pg_engine, job.id).state is JobState.SUCCEEDED

    wait_until(done, 60, "the job to run once the broker is back", every=0.3)
    assert record_lines(tmp_path, "finished.log") == [job.id]
