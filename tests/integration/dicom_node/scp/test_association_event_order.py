"""Both upper layers report an association's end in the documented order (AssociationEvent,
docs/DICOM.md): the release or abort first, "closed" last, whether the peer releases, sends an
A-ABORT between messages or in the middle of a data set, or drops the connection mid data set.
pynetdicom raises its connection-close event on the DUL thread before its association thread
sees a received abort; the node must still report "aborted" before "closed"."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from dicom_node.scp.access import AssociationEvent
from dicom_node.scp.server import DicomServer
from tests.integration.dicom_node.scp.test_native_upper_layer import RawPeer, store_command
from tests.support.peers.dcmtk import ct_series, dataset_bytes
from tests.support.waiting import wait_until

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


def _mid_data_set(port: int, tmp_path: Path, then: Callable[[RawPeer], None]) -> None:
    """A peer that asks for CT Image Storage, sends a C-STORE-RQ and the first 3000 bytes of
    its data set, then does `then`."""
    [path] = ct_series(tmp_path, slices=1, size=64)
    data = dataset_bytes(path)
    peer = RawPeer(port, [(1, CTImageStorage, ExplicitVRLittleEndian)])
    try:
        peer.send_pdv(1, store_command(1, CTImageStorage, "1.2.826.0.1.3680043.10.1563.7"),
                      command=True, last=True)
        peer.send_pdv(1, data[:3000], command=False, last=False)
        then(peer)
    finally:
        peer.close()


def _send_abort(peer: RawPeer) -> None:
    peer.abort()
    assert peer.sock.recv(64) == b""  # the node closes its side


def _ends(events: list[AssociationEvent]) -> list[list[str]]:
    """The kinds of each association's events, in the order reported. The associations ran
    one after another, so they are cut at each "closed" (an id may be reused once its
    association is gone); the events of one share its id."""
    groups: list[list[AssociationEvent]] = [[]]
    for event in events:
        groups[-1].append(event)
        if event.kind == "closed":
            groups.append([])
    groups = [group for group in groups if group]
    for group in groups:
        assert len({event.association for event in group}) == 1, group
    return [[event.kind for event in group] for group in groups]


def _closes(events: list[AssociationEvent], count: int) -> None:
    wait_until(lambda: [e.kind for e in events].count("closed") >= count, 20,
               f"{count} associations to close")


@pytest.mark.parametrize(("end", "reported"), [("release", "released"), ("abort", "aborted")])
def test_a_release_or_a_peers_a_abort_is_reported_before_the_close(listener, end, reported
                                                                   ) -> None:
    server, events = listener
    ae = AE(ae_title="INFERNODE_SCU")
    ae.add_requested_context(Verification)
    for n in range(1, REPEATS + 1):
        assoc = ae.associate("127.0.0.1", server.port, ae_title="INFERNODE")
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000
        getattr(assoc, end)()
        _closes(events, n)
    assert _ends(events) == [["accepted", reported, "closed"]] * REPEATS


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
        _mid_data_set(server.port, tmp_path / str(n), lambda peer: None)  # closed at once
        _closes(events, n)
    assert _ends(events) == [["accepted", "aborted", "closed"]] * REPEATS
