"""The receive path shared by every way an instance arrives (C-STORE, STOW-RS).

Order of work, so that nothing acknowledged can be lost and nothing damaged is indexed: validate
the received bytes and read their identifiers (`index.headers.read_header`), write the bytes
unchanged to the spool (slot, fsync, rename), commit the index row, and only then report
success. Every failure becomes a `StoreRefused` carrying the status to answer (`refusal_for`, the
one mapping from exceptions to statuses), after a record of why was written to `ingest_failures`
and the received bytes were kept under the spool's `.rejected/` folder. A second instance under an
indexed SOP Instance UID is compared with the indexed one: the same content is a Success, other
content is a warning (PS3.4 B.2.3, 0xB006) with the copy set aside and an `ingest_conflicts` row.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pydicom.uid import DeflatedExplicitVRLittleEndian
from sqlalchemy.exc import SQLAlchemyError

from dicom_node.buffers import Received
from dicom_node.config import DicomNodeConfig
from dicom_node.errors import (
    CannotUnderstand,
    DatasetMismatch,
    DeletedWhileStored,
    IndexWriteFailed,
    OutOfResources,
    StoreRefused,
    TruncatedDataSet,
)
from dicom_node.events import InstanceStored
from dicom_node.index.headers import InstanceHeader, read_header
from dicom_node.index.parse import (
    PARSE_ERRORS,
    inflated,
    read_file_meta,
    use_scratch_folder,
)
from dicom_node.index.store import (
    ConflictRecord,
    FailureRecord,
    IndexStore,
    Receipt,
    StoredInstance,
    differences,
)
from dicom_node.metrics import IngestMetrics
from dicom_node.spool import SlotWriter, Spool, Staged
from dicom_node.status import Status
from dicom_node.uids import checked_uid, is_valid_uid

log = logging.getLogger(__name__)

QuietPeriod = Callable[[InstanceHeader], float]

DEFAULT_MAX_INFLATED_BYTES: int = DicomNodeConfig.model_fields["max_inflated_bytes"].default
"""Largest inflated size of a deflated data set, unless configured (`dicom.max_inflated_bytes`)."""


class InflatesBeyondLimit(CannotUnderstand):
    """A deflated data set that inflates beyond the configured limit (a deflate bomb, or more
    than the node accepts): refused before it is inflated whole (0xC000)."""

    reason_code = "inflate_limit"


def check_inflated_size(raw: Received, limit: int) -> None:
    """Inflates the data set of `raw` (File Meta + deflated data set, PS3.5 A.5) one megabyte at
    a time, keeping nothing, and raises InflatesBeyondLimit past `limit` bytes.

    A stream that cannot be inflated is left to the parser, which refuses it with its reason.
    """
    _, offset = read_file_meta(raw)
    total = 0
    try:
        # closed at once when refused, so that its view of `raw` (a mapped slot, closed next)
        # is released now rather than with the exception's frames
        with closing(inflated(raw, offset)) as chunks:
            for chunk in chunks:
                total += len(chunk)
                if total > limit:
                    raise InflatesBeyondLimit(f"deflated data set inflates beyond {limit} bytes")
    except (zlib.error, TruncatedDataSet):
        return


@dataclass(frozen=True)
class Arrival:
    """One received instance: its bytes (file meta + data set) and who sent it how."""

    raw: Received
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    calling_ae: str
    called_ae: str
    peer_address: str | None
    context_sop_class_uid: str | None = None
    """The abstract syntax of the presentation context it came on (C-STORE only)."""
    slot: SlotWriter | None = None
    """The spool slot `raw` was streamed into and is mapped from, when it was (the node's own
    upper layer); otherwise the receive path writes `raw` to a slot itself."""


@dataclass(frozen=True)
class Accepted:
    """An acknowledged instance: Success, or a warning status with a short comment (no PHI)."""

    stored: InstanceStored
    status: Status = Status.SUCCESS
    comment: str | None = None


def refusal_for(exc: BaseException) -> StoreRefused:
    """The refusal (and so the status) answered for an exception on the receive path.

    Domain errors carry their own status; parse errors of every kind are 0xC000 Cannot
    Understand; a database error is 0x0110 (its message, which holds SQL parameters, is dropped);
    anything else is 0x0110 Processing Failure.
    """
    if isinstance(exc, StoreRefused):
        return exc
    if isinstance(exc, SQLAlchemyError):
        return IndexWriteFailed(f"index write failed: {type(exc).__name__}")
    if isinstance(exc, PARSE_ERRORS):
        return CannotUnderstand(f"data set cannot be parsed: {type(exc).__name__}")
    return StoreRefused(f"internal error: {type(exc).__name__}")


class _SetAside(Exception):
    """Internal: the refusal of a file already moved out of the spool proper."""

    def __init__(self, refusal: StoreRefused, kept: Path | None) -> None:
        super().__init__(refusal.reason)
        self.refusal = refusal
        self.kept = kept


class _UidLocks:
    """Serialises work on one SOP Instance UID across associations (striped locks), so a
    repeated UID is compared, never written over the instance being indexed."""

    def __init__(self, stripes: int = 64) -> None:
        self._locks = [threading.Lock() for _ in range(stripes)]

    def hold(self, uid: str) -> threading.Lock:
        return self._locks[hash(uid) % len(self._locks)]


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
        max_inflated_bytes: int = DEFAULT_MAX_INFLATED_BYTES,
    ) -> None:
        self.spool = spool
        self.max_inflated_bytes = max_inflated_bytes
        self.index = index
        self.quiet_period = quiet_period
        self.clock = clock
        self.metrics = metrics
        self._locks = _UidLocks()
        # A large deflated data set is inflated into a file beside the spool's other transient
        # files, not into memory (`dicom_node.index.parse._inflate`); one spool per process.
        use_scratch_folder(spool.root / ".tmp")

    def uid_lock(self, sop_instance_uid: str) -> threading.Lock:
        """The lock that serialises work on one SOP Instance UID (recovery takes it too)."""
        return self._locks.hold(sop_instance_uid)

    def ingest(self, arrival: Callable[[], Arrival], *, calling_ae: str,
               peer_address: str | None, sop_class_uid: str | None,
               sop_instance_uid: str | None, expected_study: str | None = None) -> Accepted:
        """Validates, stores and indexes what `arrival()` returns; the command's UIDs are passed
        separately (they may be missing or invalid). With `expected_study` (a STOW-RS request
        for one study), an instance of another study is refused before it is stored.

        Raises StoreRefused (after recording it and keeping the bytes) for every failure.
        """
        started = time.perf_counter()
        received: Arrival | None = None
        staged: Staged | None = None
        try:
            received = arrival()
            sop_instance = checked_uid(sop_instance_uid, "Affected SOP Instance UID")
            sop_class = checked_uid(sop_class_uid, "Affected SOP Class UID")
            # The bytes go to a spool slot and are fsynced while they are validated here; with
            # `expected_study`, only once the instance is known to belong to that study.
            if expected_study is None:
                staged = self._staged(received)
            if received.transfer_syntax_uid == DeflatedExplicitVRLittleEndian:
                check_inflated_size(received.raw, self.max_inflated_bytes)
            header = read_header(
                received.raw, expected_sop_class=sop_class, expected_sop_instance=sop_instance,
                transfer_syntax=received.transfer_syntax_uid,
                context_sop_class=received.context_sop_class_uid,
            )
            if expected_study and header.study_instance_uid != expected_study:
                raise DatasetMismatch("instance belongs to another study than the request")
            if staged is None:
                staged = self._staged(received)
            with self._locks.hold(sop_instance):
                accepted = self._store(received, header, staged)
        except _SetAside as moved:
            self._refused(moved.refusal, moved.__cause__, moved.kept, calling_ae,
                          peer_address, sop_class_uid, sop_instance_uid)
            raise moved.refusal from moved.__cause__
        except Exception as exc:  # noqa: BLE001 - every failure becomes a status and a record
            if staged is not None:
                # Removed for good before the refusal: recovery must not find these bytes.
                self.spool.discard(staged, durable=True)
            refused = refusal_for(exc)
            kept = self._keep(refused, received, calling_ae, peer_address, sop_class_uid,
                              sop_instance_uid)
            self._refused(refused, exc, kept, calling_ae, peer_address, sop_class_uid,
                          sop_instance_uid)
            if refused is exc:
                raise
            raise refused from exc
        finally:
            if staged is not None:
                self.spool.discard(staged)  # nothing left when it was placed or refused
            if self.metrics is not None:
                self.metrics.store_seconds.observe(time.perf_counter() - started)
        if self.metrics is not None:
            outcome = ("conflict" if accepted.status != Status.SUCCESS
                       else "duplicate" if accepted.stored.duplicate else "stored")
            self.metrics.instances.labels(outcome=outcome).inc()
            self.metrics.bytes.inc(accepted.stored.size_bytes)
        return accepted

    def _staged(self, received: Arrival) -> Staged:
        """`received`'s slot handed to a writer thread to be marked and fsynced (its own slot
        when it was streamed into one, else a new one with its bytes)."""
        return (received.slot.finish() if received.slot is not None
                else self.spool.stage(received.raw))

    def _store(self, arrival: Arrival, header: InstanceHeader, staged: Staged, *,
               attempts_left: int = 2) -> Accepted:
        """Writes and indexes a new instance; a repeated one goes to `_repeat`.

        The spool write never replaces a file, so a new instance (the common case) costs no
        index look-up: a file already at the path, or an index row under another path, is what
        makes the index be asked.
        """
        path = self.spool.path_for(
            header.study_instance_uid, header.series_instance_uid, header.sop_instance_uid
        )
        if not self.spool.place(staged, path, replace=False):
            existing = self.index.stored_instance(header.sop_instance_uid)
            if existing is not None:
                return self._repeat(arrival, header, existing)
            # A file without its row (a crash between rename and commit): replaced, indexed.
            self.spool.place(staged, path)
        try:
            fresh = self.index.record_instance(
                header,
                path=str(path),
                size_bytes=len(arrival.raw),
                receipt=Receipt(
                    calling_ae=arrival.calling_ae, called_ae=arrival.called_ae, at=self.clock()
                ),
                quiet_period_s=self.quiet_period(header),
            )
        except Exception as exc:  # noqa: BLE001 - the written file must not stay unindexed
            refused = refusal_for(exc)
            record = self._sidecar(refused, arrival.calling_ae, arrival.peer_address,
                                   header.sop_class_uid, header.sop_instance_uid)
            raise _SetAside(refused, self.spool.move_to_rejected(path, record)) from exc
        if fresh:
            return Accepted(self._event(arrival, header, path, fresh=True))
        # Indexed meanwhile or under another study/series path: record_instance counted it.
        try:
            existing = self.index.stored_instance(header.sop_instance_uid)
        except SQLAlchemyError as exc:
            return self._uncompared(arrival, header, path, exc)
        if existing is None:
            # Counted as indexed, then gone: retention deleted the study in between (it unlinks
            # the files, then the rows). This copy arrived after that deletion began, so it is
            # stored like any new instance (module doc of dicom_node.retention); the bytes are
            # staged again, since retention may have unlinked the file placed above.
            stored = False
            again: Staged | None = None
            try:
                if attempts_left == 0:
                    raise DeletedWhileStored("instance deleted while it was stored, repeatedly")
                again = self.spool.stage(arrival.raw)
                accepted = self._store(arrival, header, again, attempts_left=attempts_left - 1)
                stored = True
                return accepted
            except _SetAside:
                raise  # the attempt that failed set its copy aside already
            except Exception as exc:  # noqa: BLE001 - refused: the placed copy must not stay
                refused = refusal_for(exc)
                record = self._sidecar(refused, arrival.calling_ae, arrival.peer_address,
                                       header.sop_class_uid, header.sop_instance_uid)
                kept = (self.spool.move_to_rejected(path, record)  # gone if retention took it
                        or self.spool.keep_rejected(arrival.raw, record))
                raise _SetAside(refused, kept) from exc
            finally:  # refused: removed for good, as in `ingest`
                if again is not None:
                    self.spool.discard(again, durable=not stored)
        if existing.path != str(path):
            self.spool.remove(path)
        return self._repeat(arrival, header, existing, counted=True)

    def _repeat(self, arrival: Arrival, header: InstanceHeader,
                existing: StoredInstance, *, counted: bool = False) -> Accepted:
        """A SOP Instance UID already indexed: the same content is a plain duplicate; other
        content is kept aside, recorded, and answered with a warning."""
        differ = differences(header, existing, arrival.raw)
        if not counted:
            try:
                self.index.count_duplicate(header.sop_instance_uid)
            except SQLAlchemyError as exc:  # a statistic: the instance is indexed all the same
                log.error("could not count a duplicate sop=%s: %s", header.sop_instance_uid,
                          type(exc).__name__)
        stored = InstanceStored(
            sop_instance_uid=header.sop_instance_uid, sop_class_uid=header.sop_class_uid,
            series_instance_uid=existing.series_instance_uid,
            study_instance_uid=existing.study_instance_uid, path=existing.path, size_bytes=0,
            calling_ae=arrival.calling_ae, duplicate=True,
        )
        if not differ:
            return Accepted(stored)
        status = Status.WARNING_ELEMENTS_DISCARDED
        what = ",".join(differ)
        record = self._sidecar(None, arrival.calling_ae, arrival.peer_address,
                               header.sop_class_uid, header.sop_instance_uid)
        record.update(status=int(status), reason_code="conflicting_duplicate",
                      differences=what, indexed_path=existing.path)
        kept = self.spool.keep_rejected(arrival.raw, record, conflict=True)
        try:
            self.index.record_conflict(ConflictRecord(
                calling_ae=arrival.calling_ae, peer_address=arrival.peer_address,
                sop_class_uid=header.sop_class_uid, sop_instance_uid=header.sop_instance_uid,
                study_instance_uid=header.study_instance_uid,
                series_instance_uid=header.series_instance_uid, differences=what,
                status=int(status), kept_path=str(kept) if kept else None,
                indexed_path=existing.path,
            ), self.clock())
        except SQLAlchemyError as exc:
            if kept is None:  # neither kept nor recorded: refused, so that the sender resends
                raise IndexWriteFailed(
                    "conflicting duplicate could not be kept or recorded") from exc
            # the record beside the kept copy says the same
            log.error("could not record a conflicting duplicate sop=%s: %s (kept)",
                      header.sop_instance_uid, type(exc).__name__)
        log.warning("conflicting duplicate set aside sop=%s differs=%s calling_ae=%s",
                    header.sop_instance_uid, what, arrival.calling_ae)
        return Accepted(stored, status, f"conflicts with stored instance: {what}")

    def _uncompared(self, arrival: Arrival, header: InstanceHeader, path: Path,
                    exc: SQLAlchemyError) -> Accepted:
        """A repeat the index counted (so the SOP Instance UID is indexed) but could not be
        looked up for the comparison: the received copy is kept under `.rejected/conflicts/`
        with a record saying it was not compared, and the store is a Success (the instance is
        indexed; nothing received is lost); where the copy cannot be kept either, a refusal.
        The file placed at `path` stays: it may be the indexed one, and start-up recovery
        removes it when the index row names another path."""
        record = self._sidecar(None, arrival.calling_ae, arrival.peer_address,
                               header.sop_class_uid, header.sop_instance_uid)
        record.update(status=int(Status.SUCCESS), reason_code="duplicate_not_compared",
                      reason=f"index look-up failed: {type(exc).__name__}")
        kept = self.spool.keep_rejected(arrival.raw, record, conflict=True)
        if kept is None:  # not kept either: refused, so that the sender resends
            raise IndexWriteFailed("duplicate could not be compared or kept") from exc
        log.error("duplicate not compared (index look-up failed: %s) sop=%s calling_ae=%s "
                  "kept=%s", type(exc).__name__, header.sop_instance_uid, arrival.calling_ae,
                  kept.name)
        return Accepted(self._event(arrival, header, path, fresh=False))

    @staticmethod
    def _event(arrival: Arrival, header: InstanceHeader, path: Path, *,
               fresh: bool) -> InstanceStored:
        return InstanceStored(
            sop_instance_uid=header.sop_instance_uid,
            sop_class_uid=header.sop_class_uid,
            series_instance_uid=header.series_instance_uid,
            study_instance_uid=header.study_instance_uid,
            path=str(path),
            size_bytes=len(arrival.raw) if fresh else 0,
            calling_ae=arrival.calling_ae,
            duplicate=not fresh,
        )

    def _sidecar(self, refused: StoreRefused | None, calling_ae: str,
                 peer_address: str | None, sop_class_uid: str | None,
                 sop_instance_uid: str | None) -> dict[str, object]:
        record: dict[str, object] = {
            "at": self.clock().isoformat(), "calling_ae": calling_ae,
            "peer_address": peer_address, "sop_class_uid": _uid_or_none(sop_class_uid),
            "sop_instance_uid": _uid_or_none(sop_instance_uid),
        }
        if refused is not None:
            record.update(status=int(refused.status), reason_code=refused.reason_code,
                          reason=refused.reason)
        return record

    def _keep(self, refused: StoreRefused, arrival: Arrival | None, calling_ae: str,
              peer_address: str | None, sop_class_uid: str | None,
              sop_instance_uid: str | None) -> Path | None:
        """Keeps the received bytes of a refusal (not when the spool is out of space)."""
        if arrival is None or isinstance(refused, OutOfResources):
            return None
        record = self._sidecar(refused, calling_ae, peer_address, sop_class_uid,
                               sop_instance_uid)
        return self.spool.keep_rejected(arrival.raw, record)

    def _refused(
        self,
        exc: StoreRefused,
        cause: BaseException | None,
        kept: Path | None,
        calling_ae: str,
        peer_address: str | None,
        sop_class_uid: str | None,
        sop_instance_uid: str | None,
    ) -> None:
        if self.metrics is not None:
            self.metrics.instances.labels(outcome="failed").inc()
            self.metrics.failures.labels(reason=exc.reason_code).inc()
        # One line, no traceback: the reason is fixed text and UIDs; an exception's own
        # message could hold header values or SQL parameters (PHI), so only its class is named.
        log.warning(
            "instance refused status=0x%04X reason=%s sop=%s calling_ae=%s cause=%s",
            int(exc.status), exc.reason_code, _uid_or_none(sop_instance_uid), calling_ae,
            type(cause).__name__ if cause is not None and cause is not exc else "-",
        )
        record = FailureRecord(
            calling_ae=calling_ae,
            peer_address=peer_address,
            sop_class_uid=_clip(sop_class_uid),
            sop_instance_uid=_clip(sop_instance_uid),
            status=int(exc.status),
            reason_code=exc.reason_code,
            reason=exc.reason,
            kept_path=str(kept) if kept else None,
        )
        try:
            self.index.record_failure(record, self.clock())
        except SQLAlchemyError as failure:  # the refusal still goes back to the sender
            log.error("could not record a refused instance: %s (kept=%s)",
                      type(failure).__name__, kept is not None)


def _uid_or_none(value: str | None) -> str | None:
    text = str(value or "").strip().rstrip("\x00")
    return text if is_valid_uid(text) else None


def _clip(value: object) -> str | None:
    text = str(value or "").strip()
    return text[:64] if text else None
