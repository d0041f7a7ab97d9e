"""The embedded transport (no broker): the same job semantics from a worker inside the node,
on SQLite (the default) and PostgreSQL, including a node stopped mid-job and one killed mid-job."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import Engine

from dicom_node.events import StudyReady
from tests.integration.workers.workers_support import make_config, record_lines, wait_until
from workers import samples
from workers.admin import get_job, job_detail
from workers.db import make_engine, metadata
from workers.embedded import EmbeddedRunner
from workers.messages import JobState
from workers.submit import on_study_ready


def _study(*descriptions: str) -> StudyReady:
    return samples.study(*(samples.series(series_description=d) for d in descriptions))


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    if request.param == "postgresql":
        return request.getfixturevalue("pg_engine")
    sqlite = make_engine(f"sqlite:///{tmp_path / 'node.db'}")
    metadata.create_all(sqlite)
    return sqlite


def test_embedded_runs_both_pipelines_and_stat_first(tmp_path: Path, engine: Engine) -> None:
    cfg = make_config(tmp_path, None, embedded_threads=2)
    routine = on_study_ready(engine, cfg, _study("alpha routine", "beta routine"))
    (stat,) = on_study_ready(engine, cfg, _study("beta stat"))
    runner = EmbeddedRunner(engine, cfg, pipelines=["alpha", "beta"])
    # one claimer on this thread first, to observe the order without a race between threads
    assert runner.run_pending() == 3
    jobs = [get_job(engine, j.id) for j in (*routine, stat)]
    assert {j.state for j in jobs} == {JobState.SUCCEEDED}
    first = min(jobs, key=lambda j: j.started_at)  # type: ignore[arg-type, return-value]
    assert first.id == stat.id
    # and with its worker threads
    more = on_study_ready(engine, cfg, _study("alpha routine", "beta routine"))
    runner.start()
    try:
        wait_until(lambda: all(get_job(engine, j.id).state is JobState.SUCCEEDED for j in more),
                   20, "threaded embedded jobs to succeed")
    finally:
        runner.stop(10)
    assert sorted(record_lines(tmp_path, "finished.log")) == sorted(
        j.id for j in (*routine, stat, *more))


def test_stopping_hands_a_running_job_back_after_the_grace(tmp_path: Path,
                                                           engine: Engine) -> None:
    cfg = make_config(tmp_path, None, slow_sleep_s=2.0, lease_s=60.0)
    (job,) = on_study_ready(engine, cfg, _study("slow routine"))
    runner = EmbeddedRunner(engine, cfg, pipelines=["slow"])
    runner.start()
    marker = tmp_path / "record" / f"{job.id}.1.started"
    wait_until(marker.exists, 20, "the job to start")
    started = time.monotonic()
    runner.stop(0.2)
    assert time.monotonic() - started < 1.0
    released = get_job(engine, job.id)
    assert (released.state, released.attempts) == (JobState.QUEUED, 1)
    # the abandoned thread ends its sleep: its result is refused, the job stays queued
    runner.stop(20)
    assert record_lines(tmp_path, "finished.log") == [job.id]
    assert get_job(engine, job.id).state is JobState.QUEUED
    # the next run is attempt 2, and succeeds
    assert runner.run_pending() == 0  # a stopped runner claims nothing
    again = EmbeddedRunner(engine, cfg, pipelines=["slow"])
    assert again.run_pending() == 1
    done = get_job(engine, job.id)
    assert (done.state, done.attempts) == (JobState.SUCCEEDED, 2)
    history = job_detail(engine, job.id)["attempt_history"]
    assert [(h["attempt"], h["outcome"]) for h in history] == [
        (1, "interrupted"), (2, "succeeded")]


def test_embedded_node_killed_mid_job_resumes_after_restart(tmp_path: Path,
                                                            start_embedded) -> None:
    db_url = f"sqlite:///{tmp_path / 'node.db'}"
    engine = make_engine(db_url)
    metadata.create_all(engine)
    cfg = make_config(tmp_path, None, slow_sleep_s=1.5)
    (job,) = on_study_ready(engine, cfg, _study("slow routine"))
    (waiting,) = on_study_ready(engine, cfg, _study("alpha routine"))
    node = start_embedded(cfg, db_url)
    marker = tmp_path / "record" / f"{job.id}.1.started"
    wait_until(marker.exists, 30, "the job to start in the embedded node")
    node.kill()  # SIGKILL to the whole node
    assert get_job(engine, job.id).state is JobState.RUNNING
    start_embedded(cfg, db_url)
    wait_until(lambda: all(get_job(engine, j).state is JobState.SUCCEEDED
                           for j in (job.id, waiting.id)), 40, "both jobs to finish")
    detail = job_detail(engine, job.id)
    assert [a["outcome"] for a in detail["attempt_history"]] == ["transient", "succeeded"]
    assert detail["attempt_history"][0]["reason"] == "worker_lost"
    assert sorted(record_lines(tmp_path, "finished.log")) == sorted([job.id, waiting.id])


def test_an_idle_embedded_worker_does_not_load_torch(tmp_path: Path) -> None:
    # the receiving process runs the embedded worker: polling an empty queue must not import
    # torch (about 60 MB); a fresh interpreter shows what the poll itself loads
    import subprocess
    import sys

    script = f"""
import sys
from pathlib import Path
from tests.integration.workers.workers_support import make_config
from workers.db import make_engine, metadata
from workers.embedded import EmbeddedRunner
engine = make_engine("sqlite:///{tmp_path / 'idle.db'}")
metadata.create_all(engine)
runner = EmbeddedRunner(engine, make_config(Path("{tmp_path}"), None, device="auto"))
assert runner.run_pending() == 0
print("torch" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=False, cwd=Path(__file__).resolve().parents[3])
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"
