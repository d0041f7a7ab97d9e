"""The node's monitoring loop: recompute today's and yesterday's aggregates every
`aggregate_every_s`, listen for final reports over MLLP, and poll FHIR for final
DiagnosticReports, each as configured."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from hl7_fhir.client import BearerToken, FhirClient
from hl7_fhir.errors import DeliveryError
from hl7_fhir.hl7v2.listener import MllpListener
from hl7_fhir.hl7v2.mllp import server_tls_context
from hl7_fhir.labels import FinalReport, final_report_from_fhir
from workers.monitoring.aggregate import ReferenceLookup, aggregate_day
from workers.monitoring.agreement import record_report
from workers.monitoring.config import MonitoringConfig

log = logging.getLogger(__name__)


class MonitoringService:
    """Background work of monitoring; `start()` / `stop()`."""

    def __init__(self, engine: Engine, cfg: MonitoringConfig, references: ReferenceLookup,
                 clock: Callable[[], datetime]) -> None:
        self.engine = engine
        self.cfg = cfg
        self.references = references
        self.clock = clock
        self.listener: MllpListener | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._polled_since: datetime | None = None

    def on_report(self, report: FinalReport) -> None:
        """Label and store one final report (the listener's and the poller's handler)."""
        record_report(self.engine, report, self.cfg.label_rules, self.clock())

    def aggregate_recent(self) -> None:
        now = self.clock()
        for day in (now.date() - timedelta(days=1), now.date()):
            aggregate_day(self.engine, day, self.references, now,
                          window_days=self.cfg.window_days,
                          min_window_results=self.cfg.min_window_results)

    def poll_fhir(self) -> int:
        """One poll of the FHIR server; returns the number of final reports recorded."""
        poll = self.cfg.fhir_poll
        if poll is None:
            return 0
        started = self.clock()
        since = self._polled_since or started - timedelta(days=7)
        auth = BearerToken(poll.token) if poll.token else None
        with FhirClient(poll.base_url, auth) as client:
            resources = client.final_reports(since.isoformat())
        recorded = 0
        for resource in resources:
            report = final_report_from_fhir(resource)
            if report is not None:
                self.on_report(report)
                recorded += 1
        self._polled_since = started
        return recorded

    def _loop(self, every_s: float, work: Callable[[], object], name: str) -> None:
        while not self._stop.is_set():
            try:
                work()
            except (SQLAlchemyError, DeliveryError) as exc:
                log.warning("%s failed: %s", name, type(exc).__name__)
            self._stop.wait(every_s)

    def start(self) -> None:
        if not self.cfg.enabled:
            return
        work: list[tuple[float, Callable[[], object], str]] = [
            (self.cfg.aggregate_every_s, self.aggregate_recent, "monitoring aggregation")]
        if self.cfg.fhir_poll is not None:
            work.append((self.cfg.fhir_poll.every_s, self.poll_fhir, "FHIR report poll"))
        for every_s, fn, name in work:
            thread = threading.Thread(target=self._loop, args=(every_s, fn, name), name=name,
                                      daemon=True)
            thread.start()
            self._threads.append(thread)
        if self.cfg.listener is not None:
            listen = self.cfg.listener
            tls = listen.tls
            self.listener = MllpListener(
                listen.host, listen.port, self.on_report, allowed_hosts=listen.allowed_hosts,
                ssl_context=(server_tls_context(tls.cert_file, tls.key_file, tls.client_ca_file)
                             if tls is not None else None))
            port = self.listener.start()
            log.info("HL7 final-report listener on port %d", port)

    def stop(self) -> None:
        self._stop.set()
        if self.listener is not None:
            self.listener.stop()
        for thread in self._threads:
            thread.join(timeout=10)
