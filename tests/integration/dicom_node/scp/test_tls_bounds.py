"""DICOM over TLS under abuse: a connection that never starts its TLS handshake does not hold
the accept loop (the handshake runs in the association's own thread, under the ARTIM and PDU
deadlines), so a client with a certificate is served meanwhile and the silent one is closed."""

from __future__ import annotations

import socket
import time

from tests.integration.dicom_node.scp.test_bounded_connections import _closed_within
from tests.integration.dicom_node.scp.test_tls import _tls_args
from tests.support.peers.dcmtk import run


def test_a_silent_tls_connection_does_not_block_other_clients(node_factory, pki):
    node = node_factory(artim_s=2.0, tls={"cert_file": str(pki / "server.pem"),
                                         "key_file": str(pki / "server.key"),
                                         "ca_file": str(pki / "ca.pem")})
    silent = [socket.create_connection(("127.0.0.1", node.server.port), timeout=5)
              for _ in range(3)]
    try:
        time.sleep(0.3)
        started = time.monotonic()
        echo = run(["echoscu", "-aet", "INFERNODE_SCU", "-aec", "INFERNODE",
                    *_tls_args(pki, True), "127.0.0.1", str(node.server.port)], timeout=30)
        assert echo.returncode == 0, echo.stderr
        assert time.monotonic() - started < 5
        for sock in silent:
            waited = _closed_within(sock, 8.0)
            assert waited is not None, "a connection without a handshake was never closed"
    finally:
        for sock in silent:
            sock.close()
