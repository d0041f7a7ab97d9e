"""SIGTERM to a real `infernode serve` (embedded worker, no broker) while a job is running: the
node exits within 10 s with status 0 instead of waiting for the job, the job goes back to the
queue with its attempt budget intact, and after a restart it runs again and succeeds."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from tests.support.net import free_port
from tests.support.peers.dcmtk import ct_series, echoscu, storescu
from tests.support.waiting import wait_until


def _write_config(path: Path, tmp: Path, port: int, sleep_s: float) -> None:
    path.write_text(yaml.safe_dump({
        "data_dir": str(tmp / "data"), "database": {"url": f"sqlite:///{tmp / 'node.db'}"},
        # dicom.stop_grace_s and workers.embedded_stop_grace_s keep their defaults
        "dicom": {"port": port, "spool_dir": str(tmp / "spool"), "min_free_bytes": 0,
                  "quiet_period_s": 1.0, "assembly_poll_s": 0.2},
        "web": {"enabled": False},
        "workers": {
            "pipelines": {"noop": {"kind": "noop", "sleep_s": sleep_s,
                                   "record_dir": str(tmp / "record")}},
            "exclusions": [],
            "rules": [{"name": "ct-noop", "pipeline": "noop", "quiet_period_s": 1.0,
                       "when": {"tag": "Modality", "equals": "CT"}}],
        },
    }))


def _serve(config: Path, log: Path, port: int) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        node = subprocess.Popen(
            [sys.executable, "-m", "infernode.cli", "serve", "-c", str(config)],
            stdout=out, stderr=subprocess.STDOUT)
    wait_until(lambda: node.poll() is not None or echoscu(port).returncode == 0, 60,
               "the node to answer C-ECHO", every=0.3)
    assert node.poll() is None, log.read_text()[-3000:]
    return node


def _job(db: Path, job_id: str) -> dict[str, Any]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT state, attempts, max_attempts, not_before FROM jobs "
                           "WHERE id = ?", (job_id,)).fetchone()
        history = conn.execute("SELECT attempt, outcome FROM job_attempts WHERE job_id = ? "
                               "ORDER BY attempt", (job_id,)).fetchall()
    return {**dict(row), "history": [tuple(h) for h in history]}


def _finished(record: Path) -> list[str]:
    path = record / "finished.log"
    return path.read_text().split() if path.exists() else []


def test_sigterm_with_a_job_running_exits_within_10_s_and_the_job_resumes(tmp_path: Path):
    port, db, record = free_port(), tmp_path / "node.db", tmp_path / "record"
    config, log = tmp_path / "node.yaml", tmp_path / "node.log"
    _write_config(config, tmp_path, port, sleep_s=120)
    node = _serve(config, log, port)
    try:
        assert storescu(port, ct_series(tmp_path / "ct", slices=3)).returncode == 0
        started = wait_until(lambda: sorted(record.glob("*.1.started")), 60,
                             "the job to start")
        job_id = started[0].name.split(".")[0]
        sent = time.monotonic()
        node.send_signal(signal.SIGTERM)
        code = node.wait(timeout=60)
        took = time.monotonic() - sent
    finally:
        if node.poll() is None:
            node.kill()
    print(f"exit {took:.2f} s after SIGTERM")
    output = log.read_text(errors="replace")
    assert took < 10, f"the node took {took:.1f} s to exit\n{output[-3000:]}"
    assert code == 0, output[-3000:]
    assert f"job {job_id} attempt 1 interrupted" in output
    job = _job(db, job_id)
    # queued again, the interrupted attempt added to the budget (3 by default)
    assert (job["state"], job["attempts"], job["max_attempts"]) == ("queued", 1, 4)
    assert job["not_before"] is not None
    assert job["history"] == [(1, "interrupted")]
    assert _finished(record) == []

    _write_config(config, tmp_path, port, sleep_s=0)
    node = _serve(config, log, port)
    try:
        wait_until(lambda: job_id in _finished(record), 60, "the job to run again and finish",
                   every=0.2)
        wait_until(lambda: _job(db, job_id)["state"] == "succeeded", 10, "the job recorded")
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=30) == 0
    finally:
        if node.poll() is None:
            node.kill()
    job = _job(db, job_id)
    assert job["attempts"] == 2
    assert job["history"] == [(1, "interrupted"), (2, "succeeded")]
    assert _finished(record) == [job_id]
