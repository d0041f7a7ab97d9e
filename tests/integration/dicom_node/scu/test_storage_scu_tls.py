"""C-STORE SCU over TLS (PS3.15 B.1) to DCMTK storescp, which requires and verifies the node's
client certificate."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pydicom
import pytest

from dicom_node.scu.errors import DeliveryTransientError
from dicom_node.scu.storage import ClientTls, StorageSCU, StoreDestination
from tests.support.net import free_port
from tests.support.peers.dcmtk import DCMTK_BIN, ct_series


@pytest.fixture
def tls_storescp(pki: Path, tmp_path: Path):
    port = free_port()
    out = tmp_path / "received"
    out.mkdir()
    proc = subprocess.Popen([str(DCMTK_BIN / "storescp"), "-aet", "PACS", "-od", str(out),
                             "+tls", str(pki / "server.key"), str(pki / "server.pem"),
                             "+cf", str(pki / "ca.pem"), "-rc", str(port)])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    yield port, out
    proc.terminate()
    proc.wait(timeout=10)


def test_instances_are_stored_over_tls_with_a_client_certificate(tls_storescp, pki, tmp_path):
    port, out = tls_storescp
    files = ct_series(tmp_path / "src", slices=2)
    tls = ClientTls(str(pki / "ca.pem"), str(pki / "client.pem"), str(pki / "client.key"))
    report = StorageSCU(StoreDestination("127.0.0.1", port, "PACS", tls=tls)).send(files)
    assert len(report.stored) == 2
    received = {pydicom.dcmread(f).SOPInstanceUID for f in out.iterdir()}
    assert received == {pydicom.dcmread(f).SOPInstanceUID for f in files}


def test_without_the_client_certificate_the_peer_refuses(tls_storescp, pki, tmp_path):
    port, out = tls_storescp
    files = ct_series(tmp_path / "src", slices=1)
    tls = ClientTls(str(pki / "ca.pem"))
    with pytest.raises(DeliveryTransientError):
        StorageSCU(StoreDestination("127.0.0.1", port, "PACS", tls=tls,
                                    connect_timeout_s=3, acse_timeout_s=3)).send(files)
    assert list(out.iterdir()) == []
