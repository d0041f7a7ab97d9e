"""Domain errors of the DICOM side. Handlers raise these; one wrapper maps them to statuses.

`TransientError` and `PermanentError` are the two kinds every sender/receiver failure falls into:
a transient one is retried with backoff, a permanent one fails fast with its reason recorded.
Messages never contain PHI: UIDs and reasons only.
"""

from __future__ import annotations

from common import errors as common_errors
from common.errors import NodeError
from dicom_node.status import Status


class DicomNodeError(NodeError):
    """Base class of every error raised by dicom_node."""


class TransientError(DicomNodeError, common_errors.TransientError):
    """May succeed later without any change (peer down, disk full, lock timeout)."""


class PermanentError(DicomNodeError, common_errors.PermanentError):
    """Will fail again the same way (bad input, refused by the peer)."""


class StoreRefused(DicomNodeError):
    """A C-STORE that must not be acknowledged; carries the DIMSE status to return."""

    status: Status = Status.PROCESSING_FAILURE
    reason_code: str = "processing_failure"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OutOfResources(StoreRefused, TransientError):
    """Spool under its free-space watermark, or the write itself failed."""

    status = Status.OUT_OF_RESOURCES
    reason_code = "out_of_resources"


class CannotUnderstand(StoreRefused, PermanentError):
    """The data set cannot be parsed far enough to read the identifiers the index needs."""

    status = Status.CANNOT_UNDERSTAND
    reason_code = "cannot_understand"


class DatasetMismatch(StoreRefused, PermanentError):
    """The data set contradicts the command (SOP Class/Instance UID differ)."""

    status = Status.DATASET_DOES_NOT_MATCH_SOP_CLASS
    reason_code = "dataset_mismatch"


class InvalidUID(CannotUnderstand):
    """A UID that is not a valid DICOM UID (PS3.5 9.1); never used as a path."""

    reason_code = "invalid_uid"


class TruncatedDataSet(CannotUnderstand):
    """An element's declared length runs past the end of the received bytes (PS3.5 7.1): a
    transfer cut short, or a false length such as a huge Pixel Data length."""

    reason_code = "truncated"


class MalformedDataSet(CannotUnderstand):
    """The data set's encoding breaks PS3.5 (unknown VR, broken items or delimiters, nesting
    too deep, File Meta elements inside the data set, a deflate stream that cannot be inflated)."""

    reason_code = "malformed"


class PixelDataTooShort(CannotUnderstand):
    """Native Pixel Data shorter than Rows x Columns x Samples x Bits Allocated / 8 x Frames
    (PS3.5 8.1.1), or pixel attributes missing where Pixel Data is present."""

    reason_code = "pixel_data_length"


class DeletedWhileStored(StoreRefused, TransientError):
    """Retention deleted the instance's study each time the instance was being indexed (it
    was counted as indexed, then its row was gone); refused so that the sender sends it again,
    with the received copy kept aside."""

    reason_code = "deleted_while_stored"


class IndexWriteFailed(StoreRefused, TransientError):
    """The bytes were written but the index row could not be committed; the file was moved to
    the rejected folder so that nothing unindexed stays in the spool."""

    reason_code = "index_write_failed"
