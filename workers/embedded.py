"""The embedded transport: workers inside the node process, for `infernode serve` without a
broker.

There are no messages. Worker threads claim the most urgent due queued job straight from the
jobs table (FOR UPDATE SKIP LOCKED on PostgreSQL; a single write transaction on SQLite) and run
it with the same `run_claimed` the Celery task uses, so the job semantics are identical: leases,
attempts, backoff, dead letters. A restart loses nothing: queued jobs are still rows, and the
job that was running when the node died has a lease that expires and is taken back by the
reconciler. One embedded node per database (several would work, but share nothing else).
Time limits are not enforced in this mode: a thread cannot be killed safely.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from dicom_node.encode.common import load_standard_tables
from workers.celery_app import worker_queues
from workers.config import WorkersConfig
from workers.db import utcnow
from workers.errors import WorkerError
from workers.execution import run_claimed
from workers.jobs import claim_next
from workers.registry import PipelineRegistry

log = logging.getLogger(__name__)


class EmbeddedRunner:
    """`cfg.embedded_threads` worker threads polling the jobs table every `embedded_poll_s`."""

    def __init__(self, engine: Engine, cfg: WorkersConfig, *,
                 registry: PipelineRegistry | None = None, pipelines: Sequence[str] = (),
                 clock: Callable[[], datetime] = utcnow,
                 on_finished: Callable[[], None] | None = None) -> None:
        """`on_finished` is called after each job attempt ends (e.g. to wake the delivery
        runner, so results leave without waiting for its next poll)."""
        self._engine, self._cfg, self._clock = engine, cfg, clock
        self._on_finished = on_finished
        self._registry = registry or PipelineRegistry(cfg.pipelines, cfg.device)
        self._served = list(pipelines) or cfg.served_pipelines()
        self._queues = worker_queues(self._served)
        if self._served:
            # Its jobs encode in this process, which also receives: highdicom's tables load
            # now (the node builds its runner before it listens), not in the first job while
            # associations are being received (about 0.4 s holding the GIL).
            load_standard_tables()
        self._name = f"embedded@{socket.gethostname()}:{os.getpid()}"
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._stop.clear()
        self._threads = [threading.Thread(target=self._loop, args=(i,), daemon=True,
                                          name=f"embedded-worker-{i}")
                         for i in range(self._cfg.embedded_threads)]
        for thread in self._threads:
            thread.start()

    def alive(self) -> bool:
        """True while its worker threads run (the node's readiness counts them as workers of
        every pipeline this runner serves)."""
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    @property
    def pipelines(self) -> list[str]:
        """The pipelines whose queues this runner claims from."""
        return list(self._served)

    def wake(self) -> None:
        """Poll now (call after creating jobs, to save up to one poll interval)."""
        self._wake.set()

    def stop(self, timeout: float | None = None) -> None:
        """Stop claiming; a job that is running finishes first (within `timeout`)."""
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)

    def run_pending(self) -> int:
        """Run due jobs on the calling thread until none is left; returns how many ran."""
        count = 0
        while not self._stop.is_set() and self._step(f"{self._name}/sync"):
            count += 1
        return count

    def _step(self, name: str) -> bool:
        context = claim_next(self._engine, self._cfg, self._queues, name,
                             lambda: self._registry.device, self._clock())
        if context is None:
            return False
        run_claimed(self._engine, self._cfg, self._registry, context, self._clock)
        if self._on_finished is not None:
            self._on_finished()
        return True

    def _loop(self, index: int) -> None:
        name = f"{self._name}/{index}"
        while not self._stop.is_set():
            try:
                busy = self._step(name)
            except (SQLAlchemyError, WorkerError) as exc:
                log.warning("embedded worker %d: %s", index, type(exc).__name__)
                busy = False
            if not busy:
                self._wake.wait(self._cfg.embedded_poll_s)
                self._wake.clear()


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m workers.embedded --config FILE --db URL`: an embedded worker plus the
    reconciler, until SIGTERM/SIGINT. What `infernode serve` runs beside the SCP."""
    import argparse
    import signal

    from workers.db import make_engine
    from workers.reconciler import Reconciler
    from workers.worker_main import load_config

    parser = argparse.ArgumentParser(description="Run the embedded InferNode worker")
    parser.add_argument("--config", required=True)
    parser.add_argument("--db", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cfg = load_config(args.config)
    engine = make_engine(args.db)
    runner = EmbeddedRunner(engine, cfg)
    reconciler = Reconciler(engine, cfg)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    reconciler.start()
    runner.start()
    log.info("embedded worker ready")
    stop.wait()
    runner.stop()
    reconciler.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
