"""Feeding the audit trail from every hop without slowing any of them.

`AuditRecorder` takes events from any thread into a bounded queue; one writer thread stores
them in batches. The hops report to it: the DICOM listener (associations accepted, rejected,
and the instances each one stored, reported once when it ends), study routing, the FHIR
facade's reads, the configuration loaded; job runs and deliveries are read from their tables
(`audit_outcomes`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from dicom_node.events import InstanceStored, StudyReady
from dicom_node.metrics import ProcessMetrics
from dicom_node.scp.access import AssociationEvent
from infernode.audit import AuditEvent, AuditLog, Category, Outcome
from infernode.audit_export import AuditExporter
from infernode.audit_outcomes import OutcomeTail
from infernode.settings import Settings

if TYPE_CHECKING:  # the FHIR facade (and the web stack with it) only in the web's process
    from hl7_fhir.facade.router import FacadeAccess

log = logging.getLogger(__name__)


class AuditMetrics(ProcessMetrics):
    """The audit recorder's metrics. Each acceptor process has its own recorder; its samples
    reach the node's registry as the ingest metrics' do (`dicom_node.metrics`), with an
    `acceptor` label."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self.queued = Gauge("infernode_audit_queue_depth",
                            "Audit events waiting to be written", registry=self._own)
        self.written = Counter("infernode_audit_events_written",
                               "Audit events written to the audit table", registry=self._own)
        self.lost = Counter("infernode_audit_events_lost",
                            "Audit events that could not be written (queue full at its limit, "
                            "or the database down at shutdown)", registry=self._own)
        self._export(registry)


class AuditRecorder:
    """A bounded queue and one writer thread. `submit` never blocks the caller for longer
    than `put_timeout_s` (only when the queue is full); the writer retries a failed batch
    until it is stored, and `stop` drains the queue before returning. An event that cannot be
    stored is logged and counted (`infernode_audit_events_lost_total`), never dropped in
    silence."""

    def __init__(self, log_: AuditLog, metrics: AuditMetrics, *, capacity: int = 10000,
                 batch: int = 200, put_timeout_s: float = 1.0) -> None:
        self._log = log_
        self._metrics = metrics
        self._queue: queue.Queue[AuditEvent] = queue.Queue(capacity)
        self._batch = batch
        self._put_timeout_s = put_timeout_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        metrics.queued.set_function(self._queue.qsize)

    def submit(self, event: AuditEvent) -> None:
        try:
            self._queue.put(event, timeout=self._put_timeout_s)
        except queue.Full:
            self._metrics.lost.inc()
            log.error("audit queue full: an event of category %s was not recorded",
                      event.category)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Writes what is queued (within `timeout`), then stops the writer."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        left = self._queue.qsize()
        if left:
            self._metrics.lost.inc(left)
            log.error("audit writer stopped with %d events not written", left)

    def flush(self, timeout: float = 10.0) -> bool:
        """Waits until every event submitted so far is written; False after `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.02)
        return False

    def _run(self) -> None:
        backoff, failed_stopping = 0.5, 0
        pending: list[AuditEvent] = []
        while True:
            if not pending:
                try:
                    pending.append(self._queue.get(timeout=0.2))
                except queue.Empty:
                    if self._stop.is_set():
                        return
                    continue
                while len(pending) < self._batch:
                    try:
                        pending.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
            try:
                self._log.record_many(pending)
            except SQLAlchemyError as exc:
                failed_stopping += self._stop.is_set()
                if failed_stopping >= 3:  # stopping, and the database is still away
                    self._give_up(pending, exc)
                    return
                log.warning("audit write failed (%s), retrying", type(exc).__name__)
                time.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            self._metrics.written.inc(len(pending))
            for _ in pending:
                self._queue.task_done()
            pending, backoff = [], 0.5

    def _give_up(self, pending: Sequence[AuditEvent], exc: Exception) -> None:
        lost = len(pending) + self._queue.qsize()
        self._metrics.lost.inc(lost)
        log.error("audit writer stopping with the database unavailable (%s): %d events lost",
                  type(exc).__name__, lost)


@dataclass
class _Received:
    calling_ae: str
    address: str
    studies: dict[str, list[str]] = field(default_factory=dict)
    duplicates: int = 0


class AssociationAudit:
    """Turns the listener's association events and stored instances into audit events: one
    per acceptance or rejection, and one per association that stored anything, when it ends
    (its study UIDs with their SOP Instance UIDs and count), not one per instance."""

    def __init__(self, submit: Callable[[AuditEvent], None], node_ae: str) -> None:
        self._submit = submit
        self._node_ae = node_ae
        self._lock = threading.Lock()
        self._open: dict[int, _Received] = {}

    def on_association(self, event: AssociationEvent) -> None:
        if event.kind in ("accepted", "rejected"):
            self._submit(AuditEvent(
                Category.ASSOCIATION, event.kind,
                Outcome.SUCCESS if event.kind == "accepted" else Outcome.FAILURE,
                actor=event.calling_ae, source=event.address, subject=event.called_ae,
                detail={"reason": event.reason} if event.reason else {}))
            return
        if event.kind == "closed":
            with self._lock:
                received = self._open.pop(event.association, None)
            if received is not None:
                self._report(received)

    def on_stored(self, stored: InstanceStored) -> None:
        """StorageSCP's `on_stored`: runs on the association's own thread, which is the
        pynetdicom Association object whose events `on_association` gets."""
        assoc = threading.current_thread()
        info = getattr(getattr(assoc, "requestor", None), "address_info", None)
        with self._lock:
            received = self._open.get(id(assoc))
            if received is None:
                received = self._open[id(assoc)] = _Received(
                    stored.calling_ae, info.address if info is not None else "")
            if stored.duplicate:
                received.duplicates += 1
            received.studies.setdefault(stored.study_instance_uid, []).append(
                stored.sop_instance_uid)

    def flush(self) -> None:
        """Reports the associations not seen to close (the listener stopped under them)."""
        with self._lock:
            left, self._open = list(self._open.values()), {}
        for received in left:
            self._report(received)

    def _report(self, received: _Received) -> None:
        for study, sops in received.studies.items():
            self._submit(AuditEvent(
                Category.INSTANCES, "received", actor=received.calling_ae,
                source=received.address, subject=study,
                detail={"count": len(sops), "sop_instance_uids": sops,
                        "duplicates": received.duplicates, "destination": self._node_ae}))


def routed_event(event: StudyReady) -> AuditEvent:
    return AuditEvent(Category.ROUTING, "study_ready", subject=event.study_instance_uid,
                      detail={"series": len(event.series), "amendment": event.amendment})


def fhir_event(access: FacadeAccess) -> AuditEvent:
    return AuditEvent(
        Category.FHIR_READ, access.interaction,
        Outcome.SUCCESS if access.status < 400 else Outcome.FAILURE,
        actor=access.identity, source=access.address, subject=access.patient,
        detail={"resource_type": access.resource_type, "resource_id": access.resource_id,
                "query": access.query, "status": access.status})


def config_event(settings: Settings, source: str | None = None) -> AuditEvent:
    """Configuration loaded: a digest of the settings (tokens and keys never leave here)."""
    dumped = settings.model_dump(mode="json")
    digest = hashlib.sha256(json.dumps(dumped, sort_keys=True).encode()).hexdigest()
    return AuditEvent(Category.CONFIG, "loaded", actor=settings.dicom.ae_title, source=source,
                      detail={"sha256": digest,
                              "dicom_tls": settings.dicom.tls is not None,
                              "web_tls": settings.web.tls_certfile is not None,
                              "web_host": settings.web.host,
                              "pipelines": sorted(settings.workers.pipelines)})


class NodeAudit:
    """The node's audit wiring: the recorder, the listener's observer, the outcome tail and
    (when an audit repository is configured) the exporter, started and stopped together."""

    def __init__(self, engine: Engine, registry: CollectorRegistry, settings: Settings) -> None:
        self.settings = settings
        self.log = AuditLog(engine)
        self.metrics = AuditMetrics(registry)
        self.recorder = AuditRecorder(self.log, self.metrics,
                                      capacity=settings.audit.queue_size)
        self.associations = AssociationAudit(self.recorder.submit, settings.dicom.ae_title)
        self.tail = OutcomeTail(engine, self.recorder.submit)
        self.exporter: AuditExporter | None = None
        if settings.audit.syslog is not None:
            self.exporter = AuditExporter(self.log, settings.audit.syslog,
                                          settings.data_dir / "audit-export.cursor",
                                          registry=registry)
        self._threads: list[threading.Thread] = []

    def submit(self, event: AuditEvent) -> None:
        self.recorder.submit(event)

    def on_study_ready(self, event: StudyReady) -> None:
        self.recorder.submit(routed_event(event))

    def on_fhir_access(self, access: FacadeAccess) -> None:
        self.recorder.submit(fhir_event(access))

    def start(self, stop: threading.Event) -> None:
        self.recorder.start()
        self.recorder.submit(AuditEvent(Category.APPLICATION, "start",
                                        actor=self.settings.dicom.ae_title))
        self.recorder.submit(config_event(self.settings))
        runners: list[tuple[str, Callable[[threading.Event], None]]] = [
            ("audit-outcomes", lambda s: self.tail.run(s, self.settings.audit.poll_s))]
        if self.exporter is not None:
            runners.append(("audit-export", self.exporter.run))
        for name, target in runners:
            thread = threading.Thread(target=target, args=(stop,), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """After the node's own `stop` event is set: a last look at outcomes, then the queue
        is written out."""
        for thread in self._threads:
            thread.join(timeout=10)
        try:
            self.tail.poll()
        except SQLAlchemyError as exc:
            log.warning("audit of job and delivery outcomes at stop: %s", type(exc).__name__)
        self.associations.flush()
        self.recorder.submit(AuditEvent(Category.APPLICATION, "stop",
                                        actor=self.settings.dicom.ae_title))
        self.recorder.stop()
        if self.exporter is not None:
            try:  # what was written last goes out now; if not, the cursor keeps it for later
                self.exporter.send_pending()
            except (OSError, SQLAlchemyError) as exc:
                log.warning("audit export at stop: %s", type(exc).__name__)
            self.exporter.close()
