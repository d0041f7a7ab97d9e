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

from sqlalchemy import Engine

from workers.config import WorkersConfig
from workers.db import utcnow
from workers.failures import Failure, classify
from workers.jobs import Failed, claim, complete, fail, heartbeat
from workers.messages import JobContext, JobState, PipelineResult
from workers.registry import Pipeline, PipelineRegistry, Reporting

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
    """Run a claimed attempt and record its outcome (workers.failures says which is which):

    - success: the result and its outputs, job `succeeded`;
    - a transient failure: back to the queue with backoff until the attempts run out;
    - a deterministic failure: no retry; the pipeline (or, when it could not even be built, a
      stand-in under the node's identity) writes a "not analysed: reason" report, which is
      recorded and delivered like any result, and the job ends `failed` with the reason.
    """
    pipeline: Pipeline | None = None
    try:
        with _LeaseKeeper(engine, cfg, context, clock):
            pipeline = registry.get(context.pipeline)
            result = pipeline.run(context)
    except Exception as exc:  # noqa: BLE001 - the one boundary where any failure of a
        # pipeline becomes a recorded outcome instead of a lost job
        failure = classify(exc)
    else:
        recorded = complete(engine, context.job_id, context.attempt, result, clock(), clock)
        log.info("job %s attempt %d %s", context.job_id, context.attempt,
                 result.outcome.value if recorded else
                 "finished after losing its lease; not recorded")
        return Outcome(context.job_id, True, JobState.SUCCEEDED if recorded else None)
    if not failure.transient:
        report = _not_analysed(engine, cfg, registry, pipeline, context, failure, clock)
        if isinstance(report, Failure):
            failure = report
        elif report is not None:
            recorded = complete(engine, context.job_id, context.attempt, report, clock(), clock,
                                failed=Failed(failure.reason, failure.detail))
            log.warning("job %s attempt %d failed (%s); not-analysed report %s",
                        context.job_id, context.attempt, failure.reason,
                        "recorded" if recorded else "not recorded: lease lost")
            return Outcome(context.job_id, True, JobState.FAILED if recorded else None,
                           failure.reason)
    state = fail(engine, cfg, context.job_id, context.attempt, permanent=not failure.transient,
                 reason=failure.reason, error=failure.detail, now=clock())
    log.warning("job %s attempt %d failed (%s) -> %s", context.job_id, context.attempt,
                failure.reason, state)
    return Outcome(context.job_id, True, state, failure.reason)


def _not_analysed(engine: Engine, cfg: WorkersConfig, registry: PipelineRegistry,
                  pipeline: Pipeline | None, context: JobContext, failure: Failure,
                  clock: Clock) -> PipelineResult | Failure | None:
    """The not-analysed report after a deterministic failure; None when nobody can write one
    (a pipeline without a report family), or the Failure of a transient error while writing
    it (the whole attempt is then retried)."""
    reporter: Reporting | None = pipeline if isinstance(pipeline, Reporting) else None
    try:
        with _LeaseKeeper(engine, cfg, context, clock):
            if reporter is None:
                reporter = registry.stand_in(context.pipeline)
            if reporter is None:
                return None
            return reporter.not_analysed(context, failure.explanation, failure.reason)
    except Exception as exc:  # noqa: BLE001 - the report is best effort on top of the failure
        second = classify(exc)
        log.error("job %s: the not-analysed report could not be written (%s: %s)",
                  context.job_id, second.reason, second.detail)
        return second if second.transient else None


def execute_job(engine: Engine, cfg: WorkersConfig, registry: PipelineRegistry, job_id: str,
                worker: str, clock: Clock = utcnow) -> Outcome:
    """Claim and run job `job_id`; a message for a job that is not queued is dropped."""
    attempt = claim(engine, cfg, job_id, worker, registry.device, clock())
    if attempt.context is None:
        log.info("job %s not run: %s", job_id, attempt.reason)
        return Outcome(job_id, False, None, attempt.reason)
    return run_claimed(engine, cfg, registry, attempt.context, clock)
