"""Helpers of the workers integration tests (imported by conftest and the tests)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import redis

from tests.support.net import free_port
from tests.support.postgres import PG_ADMIN_URL
from tests.support.waiting import wait_until
from workers.config import WorkersConfig

__all__ = ["PG_BASE", "RedisServer", "WorkerProcess", "free_port", "make_config",
           "record_lines", "wait_until"]

REPO = Path(__file__).resolve().parents[3]
PG_BASE = PG_ADMIN_URL
"""The shared test database (tests.support.postgres)."""


class RedisServer:
    """A redis-server of our own (no persistence), so tests can stop and restart it without
    disturbing the machine's shared Redis."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        wait_until(up, 10, "redis-server to answer")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def make_config(tmp: Path, broker_url: str | None, **overrides: Any) -> WorkersConfig:
    """Pipelines `alpha`/`beta` (instant), `slow` (sleeps), `flaky` (fails while a flag file
    exists), all recording what ran under tmp/record; each is routed by SeriesDescription."""
    record = str(tmp / "record")
    sleep_s = overrides.pop("slow_sleep_s", 2.0)
    pipelines = {
        "alpha": {"model_version": "a1", "options": {"record_dir": record}},
        "beta": {"model_version": "b1", "options": {"record_dir": record}},
        "slow": {"model_version": "s1", "options": {"record_dir": record, "sleep_s": sleep_s}},
        "flaky": {"model_version": "f1",
                  "options": {"record_dir": record, "fail_flag": str(tmp / "broken")}},
    }
    rules = [
        {"name": f"{name}-{prio}", "pipeline": name, "priority": prio,
         "when": {"tag": "SeriesDescription", "matches": f"(?i){name} {prio}.*"}}
        for name in pipelines for prio in ("stat", "routine")
    ]
    data: dict[str, Any] = {
        "broker_url": broker_url, "device": "cpu", "pipelines": pipelines, "rules": rules,
        "exclusions": [], "lease_s": 1.0, "retry_backoff_s": 0.0, "max_attempts": 3,
        "resend_after_s": 1.0, "reconcile_interval_s": 0.3, "embedded_poll_s": 0.05,
        "soft_time_limit_s": 60, "hard_time_limit_s": 90, "visibility_timeout_s": 3600,
        "broker_connect_timeout_s": 1.0,
    }
    if broker_url and broker_url.endswith(":6379/0"):
        # the machine's Redis is shared: keep our keys apart
        data["broker_transport_options"] = {"global_keyprefix": f"wk-{uuid.uuid4().hex[:8]}-"}
    data.update(overrides)
    return WorkersConfig.model_validate(data)


class WorkerProcess:
    """A real worker process (`python -m workers.worker_main` or `workers.embedded`)."""

    def __init__(self, module: str, cfg: WorkersConfig, db_url: str, tmp: Path,
                 extra: list[str]) -> None:
        self.config_path = tmp / f"cfg-{uuid.uuid4().hex[:6]}.json"
        self.config_path.write_text(json.dumps(cfg.model_dump(mode="json", by_alias=True)))
        self.log_path = tmp / f"{module.rsplit('.', 1)[-1]}-{uuid.uuid4().hex[:6]}.log"
        self.args = [sys.executable, "-m", module, "--config", str(self.config_path),
                     "--db", db_url, *extra]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready_text: str) -> WorkerProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.args, cwd=REPO, env=env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(lambda: ready_text in self.log(), 60, f"worker ready ({self.log_path})", 0.1)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


def record_lines(tmp: Path, name: str) -> list[str]:
    path = tmp / "record" / name
    return path.read_text().split() if path.exists() else []
