"""Storage SOP Class SCP (C-STORE, PS3.4 Annex B).

A thin adapter from pynetdicom's EVT_C_STORE to the shared receive path (`dicom_node.ingest`):
the status is Success only once the instance is fsynced and indexed; a refusal answers the status
its error carries; no exception escapes into pynetdicom.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import cast

from pynetdicom import evt
from pynetdicom.dimse_primitives import C_STORE

from dicom_node.errors import StoreRefused
from dicom_node.events import InstanceStored
from dicom_node.ingest import Arrival, Ingestor
from dicom_node.status import Status

log = logging.getLogger(__name__)


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

    def handle_store(self, event: evt.Event) -> int:
        """The EVT_C_STORE handler: returns a `Status`, never raises."""
        request = cast(C_STORE, event.request)
        calling_ae = str(event.assoc.requestor.ae_title).strip()
        info = event.assoc.requestor.address_info
        peer_address = info.address if info is not None else None

        def arrival() -> Arrival:
            return Arrival(
                raw=event.encoded_dataset(include_meta=True),
                sop_class_uid=str(request.AffectedSOPClassUID),
                sop_instance_uid=str(request.AffectedSOPInstanceUID),
                transfer_syntax_uid=str(event.context.transfer_syntax),
                calling_ae=calling_ae,
                called_ae=str(event.assoc.acceptor.ae_title).strip(),
                peer_address=peer_address,
            )

        try:
            stored = self.ingestor.ingest(
                arrival,
                calling_ae=calling_ae,
                peer_address=peer_address,
                sop_class_uid=_text(request.AffectedSOPClassUID),
                sop_instance_uid=_text(request.AffectedSOPInstanceUID),
            )
        except StoreRefused as exc:
            return int(exc.status)
        except Exception:  # noqa: BLE001 - the handler must answer, whatever happened
            log.exception("C-STORE handler failed outside the receive path")
            return int(Status.PROCESSING_FAILURE)
        if self.on_stored is not None:
            self.on_stored(stored)
        return int(Status.SUCCESS)


def _text(value: object) -> str | None:
    return str(value) if value is not None else None
