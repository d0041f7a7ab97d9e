"""Start-up recovery: abandoned spool slots are put in place, then every spool file without an
index row is indexed, or quarantined.

The spool is the receive path's journal. An instance is acknowledged once its bytes are fsynced
in a spool slot whose directory entry was durable already and the slot is renamed to its final
path (`Spool.place`, docs/DICOM.md Durability); the renamed-into directory is fsynced later. Its
index row is committed before the acknowledgement, but on SQLite without a WAL fsync of its own
(`IndexStore.spool_is_journal`). A power loss can therefore take the rename (the file is complete
at its slot name) and rows whose files are safe, and a crash between the rename and the commit
leaves a file whose sender was never answered.

`recover_unindexed` first looks at every non-empty slot no store holds, in every process's slot
folder (`.slots/` and the extra acceptor processes' `.slots/<k>/`, `Spool.abandoned_slots`; at
start-up no acceptor process runs yet, so none of them holds a slot): one whose bytes match
its completeness mark (length and CRC-32, set before its fsync) is moved to the final path its
own header names, or dropped when an identical file is there already; one that does not match (a
store cut before its acknowledgement), cannot be read as an instance, differs from the file at
its final path, or differs from the index row of its SOP Instance UID (patient, study, series,
pixel hash: the row describes the instance acknowledged first) is quarantined. Empty slots stay
in the pool. Then every file at `<study>/<series>/<sop>.dcm` is acknowledged-or-about-to-be, and
is indexed again from its own bytes (the same validation as on receipt; the sending and
receiving AE titles from its File Meta, 0002,0017/0018). A file that no longer passes that
validation is moved to `.rejected/` with a record and an `ingest_failures` row (quarantined); a
leftover copy of an instance indexed under another path is removed, as the receive path itself
does. Nothing else is ever deleted here.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian

from dicom_node.errors import DatasetMismatch, StoreRefused
from dicom_node.index.headers import InstanceHeader, read_header
from dicom_node.index.parse import read_file_meta
from dicom_node.index.store import FailureRecord, Receipt, differences
from dicom_node.ingest import Ingestor, check_inflated_size, refusal_for
from dicom_node.uids import checked_uid, is_valid_uid

log = logging.getLogger(__name__)

SUFFIX = ".dcm"


@dataclass(frozen=True)
class RecoveryReport:
    """What one pass did (counts only: no UIDs, no PHI)."""

    series_folders: int
    indexed: int
    quarantined: int
    removed_duplicates: int
    skipped_young: int
    seconds: float
    slots_placed: int = 0
    """Complete abandoned slots moved to their final path (then indexed, in `indexed`)."""
    slots_dropped: int = 0
    """Abandoned slots whose identical instance was at its final path already."""
    slots_quarantined: int = 0
    """Abandoned slots set aside: incomplete, unreadable, or differing from the file in place."""


@dataclass(frozen=True)
class _Found:
    header: InstanceHeader
    calling_ae: str
    called_ae: str


def recover_unindexed(ingestor: Ingestor, *, min_age_s: float = 0.0,
                      now: Callable[[], float] = time.time) -> RecoveryReport:
    """Indexes every spool file of the spool proper that has no index row; quarantines (moves
    to `.rejected/`, with a record) those that fail validation.

    At start-up (before the listener and any extra acceptor process accept) call it with
    `min_age_s` 0. While the node receives, pass a `min_age_s` well above a store's duration
    (e.g. 60): a younger file or slot (of any acceptor process) may be one whose store is
    running right now, and is left for a later pass.
    Raises what the index raises when it cannot be written (recovery must not half-succeed
    silently).
    """
    started = time.perf_counter()
    spool, index = ingestor.spool, ingestor.index
    folders = indexed = quarantined = removed = young = 0
    slots = {"placed": 0, "dropped": 0, "quarantined": 0}
    for slot in spool.abandoned_slots():
        try:
            mtime = slot.stat().st_mtime
        except FileNotFoundError:
            continue
        if min_age_s and now() - mtime < min_age_s:
            young += 1
            continue
        outcome = _recover_slot(ingestor, slot)
        if outcome in slots:
            slots[outcome] += 1
    for study_uid, series_uid, folder in spool.series_folders():
        folders += 1
        known = index.indexed_in_series(series_uid)
        for name in sorted(_instance_files(folder)):
            sop_uid = name[: -len(SUFFIX)]
            if sop_uid in known or not is_valid_uid(sop_uid):
                continue  # indexed, or no file of the receive path
            path = spool.path_for(study_uid, series_uid, sop_uid)
            try:
                mtime = path.stat().st_mtime
            except FileNotFoundError:
                continue
            if min_age_s and now() - mtime < min_age_s:
                young += 1
                continue
            with ingestor.uid_lock(sop_uid):
                outcome = _recover(ingestor, path, study_uid, series_uid, sop_uid)
            indexed += outcome == "indexed"
            quarantined += outcome == "quarantined"
            removed += outcome == "removed"
    report = RecoveryReport(folders, indexed, quarantined, removed, young,
                            round(time.perf_counter() - started, 3), slots["placed"],
                            slots["dropped"], slots["quarantined"])
    if indexed or quarantined or removed or any(slots.values()):
        log.warning("spool recovery indexed=%d quarantined=%d removed_duplicates=%d "
                    "slots_placed=%d slots_dropped=%d slots_quarantined=%d "
                    "series_folders=%d seconds=%.3f", indexed, quarantined, removed,
                    slots["placed"], slots["dropped"], slots["quarantined"], folders,
                    report.seconds)
    else:
        log.info("spool recovery: nothing unindexed in %d series folders (%.3f s)", folders,
                 report.seconds)
    return report


def _instance_files(folder: Path) -> list[str]:
    try:
        with os.scandir(folder) as entries:
            return [e.name for e in entries
                    if e.name.endswith(SUFFIX) and e.is_file(follow_symlinks=False)]
    except FileNotFoundError:
        return []


def _recover(ingestor: Ingestor, path: Path, study_uid: str, series_uid: str,
             sop_uid: str) -> str:
    """One unindexed file: "indexed", "quarantined", "removed" (a copy of an instance indexed
    elsewhere) or "gone" (removed meanwhile)."""
    index = ingestor.index
    raw = _read(ingestor, path, sop_uid, "spool file")
    if isinstance(raw, str):
        return raw
    try:
        found = _validate(raw, study_uid, series_uid, sop_uid, ingestor.max_inflated_bytes)
    except Exception as exc:  # noqa: BLE001 - every failure quarantines the file with its reason
        return _quarantine(ingestor, path, sop_uid, refusal_for(exc), exc)
    existing = index.stored_instance(sop_uid)
    if existing is not None and existing.path != str(path):
        ingestor.spool.remove(path)
        return "removed"
    fresh = index.record_instance(
        found.header, path=str(path), size_bytes=len(raw),
        receipt=Receipt(calling_ae=found.calling_ae, called_ae=found.called_ae,
                        at=ingestor.clock()),
        quiet_period_s=ingestor.quiet_period(found.header),
    )
    if fresh:
        return "indexed"
    existing = index.stored_instance(sop_uid)
    if existing is None or existing.path != str(path):
        ingestor.spool.remove(path)
        return "removed"
    return "indexed"


def _recover_slot(ingestor: Ingestor, slot: Path) -> str:
    """One abandoned slot: "placed" (moved to its final path, for the scan to index),
    "dropped" (an identical file is there), "quarantined" or "gone" (removed meanwhile)."""
    spool = ingestor.spool
    raw = _read(ingestor, slot, None, "spool slot")
    if isinstance(raw, str):
        return raw
    if not raw:
        return "gone"  # an empty slot belongs to the pool
    if not spool.slot_is_complete(slot, raw):
        return _quarantine(ingestor, slot, None, IncompleteSlot(
            "spool slot incomplete: a store cut before its acknowledgement"), None)
    try:
        header, _ = _read_instance(raw, None, ingestor.max_inflated_bytes)
        sop_uid = header.sop_instance_uid
        final = spool.path_for(header.study_instance_uid, header.series_instance_uid, sop_uid)
    except Exception as exc:  # noqa: BLE001 - every failure quarantines the slot with its reason
        return _quarantine(ingestor, slot, None, refusal_for(exc), exc)
    with ingestor.uid_lock(sop_uid):
        indexed = ingestor.index.stored_instance(sop_uid)
        if indexed is not None and differences(header, indexed, raw):
            # Not the instance the row describes (acknowledged first): a conflicting repeat
            # whose lazy removal a power loss took, whatever the order of the slot names.
            return _quarantine(ingestor, slot, sop_uid, ConflictingSlot(
                "spool slot differs from the indexed instance"), None)
        try:
            if spool.adopt_slot(slot, final):
                return "placed"
            same = final.read_bytes() == raw
        except FileNotFoundError:
            return "gone"
        except OSError as exc:
            return _quarantine(ingestor, slot, sop_uid, StoreRefused(
                f"spool slot cannot be placed: {exc.strerror or type(exc).__name__}"), exc)
        if same:
            spool.drop_slot(slot)
            return "dropped"
        return _quarantine(ingestor, slot, sop_uid, ConflictingSlot(
            "spool slot differs from the file at its final path"), None)


class IncompleteSlot(StoreRefused):
    """A slot whose bytes do not match their completeness mark (never acknowledged)."""

    reason_code = "incomplete_slot"


class ConflictingSlot(StoreRefused):
    """A complete slot whose final path holds other bytes under the same SOP Instance UID."""

    reason_code = "conflicting_slot"


def _read(ingestor: Ingestor, path: Path, sop_uid: str | None, what: str) -> bytes | str:
    """The bytes of a spool file or slot; else the outcome: "gone" (removed meanwhile) or
    "quarantined" (unreadable)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return "gone"
    except OSError as exc:
        return _quarantine(ingestor, path, sop_uid, StoreRefused(
            f"{what} unreadable: {exc.strerror or type(exc).__name__}"), None)


def _read_instance(raw: bytes, sop_uid: str | None,
                   max_inflated_bytes: int) -> tuple[InstanceHeader, Dataset]:
    """Header and File Meta of a spool file or slot, validated as on receipt (File Meta,
    deflate limit, structure, identifiers); the SOP Instance UID must be `sop_uid` (a file's
    name), or with None the one its File Meta gives (a slot). Raises what validation raises."""
    meta, _ = read_file_meta(raw)
    if sop_uid is None:
        sop_uid = checked_uid(meta.get("MediaStorageSOPInstanceUID"),
                              "MediaStorageSOPInstanceUID")
    transfer_syntax = checked_uid(meta.get("TransferSyntaxUID"), "TransferSyntaxUID")
    if transfer_syntax == DeflatedExplicitVRLittleEndian:
        check_inflated_size(raw, max_inflated_bytes)
    header = read_header(
        raw, expected_sop_class=checked_uid(meta.get("MediaStorageSOPClassUID"),
                                            "MediaStorageSOPClassUID"),
        expected_sop_instance=sop_uid, transfer_syntax=transfer_syntax)
    return header, meta


def _validate(raw: bytes, study_uid: str, series_uid: str, sop_uid: str,
              max_inflated_bytes: int) -> _Found:
    header, meta = _read_instance(raw, sop_uid, max_inflated_bytes)
    if (header.study_instance_uid, header.series_instance_uid) != (study_uid, series_uid):
        raise DatasetMismatch("spool file lies outside its study/series folder")
    return _Found(header, _ae(meta.get("SendingApplicationEntityTitle")),
                  _ae(meta.get("ReceivingApplicationEntityTitle")))


def _ae(value: object) -> str:
    return str(value or "").strip()


def _quarantine(ingestor: Ingestor, path: Path, sop_uid: str | None, refused: StoreRefused,
                cause: BaseException | None) -> str:
    at = ingestor.clock()
    record: dict[str, object] = {
        "at": at.isoformat(), "sop_instance_uid": sop_uid, "status": int(refused.status),
        "reason_code": refused.reason_code, "reason": refused.reason, "found_by": "recovery",
        "spool_path": str(path),
    }
    kept = ingestor.spool.move_to_rejected(path, record)
    log.warning("spool recovery quarantined a file reason=%s sop=%s cause=%s",
                refused.reason_code, sop_uid, type(cause).__name__ if cause else "-")
    ingestor.index.record_failure(FailureRecord(
        calling_ae=None, peer_address=None, sop_class_uid=None, sop_instance_uid=sop_uid,
        status=int(refused.status), reason_code=refused.reason_code, reason=refused.reason,
        kept_path=str(kept) if kept else None,
    ), at)
    return "quarantined"
