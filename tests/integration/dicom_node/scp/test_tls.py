"""DICOM over TLS (PS3.15 B.1) with DCMTK as the peer: a client with a certificate from the
configured CA stores; plain TCP and a client without a certificate are refused."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.peers.dcmtk import ct_series, run


def _openssl(*args: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl."""
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=InferNode Test CA", "-keyout", str(d / "ca.key"),
             "-out", str(d / "ca.pem"))
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                 "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"))
        ext = d / f"{name}.ext"
        ext.write_text("subjectAltName=IP:127.0.0.1\n" if name == "server" else
                       "extendedKeyUsage=clientAuth\n")
        _openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.pem"),
                 "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "2",
                 "-extfile", str(ext), "-out", str(d / f"{name}.pem"))
    return d


@pytest.fixture
def tls_node(node_factory, pki):
    return node_factory(tls={"cert_file": str(pki / "server.pem"),
                             "key_file": str(pki / "server.key"),
                             "ca_file": str(pki / "ca.pem")})


def _tls_args(pki: Path, with_cert: bool) -> list[str]:
    cert = ["+tls", str(pki / "client.key"), str(pki / "client.pem")] if with_cert else ["+tla"]
    return [*cert, "+cf", str(pki / "ca.pem")]


def test_a_client_with_a_certificate_stores_over_tls(tls_node, pki, tmp_path):
    files = ct_series(tmp_path / "src", slices=3)
    result = run(["storescu", "-aet", "INFERNODE_SCU", "-aec", "INFERNODE",
                  *_tls_args(pki, True), "127.0.0.1", str(tls_node.server.port),
                  *map(str, files)])
    assert result.returncode == 0, result.stderr
    assert tls_node.index.counts()["instances"] == 3


def test_plain_tcp_and_clients_without_a_certificate_are_refused(tls_node, pki, tmp_path):
    plain = run(["echoscu", "-aet", "INFERNODE_SCU", "-aec", "INFERNODE",
                 "127.0.0.1", str(tls_node.server.port)], timeout=30)
    assert plain.returncode != 0
    anonymous = run(["echoscu", "-aet", "INFERNODE_SCU", "-aec", "INFERNODE",
                     *_tls_args(pki, False), "127.0.0.1", str(tls_node.server.port)], timeout=30)
    assert anonymous.returncode != 0
    assert tls_node.index.counts()["instances"] == 0
