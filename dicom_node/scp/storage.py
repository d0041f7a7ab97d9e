"""Storage SOP Class SCP (C-STORE, PS3.4 Annex B).

Order of work for each request, so that nothing acknowledged can be lost: read the identifiers
from the received bytes, write the bytes unchanged to the spool (temp file, fsync, rename), commit
the index row, and only then answer Success. Any failure on the way answers a failure status with a
reason recorded in `ingest_failures`; no exception escapes into pynetdicom.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import cast

from pynetdicom import evt
from pynetdicom.dimse_primitives import C_STORE

from dicom_node.errors import StoreRefused
from dicom_node.events import InstanceStored
from dicom_node.index.headers import InstanceHeader, read_header
from dicom_node.index.store import FailureRecord, IndexStore, Receipt
from dicom_node.metrics import IngestMetrics
from dicom_node.spool import Spool
from dicom_node.status import Status
from dicom_node.uids import checked_uid

log = logging.getLogger(__name__)

QuietPeriod = Callable[[InstanceHeader], float]


class StorageSCP:
    """Handles EVT_C_STORE; collaborators are passed in."""

    def __init__(
        self,
        spool: Spool,
        index: IndexStore,
        *,
        quiet_period: QuietPeriod,
        clock: Callable[[], datetime],
        metrics: IngestMetrics | None = None,
        on_stored: Callable[[InstanceStored], None] | None = None,
    ) -> None:
        self.spool = spool
        self.index = index
        self.quiet_period = quiet_period
        self.clock = clock
        self.metrics = metrics
        self.on_stored = on_stored

    def handle_store(self, event: evt.Event) -> int:
        """The EVT_C_STORE handler: returns a `Status`, never raises."""
        started = time.perf_counter()
        request = cast(C_STORE, event.request)
        try:
            stored = self._store(event)
        except StoreRefused as exc:
            self._refused(event, exc)
            return int(exc.status)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a status and a record
            log.exception("C-STORE handler failed")
            self._refused(event, StoreRefused(f"internal error: {type(exc).__name__}"))
            return int(Status.PROCESSING_FAILURE)
        finally:
            if self.metrics is not None:
                self.metrics.store_seconds.observe(time.perf_counter() - started)
        if self.metrics is not None:
            outcome = "duplicate" if stored.duplicate else "stored"
            self.metrics.instances.labels(outcome=outcome).inc()
            if not stored.duplicate:
                self.metrics.bytes.inc(stored.size_bytes)
        log.debug(
            "stored sop=%s series=%s duplicate=%s",
            request.AffectedSOPInstanceUID,
            stored.series_instance_uid,
            stored.duplicate,
        )
        if self.on_stored is not None:
            self.on_stored(stored)
        return int(Status.SUCCESS)

    def _store(self, event: evt.Event) -> InstanceStored:
        request = cast(C_STORE, event.request)
        sop_instance = checked_uid(request.AffectedSOPInstanceUID, "Affected SOP Instance UID")
        sop_class = checked_uid(request.AffectedSOPClassUID, "Affected SOP Class UID")
        calling_ae = str(event.assoc.requestor.ae_title).strip()
        if self.index.is_stored(sop_instance):
            self.index.count_duplicate(sop_instance)
            return self._message(event, None, sop_class, sop_instance, duplicate=True)
        raw = event.encoded_dataset(include_meta=True)
        header = read_header(
            raw,
            expected_sop_class=sop_class,
            expected_sop_instance=sop_instance,
            transfer_syntax=str(event.context.transfer_syntax),
        )
        path = self.spool.path_for(
            header.study_instance_uid, header.series_instance_uid, sop_instance
        )
        self.spool.write(raw, path)
        fresh = self.index.record_instance(
            header,
            path=str(path),
            size_bytes=len(raw),
            receipt=Receipt(
                calling_ae=calling_ae,
                called_ae=str(event.assoc.acceptor.ae_title).strip(),
                at=self.clock(),
            ),
            quiet_period_s=self.quiet_period(header),
        )
        return self._message(
            event, header, sop_class, sop_instance,
            duplicate=not fresh, path=str(path), size=len(raw),
        )

    @staticmethod
    def _message(
        event: evt.Event,
        header: InstanceHeader | None,
        sop_class: str,
        sop_instance: str,
        *,
        duplicate: bool,
        path: str = "",
        size: int = 0,
    ) -> InstanceStored:
        return InstanceStored(
            sop_instance_uid=sop_instance,
            sop_class_uid=sop_class,
            series_instance_uid=header.series_instance_uid if header else "",
            study_instance_uid=header.study_instance_uid if header else "",
            path=path,
            size_bytes=size,
            calling_ae=str(event.assoc.requestor.ae_title).strip(),
            duplicate=duplicate,
        )

    def _refused(self, event: evt.Event, exc: StoreRefused) -> None:
        if self.metrics is not None:
            self.metrics.instances.labels(outcome="failed").inc()
            self.metrics.failures.labels(reason=exc.reason_code).inc()
        kept = None
        if exc.status == Status.CANNOT_UNDERSTAND:
            try:
                kept_path = self.spool.keep_rejected(event.encoded_dataset(include_meta=True))
                kept = str(kept_path) if kept_path else None
            except Exception:  # noqa: BLE001 - keeping the bytes is best effort
                kept = None
        request = cast(C_STORE, event.request)
        record = FailureRecord(
            calling_ae=str(event.assoc.requestor.ae_title).strip(),
            peer_address=_peer_address(event),
            sop_class_uid=_safe_uid(request.AffectedSOPClassUID),
            sop_instance_uid=_safe_uid(request.AffectedSOPInstanceUID),
            status=int(exc.status),
            reason_code=exc.reason_code,
            reason=exc.reason,
            kept_path=kept,
        )
        log.warning("C-STORE refused status=0x%04X reason=%s", int(exc.status), exc.reason_code)
        try:
            self.index.record_failure(record, self.clock())
        except Exception:  # noqa: BLE001 - the status still goes back to the sender
            log.exception("could not record a C-STORE failure")


def _safe_uid(value: object) -> str | None:
    text = str(value or "").strip()
    return text[:64] if text else None


def _peer_address(event: evt.Event) -> str | None:
    info = event.assoc.requestor.address_info
    return info.address if info is not None else None
