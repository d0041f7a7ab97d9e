"""DICOM over TLS (PS3.15 B.1) with DCMTK as the peer: a client with a certificate from the
configured CA stores; plain TCP and a client without a certificate are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.peers.dcmtk import ct_series, run


@pytest.fixture(params=["native", "pynetdicom"])
def tls_node(node_factory, pki, request):
    """A node serving TLS, on each upper layer."""
    return node_factory(upper_layer=request.param, tls={"cert_file": str(pki / "server.pem"),
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
