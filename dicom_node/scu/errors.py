"""Delivery failures of the SCU and DICOMweb clients, split into transient and permanent.

One function, `error_for_status`, decides which kind a DIMSE status (PS3.4 B.2.3, PS3.7 C) or a
STOW-RS failure reason (PS3.18 10.5.3) is: out of resources and resource limitation are worth a
retry later; a data set the peer cannot understand or a SOP class it does not support fails the
same way every time. Messages carry UIDs and status codes only.
"""

from __future__ import annotations

from enum import IntEnum

from dicom_node.errors import PermanentError, TransientError


class StoreStatus(IntEnum):
    """C-STORE response statuses a sender meets (PS3.4 B.2.3, PS3.7 C.4)."""

    SUCCESS = 0x0000
    WARNING_COERCION = 0xB000
    WARNING_ELEMENTS_DISCARDED = 0xB006
    WARNING_DATASET_MISMATCH = 0xB007
    PROCESSING_FAILURE = 0x0110
    DUPLICATE_SOP_INSTANCE = 0x0111
    SOP_CLASS_NOT_SUPPORTED = 0x0122
    NOT_AUTHORIZED = 0x0124
    RESOURCE_LIMITATION = 0x0213
    OUT_OF_RESOURCES = 0xA700
    DATASET_MISMATCH = 0xA900
    CANNOT_UNDERSTAND = 0xC000
    CANCEL = 0xFE00


_RANGE_MASK = 0xFF00
_WARNINGS = {0xB000, 0xB006, 0xB007}
# Failures the same request may survive later; everything else unknown is permanent.
_TRANSIENT = {StoreStatus.PROCESSING_FAILURE, StoreStatus.RESOURCE_LIMITATION, StoreStatus.CANCEL}


class _DeliveryFailure(Exception):
    """What every delivery failure carries: a reason without PHI, the DIMSE status when the
    peer gave one, and the instance it concerns."""

    def __init__(
        self, reason: str, *, status: int | None = None, sop_instance_uid: str | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.sop_instance_uid = sop_instance_uid


class DeliveryTransientError(_DeliveryFailure, TransientError):
    """The peer was unreachable, busy or out of resources: retry later."""


class DeliveryPermanentError(_DeliveryFailure, PermanentError):
    """The peer refused what was sent, and will refuse it again: do not retry unchanged."""


def is_success(status: int) -> bool:
    """Success or warning (stored, possibly coerced)."""
    return status == StoreStatus.SUCCESS or status in _WARNINGS


def error_for_status(
    status: int, sop_instance_uid: str | None
) -> DeliveryTransientError | DeliveryPermanentError | None:
    """None for success/warning; otherwise the error of the right kind for `status`."""
    if is_success(status):
        return None
    reason = f"peer returned status 0x{status:04X}"
    if status & _RANGE_MASK == StoreStatus.OUT_OF_RESOURCES or status in _TRANSIENT:
        return DeliveryTransientError(reason, status=status, sop_instance_uid=sop_instance_uid)
    return DeliveryPermanentError(reason, status=status, sop_instance_uid=sop_instance_uid)
