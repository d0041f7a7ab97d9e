"""DICOM outputs to a PACS: C-STORE over one association per batch (PS3.4 B.2, through
`dicom_node.scu.storage`) or one STOW-RS request per batch (PS3.18 10.5, through
`dicom_node.dicomweb.stow`).

Each instance gets its own outcome: the SCU reports every C-STORE response status, so one
refused instance (a permanent status, PS3.4 B.2.3) is dead-lettered while the others of the
batch are delivered; a transient failure (peer down, out of resources, aborted association)
leaves every instance not yet stored for a later retry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_file_meta_info

from dicom_node.deid import DeidOptions, deidentify
from dicom_node.dicomweb.stow import StowDestination as StowTarget
from dicom_node.dicomweb.stow import stow
from dicom_node.scu.errors import (
    DeliveryPermanentError,
    DeliveryTransientError,
    error_for_status,
    is_success,
)
from dicom_node.scu.storage import ClientTls, StorageSCU, StoreDestination
from workers.outbox.adapters.base import Sent, dimse_code, failure_from, invalid, missing
from workers.outbox.claims import DueDelivery, Failure
from workers.outbox.config import DicomDestination, StowDestination

_DeliveryError = DeliveryTransientError | DeliveryPermanentError


@dataclass(frozen=True)
class _File:
    item: DueDelivery
    path: Path
    sop_instance_uid: str


def _readable(items: Sequence[DueDelivery]) -> tuple[list[_File], list[Sent]]:
    """Files whose Part 10 meta header reads (PS3.10 7.1), and failures for the others."""
    files: list[_File] = []
    failed: list[Sent] = []
    for item in items:
        gone = missing(item)
        if gone is not None:
            failed.append(Sent(item.id, gone))
            continue
        path = Path(item.output.path or "")
        try:
            meta = read_file_meta_info(path)
            sop = str(meta.MediaStorageSOPInstanceUID)
        except (OSError, InvalidDicomError, AttributeError, ValueError):
            failed.append(Sent(item.id, invalid(item, "a readable DICOM Part 10 file")))
            continue
        files.append(_File(item, path, sop))
    return files, failed


def deid_options(dest: DicomDestination | StowDestination) -> DeidOptions | None:
    """How `dest` wants its copies de-identified; None when it takes the outputs as they are."""
    if not dest.deidentify:
        return None
    secret = dest.deid_uid_secret
    return DeidOptions(
        retain_uids=dest.deid_retain_uids,
        uid_secret=secret.get_secret_value().encode() if secret is not None else None)


def _deidentified(files: list[_File], options: DeidOptions,
                  folder: Path) -> tuple[list[_File], list[Sent]]:
    """De-identified copies of `files` under `folder` (dicom_node.deid), each with its new SOP
    Instance UID; a file that cannot be de-identified fails for good (it is never sent as it
    is)."""
    copies: list[_File] = []
    failed: list[Sent] = []
    for n, f in enumerate(files):
        try:
            ds = deidentify(dcmread(f.path), options)
            path = folder / f"{n}.dcm"
            ds.save_as(path, enforce_file_format=True)
        except (OSError, InvalidDicomError, AttributeError, ValueError, TypeError, KeyError):
            failed.append(Sent(f.item.id, Failure(
                True, "deidentify_failed", "the output could not be de-identified")))
            continue
        copies.append(_File(f.item, path, str(ds.SOPInstanceUID)))
    return copies, failed


def _failure(exc: _DeliveryError) -> Failure:
    return failure_from(exc, permanent=isinstance(exc, DeliveryPermanentError),
                        code=dimse_code(exc))


class CStoreAdapter:
    """C-STORE SCU to one PACS; the statuses come back per instance through `on_progress`."""

    def __init__(self, dest: DicomDestination) -> None:
        self._scu = StorageSCU(StoreDestination(
            host=dest.host, port=dest.port, called_ae=dest.called_ae,
            calling_ae=dest.calling_ae, connect_timeout_s=dest.connect_timeout_s,
            acse_timeout_s=min(30.0, dest.timeout_s), dimse_timeout_s=dest.timeout_s,
            network_timeout_s=dest.timeout_s,
            tls=ClientTls(dest.tls.ca_file, dest.tls.cert_file, dest.tls.key_file)
            if dest.tls else None))
        self._deid = deid_options(dest)

    def send(self, items: Sequence[DueDelivery]) -> list[Sent]:
        files, results = _readable(items)
        if not files:
            return results
        if self._deid is None:
            return results + self._store(files)
        with TemporaryDirectory(prefix="infernode-deid-") as folder:
            files, refused = _deidentified(files, self._deid, Path(folder))
            return results + refused + (self._store(files) if files else [])

    def _store(self, files: list[_File]) -> list[Sent]:
        results: list[Sent] = []
        statuses: dict[str, int] = {}
        batch_error: _DeliveryError | None = None
        try:
            self._scu.send([f.path for f in files],
                           on_progress=lambda uid, status: statuses.__setitem__(uid, status))
        except (DeliveryTransientError, DeliveryPermanentError) as exc:
            batch_error = exc
        for f in files:
            results.append(Sent(f.item.id, self._outcome(f, statuses, batch_error)))
        return results

    @staticmethod
    def _outcome(f: _File, statuses: dict[str, int],
                 batch_error: _DeliveryError | None) -> Failure | None:
        status = statuses.get(f.sop_instance_uid)
        if status is not None and status >= 0:
            if is_success(status):
                return None
            error = error_for_status(status, f.sop_instance_uid)
            if error is not None:
                return _failure(error)
        if batch_error is None:
            return Failure(False, "transient", "no C-STORE response for this instance")
        named = batch_error.sop_instance_uid
        if isinstance(batch_error, DeliveryPermanentError) and named not in (
                None, f.sop_instance_uid):
            # another instance was refused; this one was not attempted
            return Failure(False, "transient", "not sent: another instance of the batch failed")
        return _failure(batch_error)

    def close(self) -> None:
        """Nothing held between batches: one association per batch."""


class StowAdapter:
    """STOW-RS to one DICOMweb service. A permanent failure that names an instance
    dead-letters that instance and sends the rest again, in the same pass."""

    def __init__(self, dest: StowDestination) -> None:
        token = dest.token.get_secret_value() if dest.token is not None else None
        self._dest = StowTarget(dest.base_url, token, dest.timeout_s)
        self._deid = deid_options(dest)

    def send(self, items: Sequence[DueDelivery]) -> list[Sent]:
        files, results = _readable(items)
        if self._deid is None or not files:
            return results + self._store(files)
        with TemporaryDirectory(prefix="infernode-deid-") as folder:
            files, refused = _deidentified(files, self._deid, Path(folder))
            return results + refused + self._store(files)

    def _store(self, files: list[_File]) -> list[Sent]:
        results: list[Sent] = []
        while files:
            try:
                report = stow(self._dest, [f.path for f in files])
            except (DeliveryTransientError, DeliveryPermanentError) as exc:
                refused = [f for f in files if f.sop_instance_uid == exc.sop_instance_uid]
                if isinstance(exc, DeliveryPermanentError) and refused and len(files) > 1:
                    results.append(Sent(refused[0].item.id, _failure(exc)))
                    files = [f for f in files if f is not refused[0]]
                    continue
                results.extend(Sent(f.item.id, _failure(exc)) for f in files)
                return results
            for f in files:
                confirmed = not report.stored or f.sop_instance_uid in report.stored
                results.append(Sent(f.item.id, None if confirmed else Failure(
                    False, "transient", "instance missing from the STOW-RS response")))
            return results
        return results

    def close(self) -> None:
        """Nothing held: one request per batch."""
