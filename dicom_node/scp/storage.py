"""Storage SOP Class SCP (C-STORE, PS3.4 Annex B).

`StorageSCP.store` is the protocol-independent step from a received C-STORE (its command's UIDs,
the presentation context, who sent it, the data set's bytes as received) to the shared receive
path (`dicom_node.ingest`) and back to a status: Success only once the instance is validated,
fsynced and indexed; a refusal answers the status its error carries with a short Error Comment
(0000,0902) (PS3.7 C.4, no PHI); a conflicting duplicate answers a warning; it never raises.
Both upper layers call it: the node's own (`scp.upper`) and pynetdicom's, through
`handle_store` (EVT_C_STORE).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from io import BytesIO
from typing import cast

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.dimse_primitives import C_STORE

from dicom_node.events import InstanceStored
from dicom_node.ingest import Arrival, Ingestor, refusal_for
from dicom_node.spool import SlotWriter
from dicom_node.status import Status

log = logging.getLogger(__name__)

ERROR_COMMENT_MAX = 64
"""Error Comment is LO: at most 64 characters (PS3.5 6.2)."""


def error_comment(comment: str) -> str:
    """`comment` as an Error Comment value (LO): no backslash (the value delimiter), at most
    ERROR_COMMENT_MAX characters."""
    return comment.replace("\\", "/")[:ERROR_COMMENT_MAX]


def status_dataset(status: Status, comment: str | None = None) -> Dataset:
    """The response status pynetdicom sends: Status and, when given, Error Comment."""
    ds = Dataset()
    ds.Status = int(status)
    if comment:
        ds.ErrorComment = error_comment(comment)
    return ds


IMPLEMENTATION_CLASS_UID = "2.25.171235382202997465970520103604912083308"
"""The node's Implementation Class UID (PS3.7 D.3.3.2): announced in A-ASSOCIATE-AC by its own
upper layer and written in the File Meta of every spool file (0002,0012)."""
IMPLEMENTATION_VERSION_NAME = "INFERNODE_1"
"""Its Implementation Version Name (SH, at most 16 characters; the receive path's revision)."""


@dataclass(frozen=True)
class StoreRequest:
    """A received C-STORE as the upper layer saw it: the command's UIDs (None when missing),
    the accepted presentation context it came on, who sent it, and the data set's bytes exactly
    as received, in one or more pieces (PDV fragments need not be joined first)."""

    sop_class_uid: str | None
    sop_instance_uid: str | None
    transfer_syntax_uid: str
    context_sop_class_uid: str
    calling_ae: str
    called_ae: str
    peer_address: str | None
    dataset: Sequence[bytes | bytearray | memoryview]
    slot: SlotWriter | None = None
    """Where the data set was streamed instead (`StorageSCP.open_slot`; `dataset` is then
    empty)."""


class StorageSCP:
    """Stores received instances with an `Ingestor`."""

    def __init__(
        self,
        ingestor: Ingestor,
        *,
        on_stored: Callable[[InstanceStored], None] | None = None,
    ) -> None:
        self.ingestor = ingestor
        self.on_stored = on_stored

    def store(self, request: StoreRequest) -> tuple[Status, str | None]:
        """The status (and Error Comment, or None) to answer `request` with; never raises.
        `on_stored` is called on the caller's thread before the status is returned."""
        slot = request.slot

        def arrival() -> Arrival:
            return Arrival(
                raw=slot.mapped() if slot is not None else file_bytes(request),
                slot=slot,
                sop_class_uid=str(request.sop_class_uid),
                sop_instance_uid=str(request.sop_instance_uid),
                transfer_syntax_uid=request.transfer_syntax_uid,
                calling_ae=request.calling_ae,
                called_ae=request.called_ae,
                peer_address=request.peer_address,
                context_sop_class_uid=request.context_sop_class_uid,
            )

        try:
            accepted = self.ingestor.ingest(
                arrival,
                calling_ae=request.calling_ae,
                peer_address=request.peer_address,
                sop_class_uid=request.sop_class_uid,
                sop_instance_uid=request.sop_instance_uid,
            )
        except Exception as exc:  # noqa: BLE001 - the SCP must answer, whatever happened
            refused = refusal_for(exc)
            return refused.status, refused.reason
        finally:
            if slot is not None:
                slot.close()
        if self.on_stored is not None:
            self.on_stored(accepted.stored)
        return accepted.status, accepted.comment

    def handle_store(self, event: evt.Event) -> Dataset:
        """pynetdicom's EVT_C_STORE handler: returns the status data set, never raises."""
        request = cast(C_STORE, event.request)
        info = event.assoc.requestor.address_info
        status, comment = self.store(StoreRequest(
            sop_class_uid=_text(request.AffectedSOPClassUID),
            sop_instance_uid=_text(request.AffectedSOPInstanceUID),
            transfer_syntax_uid=str(event.context.transfer_syntax),
            context_sop_class_uid=str(event.context.abstract_syntax),
            calling_ae=str(event.assoc.requestor.ae_title).strip(),
            called_ae=str(event.assoc.acceptor.ae_title).strip(),
            peer_address=info.address if info is not None else None,
            dataset=(cast(BytesIO, request.DataSet).getbuffer(),),
        ))
        return status_dataset(status, comment)

    def open_slot(self, request: StoreRequest) -> SlotWriter:
        """A spool slot to stream the data set of `request` (a C-STORE whose command has
        arrived) into, its preamble and File Meta written already (`file_head`); the caller
        writes the data set's fragments as they arrive and passes the slot with the request to
        `store`, which closes it. Never raises (`Spool.open_slot`)."""
        slot = self.ingestor.spool.open_slot()
        slot.write(file_head(request))
        return slot


def file_bytes(request: StoreRequest) -> bytes:
    """The received data set as a DICOM file (PS3.10 7.1): `file_head`, then the data set
    bytes exactly as received (never decoded here), joined in one copy."""
    return b"".join((file_head(request), *request.dataset))


def file_head(request: StoreRequest) -> bytes:
    """The preamble and File Meta Information of a received data set's file, with the Sending
    and Receiving AE Titles (0002,0017/0018), so that start-up recovery can index a spool file
    whose index row was lost with the sender it came from."""
    meta = file_meta_bytes((
        (0x0002, "UI", request.sop_class_uid or ""),
        (0x0003, "UI", request.sop_instance_uid or ""),
        (0x0010, "UI", request.transfer_syntax_uid),
        (0x0012, "UI", IMPLEMENTATION_CLASS_UID),
        (0x0013, "SH", IMPLEMENTATION_VERSION_NAME),
        (0x0017, "AE", request.calling_ae),
        (0x0018, "AE", request.called_ae),
    ))
    return _PREAMBLE + meta


_PREAMBLE = b"\x00" * 128 + b"DICM"


def file_meta_bytes(elements: Sequence[tuple[int, str, str]]) -> bytes:
    """File Meta Information (group 0002, Explicit VR Little Endian, PS3.10 7.1) from
    (element, VR, value) of short-VR text elements, with the Group Length and Version first.
    Written directly rather than through pydicom's writer: it runs once per received instance,
    and the pydicom route cost about 0.4 ms each. Empty values are left out (the elements
    written here are Type 1 or optional); UIDs are padded with NUL, text with a space (PS3.5
    6.2)."""
    body = [b"\x02\x00\x01\x00OB\x00\x00\x02\x00\x00\x00\x00\x01"]
    for element, vr, value in elements:
        data = value.encode("ascii", "replace")
        if not data:
            continue
        if len(data) % 2:
            data += b"\x00" if vr == "UI" else b" "
        body.append(_ELEMENT.pack(2, element, vr.encode(), len(data)) + data)
    group = b"".join(body)
    return _ELEMENT.pack(2, 0, b"UL", 4) + _UL.pack(len(group)) + group


_ELEMENT = struct.Struct("<HH2sH")
_UL = struct.Struct("<L")


def _text(value: object) -> str | None:
    return str(value) if value is not None else None
