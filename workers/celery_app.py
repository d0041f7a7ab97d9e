"""The Celery application: JSON-only messages that carry a job id, late acknowledgement,
re-delivery when a worker dies, one message prefetched per process, hard and soft time limits,
and a pair of queues per pipeline (`<pipeline>.stat` served before `<pipeline>`).

Celery is transport only: the task is a shim over `workers.execution.execute_job`, and every
fact about a job lives in the database."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from celery import Celery
from kombu import Exchange, Queue
from sqlalchemy import Engine

from dicom_node.encode.common import load_standard_tables
from workers.config import WorkersConfig
from workers.db import make_engine
from workers.execution import execute_job
from workers.messages import Priority, queue_name
from workers.registry import PipelineRegistry
from workers.transport import TASK_NAME


def worker_queues(pipelines: Sequence[str]) -> list[str]:
    """The queues a worker serving `pipelines` consumes, every stat queue first. With the
    broker's `priority` queue order the first non-empty queue in this list is served next."""
    return ([queue_name(p, Priority.STAT) for p in pipelines]
            + [queue_name(p, Priority.ROUTINE) for p in pipelines])


@dataclass
class WorkerRuntime:
    """What the task needs inside a worker process, built lazily in that process (after a
    prefork fork), never in the parent: the engine and the warm pipeline registry."""

    db_url: str
    cfg: WorkersConfig
    name: str = field(default_factory=lambda: f"celery@{socket.gethostname()}")
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _pid: int = 0
    _engine: Engine | None = None
    _registry: PipelineRegistry | None = None
    _warming: threading.Thread | None = field(default=None, repr=False)

    def warm_up(self, *_args: object, **_kwargs: object) -> None:
        """Loads highdicom's tables of the standard in this process, on a thread of its own
        (a prefork child must report alive within Celery's `worker_proc_alive_timeout`, 4 s);
        the first task waits for it in `resources` instead of parsing them again. A
        `worker_process_init` receiver for prefork children; `run_worker` calls it directly
        for the other pools."""
        self._warming = threading.Thread(target=load_standard_tables, name="warm-up",
                                         daemon=True)
        self._warming.start()

    def resources(self) -> tuple[Engine, PipelineRegistry]:
        warming = self._warming
        if warming is not None:
            warming.join()
        with self._lock:
            if self._engine is None or self._registry is None or self._pid != os.getpid():
                self._engine = make_engine(self.db_url, pool_pre_ping=True)
                self._registry = PipelineRegistry(self.cfg.pipelines, self.cfg.device)
                self._pid = os.getpid()
            return self._engine, self._registry


def create_celery_app(cfg: WorkersConfig, runtime: WorkerRuntime | None = None) -> Celery:
    """The Celery app for `cfg.broker_url`. Without `runtime` it can only send (the node);
    with it, it also registers the task (a worker). Raises ValueError without a broker."""
    if not cfg.broker_url:
        raise ValueError("no broker_url configured: use the embedded runner")
    app = Celery("infernode", broker=cfg.broker_url, backend=cfg.result_backend,
                 set_as_current=False)
    transport_options = {
        # re-delivery of an unacknowledged task after this long; must exceed the hard limit
        "visibility_timeout": cfg.visibility_timeout_s,
        # consume queues in the order the worker lists them, so stat queues come first
        "queue_order_strategy": "priority",
        "socket_connect_timeout": cfg.broker_connect_timeout_s,
        "socket_timeout": max(cfg.broker_connect_timeout_s, 5.0) + 30.0,
        **cfg.broker_transport_options,
    }
    if runtime is None:
        # a sender fails fast when the broker is away (the job waits in the database); a
        # worker keeps reconnecting (broker_connection_max_retries=None)
        transport_options.setdefault("max_retries", 0)
    queues = [Queue(q, Exchange(q, type="direct"), routing_key=q)
              for q in worker_queues(list(cfg.pipelines))]
    app.conf.update(
        task_serializer="json", result_serializer="json", accept_content=["json"],
        task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1,
        worker_disable_prefetch=True, task_soft_time_limit=cfg.soft_time_limit_s,
        task_time_limit=cfg.hard_time_limit_s, task_ignore_result=True,
        task_queues=queues, task_create_missing_queues=True,
        broker_transport_options=transport_options,
        broker_connection_timeout=cfg.broker_connect_timeout_s,
        broker_connection_retry_on_startup=True, broker_connection_max_retries=None,
        worker_send_task_events=False, task_send_sent_event=False,
        worker_hijack_root_logger=False, enable_utc=True,
    )
    if runtime is not None:
        _register_task(app, runtime)
    return app


def _register_task(app: Celery, runtime: WorkerRuntime) -> None:
    @app.task(name=TASK_NAME, ignore_result=True)
    def run_job(job_id: str) -> str:
        engine, registry = runtime.resources()
        outcome = execute_job(engine, runtime.cfg, registry, job_id, runtime.name)
        return outcome.state.value if outcome.state else outcome.detail

    del run_job  # registered on the app by the decorator
