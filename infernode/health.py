"""Liveness and readiness of the node (`/health/live`, `/health/ready`).

Live: the process answers. Ready: every dependency the node needs to take a study in and get
its results out works now. Each check is named in the answer with its state and a short detail
(counts and byte figures only, never a patient's or a study's identifier), so a probe's log
says what is wrong. Checks run on the caller's thread; each is bounded by a timeout.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from infernode.wiring import workers_config
from workers.db import as_utc, jobs, utcnow
from workers.messages import JobState, Priority, queue_name
from workers.outbox.tables import DEAD, deliveries

if TYPE_CHECKING:
    from infernode.node import Node


@dataclass(frozen=True)
class Check:
    """One named readiness check: `ok`, and what was seen (no PHI)."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Thresholds:
    spool_min_free_bytes: int
    max_delivery_dead_letters: int
    max_oldest_queued_s: float
    probe_timeout_s: float
    dead_letter_window_s: float | None = None


class WorkerProbe(Protocol):
    """Which of `pipelines` have at least one live worker; raises on a probe failure."""

    def __call__(self, pipelines: Sequence[str], timeout: float) -> set[str]: ...


@dataclass
class Readiness:
    """The node's readiness checks. `workers` None: no pipeline is enabled, nothing to check."""

    engine: Engine
    spool_root: Path
    thresholds: Thresholds
    pipelines: Sequence[str]
    workers: WorkerProbe | None
    broker_url: str | None = None
    clock: Callable[[], datetime] = utcnow

    def checks(self) -> list[Check]:
        found = [self._database(), self._spool()]
        broker = self._broker() if self.broker_url else None
        if broker is not None:
            found.append(broker)
        if broker is None or broker.ok:
            found.append(self._workers())
        else:
            found.append(Check("workers", False, "not probed: the broker is unreachable"))
        found.extend(self._backlog())
        return found

    def _database(self) -> Check:
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except SQLAlchemyError as exc:
            return Check("database", False, f"unreachable ({type(exc).__name__})")
        return Check("database", True, self.engine.dialect.name)

    def _spool(self) -> Check:
        try:
            free = shutil.disk_usage(self.spool_root).free
        except OSError as exc:
            return Check("spool", False, f"cannot stat the spool ({exc.strerror})")
        floor = self.thresholds.spool_min_free_bytes
        return Check("spool", free >= floor, f"{free} bytes free, watermark {floor}")

    def _broker(self) -> Check:
        assert self.broker_url is not None
        try:
            ping_broker(self.broker_url, self.thresholds.probe_timeout_s)
        except Exception as exc:  # noqa: BLE001 - any failure of the probe means not reachable
            return Check("broker", False, f"unreachable ({type(exc).__name__})")
        return Check("broker", True, "reachable")

    def _workers(self) -> Check:
        if not self.pipelines:
            return Check("workers", True, "no pipeline enabled")
        if self.workers is None:
            return Check("workers", False, "no worker for the enabled pipelines")
        try:
            served = self.workers(self.pipelines, self.thresholds.probe_timeout_s)
        except Exception as exc:  # noqa: BLE001 - a failed probe is an unready answer
            return Check("workers", False, f"probe failed ({type(exc).__name__})")
        missing = sorted(set(self.pipelines) - served)
        if missing:
            return Check("workers", False, "no live worker for " + ", ".join(missing))
        return Check("workers", True, "every enabled pipeline has a worker: "
                     + ", ".join(sorted(self.pipelines)))

    def _backlog(self) -> list[Check]:
        try:
            with self.engine.connect() as conn:
                dead_query = (sa.select(sa.func.count()).select_from(deliveries)
                              .where(deliveries.c.state == DEAD))
                window = self.thresholds.dead_letter_window_s
                if window is not None:
                    dead_query = dead_query.where(
                        deliveries.c.updated_at >= self.clock() - timedelta(seconds=window))
                dead = conn.execute(dead_query).scalar_one()
                oldest = conn.execute(sa.select(sa.func.min(jobs.c.queued_at))
                                      .where(jobs.c.state == JobState.QUEUED.value)).scalar()
        except SQLAlchemyError as exc:
            reason = f"cannot read ({type(exc).__name__})"
            return [Check("delivery_dead_letters", False, reason),
                    Check("oldest_queued_job", False, reason)]
        limit = self.thresholds.max_delivery_dead_letters
        window = self.thresholds.dead_letter_window_s
        within = f" in the last {window:.0f} s" if window is not None else ""
        found = [Check("delivery_dead_letters", dead <= limit,
                       f"{dead}{within} (at most {limit})")]
        since = as_utc(oldest)
        age = 0.0 if since is None else (self.clock() - since).total_seconds()
        max_age = self.thresholds.max_oldest_queued_s
        found.append(Check("oldest_queued_job", age <= max_age,
                           f"{age:.0f} s (at most {max_age:.0f} s)" if oldest is not None
                           else "no job queued"))
        return found


def report(checks: Sequence[Check]) -> tuple[bool, dict[str, Any]]:
    """(ready, JSON body) for a list of checks."""
    ready = all(c.ok for c in checks)
    return ready, {
        "status": "ready" if ready else "not_ready",
        "checks": {c.name: {"state": "ok" if c.ok else "failing", "detail": c.detail}
                   for c in checks},
    }


def ping_broker(url: str, timeout: float) -> None:
    """Opens a connection to the broker and closes it; raises when it cannot."""
    from kombu import Connection

    with Connection(url, connect_timeout=timeout,
                    transport_options={"socket_timeout": timeout, "max_retries": 0}) as conn:
        conn.ensure_connection(max_retries=1, timeout=timeout)
        if conn.transport.driver_type == "redis":
            # kombu's Redis transport connects lazily: ask the server itself
            conn.default_channel.client.ping()


def embedded_probe(alive: Callable[[], bool], served: Sequence[str]) -> WorkerProbe:
    """The node's own worker threads: they serve `served` while they run."""

    def probe(pipelines: Sequence[str], timeout: float) -> set[str]:
        return set(served) & set(pipelines) if alive() else set()

    return probe


def celery_probe(app: Any) -> WorkerProbe:
    """Celery workers seen through the broker: each live worker answers a remote-control
    request with the queues it consumes (`inspect().active_queues()`), which name pipelines."""

    def probe(pipelines: Sequence[str], timeout: float) -> set[str]:
        answer: Mapping[str, Sequence[Mapping[str, Any]]] | None = (
            app.control.inspect(timeout=timeout).active_queues())
        consumed = {q.get("name") for queues in (answer or {}).values() for q in queues}
        return {p for p in pipelines
                if queue_name(p, Priority.ROUTINE) in consumed
                or queue_name(p, Priority.STAT) in consumed}

    return probe


class BackgroundProbe:
    """A slow worker probe taken off the request path: a Celery `inspect` always waits its
    whole timeout for replies, longer than a probe's own deadline. Answers the last result,
    refreshing it in a one-shot thread once it is `every_s` old; only the first call waits
    for a result. A result older than three refresh periods counts as a failure."""

    def __init__(self, probe: WorkerProbe, every_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._probe, self._every_s, self._clock = probe, every_s, clock
        self._lock = threading.Lock()
        self._result: tuple[float, set[str] | Exception] | None = None
        self._running: threading.Thread | None = None

    def __call__(self, pipelines: Sequence[str], timeout: float) -> set[str]:
        with self._lock:
            result = self._result
            stale = result is None or self._clock() - result[0] >= self._every_s
            if stale and self._running is None:
                self._running = threading.Thread(target=self._refresh, args=(pipelines, timeout),
                                                 name="health-probe", daemon=True)
                self._running.start()
            running = self._running
        if result is None and running is not None:
            running.join(timeout + 1.0)
            result = self._result
        if result is None:
            raise TimeoutError("no worker probe has answered yet")
        at, answer = result
        if self._clock() - at > 3 * self._every_s + timeout:
            raise TimeoutError("the last worker probe is too old")
        if isinstance(answer, Exception):
            raise answer
        return answer

    def _refresh(self, pipelines: Sequence[str], timeout: float) -> None:
        answer: set[str] | Exception
        try:
            answer = self._probe(pipelines, timeout)
        except Exception as exc:  # noqa: BLE001 - handed to the next reader as a failure
            answer = exc
        with self._lock:
            self._result = (self._clock(), answer)
            self._running = None


def node_readiness(node: Node) -> Readiness:
    """The readiness checks of a built node, with its settings' thresholds."""
    settings = node.settings
    wcfg = workers_config(settings)
    enabled = sorted({rule.pipeline for rule in wcfg.rules if rule.enabled})
    probe: WorkerProbe | None
    if node.embedded is not None:
        probe = embedded_probe(node.embedded.alive, node.embedded.pipelines)
    else:
        from workers.celery_app import create_celery_app

        probe = BackgroundProbe(celery_probe(create_celery_app(wcfg)),
                                settings.health.worker_probe_interval_s)
    cfg = settings.health
    floor = (cfg.spool_min_free_bytes if cfg.spool_min_free_bytes is not None
             else settings.dicom.min_free_bytes)
    return Readiness(
        engine=node.engine, spool_root=node.spool.root, pipelines=enabled, workers=probe,
        broker_url=wcfg.broker_url,
        thresholds=Thresholds(spool_min_free_bytes=floor,
                              max_delivery_dead_letters=cfg.max_delivery_dead_letters,
                              max_oldest_queued_s=cfg.max_oldest_queued_s,
                              probe_timeout_s=cfg.probe_timeout_s,
                              dead_letter_window_s=cfg.dead_letter_window_s),
    )


def create_health_router(node: Node) -> APIRouter:
    """`/health/live`, `/health/ready` (503 when a check fails) and `/health` (= live)."""
    router = APIRouter(tags=["health"])
    readiness = node_readiness(node)

    @router.get("/health")
    @router.get("/health/live")
    def live() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/health/ready")
    def ready() -> JSONResponse:
        is_ready, body = report(readiness.checks())
        return JSONResponse(body, status_code=200 if is_ready else 503)

    return router
