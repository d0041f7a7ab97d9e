"""What a TCP peer can hold, with real sockets against the running listener (`scp.guard`):
addresses no peer uses are closed at connect, silent connections have their own small pool and
a short ARTIM, a PDU must come whole within its deadline and within the negotiated maximum."""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

import pytest
from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import build_context

from tests.support.peers.dcmtk import ct_series, echoscu, storescu

A_ASSOCIATE_AC, A_ABORT = 0x02, 0x07
LAYERS = ("native", "pynetdicom")
"""Both upper layers (`dicom.upper_layer`) keep these bounds."""


def _connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the node closed (or aborted) the connection; None if still open then."""
    started = time.monotonic()
    sock.settimeout(seconds)
    try:
        while True:
            data = sock.recv(65536)
            if not data or data[0] == A_ABORT:
                return time.monotonic() - started
    except TimeoutError:
        return None
    except ConnectionResetError:
        return time.monotonic() - started


def _association_rq(calling: str = "INFERNODE_SCU", called: str = "INFERNODE") -> bytes:
    primitive = A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title = calling
    primitive.called_ae_title = called
    context = build_context("1.2.840.10008.1.1")
    context.context_id = 1
    primitive.presentation_context_definition_list = [context]
    length, implementation = MaximumLengthNotification(), ImplementationClassUIDNotification()
    length.maximum_length_received = 16384
    implementation.implementation_class_uid = "1.2.826.0.1.3680043.10.1563.99"
    primitive.user_information = [length, implementation]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    return bytes(pdu.encode())


def _associated(port: int) -> socket.socket:
    sock = _connect(port)
    sock.sendall(_association_rq())
    header = sock.recv(6)
    assert header[0] == A_ASSOCIATE_AC
    remaining = struct.unpack(">L", header[2:6])[0]
    while remaining:
        remaining -= len(sock.recv(remaining))
    return sock


def _rejections(node, reason: str) -> float:
    return node.registry.get_sample_value(
        "infernode_association_rejections_total", {"reason": reason}) or 0.0


@pytest.mark.parametrize("layer", LAYERS)
def test_an_address_no_peer_uses_is_closed_at_connect(node_factory, layer):
    node = node_factory(upper_layer=layer)  # peers: INFERNODE_SCU from 127.0.0.1 only
    strangers = [_connect(node.server.port, source="127.0.0.2") for _ in range(40)]
    try:
        for sock in strangers:
            assert _closed_within(sock, 2.0) is not None
        assert _rejections(node, "source_address_at_connect") == 40
        assert echoscu(node.server.port).returncode == 0
    finally:
        for sock in strangers:
            sock.close()


@pytest.mark.parametrize("layer", LAYERS)
def test_silent_connections_cannot_lock_scanners_out(node_factory, tmp_path: Path, layer):
    node = node_factory(
        upper_layer=layer, max_associations=2, max_pending_associations=4,
        max_pending_per_address=2, artim_s=2.0,
        peers=[{"ae_title": "INFERNODE_SCU", "hosts": ["127.0.0.1"]},
               {"ae_title": "OTHER_SCU", "hosts": ["127.0.0.3"]}],
    )
    silent = [_connect(node.server.port, source="127.0.0.3") for _ in range(30)]
    try:
        time.sleep(0.3)  # let the accept loop see them all
        open_ones = [s for s in silent if _closed_within(s, 0.2) is None]
        assert len(open_ones) == 2  # the per-address pending limit, the rest closed at once
        assert node.registry.get_sample_value("infernode_pending_connections") == 2
        # A scanner stores while they hold their pending slots.
        files = ct_series(tmp_path / "ct", slices=3, size=32)
        started = time.monotonic()
        result = storescu(node.server.port, files)
        assert result.returncode == 0, result.stderr
        assert time.monotonic() - started < 10
        with node.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM instances").scalar_one() == 3
        # The ARTIM timer closes them (2 s), not the 30 s ACSE timeout.
        for sock in open_ones:
            waited = _closed_within(sock, 6.0)
            assert waited is not None and waited < 5.0
        assert _rejections(node, "pending_limit") == 28
        deadline = time.monotonic() + 2
        while node.registry.get_sample_value("infernode_pending_connections") and (
                time.monotonic() < deadline):
            time.sleep(0.05)
        assert node.registry.get_sample_value("infernode_pending_connections") == 0
    finally:
        for sock in silent:
            sock.close()


@pytest.mark.parametrize("layer", LAYERS)
def test_strangers_from_many_addresses_cannot_lock_listed_scanners_out(node_factory,
                                                                       tmp_path: Path, layer):
    """With `require_known_peers` off any address may connect; silent connections from
    addresses no peer lists fill at most three quarters of the pending pool, so a configured
    scanner still gets in."""
    node = node_factory(
        upper_layer=layer, require_known_peers=False, max_pending_associations=4,
        max_pending_per_address=1, artim_s=5.0,
        peers=[{"ae_title": "INFERNODE_SCU", "hosts": ["127.0.0.1"]}],
    )
    strangers = [_connect(node.server.port, source=f"127.0.0.{k}") for k in range(2, 12)]
    try:
        time.sleep(0.3)  # let the accept loop see them all
        open_ones = [s for s in strangers if _closed_within(s, 0.2) is None]
        assert len(open_ones) == 3  # the pool of 4 less the quarter kept for listed peers
        assert _rejections(node, "pending_limit") == 7
        files = ct_series(tmp_path / "ct", slices=2, size=32)
        result = storescu(node.server.port, files)
        assert result.returncode == 0, result.stderr
        with node.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM instances").scalar_one() == 2
    finally:
        for sock in strangers:
            sock.close()


def test_pending_connections_do_not_count_against_established_ones(node_factory):
    node = node_factory(max_associations=1, max_pending_associations=8,
                        max_pending_per_address=8, artim_s=10.0)
    silent = [_connect(node.server.port) for _ in range(6)]
    try:
        time.sleep(0.3)
        assert echoscu(node.server.port).returncode == 0
    finally:
        for sock in silent:
            sock.close()


@pytest.mark.parametrize("layer", LAYERS)
def test_a_slow_sender_is_cut_off_at_the_pdu_deadline(node_factory, layer):
    node = node_factory(pdu_deadline_s=1.5, upper_layer=layer)
    sock = _associated(node.server.port)
    try:
        # A P-DATA-TF PDU announcing 1000 bytes, then one byte every 0.25 s.
        sock.sendall(bytes((0x04, 0)) + struct.pack(">L", 1000))
        started = time.monotonic()
        sock.settimeout(0.25)
        closed = None
        while time.monotonic() - started < 8:
            try:
                sock.send(b"\x00")
                data = sock.recv(64)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed = time.monotonic() - started
                break
            if not data or data[0] == A_ABORT:
                closed = time.monotonic() - started
                break
        assert closed is not None, "the node kept reading a 1 byte per 0.25 s PDU"
        assert closed < 4.0
    finally:
        sock.close()


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("announced", [8 * 1024**2, 300 * 1024])
def test_a_pdu_beyond_the_negotiated_maximum_is_aborted(node_factory, announced, layer):
    node = node_factory(max_pdu_bytes=262144, upper_layer=layer)
    sock = _associated(node.server.port)
    try:
        sock.sendall(bytes((0x04, 0)) + struct.pack(">L", announced) + b"\x00" * 1024)
        sock.settimeout(3.0)
        data = sock.recv(64)
        assert data[:1] == bytes((A_ABORT,))  # A-ABORT, without reading the announced bytes
        assert _closed_within(sock, 3.0) is not None
    finally:
        sock.close()


def test_a_pdu_within_the_maximum_still_passes(node_factory, tmp_path: Path):
    node = node_factory(max_pdu_bytes=16384)
    files = ct_series(tmp_path / "ct", slices=2, size=128)  # 32 KiB each: several PDUs
    result = storescu(node.server.port, files)
    assert result.returncode == 0, result.stderr
    with node.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM instances").scalar_one() == 2


def test_a_sender_opening_many_associations_at_once_is_served(node_factory, tmp_path: Path):
    """The pending limits must not refuse a PACS that connects 8 associations at the same time
    (the default per-address allowance is `max_associations`)."""
    import subprocess

    from tests.support.peers.dcmtk import DCMTK_BIN

    node = node_factory()
    files = ct_series(tmp_path / "ct", slices=8, size=32)
    senders = [subprocess.Popen(
        [str(DCMTK_BIN / "storescu"), "-aet", "INFERNODE_SCU", "-aec", "INFERNODE",
         "127.0.0.1", str(node.server.port), str(f)], stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE) for f in files]
    for sender in senders:
        assert sender.wait(timeout=60) == 0, sender.stderr.read() if sender.stderr else ""
    with node.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM instances").scalar_one() == 8
