"""Storage SOP Class SCP (C-STORE, PS3.4 Annex B).

A thin adapter from pynetdicom's EVT_C_STORE to the shared receive path (`dicom_node.ingest`):
the status is Success only once the instance is validated, fsynced and indexed; a refusal answers
the status its error carries with a short Error Comment (0000,0902) (PS3.7 C.4, no PHI); a
conflicting duplicate answers a warning; no exception escapes into pynetdicom.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from io import BytesIO
from typing import cast

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import encode_file_meta

from dicom_node.events import InstanceStored
from dicom_node.ingest import Arrival, Ingestor, refusal_for
from dicom_node.status import Status

log = logging.getLogger(__name__)

ERROR_COMMENT_MAX = 64
"""Error Comment is LO: at most 64 characters (PS3.5 6.2)."""


def status_dataset(status: Status, comment: str | None = None) -> Dataset:
    """The response status pynetdicom sends: Status and, when given, Error Comment."""
    ds = Dataset()
    ds.Status = int(status)
    if comment:
        ds.ErrorComment = comment.replace("\\", "/")[:ERROR_COMMENT_MAX]
    return ds


class StorageSCP:
    """Handles EVT_C_STORE with an `Ingestor`."""

    def __init__(
        self,
        ingestor: Ingestor,
        *,
        on_stored: Callable[[InstanceStored], None] | None = None,
    ) -> None:
        self.ingestor = ingestor
        self.on_stored = on_stored

    def handle_store(self, event: evt.Event) -> Dataset:
        """The EVT_C_STORE handler: returns the status data set, never raises."""
        request = cast(C_STORE, event.request)
        calling_ae = str(event.assoc.requestor.ae_title).strip()
        called_ae = str(event.assoc.acceptor.ae_title).strip()
        info = event.assoc.requestor.address_info
        peer_address = info.address if info is not None else None

        def arrival() -> Arrival:
            return Arrival(
                raw=file_bytes(event, calling_ae, called_ae),
                sop_class_uid=str(request.AffectedSOPClassUID),
                sop_instance_uid=str(request.AffectedSOPInstanceUID),
                transfer_syntax_uid=str(event.context.transfer_syntax),
                calling_ae=calling_ae,
                called_ae=called_ae,
                peer_address=peer_address,
                context_sop_class_uid=str(event.context.abstract_syntax),
            )

        try:
            accepted = self.ingestor.ingest(
                arrival,
                calling_ae=calling_ae,
                peer_address=peer_address,
                sop_class_uid=_text(request.AffectedSOPClassUID),
                sop_instance_uid=_text(request.AffectedSOPInstanceUID),
            )
        except Exception as exc:  # noqa: BLE001 - the handler must answer, whatever happened
            refused = refusal_for(exc)
            return status_dataset(refused.status, refused.reason)
        if self.on_stored is not None:
            self.on_stored(accepted.stored)
        return status_dataset(accepted.status, accepted.comment)


def file_bytes(event: evt.Event, calling_ae: str, called_ae: str) -> bytes:
    """The received data set as a DICOM file (PS3.10 7.1): preamble, File Meta Information with
    the Sending and Receiving AE Titles (0002,0017/0018), so that start-up recovery can index a
    spool file whose index row was lost with the sender it came from, then the data set bytes
    exactly as received (never decoded here)."""
    meta = event.file_meta
    if calling_ae:
        meta.SendingApplicationEntityTitle = calling_ae
    if called_ae:
        meta.ReceivingApplicationEntityTitle = called_ae
    stream = cast(BytesIO, cast(C_STORE, event.request).DataSet).getvalue()
    return b"".join((b"\x00" * 128, b"DICM", encode_file_meta(meta), stream))


def _text(value: object) -> str | None:
    return str(value) if value is not None else None
