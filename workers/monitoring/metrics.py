"""Prometheus metrics of monitoring, read from the stored daily aggregates and the labels at
scrape time (like the job metrics: every worker's jobs are in the database, so the node
exports them). Created on a registry the caller passes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from datetime import time as day_start

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from sqlalchemy import Engine

from workers.metrics import with_up_gauge
from workers.monitoring.aggregate import latest_rows
from workers.monitoring.agreement import agreement

AGREEMENT_WINDOW = timedelta(days=90)


def _family(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


class MonitoringCollector(Collector):
    """Per pipeline and model version, from the newest daily aggregate: positive rate, score
    histogram, not-analysed share per reason, input PSI per feature; and agreement with the
    final reports over the last 90 days."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime],
                 cache_s: float = 60.0) -> None:
        self._engine = engine
        self._clock = clock
        self._cache_s = cache_s
        self._cached: tuple[float, list[Metric]] | None = None
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        return with_up_gauge(_family("infernode_monitoring_metrics_up",
                                     "1 when the monitoring aggregates could be read", []),
                             self._cached_families)

    def _cached_families(self) -> list[Metric]:
        """The families, recomputed at most every `cache_s` seconds: agreement reads 90 days
        of jobs, too much for every scrape of a busy node."""
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] >= self._cache_s:
                self._cached = (now, self._families())
            return self._cached[1]

    def _families(self) -> list[Metric]:
        keys = ["pipeline", "model_version"]
        day = _family("infernode_monitoring_day_timestamp_seconds",
                      "Start (UTC) of the day the newest aggregate covers", keys)
        studies = _family("infernode_monitoring_studies", "Studies finished that day", keys)
        positive = _family("infernode_monitoring_positive_ratio",
                           "Share of analysed studies with a positive result", keys)
        not_analysed = _family("infernode_monitoring_not_analysed_ratio",
                               "Share of studies not analysed, by reason", [*keys, "reason"])
        scores = _family("infernode_monitoring_score_studies",
                         "Analysed studies per score bin (lower edge)", [*keys, "bin"])
        drift = _family("infernode_monitoring_input_psi",
                        "PSI of an input feature against the validation reference "
                        "(trailing window)", [*keys, "feature"])
        for row in latest_rows(self._engine):
            labels = [row["pipeline"], row["model_version"]]
            start = datetime.combine(row["day"], day_start(0), tzinfo=UTC)
            day.add_metric(labels, start.timestamp())
            studies.add_metric(labels, float(row["jobs"]))
            if row["results"]:
                positive.add_metric(labels, row["positives"] / row["results"])
            for reason, count in sorted((row["not_analysed"] or {}).items()):
                not_analysed.add_metric([*labels, reason], count / max(1, row["jobs"]))
            for bin_, count in sorted((row["scores"] or {}).items()):
                scores.add_metric([*labels, bin_], float(count))
            for feature, value in sorted((row["psi"] or {}).items()):
                drift.add_metric([*labels, feature], float(value))
        now = self._clock()
        measure = _family("infernode_monitoring_agreement_ratio",
                          "PPV, sensitivity, specificity against final reports (90 days)",
                          [*keys, "measure"])
        lower = _family("infernode_monitoring_agreement_lower",
                        "Lower end of the 95% Wilson interval", [*keys, "measure"])
        upper = _family("infernode_monitoring_agreement_upper",
                        "Upper end of the 95% Wilson interval", [*keys, "measure"])
        labelled = _family("infernode_monitoring_labelled_studies",
                           "Analysed studies with a final-report or reader label (90 days)", keys)
        for group in agreement(self._engine, now - AGREEMENT_WINDOW, now + timedelta(days=1),
                               by=("pipeline", "model_version")):
            labels = [group.pipeline, group.model_version]
            labelled.add_metric(labels, float(group.n))
            values = {"ppv": group.ppv, "sensitivity": group.sensitivity,
                      "specificity": group.specificity}
            for name, interval in group.intervals().items():
                value = values[name]
                if value is None or interval is None:
                    continue
                measure.add_metric([*labels, name], value)
                lower.add_metric([*labels, name], interval[0])
                upper.add_metric([*labels, name], interval[1])
        return [day, studies, positive, not_analysed, scores, drift, measure, lower, upper,
                labelled]


def register_monitoring_metrics(registry: CollectorRegistry, engine: Engine,
                                clock: Callable[[], datetime],
                                cache_s: float = 60.0) -> MonitoringCollector:
    collector = MonitoringCollector(engine, clock, cache_s)
    registry.register(collector)
    return collector
