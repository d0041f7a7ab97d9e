"""Prometheus metrics of the DICOM side, created on a registry the caller owns."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class IngestMetrics:
    """Counters and timings of associations, stores and study completion."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.instances = Counter(
            "infernode_instances_received_total",
            "C-STORE requests by outcome",
            ["outcome"],
            registry=registry,
        )
        self.bytes = Counter(
            "infernode_bytes_received_total", "Bytes of instances stored", registry=registry
        )
        self.store_seconds = Histogram(
            "infernode_store_seconds",
            "Time from C-STORE request to response",
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.active_associations = Gauge(
            "infernode_active_associations", "Open DICOM associations", registry=registry
        )
        self.pending_connections = Gauge(
            "infernode_pending_connections",
            "Connections that have not yet sent their A-ASSOCIATE-RQ",
            registry=registry,
        )
        self.rejections = Counter(
            "infernode_association_rejections_total",
            "Associations rejected or connections closed at accept, by reason",
            ["reason"],
            registry=registry,
        )
        self.failures = Counter(
            "infernode_store_failures_total",
            "C-STORE failures, by reason",
            ["reason"],
            registry=registry,
        )
        self.completions = Counter(
            "infernode_study_completions_total",
            "Studies found complete (kind=first or amendment)",
            ["kind"],
            registry=registry,
        )
