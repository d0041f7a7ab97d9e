"""The receive path shared by every way an instance arrives (C-STORE, STOW-RS).

Order of work, so that nothing acknowledged can be lost: read the identifiers from the received
bytes, write the bytes unchanged to the spool (temp file, fsync, rename), commit the index row, and
only then report success. Any failure raises a `StoreRefused` carrying the status to answer, after
a record of why was written to `ingest_failures`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

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


@dataclass(frozen=True)
class Arrival:
    """One received instance: its bytes (file meta + data set) and who sent it how."""

    raw: bytes
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    calling_ae: str
    called_ae: str
    peer_address: str | None


class Ingestor:
    """Stores arrivals durably and indexes them; collaborators are passed in."""

    def __init__(
        self,
        spool: Spool,
        index: IndexStore,
        *,
        quiet_period: QuietPeriod,
        clock: Callable[[], datetime],
        metrics: IngestMetrics | None = None,
    ) -> None:
        self.spool = spool
        self.index = index
        self.quiet_period = quiet_period
        self.clock = clock
        self.metrics = metrics

    def ingest(self, arrival: Callable[[], Arrival], *, calling_ae: str,
               peer_address: str | None, sop_class_uid: str | None,
               sop_instance_uid: str | None) -> InstanceStored:
        """Stores what `arrival()` returns. The command's UIDs are passed separately so a
        duplicate is recognised before the bytes are even assembled.

        Raises StoreRefused (after recording it) for every failure; any other exception is
        turned into a processing failure first.
        """
        started = time.perf_counter()
        received: Arrival | None = None
        try:
            sop_instance = checked_uid(sop_instance_uid, "Affected SOP Instance UID")
            sop_class = checked_uid(sop_class_uid, "Affected SOP Class UID")
            if self.index.is_stored(sop_instance):
                self.index.count_duplicate(sop_instance)
                stored = InstanceStored(
                    sop_instance_uid=sop_instance, sop_class_uid=sop_class,
                    series_instance_uid="", study_instance_uid="", path="", size_bytes=0,
                    calling_ae=calling_ae, duplicate=True,
                )
            else:
                received = arrival()
                stored = self._store(received, sop_class, sop_instance)
        except StoreRefused as exc:
            self._refused(exc, received, calling_ae, peer_address, sop_class_uid, sop_instance_uid)
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes a status and a record
            log.exception("storing an instance failed")
            refused = StoreRefused(f"internal error: {type(exc).__name__}")
            self._refused(refused, received, calling_ae, peer_address, sop_class_uid,
                          sop_instance_uid)
            raise refused from exc
        finally:
            if self.metrics is not None:
                self.metrics.store_seconds.observe(time.perf_counter() - started)
        if self.metrics is not None:
            outcome = "duplicate" if stored.duplicate else "stored"
            self.metrics.instances.labels(outcome=outcome).inc()
            self.metrics.bytes.inc(stored.size_bytes)
        return stored

    def _store(self, arrival: Arrival, sop_class: str, sop_instance: str) -> InstanceStored:
        header = read_header(
            arrival.raw,
            expected_sop_class=sop_class,
            expected_sop_instance=sop_instance,
            transfer_syntax=arrival.transfer_syntax_uid,
        )
        path = self.spool.path_for(
            header.study_instance_uid, header.series_instance_uid, sop_instance
        )
        self.spool.write(arrival.raw, path)
        fresh = self.index.record_instance(
            header,
            path=str(path),
            size_bytes=len(arrival.raw),
            receipt=Receipt(
                calling_ae=arrival.calling_ae, called_ae=arrival.called_ae, at=self.clock()
            ),
            quiet_period_s=self.quiet_period(header),
        )
        return InstanceStored(
            sop_instance_uid=sop_instance,
            sop_class_uid=sop_class,
            series_instance_uid=header.series_instance_uid,
            study_instance_uid=header.study_instance_uid,
            path=str(path),
            size_bytes=len(arrival.raw) if fresh else 0,
            calling_ae=arrival.calling_ae,
            duplicate=not fresh,
        )

    def _refused(
        self,
        exc: StoreRefused,
        arrival: Arrival | None,
        calling_ae: str,
        peer_address: str | None,
        sop_class_uid: str | None,
        sop_instance_uid: str | None,
    ) -> None:
        if self.metrics is not None:
            self.metrics.instances.labels(outcome="failed").inc()
            self.metrics.failures.labels(reason=exc.reason_code).inc()
        kept = None
        if exc.status == Status.CANNOT_UNDERSTAND and arrival is not None:
            kept_path = self.spool.keep_rejected(arrival.raw)
            kept = str(kept_path) if kept_path else None
        record = FailureRecord(
            calling_ae=calling_ae,
            peer_address=peer_address,
            sop_class_uid=_clip(sop_class_uid),
            sop_instance_uid=_clip(sop_instance_uid),
            status=int(exc.status),
            reason_code=exc.reason_code,
            reason=exc.reason,
            kept_path=kept,
        )
        log.warning("instance refused status=0x%04X reason=%s", int(exc.status), exc.reason_code)
        try:
            self.index.record_failure(record, self.clock())
        except Exception:  # noqa: BLE001 - the refusal still goes back to the sender
            log.exception("could not record a refused instance")


def _clip(value: object) -> str | None:
    text = str(value or "").strip()
    return text[:64] if text else None
