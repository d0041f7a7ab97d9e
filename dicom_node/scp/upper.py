"""The node's own DICOM upper layer for its listener: the acceptor side of PS3.8, for C-ECHO and
C-STORE only, written for the receive path's speed.

One thread per association reads whole PDUs from the socket with blocking reads, parses the PDV
items of each P-DATA-TF itself, decodes the small DIMSE command sets (group 0000, Implicit VR
Little Endian) by hand, hands a C-STORE's data-set fragments, as received and never decoded, to
`StorageSCP.store` and writes the response itself. Association PDUs (A-ASSOCIATE-RQ/-AC) are
decoded and encoded with pynetdicom's PDU classes and presentation contexts negotiated with its
`negotiate_as_acceptor`; the node's bounds are the same as on pynetdicom's layer (`scp.guard`,
`scp.access`): address check at accept, pending pool, ARTIM, access policy, association limit,
negotiated maximum PDU length, whole-PDU deadline, idle timeout.

States (PS3.8 9.2): Sta2 (transport open, ARTIM running) -> Sta3/Sta6 (A-ASSOCIATE-RQ decoded,
-AC or -RJ sent at once) -> Sta6 (data transfer) -> close, after A-RELEASE-RP (Sta13 is not
kept: the node closes the transport itself right after its A-RELEASE-RP, as pynetdicom does) or
A-ABORT either way. Not implemented: asynchronous operations (the item is answered with nothing,
i.e. the default window 1/1, so a peer never has two operations outstanding), the release
collision states (the node never requests a release), extended negotiation and user identity
(ignored, which PS3.7 D.3.3 allows).
"""

from __future__ import annotations

import logging
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pydicom.uid import UID
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
    SCP_SCU_RoleSelectionNegotiation,
)
from pynetdicom.presentation import PresentationContext, negotiate_as_acceptor

from dicom_node.config import DicomNodeConfig
from dicom_node.scp.access import (
    AccessPolicy,
    AssociationEvent,
    AssociationObserver,
    RejectReason,
    RejectResult,
    RejectSource,
)
from dicom_node.scp.guard import MAX_ASSOCIATION_PDU, ConnectionGuard
from dicom_node.scp.storage import (
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    StorageSCP,
    StoreRequest,
    error_comment,
)
from dicom_node.status import Status

log = logging.getLogger(__name__)

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
MAX_COMMAND_BYTES = 65536
"""Largest command set read (a C-STORE-RQ is about 200 bytes): a longer one is aborted."""
ABORT_SEND_TIMEOUT_S = 1.0

# PDU types (PS3.8 9.3.1)
_ASSOCIATE_RQ, _ASSOCIATE_AC, _ASSOCIATE_RJ = 0x01, 0x02, 0x03
_P_DATA_TF, _RELEASE_RQ, _RELEASE_RP, _ABORT = 0x04, 0x05, 0x06, 0x07
_PDU_HEADER = struct.Struct(">BxL")
_PDV_HEADER = struct.Struct(">LBB")
_PDV_OVERHEAD = 6
"""PDV item length (4) + context ID + message control header: a P-DATA-TF may exceed the
announced maximum by that much (PS3.8 9.3.5, D.1)."""
_RELEASE_RP_PDU = bytes((_RELEASE_RP, 0, 0, 0, 0, 4, 0, 0, 0, 0))

# A-ABORT source and reason (PS3.8 9.3.8)
ABORT_SERVICE_USER, ABORT_SERVICE_PROVIDER = 0x00, 0x02
REASON_NOT_SPECIFIED, REASON_UNRECOGNIZED_PDU, REASON_UNEXPECTED_PDU = 0x00, 0x01, 0x02
REASON_INVALID_PARAMETER = 0x06

# DIMSE (PS3.7 E.1): command fields, Command Data Set Type "no data set", elements of group 0000
C_STORE_RQ, C_ECHO_RQ, C_CANCEL_RQ = 0x0001, 0x0030, 0x0FFF
OTHER_REQUESTS = frozenset((0x0010, 0x0020, 0x0021, 0x0100, 0x0110, 0x0120, 0x0130, 0x0140,
                            0x0150))
"""C-GET, C-FIND, C-MOVE and the N- requests: answered 0x0211 Unrecognized Operation."""
NO_DATA_SET = 0x0101
UNRECOGNIZED_OPERATION = 0x0211
_AFFECTED_SOP_CLASS, _REQUESTED_SOP_CLASS = 0x0002, 0x0003
_COMMAND_FIELD, _MESSAGE_ID, _MESSAGE_ID_RESPONDED = 0x0100, 0x0110, 0x0120
_DATA_SET_TYPE, _STATUS, _ERROR_COMMENT, _AFFECTED_SOP_INSTANCE = 0x0800, 0x0900, 0x0902, 0x1000
_ELEMENT = struct.Struct("<HHL")
_US = struct.Struct("<H")


class ProtocolError(Exception):
    """The peer broke PS3.8 or a bound: the association is aborted (no PHI in the message)."""

    def __init__(self, message: str, reason: int = REASON_INVALID_PARAMETER) -> None:
        super().__init__(message)
        self.reason = reason


class _Closed(Exception):
    """The transport closed (or failed) under a read."""


# ------------------------------------------------------------------ DIMSE command sets


def decode_command(data: bytes | bytearray | memoryview) -> dict[int, bytes]:
    """The elements of a command set (group 0000, Implicit VR Little Endian, PS3.7 6.3.1) by
    element number, values as bytes; raises ProtocolError on a malformed set."""
    elements: dict[int, bytes] = {}
    view = memoryview(data)
    offset, end = 0, len(view)
    while offset < end:
        if end - offset < 8:
            raise ProtocolError("truncated command element")
        group, element, length = _ELEMENT.unpack_from(view, offset)
        offset += 8
        if group != 0 or length > end - offset:
            raise ProtocolError("malformed command set")
        elements[element] = bytes(view[offset:offset + length])
        offset += length
    return elements


def command_us(command: dict[int, bytes], element: int) -> int | None:
    value = command.get(element)
    return _US.unpack(value[:2])[0] if value is not None and len(value) >= 2 else None


def command_uid(command: dict[int, bytes], element: int) -> str | None:
    value = command.get(element)
    if value is None:
        return None
    return value.rstrip(b"\x00 ").decode("ascii", "replace") or None


def encode_command(elements: Iterable[tuple[int, bytes]]) -> bytes:
    """A command set from (element, value) pairs in ascending element order, with its Command
    Group Length first."""
    body = b"".join(_ELEMENT.pack(0, element, len(value)) + value for element, value in elements)
    return _ELEMENT.pack(0, 0, 4) + struct.pack("<L", len(body)) + body


def _ui(value: str) -> bytes:
    data = value.encode("ascii", "replace")
    return data + b"\x00" if len(data) % 2 else data


def response_command(command_field: int, message_id: int, status: int, *,
                     sop_class_uid: str | None = None, sop_instance_uid: str | None = None,
                     comment: str | None = None) -> bytes:
    """A DIMSE response command set (PS3.7 9.3, 10.3): Affected SOP Class UID when given,
    Command Field, Message ID Being Responded To, Command Data Set Type (none), Status, Error
    Comment when given (LO: at most 64 characters, no backslash), Affected SOP Instance UID when
    given."""
    elements: list[tuple[int, bytes]] = []
    if sop_class_uid:
        elements.append((_AFFECTED_SOP_CLASS, _ui(sop_class_uid)))
    elements += [(_COMMAND_FIELD, _US.pack(command_field)),
                 (_MESSAGE_ID_RESPONDED, _US.pack(message_id & 0xFFFF)),
                 (_DATA_SET_TYPE, _US.pack(NO_DATA_SET)),
                 (_STATUS, _US.pack(status & 0xFFFF))]
    if comment:
        text = error_comment(comment).encode("ascii", "replace")
        elements.append((_ERROR_COMMENT, text + b" " if len(text) % 2 else text))
    if sop_instance_uid:
        elements.append((_AFFECTED_SOP_INSTANCE, _ui(sop_instance_uid)))
    return encode_command(elements)


def p_data_pdus(context_id: int, payload: bytes, *, command: bool, max_pdu: int) -> bytes:
    """P-DATA-TF PDUs carrying `payload` as one message part (command or data set), one PDV per
    PDU, each PDU within the peer's maximum length `max_pdu` (0: no limit)."""
    chunk = max(1, max_pdu - _PDV_OVERHEAD) if max_pdu else max(1, len(payload))
    out: list[bytes] = []
    for start in range(0, max(1, len(payload)), chunk):
        part = payload[start:start + chunk]
        last = start + chunk >= len(payload)
        control = (0x01 if command else 0x00) | (0x02 if last else 0x00)
        out.append(_PDU_HEADER.pack(_P_DATA_TF, len(part) + _PDV_OVERHEAD)
                   + _PDV_HEADER.pack(len(part) + 2, context_id, control) + part)
    return b"".join(out)


def abort_pdu(source: int, reason: int) -> bytes:
    return bytes((_ABORT, 0, 0, 0, 0, 4, 0, 0, source, reason))


def reject_pdu(result: int, source: int, reason: int) -> bytes:
    return bytes((_ASSOCIATE_RJ, 0, 0, 0, 0, 4, 0, result, source, reason))


# ------------------------------------------------------------------ one association


@dataclass(frozen=True)
class AddressInfo:
    address: str
    port: int


@dataclass
class Requestor:
    """The peer as the audit trail looks for it on the association's thread (`requestor`)."""

    ae_title: str
    address_info: AddressInfo


@dataclass
class _Message:
    """A DIMSE message being received on one presentation context. A C-STORE's data set goes
    to a spool slot fragment by fragment as it arrives (`store`); another request's data set is
    counted and dropped (it is answered without being read)."""

    context_id: int
    command_parts: list[memoryview]
    command_size: int = 0
    command: dict[int, bytes] | None = None
    store: StoreRequest | None = None
    data_size: int = 0


class NativeAssociation(threading.Thread):
    """One accepted connection, on its own thread, from transport open to close."""

    def __init__(self, server: NativeServer, sock: socket.socket, address: tuple[Any, ...]
                 ) -> None:
        super().__init__(name="dicom-association", daemon=True)
        self.server = server
        self.config = server.config
        self.sock: socket.socket = sock
        self.requestor = Requestor("", AddressInfo(str(address[0]), int(address[1])))
        self.called_ae = ""
        self.established = False
        self.peer_max_pdu = 0
        self.contexts: dict[int, PresentationContext] = {}
        self._send_lock = threading.Lock()
        self._closing = False
        self._header = bytearray(6)
        self._message: _Message | None = None

    # -- what the server and observers see

    @property
    def address(self) -> str:
        return self.requestor.address_info.address

    def event(self, kind: str, reason: str | None = None, calling: str | None = None,
              called: str | None = None) -> AssociationEvent:
        return AssociationEvent(
            kind=kind, association=id(self),
            calling_ae=(self.requestor.ae_title if calling is None else calling).strip(),
            called_ae=(self.called_ae if called is None else called).strip(),
            address=self.address, reason=reason)

    def abort(self) -> None:
        """From another thread (the listener's stop): sends an A-ABORT (service-user) and
        closes the transport; the association's thread ends on its next read. When the
        association's own thread is stuck sending (a peer that does not read), the A-ABORT is
        left out and the transport closed all the same."""
        self._closing = True
        self._send_abort(ABORT_SERVICE_USER, REASON_NOT_SPECIFIED, wait_s=ABORT_SEND_TIMEOUT_S)
        _shutdown(self.sock)

    # -- the thread

    def run(self) -> None:
        server = self.server
        ending = "closed"
        try:
            self._serve()
        except ProtocolError as exc:
            log.info("association from %s aborted: %s", self.address, exc)
            self._send_abort(ABORT_SERVICE_PROVIDER, exc.reason)
            ending = "aborted"
        except _Closed:
            ending = "aborted"
        except Exception as exc:  # noqa: BLE001 - the association ends, the listener goes on
            log.error("association from %s failed: %s", self.address, type(exc).__name__)
            self._send_abort(ABORT_SERVICE_PROVIDER, REASON_NOT_SPECIFIED)
            ending = "aborted"
        finally:
            self._drop_message()  # cut mid data set: its slot is removed
            server.guard.settle(self)
            _shutdown(self.sock)
            self.sock.close()
            was_established = server.ended(self)
            if was_established and ending == "aborted":
                server.notify(self.event("aborted"))
            server.notify(self.event("closed"))

    def _serve(self) -> None:
        cfg = self.config
        artim_deadline = time.monotonic() + cfg.artim_s
        if self.server.ssl_context is not None:
            self._handshake(artim_deadline)
        # Sta2: only an A-ASSOCIATE-RQ is expected, whole before ARTIM expires.
        pdu_type, body = self._read_pdu(artim_deadline, artim_deadline)
        if pdu_type == _ABORT:
            raise _Closed
        if pdu_type != _ASSOCIATE_RQ:
            raise ProtocolError("expected A-ASSOCIATE-RQ", REASON_UNEXPECTED_PDU)
        self.server.guard.settle(self)  # the request came: no longer pending
        if not self._associate(body):
            return
        self._transfer()

    def _handshake(self, deadline: float) -> None:
        context = self.server.ssl_context
        assert context is not None
        tls = context.wrap_socket(self.sock, server_side=True, do_handshake_on_connect=False)
        self.sock = tls
        tls.settimeout(max(0.001, deadline - time.monotonic()))
        try:
            tls.do_handshake()
        except (OSError, ssl.SSLError) as exc:
            raise _Closed from exc

    # -- association establishment

    def _associate(self, body: bytearray) -> bool:
        """Answers the A-ASSOCIATE-RQ with -AC or -RJ; True when accepted."""
        server, cfg = self.server, self.config
        pdu = A_ASSOCIATE_RQ()
        try:
            pdu.decode(bytes(self._header) + bytes(body))
            request: A_ASSOCIATE = pdu.to_primitive()
        except Exception as exc:  # noqa: BLE001 - whatever pynetdicom raises on bad input
            raise ProtocolError(f"undecodable A-ASSOCIATE-RQ ({type(exc).__name__})") from exc
        calling, called = str(request.calling_ae_title), str(request.called_ae_title)
        if not (int(pdu.protocol_version or 0) & 0x01):
            # ACSE-related (source 2), protocol-version-not-supported (2)
            self._reject(calling, called, RejectResult.PERMANENT, 0x02, 0x02, "protocol_version")
            return False
        if str(request.application_context_name) != APPLICATION_CONTEXT:
            self._reject(calling, called, RejectResult.PERMANENT, RejectSource.SERVICE_USER,
                         0x02, "application_context")
            return False
        refusal = server.policy.check(calling, called, self.address)
        if refusal is not None:
            self._reject(calling, called, RejectResult.PERMANENT, RejectSource.SERVICE_USER,
                         refusal.reason, refusal.label)
            return False
        roles: dict[UID, tuple[bool | None, bool | None]] = {}
        for item in request.user_information:
            if isinstance(item, MaximumLengthNotification):
                self.peer_max_pdu = item.maximum_length_received or 0
            elif isinstance(item, SCP_SCU_RoleSelectionNegotiation) and item.sop_class_uid:
                roles[UID(item.sop_class_uid)] = (item.scu_role, item.scp_role)
        try:
            results, role_items = negotiate_as_acceptor(
                request.presentation_context_definition_list, server.supported_contexts,
                roles or None)
        except Exception as exc:  # noqa: BLE001 - a malformed context list
            raise ProtocolError(f"presentation contexts ({type(exc).__name__})") from exc
        if not server.establish(self):
            self._reject(calling, called, RejectResult.TRANSIENT,
                         RejectSource.SERVICE_PROVIDER_PRESENTATION,
                         RejectReason.LOCAL_LIMIT_EXCEEDED, "too_many_associations")
            return False
        self.requestor.ae_title, self.called_ae = calling, called
        self.contexts = {cx.context_id: cx for cx in results
                         if cx.result == 0x00 and cx.context_id is not None}
        accept = A_ASSOCIATE()
        accept.application_context_name = APPLICATION_CONTEXT
        accept.calling_ae_title = request.calling_ae_title
        accept.called_ae_title = request.called_ae_title
        accept.result = 0x00
        accept.result_source = 0x01
        accept.presentation_context_definition_results_list = results
        maximum = MaximumLengthNotification()
        maximum.maximum_length_received = cfg.max_pdu_bytes
        implementation = ImplementationClassUIDNotification()
        implementation.implementation_class_uid = IMPLEMENTATION_CLASS_UID
        version = ImplementationVersionNameNotification()
        version.implementation_version_name = IMPLEMENTATION_VERSION_NAME
        accept.user_information = [maximum, implementation, version, *role_items]
        ac = A_ASSOCIATE_AC()
        ac.from_primitive(accept)
        self._send(ac.encode())
        self.established = True
        server.notify(self.event("accepted"))
        return True

    def _reject(self, calling: str, called: str, result: int, source: int, reason: int,
                label: str) -> None:
        self.server.guard.refused(label)
        self.server.notify(self.event("rejected", label, calling, called))
        self._send(reject_pdu(result, source, reason))

    # -- data transfer

    def _transfer(self) -> None:
        cfg = self.config
        limit = cfg.max_pdu_bytes + _PDV_OVERHEAD if cfg.max_pdu_bytes else 0
        while True:
            pdu_type, body = self._read_pdu(time.monotonic() + cfg.network_timeout_s, None,
                                            p_data_limit=limit)
            if pdu_type == _P_DATA_TF:
                self._message = self._p_data(body, self._message)
            elif pdu_type == _RELEASE_RQ:
                self._send(_RELEASE_RP_PDU)
                self.server.notify(self.event("released"))
                return
            elif pdu_type == _ABORT:
                raise _Closed
            elif pdu_type in (_ASSOCIATE_RQ, _ASSOCIATE_AC, _ASSOCIATE_RJ, _RELEASE_RP):
                raise ProtocolError("unexpected PDU", REASON_UNEXPECTED_PDU)
            else:
                raise ProtocolError("unrecognized PDU", REASON_UNRECOGNIZED_PDU)

    def _p_data(self, body: bytearray, message: _Message | None) -> _Message | None:
        """Takes the PDV items of one P-DATA-TF; returns the message still being received."""
        view = memoryview(body)
        offset, end = 0, len(body)
        if end == 0:
            raise ProtocolError("P-DATA-TF without PDV items")
        while offset < end:
            if end - offset < _PDV_OVERHEAD:
                raise ProtocolError("truncated PDV item")
            length, context_id, control = _PDV_HEADER.unpack_from(body, offset)
            if length < 2 or length > end - offset - 4:
                raise ProtocolError("PDV item length outside its PDU")
            fragment = view[offset + _PDV_OVERHEAD:offset + 4 + length]
            offset += 4 + length
            if context_id not in self.contexts:
                raise ProtocolError("PDV on a presentation context not accepted")
            if message is None:
                message = self._message = _Message(context_id, [])
            elif context_id != message.context_id:
                raise ProtocolError("PDV on another presentation context mid-message")
            if control & 0x01:
                message = self._command_fragment(message, fragment, control & 0x02)
            else:
                message = self._data_fragment(message, fragment, control & 0x02)
        return message

    def _command_fragment(self, message: _Message, fragment: memoryview, last: int
                          ) -> _Message | None:
        if message.command is not None:
            raise ProtocolError("command fragment after a complete command")
        message.command_parts.append(fragment)
        message.command_size += len(fragment)
        if message.command_size > MAX_COMMAND_BYTES:
            raise ProtocolError("command set too long")
        if not last:
            return message
        command = decode_command(b"".join(message.command_parts))
        message.command_parts = []
        if command_us(command, _DATA_SET_TYPE) == NO_DATA_SET:
            self._dispatch(message.context_id, command, None)
            return None
        message.command = command
        if command_us(command, _COMMAND_FIELD) == C_STORE_RQ:
            request = self._store_request(message.context_id, command)
            message.store = replace(request, slot=self.server.storage.open_slot(request))
        return message

    def _data_fragment(self, message: _Message, fragment: memoryview, last: int
                       ) -> _Message | None:
        if message.command is None:
            raise ProtocolError("data set fragment before its command")
        message.data_size += len(fragment)
        if message.data_size > self.config.max_dataset_bytes:
            raise ProtocolError("data set larger than max_dataset_bytes")
        if message.store is not None and message.store.slot is not None:
            message.store.slot.write(fragment)
        if not last:
            return message
        self._message = None  # `store` closes the slot from here on
        self._dispatch(message.context_id, message.command, message.store)
        return None

    def _drop_message(self) -> None:
        message, self._message = self._message, None
        if message is not None and message.store is not None and message.store.slot is not None:
            message.store.slot.close()

    def _store_request(self, context_id: int, command: dict[int, bytes]) -> StoreRequest:
        context = self.contexts[context_id]
        return StoreRequest(
            sop_class_uid=command_uid(command, _AFFECTED_SOP_CLASS),
            sop_instance_uid=command_uid(command, _AFFECTED_SOP_INSTANCE),
            transfer_syntax_uid=str(context.transfer_syntax[0]),
            context_sop_class_uid=str(context.abstract_syntax),
            calling_ae=self.requestor.ae_title.strip(),
            called_ae=self.called_ae.strip(), peer_address=self.address, dataset=())

    def _dispatch(self, context_id: int, command: dict[int, bytes],
                  store: StoreRequest | None) -> None:
        """Answers a complete message; `store`: a C-STORE's request with the slot its data set
        was streamed into (None: no data set came)."""
        field = command_us(command, _COMMAND_FIELD)
        message_id = command_us(command, _MESSAGE_ID) or 0
        context = self.contexts[context_id]
        if field == C_STORE_RQ:
            sop_class = command_uid(command, _AFFECTED_SOP_CLASS)
            sop_instance = command_uid(command, _AFFECTED_SOP_INSTANCE)
            if log.isEnabledFor(logging.INFO):
                log.info("Received Store Request: message %d, SOP class %s, context %d",
                         message_id, sop_class, context_id)
            status: Status
            comment: str | None
            if store is None:
                status, comment = Status.CANNOT_UNDERSTAND, "C-STORE without a data set"
            else:
                status, comment = self.server.storage.store(store)
            self._respond(context_id, response_command(
                C_STORE_RQ | 0x8000, message_id, int(status), sop_class_uid=sop_class,
                sop_instance_uid=sop_instance, comment=comment))
        elif field == C_ECHO_RQ:
            self._respond(context_id, response_command(
                C_ECHO_RQ | 0x8000, message_id, int(Status.SUCCESS),
                sop_class_uid=(command_uid(command, _AFFECTED_SOP_CLASS)
                               or str(context.abstract_syntax))))
        elif field == C_CANCEL_RQ:
            return  # nothing of the node's can be cancelled; C-CANCEL has no response
        elif field in OTHER_REQUESTS:
            self._respond(context_id, response_command(
                field | 0x8000, message_id, UNRECOGNIZED_OPERATION,
                sop_class_uid=command_uid(command, _AFFECTED_SOP_CLASS)
                or command_uid(command, _REQUESTED_SOP_CLASS)))
        else:
            raise ProtocolError("unrecognized DIMSE command", REASON_UNRECOGNIZED_PDU)

    def _respond(self, context_id: int, command: bytes) -> None:
        self._send(p_data_pdus(context_id, command, command=True, max_pdu=self.peer_max_pdu))

    # -- transport

    def _read_pdu(self, first_byte_by: float, whole_by: float | None, *, p_data_limit: int = 0
                  ) -> tuple[int, bytearray]:
        """The next PDU's type and body. Its first byte must come by `first_byte_by`, the whole
        PDU by `whole_by` (default: `pdu_deadline_s` after its first byte). A P-DATA-TF longer
        than `p_data_limit` (0: no limit), any other PDU longer than MAX_ASSOCIATION_PDU, is
        aborted before its body is read."""
        header = memoryview(self._header)
        got = self._recv_some(header, first_byte_by)
        if whole_by is None:
            whole_by = time.monotonic() + self.config.pdu_deadline_s
        if got < 6:
            self._recv_exact(header[got:], whole_by)
        pdu_type, length = _PDU_HEADER.unpack(self._header)
        limit = (p_data_limit if pdu_type == _P_DATA_TF else MAX_ASSOCIATION_PDU)
        if limit and length > limit:
            raise ProtocolError("PDU longer than the negotiated maximum")
        body = bytearray(length)
        if length:
            self._recv_exact(memoryview(body), whole_by)
        return pdu_type, body

    def _recv_some(self, view: memoryview, deadline: float) -> int:
        sock = self.sock
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProtocolError("timed out waiting for a PDU", REASON_NOT_SPECIFIED)
            sock.settimeout(left)
            try:
                got = sock.recv_into(view)
            except TimeoutError:
                continue
            except (OSError, ssl.SSLError) as exc:
                raise _Closed from exc
            if not got:
                raise _Closed
            return got

    def _recv_exact(self, view: memoryview, deadline: float) -> None:
        while len(view):
            got = self._recv_some(view, deadline)
            view = view[got:]

    def _send(self, data: bytes) -> None:
        with self._send_lock:
            if self._closing:
                raise _Closed
            self.sock.settimeout(self.config.network_timeout_s)
            try:
                self.sock.sendall(data)
            except (OSError, ssl.SSLError) as exc:
                raise _Closed from exc

    def _send_abort(self, source: int, reason: int, wait_s: float = -1) -> None:
        if not self._send_lock.acquire(timeout=wait_s):
            return
        try:
            self.sock.settimeout(ABORT_SEND_TIMEOUT_S)
            self.sock.sendall(abort_pdu(source, reason))
        except (OSError, ssl.SSLError, ValueError):
            pass
        finally:
            self._send_lock.release()


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except (OSError, ValueError):
        pass


# ------------------------------------------------------------------ the listener


class NativeServer:
    """Accepts connections on host:port and runs each in a `NativeAssociation`. Rejections and
    connections closed at accept are counted by `guard` (`ConnectionGuard.refused`)."""

    def __init__(self, config: DicomNodeConfig, storage: StorageSCP, *,
                 supported_contexts: Sequence[PresentationContext],
                 guard: ConnectionGuard, policy: AccessPolicy,
                 observer: AssociationObserver | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.config = config
        self.storage = storage
        self.supported_contexts = list(supported_contexts)
        self.guard = guard
        self.policy = policy
        self.observer = observer
        self.ssl_context = ssl_context
        self._lock = threading.Lock()
        self._connections: set[NativeAssociation] = set()
        self._established: set[NativeAssociation] = set()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        cfg = self.config
        family = socket.AF_INET6 if ":" in cfg.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if cfg.acceptor_processes > 1:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind((cfg.host, cfg.port))
        listener.listen(128)  # a burst of senders must not wait for a SYN retransmission
        self._listener = listener
        self._thread = threading.Thread(target=self._accept_loop, name="dicom-accept",
                                        daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        if self._listener is None:
            raise RuntimeError("server not started")
        return int(self._listener.getsockname()[1])

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopping.is_set():
            try:
                sock, address = listener.accept()
            except OSError:
                if self._stopping.is_set():
                    return
                time.sleep(0.01)  # e.g. out of file descriptors: do not spin
                continue
            host = str(address[0])
            if not self.guard.address_known(host):
                self.guard.refused("source_address_at_connect")
                _shutdown(sock)
                sock.close()
                continue
            if not self.guard.admit(sock, host):
                _shutdown(sock)
                sock.close()
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            association = NativeAssociation(self, sock, address)
            self.guard.opened(association, sock)
            with self._lock:
                self._connections.add(association)
            association.start()

    def stop_accepting(self) -> None:
        self._stopping.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            _shutdown(listener)  # wakes the accept loop
            listener.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def connections(self) -> list[NativeAssociation]:
        with self._lock:
            return list(self._connections)

    def established_count(self) -> int:
        with self._lock:
            return len(self._established)

    def establish(self, association: NativeAssociation) -> bool:
        """Counts `association` as established unless `max_associations` are already."""
        with self._lock:
            if len(self._established) >= self.config.max_associations:
                return False
            self._established.add(association)
            return True

    def ended(self, association: NativeAssociation) -> bool:
        """Forgets a closed connection; True when it had been established."""
        with self._lock:
            self._connections.discard(association)
            if association in self._established:
                self._established.discard(association)
                return True
            return False

    def notify(self, event: AssociationEvent) -> None:
        if self.observer is not None:
            try:
                self.observer(event)
            except Exception:  # noqa: BLE001 - an observer must not end an association
                log.exception("association observer failed")

