"""Prometheus metrics of the outbox, on the registry the caller passes (never at import time).

- `infernode_deliveries_total{destination, outcome}`: attempts by outcome (`delivered`,
  `retry`, `dead`), counted by the runner of this process;
- `infernode_delivery_latency_seconds{destination}`: output recorded -> delivered;
- `infernode_delivery_send_seconds{destination}`: duration of one send (a batch);
- `infernode_delivery_backlog{destination}`, `infernode_delivery_dead{destination}` and
  `infernode_delivery_oldest_pending_seconds{destination}`: read from the deliveries table at
  scrape time, so they are true whichever process sends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from workers.db import as_utc, utcnow
from workers.outbox.tables import DEAD, PENDING, deliveries

LATENCY_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
                   4 * 3600.0, 12 * 3600.0, 24 * 3600.0, 48 * 3600.0)
SEND_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class BacklogCollector(Collector):
    """Pending and dead deliveries per destination, and the age of the oldest pending one."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime] = utcnow) -> None:
        self._engine = engine
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        backlog = GaugeMetricFamily("infernode_delivery_backlog",
                                    "Deliveries pending (waiting or backing off)",
                                    labels=["destination"])
        dead = GaugeMetricFamily("infernode_delivery_dead", "Dead-lettered deliveries",
                                 labels=["destination"])
        oldest = GaugeMetricFamily("infernode_delivery_oldest_pending_seconds",
                                   "Age of the oldest pending delivery", labels=["destination"])
        try:
            with self._engine.connect() as conn:
                rows = conn.execute(select(
                    deliveries.c.destination, deliveries.c.state, func.count(),
                    func.min(deliveries.c.created_at),
                ).where(deliveries.c.state.in_([PENDING, DEAD])).group_by(
                    deliveries.c.destination, deliveries.c.state)).all()
        except SQLAlchemyError:
            return
        now = self._clock()
        for destination, state, count, first in rows:
            if state == DEAD:
                dead.add_metric([destination], float(count))
                continue
            backlog.add_metric([destination], float(count))
            created = as_utc(first)
            if created is not None:
                oldest.add_metric([destination], max(0.0, (now - created).total_seconds()))
        yield from (backlog, dead, oldest)


class DeliveryMetrics:
    """The runner's counters and histograms, plus the backlog collector when `engine` is
    given."""

    def __init__(self, registry: CollectorRegistry, engine: Engine | None = None) -> None:
        self.outcomes = Counter("infernode_deliveries", "Delivery attempts by outcome",
                                ["destination", "outcome"], registry=registry)
        self.latency = Histogram("infernode_delivery_latency_seconds",
                                 "Time from output recorded to delivered", ["destination"],
                                 buckets=LATENCY_BUCKETS, registry=registry)
        self.send_seconds = Histogram("infernode_delivery_send_seconds",
                                      "Duration of one send to a destination (one batch)",
                                      ["destination"], buckets=SEND_BUCKETS, registry=registry)
        if engine is not None:
            registry.register(BacklogCollector(engine))

    def outcome(self, destination: str, outcome: str) -> None:
        self.outcomes.labels(destination, outcome).inc()


def register_delivery_metrics(registry: CollectorRegistry, engine: Engine) -> DeliveryMetrics:
    """Create the outbox metrics on `registry` (the node's own); pass the result to the
    DeliveryRunner."""
    return DeliveryMetrics(registry, engine)
