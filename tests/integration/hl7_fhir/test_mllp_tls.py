"""HL7 v2 over MLLP inside TLS, both ways: the node's MLLP client (ORU delivery) and its
final-report listener, with a throwaway openssl PKI; OpenSSL's own `s_client` is the outside
sender. A sender without the listener's client certificate, a plain-TCP sender and a receiver
the client's CA did not sign are all refused, and nothing is recorded."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hl7_fhir.errors import TransientDeliveryError
from hl7_fhir.hl7v2.listener import MllpListener
from hl7_fhir.hl7v2.mllp import client_tls_context, send_mllp, server_tls_context
from hl7_fhir.labels import FinalReport
from tests.support.peers.pki import make_pki


def _oru(control: str) -> str:
    return "\r".join([
        f"MSH|^~\\&|RIS|HOSP|INFERNODE|HOSP|20261110101500||ORU^R01^ORU_R01|{control}|P|2.5.1",
        "PID|1||PAT123^^^HOSP^MR||Doe^Jane||19700101|F",
        "OBR|1|ORDACC1|ACC1|CTHEAD^CT head without contrast^L|||20261110090000"
        "|||||||||||||||20261110101000|||F",
        "OBX|1|TX|59776-5^Procedure findings^LN||No haemorrhage.||||||F",
    ]) + "\r"


@dataclass
class TlsListener:
    port: int
    pki: Path
    received: list[FinalReport]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def listener(pki: Path) -> Iterator[TlsListener]:
    received: list[FinalReport] = []
    context = server_tls_context(str(pki / "server.pem"), str(pki / "server.key"),
                                 client_ca_file=str(pki / "ca.pem"))
    server = MllpListener("127.0.0.1", 0, received.append, idle_timeout_s=3,
                          ssl_context=context)
    port = server.start()
    try:
        yield TlsListener(port, pki, received)
    finally:
        server.stop()


def test_report_over_tls_with_client_certificate(listener: TlsListener) -> None:
    pki = listener.pki
    context = client_tls_context(str(pki / "ca.pem"), str(pki / "client.pem"),
                                 str(pki / "client.key"))
    ack = send_mllp(_oru("T0001"), "127.0.0.1", listener.port, timeout_s=20,
                    ssl_context=context)
    assert (ack.code, ack.control_id) == ("AA", "T0001")
    assert [r.accession for r in listener.received] == ["ACC1"]


def test_openssl_s_client_is_answered(listener: TlsListener) -> None:
    openssl = shutil.which("openssl")
    assert openssl is not None, "openssl is installed by setup"
    pki = listener.pki
    framed = b"\x0b" + _oru("T0002").encode() + b"\x1c\r"
    result = subprocess.run(
        [openssl, "s_client", "-connect", f"127.0.0.1:{listener.port}", "-quiet",
         "-verify_return_error", "-CAfile", str(pki / "ca.pem"),
         "-cert", str(pki / "client.pem"), "-key", str(pki / "client.key")],
        input=framed, capture_output=True, timeout=60, check=False)
    ack = result.stdout.split(b"\x0b", 1)[-1].split(b"\x1c\r", 1)[0].decode()
    assert ack.startswith("MSH|"), result.stderr.decode(errors="replace")[-500:]
    msa = next(seg for seg in ack.split("\r") if seg.startswith("MSA|"))
    assert msa.split("|")[1:3] == ["AA", "T0002"]
    assert [r.accession for r in listener.received] == ["ACC1"]


def test_sender_without_certificate_is_refused(listener: TlsListener) -> None:
    context = client_tls_context(str(listener.pki / "ca.pem"))
    with pytest.raises(TransientDeliveryError):
        send_mllp(_oru("T0003"), "127.0.0.1", listener.port, timeout_s=20, ssl_context=context)
    assert listener.received == []


def test_plain_tcp_sender_gets_no_answer(listener: TlsListener) -> None:
    with pytest.raises(TransientDeliveryError):
        send_mllp(_oru("T0004"), "127.0.0.1", listener.port, timeout_s=20)
    assert listener.received == []


def test_receiver_signed_by_another_ca_is_refused(listener: TlsListener,
                                                  tmp_path: Path) -> None:
    other = make_pki(tmp_path)
    context = client_tls_context(str(other / "ca.pem"), str(other / "client.pem"),
                                 str(other / "client.key"))
    with pytest.raises(TransientDeliveryError, match="TLS"):
        send_mllp(_oru("T0005"), "127.0.0.1", listener.port, timeout_s=20, ssl_context=context)
    assert listener.received == []
