"""Prometheus metrics of the DICOM side, created on a registry the caller owns.

With extra acceptor processes (`dicom.acceptor_processes` > 1) every process that receives has
its own `IngestMetrics`; a child's values reach the node's registry as a `Snapshot` (its own
samples, written by the child and read by the node's process: `infernode.acceptor`), exported in
the same metric families as the node's process's own samples, each with an `acceptor` label
("1", "2", ...). The node's own samples keep their labels, so that a sum over a family (e.g.
`sum(infernode_instances_received_total)`) is the node's total.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

Sample = tuple[str, str, str, dict[str, str], float]
"""One sample of a snapshot: metric family, family type, sample name, labels, value."""
Snapshot = Sequence[Sample]
Peers = Callable[[], Mapping[str, Snapshot]]
"""Snapshots of other processes by their `acceptor` label."""


class ProcessMetrics:
    """Metrics of one process that acceptor processes have too: they live on a registry of
    their own (`_own`), and the caller's registry gets one collector that exports them together
    with the peers' samples (one family per name). A subclass creates its metrics on `_own`,
    then calls `_export`."""

    def __init__(self) -> None:
        self._own = CollectorRegistry(auto_describe=True)
        self._peers: list[Peers] = []

    def _export(self, registry: CollectorRegistry) -> None:
        registry.register(_WithPeers(self._own, self._peers))

    def snapshot(self) -> list[Sample]:
        """This process's samples, for the node's process to export (an acceptor child's);
        the `_created` timestamps are left out (they are per process, not additive)."""
        return [(family.name, family.type, s.name, dict(s.labels), float(s.value))
                for family in self._own.collect() for s in family.samples
                if not s.name.endswith("_created")]

    def add_peers(self, peers: Peers) -> None:
        """Exports, with each scrape, the snapshots `peers()` returns, in the same families as
        this process's samples, each sample with the `acceptor` label of its snapshot. Samples
        of families this process does not have are left to the other `ProcessMetrics`."""
        self._peers.append(peers)


class IngestMetrics(ProcessMetrics):
    """Counters and timings of associations, stores and study completion."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        own = self._own
        self.instances = Counter(
            "infernode_instances_received_total",
            "C-STORE requests by outcome",
            ["outcome"],
            registry=own,
        )
        self.bytes = Counter(
            "infernode_bytes_received_total", "Bytes of instances stored", registry=own
        )
        self.store_seconds = Histogram(
            "infernode_store_seconds",
            "Time from C-STORE request to response",
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=own,
        )
        self.active_associations = Gauge(
            "infernode_active_associations", "Open DICOM associations", registry=own
        )
        self.pending_connections = Gauge(
            "infernode_pending_connections",
            "Connections that have not yet sent their A-ASSOCIATE-RQ",
            registry=own,
        )
        self.rejections = Counter(
            "infernode_association_rejections_total",
            "Associations rejected or connections closed at accept, by reason",
            ["reason"],
            registry=own,
        )
        self.failures = Counter(
            "infernode_store_failures_total",
            "C-STORE failures, by reason",
            ["reason"],
            registry=own,
        )
        self.completions = Counter(
            "infernode_study_completions_total",
            "Studies found complete (kind=first or amendment)",
            ["kind"],
            registry=own,
        )
        self._export(registry)


class _WithPeers(Collector):
    def __init__(self, own: CollectorRegistry, peers: list[Peers]) -> None:
        self._own = own
        self._peers = peers

    def describe(self) -> Iterable[Metric]:
        return [Metric(f.name, f.documentation, f.type, f.unit) for f in self._own.collect()]

    def collect(self) -> Iterable[Metric]:
        snapshots: dict[str, Snapshot] = {}
        for peers in self._peers:
            try:
                snapshots.update(peers())
            except Exception as exc:  # noqa: BLE001 - a scrape shows this process's own values
                log.warning("acceptor metrics unreadable: %s", type(exc).__name__)
        by_family: dict[str, list[tuple[str, dict[str, Any], float]]] = {}
        for acceptor, snapshot in sorted(snapshots.items()):
            for family, _, name, labels, value in snapshot:
                by_family.setdefault(family, []).append(
                    (name, {**labels, "acceptor": acceptor}, value))
        for metric in self._own.collect():
            for name, labels, value in by_family.get(metric.name, ()):
                metric.add_sample(name, labels, value)
            yield metric
