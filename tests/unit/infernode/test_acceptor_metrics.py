"""The acceptor processes' metrics in the node's process: snapshots written by the children are
exported in the node's metric families with an `acceptor` label; counters of a process survive
its restart (earlier incarnations folded into a base); gauges come from the running incarnation
only; snapshots of another node process are ignored. The children are simulated by snapshot
files written as a child writes them (`write_metrics` with the pid of a real process)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from dicom_node.metrics import IngestMetrics
from infernode.acceptor import ChildMetrics, write_metrics
from infernode.audit_hooks import AuditMetrics


def _dead_pid() -> int:
    process = subprocess.Popen(["/bin/true"])
    process.wait()
    return process.pid


def _child(folder: Path, acceptor: int, pid: int, started: float, *, stored: int,
           open_associations: int, parent: int | None = None) -> None:
    """A snapshot file as acceptor process `acceptor` (process `pid`) writes it."""
    metrics = IngestMetrics(CollectorRegistry())
    metrics.instances.labels(outcome="stored").inc(stored)
    metrics.bytes.inc(1000 * stored)
    for _ in range(stored):
        metrics.store_seconds.observe(0.003)
    metrics.active_associations.set(open_associations)
    write_metrics(folder / "writing", acceptor, started, metrics)
    written = folder / "writing" / f"{acceptor}-{os.getpid()}.json"
    record = json.loads(written.read_text())
    record.update(pid=pid, parent=os.getpid() if parent is None else parent)
    written.unlink()
    (folder / f"{acceptor}-{pid}.json").write_text(json.dumps(record))


def _node(folder: Path) -> tuple[CollectorRegistry, IngestMetrics]:
    registry = CollectorRegistry()
    metrics = IngestMetrics(registry)
    metrics.add_peers(ChildMetrics(folder))
    return registry, metrics


def test_children_are_exported_in_the_node_families_with_their_acceptor_label(tmp_path):
    registry, metrics = _node(tmp_path)
    metrics.instances.labels(outcome="stored").inc(5)
    metrics.active_associations.set(1)
    _child(tmp_path, 1, os.getpid(), 10.0, stored=7, open_associations=2)
    _child(tmp_path, 2, os.getpid(), 10.0, stored=3, open_associations=0)

    value = registry.get_sample_value
    assert value("infernode_instances_received_total", {"outcome": "stored"}) == 5
    assert value("infernode_instances_received_total",
                 {"outcome": "stored", "acceptor": "1"}) == 7
    assert value("infernode_instances_received_total",
                 {"outcome": "stored", "acceptor": "2"}) == 3
    assert value("infernode_bytes_received_total", {"acceptor": "1"}) == 7000
    assert value("infernode_store_seconds_count", {"acceptor": "2"}) == 3
    assert value("infernode_store_seconds_bucket", {"acceptor": "1", "le": "0.005"}) == 7
    assert value("infernode_active_associations", {"acceptor": "1"}) == 2
    assert value("infernode_active_associations") == 1
    text = generate_latest(registry).decode()
    assert text.count("# TYPE infernode_instances_received_total counter") == 1
    assert 'infernode_instances_received_total{acceptor="1",outcome="stored"} 7.0' in text
    assert "_created{acceptor=" not in text  # per-process timestamps are not exported


def test_a_restarted_child_adds_to_the_counts_of_the_one_before(tmp_path):
    registry, _ = _node(tmp_path)
    first = _dead_pid()  # killed: its last snapshot stays
    _child(tmp_path, 1, first, 10.0, stored=40, open_associations=3)
    value = registry.get_sample_value
    assert value("infernode_instances_received_total",
                 {"outcome": "stored", "acceptor": "1"}) == 40
    assert value("infernode_active_associations", {"acceptor": "1"}) is None  # not running

    _child(tmp_path, 1, os.getpid(), 20.0, stored=2, open_associations=1)  # the restarted one
    for _ in range(2):  # the first scrape folds, the second reads the base
        assert value("infernode_instances_received_total",
                     {"outcome": "stored", "acceptor": "1"}) == 42
        assert value("infernode_store_seconds_count", {"acceptor": "1"}) == 42
        assert value("infernode_active_associations", {"acceptor": "1"}) == 1
    assert sorted(p.name for p in tmp_path.glob("*.json")) == sorted([
        "1-base.json", f"1-{os.getpid()}.json"])

    _child(tmp_path, 1, _dead_pid(), 30.0, stored=1, open_associations=0)  # and again
    assert value("infernode_instances_received_total",
                 {"outcome": "stored", "acceptor": "1"}) == 43


def test_snapshots_of_another_node_process_are_ignored_and_cleared(tmp_path):
    registry, _ = _node(tmp_path)
    _child(tmp_path, 1, os.getpid(), 10.0, stored=9, open_associations=0, parent=1)
    (tmp_path / "1-notes.json").write_text("not a snapshot")
    assert registry.get_sample_value("infernode_instances_received_total",
                                     {"outcome": "stored", "acceptor": "1"}) is None
    ChildMetrics(tmp_path).clear()
    assert list(tmp_path.glob("*.json")) == []


def test_a_node_without_children_exports_its_own_samples_only(tmp_path):
    registry, metrics = _node(tmp_path / "absent")
    metrics.instances.labels(outcome="stored").inc()
    text = generate_latest(registry).decode()
    assert 'infernode_instances_received_total{outcome="stored"} 1.0' in text
    assert "acceptor=" not in text


def test_a_childs_audit_metrics_are_exported_in_the_node_audit_families(tmp_path):
    """A child's snapshot holds its ingest and its audit recorder's samples (one file); the
    node's audit families export the child's audit samples, the ingest families its ingest
    samples, each family once."""
    registry = CollectorRegistry()
    ingest, audit = IngestMetrics(registry), AuditMetrics(registry)
    children = ChildMetrics(tmp_path, parent=os.getppid())  # this test process plays the child
    ingest.add_peers(children)
    audit.add_peers(children)
    audit.written.inc(4)

    child_ingest = IngestMetrics(CollectorRegistry())
    child_audit = AuditMetrics(CollectorRegistry())
    child_ingest.instances.labels(outcome="stored").inc(2)
    child_audit.written.inc(6)
    child_audit.lost.inc(1)
    child_audit.queued.set(3)
    write_metrics(tmp_path, 1, 10.0, child_ingest, child_audit)

    value = registry.get_sample_value
    assert value("infernode_audit_events_written_total") == 4
    assert value("infernode_audit_events_written_total", {"acceptor": "1"}) == 6
    assert value("infernode_audit_events_lost_total", {"acceptor": "1"}) == 1
    assert value("infernode_audit_queue_depth", {"acceptor": "1"}) == 3  # this process: running
    assert value("infernode_instances_received_total",
                 {"outcome": "stored", "acceptor": "1"}) == 2
    text = generate_latest(registry).decode()
    for family in ("infernode_audit_events_written_total", "infernode_instances_received_total",
                   "infernode_audit_queue_depth"):
        assert text.count(f"# TYPE {family} ") == 1, family
