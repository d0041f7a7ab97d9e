"""Collectors that read the database at scrape time say with an `up` gauge whether they could."""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily
from sqlalchemy.exc import OperationalError

from workers.metrics import with_up_gauge


def _sample(metrics: list) -> list[tuple[str, float]]:
    return [(m.name, s.value) for m in metrics for s in m.samples]


def test_families_follow_an_up_gauge_of_one():
    family = GaugeMetricFamily("x_depth", "depth")
    family.add_metric([], 3.0)
    metrics = list(with_up_gauge(GaugeMetricFamily("x_up", "readable"), lambda: [family]))
    assert _sample(metrics) == [("x_up", 1.0), ("x_depth", 3.0)]


def test_a_database_error_gives_up_zero_and_nothing_else():
    def broken() -> list:
        raise OperationalError("SELECT", {}, Exception("server closed the connection"))

    metrics = list(with_up_gauge(GaugeMetricFamily("x_up", "readable"), broken))
    assert _sample(metrics) == [("x_up", 0.0)]
