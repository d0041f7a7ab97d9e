"""Both upper layers report an association's end in the documented order (AssociationEvent,
docs/DICOM.md): the release or abort first, "closed" last, whether the peer releases, sends an
A-ABORT between messages or in the middle of a data set, or drops the connection mid data set.
pynetdicom raises its connection-close event on the DUL thread before its association thread
sees a received abort; the node must still report "aborted" before "closed"."""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import Verification

from dicom_node.scp.access import AssociationEvent
from dicom_node.scp.server import DicomServer
from tests.support.peers.dcmtk import ct_series, dataset_bytes
from tests.support.waiting import wait_until

A_ASSOCIATE_AC, P_DATA_TF, A_ABORT = 0x02, 0x04, 0x07
REPEATS = 3
"""Each ending is repeated: the order must hold every time, not on a lucky schedule."""


@pytest.fixture(params=["native", "pynetdicom"])
def listener(request, node_factory) -> Iterator[tuple[DicomServer, list[AssociationEvent]]]:
    node = node_factory()
    events: list[AssociationEvent] = []
    config = node.settings.dicom.model_copy(update={"port": 0, "upper_layer": request.param})
    server = DicomServer(config, node.server.storage, on_association=events.append)
    server.start()
    try:
        yield server, events
    finally:
        server.stop(0)


def _raw_association(port: int) -> socket.socket:
    """A TCP peer that asks for CT Image Storage in Explicit VR Little Endian, written
    against PS3.8 directly, and returns once the node accepted it."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    primitive = A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title = "INFERNODE_SCU"
    primitive.called_ae_title = "INFERNODE"
    context = build_context(CTImageStorage, [ExplicitVRLittleEndian])
    context.context_id = 1
    primitive.presentation_context_definition_list = [context]
    length, implementation = MaximumLengthNotification(), ImplementationClassUIDNotification()
    length.maximum_length_received = 16384
    implementation.implementation_class_uid = "1.2.826.0.1.3680043.10.1563.99"
    primitive.user_information = [length, implementation]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    sock.sendall(bytes(pdu.encode()))
    header = _exact(sock, 6)
    assert header[0] == A_ASSOCIATE_AC, f"not accepted: PDU type {header[0]}"
    _exact(sock, struct.unpack(">L", header[2:])[0])  # the rest of the A-ASSOCIATE-AC
    return sock


def _exact(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        assert chunk, "closed by the node"
        out += chunk
    return out


def _pdv(payload: bytes, *, command: bool, last: bool) -> bytes:
    control = (1 if command else 0) | (2 if last else 0)
    item = struct.pack(">LBB", len(payload) + 2, 1, control) + payload
    return bytes((P_DATA_TF, 0)) + struct.pack(">L", len(item)) + item


def _store_command(uid: str) -> bytes:
    """C-STORE-RQ command set, Implicit VR Little Endian (PS3.7 9.3.1.1)."""
    from pydicom.dataset import Dataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    def encoded(ds: Dataset) -> bytes:
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, True
        write_dataset(fp, ds)
        return fp.getvalue()

    ds = Dataset()
    ds.AffectedSOPClassUID = CTImageStorage
    ds.CommandField = 0x0001
    ds.MessageID = 1
    ds.Priority = 0
    ds.CommandDataSetType = 0x0000
    ds.AffectedSOPInstanceUID = uid
    ds.CommandGroupLength = len(encoded(ds))
    return encoded(ds)


def _mid_data_set(port: int, tmp_path: Path, then: Callable[[socket.socket], None]) -> None:
    [path] = ct_series(tmp_path, slices=1, size=64)
    data = dataset_bytes(path)
    sock = _raw_association(port)
    try:
        sock.sendall(_pdv(_store_command("1.2.826.0.1.3680043.10.1563.7"), command=True,
                          last=True))
        sock.sendall(_pdv(data[:3000], command=False, last=False))
        then(sock)
    finally:
        sock.close()


def _send_abort(sock: socket.socket) -> None:
    sock.sendall(bytes((A_ABORT, 0, 0, 0, 0, 4, 0, 0, 0, 0)))
    sock.settimeout(10)
    assert sock.recv(64) == b""  # the node closes its side


def _ends(events: list[AssociationEvent]) -> list[list[str]]:
    by_association: dict[int, list[str]] = {}
    for event in events:
        by_association.setdefault(event.association, []).append(event.kind)
    return list(by_association.values())


def _closes(events: list[AssociationEvent], count: int) -> None:
    wait_until(lambda: [e.kind for e in events].count("closed") >= count, 20,
               f"{count} associations to close")


def test_a_release_is_reported_before_the_close(listener) -> None:
    server, events = listener
    ae = AE(ae_title="INFERNODE_SCU")
    ae.add_requested_context(Verification)
    for n in range(1, REPEATS + 1):
        assoc = ae.associate("127.0.0.1", server.port, ae_title="INFERNODE")
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
        _closes(events, n)
    assert _ends(events) == [["accepted", "released", "closed"]] * REPEATS


def test_a_peers_a_abort_is_reported_before_the_close(listener) -> None:
    server, events = listener
    ae = AE(ae_title="INFERNODE_SCU")
    ae.add_requested_context(Verification)
    for n in range(1, REPEATS + 1):
        assoc = ae.associate("127.0.0.1", server.port, ae_title="INFERNODE")
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000
        assoc.abort()
        _closes(events, n)
    assert _ends(events) == [["accepted", "aborted", "closed"]] * REPEATS


def test_an_a_abort_mid_data_set_is_reported_before_the_close(listener, tmp_path) -> None:
    server, events = listener
    for n in range(1, REPEATS + 1):
        _mid_data_set(server.port, tmp_path / str(n), _send_abort)
        _closes(events, n)
    assert _ends(events) == [["accepted", "aborted", "closed"]] * REPEATS


def test_a_connection_dropped_mid_data_set_is_reported_before_the_close(listener,
                                                                        tmp_path) -> None:
    server, events = listener
    for n in range(1, REPEATS + 1):
        _mid_data_set(server.port, tmp_path / str(n), lambda sock: None)  # closed at once
        _closes(events, n)
    assert _ends(events) == [["accepted", "aborted", "closed"]] * REPEATS
