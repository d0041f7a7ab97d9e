"""Process wiring for `infernode serve`: database, spool, DICOM listener, study assembly, web."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from dicom_node.assembly import StudyAssembler, utc_now
from dicom_node.events import StudyReady
from dicom_node.index.store import IndexStore
from dicom_node.ingest import Ingestor
from dicom_node.metrics import IngestMetrics
from dicom_node.recovery import recover_unindexed
from dicom_node.retention import SpoolWatch
from dicom_node.scp.server import DicomServer
from dicom_node.spool import Spool
from infernode.acceptor import (
    AcceptorSupervisor,
    freeze_start_up_heap,
    receive_path,
    tagged,
)
from infernode.audit_hooks import AssociationAudit, NodeAudit
from infernode.cli_retention import Retention, RetentionMetrics
from infernode.console.switches import apply_switches
from infernode.db import create_engine, migrate
from infernode.security import CertificateExpiryCollector, configured_certificates
from infernode.settings import Settings
from infernode.wiring import workers_config
from workers.embedded import EmbeddedRunner
from workers.metrics import register_metrics
from workers.monitoring.metrics import register_monitoring_metrics
from workers.monitoring.reference import load_references
from workers.monitoring.service import MonitoringService
from workers.outbox.metrics import register_delivery_metrics
from workers.outbox.runner import DeliveryRunner
from workers.reconciler import Reconciler
from workers.submit import default_transport, on_study_ready
from workers.transport import Transport

log = logging.getLogger(__name__)


@dataclass
class Node:
    """A running node. Build with `Node.build(settings)`, then `start()` and `stop()`."""

    settings: Settings
    engine: Engine
    registry: CollectorRegistry
    index: IndexStore
    spool: Spool
    server: DicomServer
    assembler: StudyAssembler
    ingestor: Ingestor
    transport: Transport
    embedded: EmbeddedRunner | None
    reconciler: Reconciler
    delivery: DeliveryRunner
    retention: Retention | None = None
    monitoring: MonitoringService | None = None
    ready_handlers: list[Callable[[StudyReady], None]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    web_server: object | None = None
    audit: NodeAudit | None = None
    acceptors: AcceptorSupervisor | None = None

    @classmethod
    def build(cls, settings: Settings) -> Node:
        engine = create_engine(settings.database.url)
        migrate(engine)
        registry = CollectorRegistry()
        metrics = IngestMetrics(registry)
        handlers: list[Callable[[StudyReady], None]] = []

        wcfg = workers_config(settings)
        audit = NodeAudit(engine, registry, settings)
        if settings.dicom.acceptor_processes > 1:
            # The audit trail tells which acceptor process received an association (0: this).
            audit.associations = AssociationAudit(tagged(audit.recorder.submit, 0),
                                                  settings.dicom.ae_title)
        ingestor, server = receive_path(settings, engine, metrics, audit.associations,
                                        audit_metrics=audit.metrics)
        spool, index = ingestor.spool, ingestor.index

        def dispatch(event: StudyReady) -> None:
            log.info(
                "study ready study=%s series=%d amendment=%d",
                event.study_instance_uid,
                len(event.series),
                event.amendment,
            )
            for handler in handlers:
                handler(event)

        transport = default_transport(wcfg)
        delivery = DeliveryRunner(engine, wcfg, clock=utc_now,
                                  metrics=register_delivery_metrics(registry, engine))
        embedded = (None if wcfg.broker_url
                    else EmbeddedRunner(engine, wcfg, on_finished=delivery.wake))

        def submit(event: StudyReady) -> None:
            # Pipelines an administrator disabled on the console get no new jobs.
            on_study_ready(engine, apply_switches(engine, wcfg), event, transport=transport)
            if embedded is not None:
                embedded.wake()

        handlers.append(submit)
        handlers.append(audit.on_study_ready)
        register_metrics(registry, engine)
        references = load_references(settings.inference.model_paths)
        monitoring = MonitoringService(engine, settings.monitoring,
                                       lambda p, v: references.get((p, v)), utc_now)
        register_monitoring_metrics(registry, engine, utc_now,
                                    settings.monitoring.metrics_cache_s)
        registry.register(CertificateExpiryCollector(configured_certificates(settings)))
        assembler = StudyAssembler(engine, dispatch, clock=utc_now, metrics=metrics)
        retention = Retention(
            engine, spool, wcfg.retention, settings.data_dir / "outputs",
            metrics=RetentionMetrics(registry),
            watch=SpoolWatch(spool, settings.dicom.spool_warning_free_bytes, registry))
        return cls(
            settings=settings,
            engine=engine,
            registry=registry,
            index=index,
            spool=spool,
            server=server,
            assembler=assembler,
            ingestor=ingestor,
            ready_handlers=handlers,
            transport=transport,
            embedded=embedded,
            reconciler=Reconciler(engine, wcfg, transport),
            delivery=delivery,
            audit=audit,
            retention=retention,
            monitoring=monitoring,
        )

    def start(self, *, freeze_heap: bool = False) -> None:
        """Starts every part; with `freeze_heap` (a process that runs nothing but the node:
        `infernode serve`, the demo) the objects built so far are frozen first (`freeze_heap`)."""
        if self.audit is not None:
            self.audit.start(self._stop)
        self.spool.prepare()
        # Before the listener accepts: index spool files whose rows a crash or power loss took.
        recover_unindexed(self.ingestor)
        if freeze_heap:
            freeze_start_up_heap()
        self.server.start()
        if self.settings.dicom.acceptor_processes > 1:
            # After recovery, and on the port this listener bound (a configured 0 included).
            self.acceptors = AcceptorSupervisor(self.settings, self.server.port)
            self.acceptors.start()
        thread = threading.Thread(
            target=self.assembler.run,
            args=(self._stop, self.settings.dicom.assembly_poll_s),
            name="assembly",
            daemon=True,
        )
        thread.start()
        self._threads.append(thread)
        if self.retention is not None:
            sweeper = threading.Thread(target=self.retention.loop, args=(self._stop, utc_now),
                                       name="retention", daemon=True)
            sweeper.start()
            self._threads.append(sweeper)
        self.reconciler.start()
        self.delivery.start()
        if self.monitoring is not None:
            self.monitoring.start()
        if self.embedded is not None:
            self.embedded.start()
        if self.settings.web.enabled:
            from infernode.web import start_web

            self.web_server = start_web(self)
        log.info(
            "listening ae=%s port=%d", self.settings.dicom.ae_title, self.server.port
        )

    def stop(self) -> None:
        """Stops every part; with default settings within about `dicom.stop_grace_s` (open
        associations finish or are aborted) while the embedded worker's running job gets
        `workers.embedded_stop_grace_s` and a delivery batch being sent
        `workers.delivery.stop_grace_s` alongside, then goes back to the queue, so SIGTERM
        ends `infernode serve` within 10 s even during a long inference or a slow send."""
        self._stop.set()
        if self.embedded is not None:
            self.embedded.stop_claiming()
        self.delivery.stop_sending()
        if self.acceptors is not None:
            self.acceptors.stop()  # they stop their listeners meanwhile, with the same grace
        self.server.stop()
        if self.acceptors is not None:
            self.acceptors.join(timeout=self.settings.dicom.stop_grace_s + 2.0)
        self.reconciler.stop()
        self.delivery.stop()
        if self.monitoring is not None:
            self.monitoring.stop()
        if self.embedded is not None:
            self.embedded.stop()  # what its grace left running is handed back
        if self.web_server is not None:
            from infernode.web import stop_web

            stop_web(self.web_server)
        for thread in self._threads:
            thread.join(timeout=10)
        self.spool.close()  # nothing receives or removes any more
        if self.audit is not None:
            self.audit.stop()
        self.engine.dispose()
