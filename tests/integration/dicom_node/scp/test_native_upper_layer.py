"""The node's own upper layer (`scp.upper`, `dicom.upper_layer: native`) against real peers:
DCMTK's storescu/dcmsend/echoscu, pynetdicom as an SCU, and raw sockets speaking PS3.8 where a
peer misbehaves on purpose (a C-STORE cut off mid-data-set, a C-FIND on a storage context, an
unknown command)."""

from __future__ import annotations

import socket
import struct
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    MRImageStorage,
)
from pynetdicom import AE
from pynetdicom.pdu import A_ASSOCIATE_AC as AcPdu
from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import RTPlanStorage, Verification

from dicom_node.scp.storage import IMPLEMENTATION_CLASS_UID
from tests.support.peers.dcmtk import ct_series, dataset_bytes, echoscu, run, storescu
from tests.support.waiting import wait_until

A_ASSOCIATE_AC, A_ASSOCIATE_RJ, P_DATA_TF, A_RELEASE_RP, A_ABORT = 0x02, 0x03, 0x04, 0x06, 0x07


def _count(node, table: str = "instances") -> int:
    with node.engine.connect() as conn:
        return int(conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one())


def _stored(node) -> dict[str, Path]:
    with node.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT sop_instance_uid, path FROM instances").all()
    return {r[0]: Path(r[1]) for r in rows}


def _gauge(node, name: str) -> float:
    return node.registry.get_sample_value(name) or 0.0


# ------------------------------------------------------------------ a raw PS3.8 requestor


class RawPeer:
    """A requestor written against PS3.8 directly, to send what no well-behaved SCU would."""

    def __init__(self, port: int, contexts: list[tuple[int, str, str]], *,
                 max_pdu: int = 16384) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        primitive = A_ASSOCIATE()
        primitive.application_context_name = "1.2.840.10008.3.1.1.1"
        primitive.calling_ae_title = "INFERNODE_SCU"
        primitive.called_ae_title = "INFERNODE"
        proposed = []
        for context_id, abstract, syntax in contexts:
            context = build_context(abstract, [syntax])
            context.context_id = context_id
            proposed.append(context)
        primitive.presentation_context_definition_list = proposed
        length, implementation = MaximumLengthNotification(), ImplementationClassUIDNotification()
        length.maximum_length_received = max_pdu
        implementation.implementation_class_uid = "1.2.826.0.1.3680043.10.1563.99"
        primitive.user_information = [length, implementation]
        pdu = A_ASSOCIATE_RQ()
        pdu.from_primitive(primitive)
        self.sock.sendall(bytes(pdu.encode()))
        pdu_type, body = self.read_pdu()
        assert pdu_type == A_ASSOCIATE_AC, f"not accepted: PDU type {pdu_type}"
        ac = AcPdu()
        ac.decode(bytes((pdu_type, 0)) + struct.pack(">L", len(body)) + body)
        self.accepted = ac.to_primitive()

    def read_pdu(self) -> tuple[int, bytes]:
        header = self._exact(6)
        length = struct.unpack(">L", header[2:])[0]
        return header[0], self._exact(length)

    def _exact(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("closed by the node")
            out += chunk
        return out

    def send_pdv(self, context_id: int, payload: bytes, *, command: bool, last: bool) -> None:
        control = (1 if command else 0) | (2 if last else 0)
        item = struct.pack(">LBB", len(payload) + 2, context_id, control) + payload
        self.sock.sendall(bytes((P_DATA_TF, 0)) + struct.pack(">L", len(item)) + item)

    def response(self) -> tuple[Dataset, list[int]]:
        """The next DIMSE response command set and the lengths of the PDUs that carried it."""
        parts, sizes = b"", []
        while True:
            pdu_type, body = self.read_pdu()
            assert pdu_type == P_DATA_TF, f"PDU type {pdu_type} instead of a response"
            sizes.append(len(body))
            offset = 0
            while offset < len(body):
                length, _, control = struct.unpack(">LBB", body[offset:offset + 6])
                parts += body[offset + 6:offset + 4 + length]
                offset += 4 + length
                if control & 2:
                    return read_dataset(BytesIO(parts), True, True), sizes

    def abort(self) -> None:
        self.sock.sendall(bytes((A_ABORT, 0, 0, 0, 0, 4, 0, 0, 0, 0)))

    def close(self) -> None:
        self.sock.close()


def command_set(**elements: object) -> bytes:
    """A DIMSE command set, group 0000 Implicit VR Little Endian, written by pydicom."""
    def encoded(ds: Dataset) -> bytes:
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, True
        write_dataset(fp, ds)
        return fp.getvalue()

    ds = Dataset()
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    ds.CommandGroupLength = len(encoded(ds))
    return encoded(ds)


def store_command(message_id: int, sop_class: str, sop_instance: str) -> bytes:
    return command_set(AffectedSOPClassUID=sop_class, CommandField=0x0001,
                       MessageID=message_id, Priority=0, CommandDataSetType=0x0000,
                       AffectedSOPInstanceUID=sop_instance)


# ------------------------------------------------------------------ real peers


def test_echo_from_echoscu_and_pynetdicom(node_factory):
    node = node_factory()
    result = echoscu(node.server.port)
    assert result.returncode == 0, result.stderr
    assert "Success" in result.stdout + result.stderr
    ae = AE(ae_title="INFERNODE_SCU")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", node.server.port, ae_title="INFERNODE")
    try:
        assert assoc.is_established
        assert assoc.acceptor.implementation_class_uid == IMPLEMENTATION_CLASS_UID
        assert assoc.acceptor.maximum_length == node.settings.dicom.max_pdu_bytes
        assert _gauge(node, "infernode_active_associations") == 1
        assert assoc.send_c_echo().Status == 0x0000
    finally:
        assoc.release()
    assert assoc.is_released
    wait_until(lambda: _gauge(node, "infernode_active_associations") == 0, 10,
               "the released association to close")


@pytest.mark.parametrize("layer", ["native", "pynetdicom"])
def test_fragmented_data_sets_are_stored_bit_exact(node_factory, tmp_path, layer):
    """A 4 KiB maximum on both sides: every 32 KiB data set comes in many P-DATA-TF PDUs, and
    the node's responses are fragmented to the sender's maximum."""
    node = node_factory(max_pdu_bytes=4096, upper_layer=layer)
    files = ct_series(tmp_path / "ct", slices=4, size=128)
    result = storescu(node.server.port, files, extra=["--max-pdu", "4096"])
    assert result.returncode == 0, result.stderr
    stored = _stored(node)
    assert len(stored) == len(files)
    for f in files:
        sop = pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID
        assert dataset_bytes(stored[sop]) == dataset_bytes(f)
        meta = pydicom.dcmread(stored[sop], stop_before_pixels=True).file_meta
        assert meta.SendingApplicationEntityTitle == "INFERNODE_SCU"
        assert meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID


def test_dcmsend_stores_a_series(node_factory, tmp_path):
    node = node_factory()
    files = ct_series(tmp_path / "ct", slices=5, size=64)
    result = run(["dcmsend", "-aet", "INFERNODE_SCU", "-aec", "INFERNODE", "127.0.0.1",
                  str(node.server.port), *map(str, files)], timeout=60)
    assert result.returncode == 0, result.stderr
    assert _count(node) == 5


def test_several_contexts_each_negotiated_and_used(node_factory, tmp_path):
    """pynetdicom proposes CT (explicit), MR (implicit), Verification, an RT Plan (a class the
    node does not accept) and CT in a lossy-only syntax: each context gets its own answer, and
    the stores on the accepted ones keep their transfer syntax."""
    node = node_factory()
    ae = AE(ae_title="INFERNODE_SCU")
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
    ae.add_requested_context(MRImageStorage, [ImplicitVRLittleEndian])
    ae.add_requested_context(Verification)
    ae.add_requested_context(RTPlanStorage, [ExplicitVRLittleEndian])
    ae.add_requested_context(CTImageStorage, ["1.2.840.10008.1.2.4.999"])
    assoc = ae.associate("127.0.0.1", node.server.port, ae_title="INFERNODE")
    try:
        assert assoc.is_established
        results = {(str(cx.abstract_syntax), cx.context_id): cx.result
                   for cx in assoc.accepted_contexts + assoc.rejected_contexts}
        assert results == {(CTImageStorage, 1): 0x00, (MRImageStorage, 3): 0x00,
                           (Verification, 5): 0x00, (RTPlanStorage, 7): 0x03,
                           (CTImageStorage, 9): 0x04}
        ct = pydicom.dcmread(ct_series(tmp_path / "ct", slices=1, size=32)[0])
        mr = pydicom.dcmread(ct_series(tmp_path / "mr", slices=1, size=32, seed=1)[0])
        mr.SOPClassUID, mr.Modality = MRImageStorage, "MR"
        mr.file_meta.MediaStorageSOPClassUID = MRImageStorage
        assert assoc.send_c_store(ct).Status == 0x0000
        assert assoc.send_c_store(mr).Status == 0x0000
        assert assoc.send_c_echo().Status == 0x0000
    finally:
        assoc.release()
    with node.engine.connect() as conn:
        rows = dict(conn.exec_driver_sql(
            "SELECT sop_class_uid, path FROM instances").all())
    assert set(rows) == {CTImageStorage, MRImageStorage}
    syntaxes = {sop: pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
                for sop, path in rows.items()}
    assert syntaxes == {CTImageStorage: ExplicitVRLittleEndian,
                        MRImageStorage: ImplicitVRLittleEndian}


def test_the_lossless_syntax_is_preferred_over_a_lossy_one(node_factory):
    node = node_factory()
    ae = AE(ae_title="INFERNODE_SCU")
    ae.add_requested_context(CTImageStorage, [JPEGBaseline8Bit, ExplicitVRLittleEndian])
    assoc = ae.associate("127.0.0.1", node.server.port, ae_title="INFERNODE")
    try:
        [context] = assoc.accepted_contexts
        assert context.transfer_syntax[0] == ExplicitVRLittleEndian
    finally:
        assoc.release()


# ------------------------------------------------------------------ misbehaving requestors


def _ct(tmp_path: Path, name: str, seed: int) -> tuple[str, bytes]:
    path = ct_series(tmp_path / name, slices=1, size=64, seed=seed)[0]
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return str(ds.SOPInstanceUID), dataset_bytes(path)


def test_an_abort_mid_data_set_keeps_what_was_acknowledged_and_nothing_partial(
        node_factory, tmp_path):
    node = node_factory()
    first_uid, first = _ct(tmp_path, "a", 1)
    second_uid, second = _ct(tmp_path, "b", 2)
    peer = RawPeer(node.server.port, [(1, CTImageStorage, ExplicitVRLittleEndian)])
    try:
        peer.send_pdv(1, store_command(1, CTImageStorage, first_uid), command=True, last=True)
        peer.send_pdv(1, first[:5000], command=False, last=False)
        peer.send_pdv(1, first[5000:], command=False, last=True)
        response, _ = peer.response()
        assert (response.CommandField, response.Status) == (0x8001, 0x0000)
        assert response.MessageIDBeingRespondedTo == 1
        assert response.AffectedSOPInstanceUID == first_uid
        peer.send_pdv(1, store_command(2, CTImageStorage, second_uid), command=True, last=True)
        peer.send_pdv(1, second[:5000], command=False, last=False)
        peer.abort()
        assert peer.sock.recv(64) == b""  # the node closes its side
    finally:
        peer.close()
    wait_until(lambda: _gauge(node, "infernode_active_associations") == 0, 10,
               "the aborted association to close")
    assert set(_stored(node)) == {first_uid}
    spool = Path(node.settings.dicom.spool_dir)
    assert not [p for p in spool.rglob("*") if second_uid in p.name]


def test_a_connection_lost_mid_data_set_stores_nothing_of_it(node_factory, tmp_path):
    node = node_factory()
    uid, data = _ct(tmp_path, "a", 3)
    peer = RawPeer(node.server.port, [(1, CTImageStorage, ExplicitVRLittleEndian)])
    peer.send_pdv(1, store_command(1, CTImageStorage, uid), command=True, last=True)
    peer.send_pdv(1, data[:3000], command=False, last=False)
    peer.close()
    wait_until(lambda: _gauge(node, "infernode_active_associations") == 0, 10,
               "the lost association to close")
    assert _count(node) == 0


def test_a_c_find_on_a_storage_context_is_an_unrecognized_operation(node_factory, tmp_path):
    node = node_factory()
    peer = RawPeer(node.server.port, [(1, CTImageStorage, ExplicitVRLittleEndian),
                                      (3, Verification, ImplicitVRLittleEndian)])
    try:
        peer.send_pdv(1, command_set(AffectedSOPClassUID=CTImageStorage, CommandField=0x0020,
                                     MessageID=7, Priority=0, CommandDataSetType=0x0000),
                      command=True, last=True)
        identifier = Dataset()
        identifier.PatientID = "*"
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, False
        write_dataset(fp, identifier)
        peer.send_pdv(1, fp.getvalue(), command=False, last=True)
        response, _ = peer.response()
        assert (response.CommandField, response.Status) == (0x8020, 0x0211)
        assert response.MessageIDBeingRespondedTo == 7
        # The association goes on: a C-ECHO on it is answered.
        peer.send_pdv(3, command_set(AffectedSOPClassUID=Verification, CommandField=0x0030,
                                     MessageID=8, CommandDataSetType=0x0101),
                      command=True, last=True)
        echo, _ = peer.response()
        assert (echo.CommandField, echo.Status, echo.MessageIDBeingRespondedTo) == (
            0x8030, 0x0000, 8)
    finally:
        peer.close()
    assert _count(node) == 0


def test_an_unknown_command_is_aborted(node_factory):
    node = node_factory()
    peer = RawPeer(node.server.port, [(1, Verification, ImplicitVRLittleEndian)])
    try:
        peer.send_pdv(1, command_set(CommandField=0x0999, MessageID=1,
                                     CommandDataSetType=0x0101), command=True, last=True)
        pdu_type, body = peer.read_pdu()
        assert pdu_type == A_ABORT and body[2] == 0x02  # source: service-provider
    finally:
        peer.close()


def test_a_pdv_on_a_context_not_accepted_is_aborted(node_factory):
    node = node_factory()
    peer = RawPeer(node.server.port, [(1, Verification, ImplicitVRLittleEndian)])
    try:
        peer.send_pdv(5, command_set(AffectedSOPClassUID=Verification, CommandField=0x0030,
                                     MessageID=1, CommandDataSetType=0x0101),
                      command=True, last=True)
        assert peer.read_pdu()[0] == A_ABORT
    finally:
        peer.close()


def test_responses_are_fragmented_to_the_senders_maximum(node_factory):
    node = node_factory()
    peer = RawPeer(node.server.port, [(1, Verification, ImplicitVRLittleEndian)], max_pdu=64)
    try:
        peer.send_pdv(1, command_set(AffectedSOPClassUID=Verification, CommandField=0x0030,
                                     MessageID=3, CommandDataSetType=0x0101),
                      command=True, last=True)
        echo, sizes = peer.response()
        assert echo.Status == 0x0000 and echo.MessageIDBeingRespondedTo == 3
        assert len(sizes) > 1 and max(sizes) <= 64
    finally:
        peer.close()


def test_a_data_set_beyond_its_limit_is_aborted_and_not_stored(node_factory, tmp_path):
    node = node_factory(max_dataset_bytes=20000)
    files = ct_series(tmp_path / "ct", slices=1, size=128)  # 32 KiB of pixels
    result = storescu(node.server.port, files)
    assert result.returncode != 0
    assert _count(node) == 0
    small = ct_series(tmp_path / "small", slices=1, size=64, seed=4)  # 8 KiB
    assert storescu(node.server.port, small).returncode == 0
    assert _count(node) == 1


@pytest.mark.parametrize("layer", ["native", "pynetdicom"])
def test_both_layers_report_the_same_association_events(node_factory, layer):
    """The observer (the audit trail's) sees accepted/released/closed, accepted/aborted/closed
    and rejected/closed, each association's events under one id and in that order ("closed"
    last, as AssociationEvent promises), on either upper layer."""
    from dicom_node.scp.access import AssociationEvent
    from dicom_node.scp.server import DicomServer

    node = node_factory()
    events: list[AssociationEvent] = []
    config = node.settings.dicom.model_copy(update={"port": 0, "upper_layer": layer})
    server = DicomServer(config, node.server.storage, on_association=events.append)
    server.start()
    try:
        ae = AE(ae_title="INFERNODE_SCU")
        ae.add_requested_context(Verification)
        released = ae.associate("127.0.0.1", server.port, ae_title="INFERNODE")
        assert released.is_established
        released.release()
        wait_until(lambda: [e.kind for e in events][-1:] == ["closed"], 10, "a close")
        aborted = ae.associate("127.0.0.1", server.port, ae_title="INFERNODE")
        assert aborted.is_established
        aborted.abort()
        wait_until(lambda: [e.kind for e in events].count("closed") == 2, 10, "two closes")
        assert echoscu(server.port, calling="STRANGER").returncode != 0
        wait_until(lambda: [e.kind for e in events].count("closed") == 3, 10, "three closes")
    finally:
        server.stop(0)
    # One association after the other: its events end with its "closed" (an id may be reused
    # once its association is gone, so they are cut at each close rather than grouped by id).
    sequences: list[list[str]] = [[]]
    for event in events:
        sequences[-1].append(event.kind)
        if event.kind == "closed":
            sequences.append([])
        assert event.address == "127.0.0.1"
    assert sequences == [["accepted", "released", "closed"], ["accepted", "aborted", "closed"],
                         ["rejected", "closed"], []]
    assert len({e.association for e in events[:3]}) == 1
    rejected = next(e for e in events if e.kind == "rejected")
    assert (rejected.calling_ae, rejected.called_ae, rejected.reason) == (
        "STRANGER", "INFERNODE", "calling_ae")
    accepted = next(e for e in events if e.kind == "accepted")
    assert (accepted.calling_ae, accepted.called_ae) == ("INFERNODE_SCU", "INFERNODE")


def test_a_request_with_another_application_context_is_rejected(node_factory):
    node = node_factory()
    primitive = A_ASSOCIATE()
    primitive.application_context_name = "1.2.3.4"
    primitive.calling_ae_title = "INFERNODE_SCU"
    primitive.called_ae_title = "INFERNODE"
    context = build_context(Verification)
    context.context_id = 1
    primitive.presentation_context_definition_list = [context]
    length = MaximumLengthNotification()
    length.maximum_length_received = 16384
    primitive.user_information = [length]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    with socket.create_connection(("127.0.0.1", node.server.port), timeout=10) as sock:
        sock.sendall(bytes(pdu.encode()))
        reply = sock.recv(10)
    assert reply[0] == A_ASSOCIATE_RJ
    assert tuple(reply[7:10]) == (0x01, 0x01, 0x02)  # permanent, service-user, app context


@pytest.mark.parametrize(("level", "logged"), [("WARNING", False), ("INFO", True)])
def test_protocol_log_level_decides_the_per_instance_lines(node_factory, tmp_path, caplog,
                                                           level, logged):
    import logging

    from dicom_node.scp.server import UPPER_LAYER_LOGGER

    node = node_factory(protocol_log_level=level)
    assert logging.getLogger(UPPER_LAYER_LOGGER).level == logging.getLevelName(level)
    files = ct_series(tmp_path / "src", slices=2, size=32)
    assert storescu(node.server.port, files).returncode == 0
    lines = [r for r in caplog.records
             if r.name == UPPER_LAYER_LOGGER and "Received Store Request" in r.getMessage()]
    assert len(lines) == (2 if logged else 0)
    assert node.index.counts()["instances"] == 2


def test_role_selection_and_asynchronous_operations_get_the_defaults(node_factory, tmp_path):
    """A requestor proposing SCP/SCU role selection (itself SCU) and an asynchronous operations
    window of 5/5 is accepted with the default roles (no role reply item) and no asynchronous
    operations item (the default window 1/1), and stores."""
    from pynetdicom.pdu_primitives import (
        AsynchronousOperationsWindowNegotiation,
        SCP_SCU_RoleSelectionNegotiation,
    )

    node = node_factory()
    ae = AE(ae_title="INFERNODE_SCU")
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
    role = SCP_SCU_RoleSelectionNegotiation()
    role.sop_class_uid, role.scu_role, role.scp_role = CTImageStorage, True, False
    window = AsynchronousOperationsWindowNegotiation()
    window.maximum_number_operations_invoked = 5
    window.maximum_number_operations_performed = 5
    assoc = ae.associate("127.0.0.1", node.server.port, ae_title="INFERNODE",
                         ext_neg=[role, window])
    try:
        assert assoc.is_established
        [context] = assoc.accepted_contexts
        assert (context.as_scu, context.as_scp) == (True, False)  # the requestor's view
        assert assoc.acceptor.asynchronous_operations == (1, 1)
        ct = pydicom.dcmread(ct_series(tmp_path / "ct", slices=1, size=32)[0])
        assert assoc.send_c_store(ct).Status == 0x0000
    finally:
        assoc.release()
    assert _count(node) == 1
