"""Prometheus metrics of the job layer, read from the database at scrape time.

Jobs run in many processes on many hosts (Celery prefork children, the embedded runner); the
jobs table sees them all, so the node derives the metrics from it instead of collecting them
from each process. Created on a registry the caller passes, never at import time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry
from sqlalchemy import Engine, case, func, select
from sqlalchemy.exc import SQLAlchemyError

from workers.db import job_attempts, jobs
from workers.messages import JobState

STAGES = ("route", "wait", "run", "record")
"""route: study complete -> job created; wait: queued -> started; run: the pipeline;
record: pipeline returned -> outputs and state committed."""

BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
           1800.0)


def with_up_gauge(up: GaugeMetricFamily, families: Callable[[], list[Metric]]
                  ) -> Iterator[Metric]:
    """The empty gauge `up` set to 1 and followed by `families()` when they could be read from
    the database, or set to 0 alone when the database answered with an error: for collectors
    that read at scrape time."""
    try:
        read = families()
    except SQLAlchemyError:
        up.add_metric([], 0.0)
        yield up
        return
    up.add_metric([], 1.0)
    yield up
    yield from read


class JobsCollector(Collector):
    """Queue depth per queue, jobs per state, dead letters per pipeline, failed attempts by
    pipeline and reason, and stage durations of succeeded jobs per pipeline."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        return with_up_gauge(GaugeMetricFamily(
            "infernode_jobs_metrics_up", "1 when the jobs table could be read for these metrics"),
            self._families)

    def _families(self) -> list[Metric]:
        depth = GaugeMetricFamily("infernode_queue_depth", "Jobs queued, per queue",
                                  labels=["queue"])
        states = GaugeMetricFamily("infernode_jobs", "Jobs per state", labels=["state"])
        dead = GaugeMetricFamily("infernode_dead_letters", "Dead-lettered jobs awaiting replay",
                                 labels=["pipeline"])
        failures = CounterMetricFamily("infernode_job_failures", "Failed attempts by reason",
                                       labels=["pipeline", "reason"])
        outcomes = GaugeMetricFamily(
            "infernode_job_outcomes",
            "Finished jobs by what the reader was told: result or not_analysed, with the reason",
            labels=["pipeline", "outcome", "reason"])
        stages = HistogramMetricFamily("infernode_job_stage_seconds",
                                       "Duration of each stage of succeeded jobs",
                                       labels=["pipeline", "stage"])
        with self._engine.connect() as conn:
            for queue, count in conn.execute(select(jobs.c.queue, func.count()).where(
                    jobs.c.state == JobState.QUEUED.value).group_by(jobs.c.queue)):
                depth.add_metric([queue], float(count))
            for state, count in conn.execute(select(jobs.c.state, func.count())
                                             .group_by(jobs.c.state)):
                states.add_metric([state], float(count))
            for pipeline, count in conn.execute(select(jobs.c.pipeline, func.count()).where(
                    jobs.c.state == JobState.DEAD_LETTERED.value).group_by(jobs.c.pipeline)):
                dead.add_metric([pipeline], float(count))
            failed = (select(jobs.c.pipeline, job_attempts.c.reason, func.count())
                      .join(jobs, jobs.c.id == job_attempts.c.job_id)
                      .where(job_attempts.c.outcome.in_(["transient", "permanent"]))
                      .group_by(jobs.c.pipeline, job_attempts.c.reason))
            for pipeline, reason, count in conn.execute(failed):
                failures.add_metric([pipeline, reason or "unknown"], float(count))
            outcome = (select(jobs.c.pipeline, jobs.c.outcome, jobs.c.outcome_reason,
                              func.count()).where(jobs.c.outcome.is_not(None))
                       .group_by(jobs.c.pipeline, jobs.c.outcome, jobs.c.outcome_reason))
            for pipeline, kind, reason, count in conn.execute(outcome):
                outcomes.add_metric([pipeline, kind, reason or ""], float(count))
            for stage in STAGES:
                column = jobs.c[f"{stage}_s"]
                query = select(
                    jobs.c.pipeline, func.count(column), func.sum(column),
                    *[func.sum(case((column <= b, 1), else_=0)) for b in BUCKETS],
                ).where(jobs.c.state == JobState.SUCCEEDED.value, column.is_not(None)
                        ).group_by(jobs.c.pipeline)
                for pipeline, count, total, *cumulative in conn.execute(query):
                    buckets = [(f"{b:g}", float(c or 0)) for b, c in zip(BUCKETS, cumulative,
                                                                         strict=True)]
                    buckets.append(("+Inf", float(count)))
                    stages.add_metric([pipeline, stage], buckets, float(total or 0.0))
        return [depth, states, dead, failures, outcomes, stages]


def register_metrics(registry: CollectorRegistry, engine: Engine) -> JobsCollector:
    """Register the job metrics on `registry` (the node's own, passed in)."""
    collector = JobsCollector(engine)
    registry.register(collector)
    return collector
