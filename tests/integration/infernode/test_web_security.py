"""The web port's locks on a running node: tokens on the operator endpoints when the port is
not on loopback, security headers on every answer, HTTPS from a certificate made by openssl,
and the certificate-expiry gauge for the web and DICOM TLS certificates."""

from __future__ import annotations

import re
import ssl
import subprocess
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from infernode.node import Node
from infernode.settings import load_settings
from tests.support.net import free_port

TOKEN = "s3cret-operator-token"
PROTECTED = ("/metrics", "/api/status", "/docs", "/redoc", "/openapi.json")


@pytest.fixture
def web_node(tmp_path: Path) -> Iterator[Callable[..., tuple[Node, int]]]:
    started: list[Node] = []

    def make(web: dict[str, Any], **more: Any) -> tuple[Node, int]:
        base = tmp_path / f"node{len(started)}"
        port = free_port()
        dicom = {"port": 0, "spool_dir": str(base / "spool"), "min_free_bytes": 0,
                 **more.pop("dicom", {})}
        settings = load_settings(None, data_dir=str(base),
                                 database={"url": f"sqlite:///{base / 'infernode.db'}"},
                                 dicom=dicom, web={"port": port, **web}, **more)
        node = Node.build(settings)
        node.start()
        started.append(node)
        return node, port

    yield make
    for node in started:
        node.stop()


def assert_security_headers(answer: httpx.Response, *, hsts: bool) -> None:
    headers = answer.headers
    csp = headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
    if answer.url.path not in ("/docs", "/redoc"):
        assert "'unsafe-inline'" not in csp and "script-src 'self';" in csp
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["cache-control"] == "no-store"
    assert ("strict-transport-security" in headers) is hsts


def test_operator_endpoints_need_a_token_off_loopback(web_node) -> None:
    _, port = web_node({"host": "0.0.0.0", "api_tokens": [TOKEN]})
    base = f"http://127.0.0.1:{port}"
    for path in PROTECTED:
        anonymous = httpx.get(base + path)
        assert anonymous.status_code == 401, path
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        assert_security_headers(anonymous, hsts=False)
        wrong = httpx.get(base + path, headers={"Authorization": "Bearer not-it"})
        assert wrong.status_code == 401, path
        allowed = httpx.get(base + path, headers={"Authorization": f"Bearer {TOKEN}"})
        assert allowed.status_code == 200, path
        assert_security_headers(allowed, hsts=False)
    # probes and FHIR discovery stay open; the FHIR facade keeps its own tokens
    for path in ("/health", "/health/live", "/fhir/metadata"):
        open_answer = httpx.get(base + path)
        assert open_answer.status_code == 200, path
        assert_security_headers(open_answer, hsts=False)
    assert httpx.get(base + "/fhir/Patient",
                     headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 401


def test_no_token_configured_off_loopback_means_closed(web_node) -> None:
    _, port = web_node({"host": "0.0.0.0"})
    for auth in ({}, {"Authorization": "Bearer x"}, {"Authorization": f"Bearer {TOKEN}"}):
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", headers=auth).status_code == 401


def test_loopback_port_answers_without_a_token(web_node) -> None:
    _, port = web_node({"host": "127.0.0.1"})
    for path in PROTECTED:
        answer = httpx.get(f"http://127.0.0.1:{port}{path}")
        assert answer.status_code == 200, path
        assert_security_headers(answer, hsts=False)


def _self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "web.pem", folder / "web.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
                    "-subj", "/CN=infernode-test", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def _not_after(cert: Path) -> float:
    out = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in", str(cert)],
                         check=True, capture_output=True, text=True).stdout
    text = out.strip().split("=", 1)[1]
    return datetime.strptime(text.replace(" GMT", " +0000"), "%b %d %H:%M:%S %Y %z").timestamp()


def test_https_with_hsts_and_certificate_expiry_gauges(web_node, tmp_path: Path,
                                                       pki: Path) -> None:
    cert, key = _self_signed(tmp_path)
    node, port = web_node(
        {"tls_certfile": str(cert), "tls_keyfile": str(key)},
        dicom={"tls": {"cert_file": str(pki / "server.pem"), "key_file": str(pki / "server.key"),
                       "ca_file": str(pki / "ca.pem")}},
        audit={"syslog": {"host": "127.0.0.1", "port": free_port(), "ca_file": str(pki / "ca.pem"),
                          "cert_file": str(pki / "client.pem"),
                          "key_file": str(pki / "client.key")}})
    trust = ssl.create_default_context(cafile=str(cert))
    answer = httpx.get(f"https://127.0.0.1:{port}/health/live", verify=trust)
    assert answer.status_code == 200
    assert_security_headers(answer, hsts=True)
    assert answer.headers["strict-transport-security"].startswith("max-age=")
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=5)

    metrics = httpx.get(f"https://127.0.0.1:{port}/metrics", verify=trust).text
    found = dict(re.findall(
        r'^infernode_certificate_expiry_timestamp_seconds\{certificate="(\w+)"\} (\S+)$',
        metrics, re.M))
    assert set(found) == {"web", "dicom", "audit"}
    assert float(found["web"]) == pytest.approx(_not_after(cert), abs=1)
    assert float(found["dicom"]) == pytest.approx(_not_after(pki / "server.pem"), abs=1)
    assert float(found["audit"]) == pytest.approx(_not_after(pki / "client.pem"), abs=1)
    assert 'infernode_certificate_readable{certificate="web"} 1.0' in metrics


def test_check_config_warns_about_an_open_web_port(tmp_path: Path) -> None:
    import yaml
    from typer.testing import CliRunner

    from infernode.cli import app

    exposed = tmp_path / "exposed.yaml"
    exposed.write_text(yaml.safe_dump({
        "dicom": {"spool_dir": str(tmp_path / "spool")}, "web": {"host": "0.0.0.0"},
        "audit": {"syslog": {"host": "audit.example", "tls": False}}}))
    result = CliRunner().invoke(app, ["check-config", str(exposed)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for key in ("web.api_tokens", "web.tls_certfile", "audit.syslog.tls"):
        assert f"warning {key}" in result.output
    missing = tmp_path / "missing.yaml"
    missing.write_text(yaml.safe_dump({
        "dicom": {"spool_dir": str(tmp_path / "spool")},
        "web": {"tls_certfile": str(tmp_path / "nope.pem"),
                "tls_keyfile": str(tmp_path / "nope.key")}}))
    result = CliRunner().invoke(app, ["check-config", str(missing)], env={"COLUMNS": "200"})
    assert result.exit_code == 1 and "error web.tls_certfile: no such file" in result.output
    quiet = tmp_path / "quiet.yaml"
    quiet.write_text(yaml.safe_dump({"dicom": {"spool_dir": str(tmp_path / "spool")}}))
    result = CliRunner().invoke(app, ["check-config", str(quiet)], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "web." not in result.output
