"""The embedded transport: workers inside the node process, for `infernode serve` without a
broker.

There are no messages. Worker threads claim the most urgent due queued job straight from the
jobs table (FOR UPDATE SKIP LOCKED on PostgreSQL; a single write transaction on SQLite) and run
it with the same `run_claimed` the Celery task uses, so the job semantics are identical: leases,
attempts, backoff, dead letters. A restart loses nothing: queued jobs are still rows. At a clean
stop (SIGTERM) a running job gets `embedded_stop_grace_s` to finish; one still running then is
handed back to the queue at once (`jobs.release`: due now, the budget kept) and its
thread is abandoned, so the node exits in seconds even during a long inference, and the
abandoned attempt's late result is refused by its fencing token. The job that was running when
the node died (kill -9, power loss) has a lease that expires and is taken back by the
reconciler, counted as a lost attempt. One embedded node per database (several would work, but
share nothing else). Time limits are not enforced in this mode: a thread cannot be killed
safely.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
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
from workers.jobs import claim_next, release
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
        # the attempt each thread is running (thread id -> (job id, attempt)), and when
        # claiming stopped; both under _lock, so a claim either shows here or is handed back
        self._lock = threading.Lock()
        self._running: dict[int, tuple[str, int]] = {}
        self._stopped_claiming: float | None = None

    def start(self) -> None:
        with self._lock:
            self._stop.clear()
            self._stopped_claiming = None
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

    def stop_claiming(self) -> None:
        """Claim no more jobs; running ones go on. `stop` counts its grace from here, so the
        node calls this first and the jobs' grace runs alongside the listener's."""
        with self._lock:
            if self._stopped_claiming is None:
                self._stopped_claiming = time.monotonic()
            self._stop.set()
        self._wake.set()

    def stop(self, grace: float | None = None) -> None:
        """Stop claiming, give running jobs `grace` seconds (default `embedded_stop_grace_s`,
        counted from `stop_claiming`) to finish, then hand every job still running back to the
        queue (`jobs.release`) and abandon its daemon thread."""
        self.stop_claiming()
        grace = self._cfg.embedded_stop_grace_s if grace is None else grace
        deadline = (self._stopped_claiming or time.monotonic()) + grace
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            left = list(self._running.values())
        for job_id, attempt in left:
            self._release(job_id, attempt)

    def _release(self, job_id: str, attempt: int) -> None:
        try:
            released = release(self._engine, job_id, attempt, self._clock())
        except SQLAlchemyError as exc:
            log.warning("job %s attempt %d could not be handed back (%s); its lease expires "
                        "instead", job_id, attempt, type(exc).__name__)
            return
        if released is not None:
            log.warning("job %s attempt %d interrupted: the worker is stopping; now %s",
                        job_id, attempt, released.value)

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
        me = threading.get_ident()
        with self._lock:
            stopping = self._stop.is_set()
            if not stopping:
                self._running[me] = (context.job_id, context.attempt)
        if stopping:  # claimed as the runner began to stop: straight back to the queue
            self._release(context.job_id, context.attempt)
            return False
        try:
            run_claimed(self._engine, self._cfg, self._registry, context, self._clock)
        finally:
            with self._lock:
                self._running.pop(me, None)
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
