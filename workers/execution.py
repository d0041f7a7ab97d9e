"""Running one job: claim it, keep its lease alive, run the pipeline, record the outcome.

This is the plain function behind both transports: the Celery task is a one-line shim over
`execute_job`, and the embedded runner calls `run_claimed` for the jobs it claims itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import Engine

from workers.config import WorkersConfig
from workers.db import utcnow
from workers.errors import PermanentError, TransientError
from workers.jobs import claim, complete, fail, heartbeat
from workers.messages import JobContext, JobState
from workers.registry import PipelineRegistry

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Outcome:
    """What one call did: `ran` is False for a dropped duplicate; `state` is the job's new
    state (None when nothing was recorded because the attempt had been taken away)."""

    job_id: str
    ran: bool
    state: JobState | None
    detail: str = ""


class _LeaseKeeper:
    """Extends the lease of a running attempt from a side thread. If the attempt was taken
    away (lease expired, job superseded) the final write is refused anyway, by its fence."""

    def __init__(self, engine: Engine, cfg: WorkersConfig, context: JobContext,
                 clock: Clock) -> None:
        self._args = (engine, cfg, context.job_id, context.attempt)
        self._clock = clock
        self._period = max(0.05, cfg.lease_s / 3)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lease-keeper", daemon=True)

    def __enter__(self) -> _LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        engine, cfg, job_id, attempt = self._args
        while not self._stop.wait(self._period):
            if not heartbeat(engine, cfg, job_id, attempt, self._clock()):
                log.warning("job %s attempt %d lost its lease", job_id, attempt)
                return


def run_claimed(engine: Engine, cfg: WorkersConfig, registry: PipelineRegistry,
                context: JobContext, clock: Clock = utcnow) -> Outcome:
    """Run a claimed attempt and record success or failure. Transient errors (and unexpected
    exceptions, which are recorded with their type) go back to the queue until the attempts
    run out; PermanentError fails the job at once."""
    permanent = False
    try:
        with _LeaseKeeper(engine, cfg, context, clock):
            result = registry.get(context.pipeline).run(context)
    except PermanentError as exc:
        permanent, reason, error = True, exc.reason, str(exc)
    except TransientError as exc:
        reason, error = exc.reason, str(exc)
    except SoftTimeLimitExceeded:
        reason, error = "timeout", f"soft time limit of {cfg.soft_time_limit_s:g} s exceeded"
    except Exception as exc:  # noqa: BLE001 - the one boundary where a pipeline bug becomes a
        # recorded, retried attempt instead of a silently lost job
        reason, error = "unexpected", f"{type(exc).__name__}: {exc}"
    else:
        run_finished = clock()
        recorded = complete(engine, context.job_id, context.attempt, result, run_finished, clock)
        state = JobState.SUCCEEDED if recorded else None
        log.info("job %s attempt %d %s", context.job_id, context.attempt,
                 "succeeded" if recorded else "finished after losing its lease; not recorded")
        return Outcome(context.job_id, True, state)
    state = fail(engine, cfg, context.job_id, context.attempt, permanent=permanent,
                 reason=reason, error=error, now=clock())
    log.warning("job %s attempt %d failed (%s) -> %s", context.job_id, context.attempt,
                reason, state)
    return Outcome(context.job_id, True, state, reason)


def execute_job(engine: Engine, cfg: WorkersConfig, registry: PipelineRegistry, job_id: str,
                worker: str, clock: Clock = utcnow) -> Outcome:
    """Claim and run job `job_id`; a message for a job that is not queued is dropped."""
    attempt = claim(engine, cfg, job_id, worker, registry.device, clock())
    if attempt.context is None:
        log.info("job %s not run: %s", job_id, attempt.reason)
        return Outcome(job_id, False, None, attempt.reason)
    return run_claimed(engine, cfg, registry, attempt.context, clock)
