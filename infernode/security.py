"""The web port's locks: bearer tokens on the operator endpoints when the port is reachable
from the network, security headers on every response, and the expiry of configured
certificates as a Prometheus gauge.

Tokens: `/metrics`, `/api/*`, `/docs`, `/openapi.json` and `/redoc` answer without a token only
when the web port listens on a loopback address; otherwise they need
`Authorization: Bearer <one of web.api_tokens>` (401 without, and with no token configured).
The FHIR facade, STOW-RS and the console keep their own credentials.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from cryptography import x509
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from infernode.settings import Settings

PROTECTED_PREFIXES = ("/metrics", "/api/", "/docs", "/openapi.json", "/redoc")

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
"""For the server-rendered console: scripts and styles from the node only, none inline."""

DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
            "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
            "img-src 'self' data: https://fastapi.tiangolo.com; worker-src blob:; "
            "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
"""FastAPI's /docs and /redoc pages run an inline bootstrap script and load their assets from
a CDN; only those two pages get this policy."""

HSTS = "max-age=31536000"


def is_loopback(host: str) -> bool:
    """True for a loopback address or `localhost`; False for a wildcard or any other host."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def token_identity(token: str) -> str:
    """A stable name for a token that does not reveal it (for the audit trail)."""
    return "token:" + hashlib.sha256(token.encode()).hexdigest()[:12]


def bearer_matches(header: str, tokens: tuple[bytes, ...]) -> str | None:
    """The token of an `Authorization` header value when it is one of `tokens`, else None.
    Compares with every token without stopping early."""
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip() or not tokens:
        return None
    given = credential.strip().encode()
    matches = [hmac.compare_digest(given, token) for token in tokens]
    return given.decode() if any(matches) else None


def _protected(path: str) -> bool:
    return any(path == p.rstrip("/") or path.startswith(p) for p in PROTECTED_PREFIXES)


class SecurityMiddleware:
    """ASGI middleware: refuses the protected paths without a token (when `require_token`)
    and adds the security headers a response does not set itself."""

    def __init__(self, app: ASGIApp, *, tokens: Iterable[str], require_token: bool,
                 tls: bool) -> None:
        self.app = app
        self.tokens = tuple(t.encode() for t in tokens if t)
        self.require_token = require_token
        self.tls = tls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        headers = self._headers(path)
        if self.require_token and _protected(path):
            auth = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
            if bearer_matches(auth, self.tokens) is None:
                await _unauthorized(send, headers)
                return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in headers if k not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _headers(self, path: str) -> list[tuple[bytes, bytes]]:
        docs = path in ("/docs", "/redoc") or path.startswith("/docs/")
        found = {
            "content-security-policy": DOCS_CSP if docs else CSP,
            "x-content-type-options": "nosniff",
            "x-frame-options": "DENY",
            "referrer-policy": "no-referrer",
            "cache-control": "no-store",
        }
        if self.tls:
            found["strict-transport-security"] = HSTS
        return [(k.encode(), v.encode()) for k, v in found.items()]


async def _unauthorized(send: Send, headers: list[tuple[bytes, bytes]]) -> None:
    body = json.dumps({"detail": "bearer token required"}).encode()
    await send({
        "type": "http.response.start", "status": 401,
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="infernode"'), *headers],
    })
    await send({"type": "http.response.body", "body": body})


CERT_EXPIRY_METRIC = "infernode_certificate_expiry_timestamp_seconds"


class CertificateExpiryCollector(Collector):
    """`infernode_certificate_expiry_timestamp_seconds{certificate=...}`: the notAfter time of
    each configured certificate (the first in its PEM file), read at scrape time so a rotated
    file shows at once; `infernode_certificate_readable{certificate=...}` 0 when it cannot be
    read. Alert on `... - time() < 14 * 86400`."""

    def __init__(self, certificates: Mapping[str, Path]) -> None:
        self._certificates = dict(certificates)

    def collect(self) -> Iterator[Metric]:
        expiry = GaugeMetricFamily(CERT_EXPIRY_METRIC,
                                   "Expiry (notAfter) of a configured certificate, Unix time",
                                   labels=["certificate"])
        readable = GaugeMetricFamily("infernode_certificate_readable",
                                     "1 when the configured certificate could be read",
                                     labels=["certificate"])
        for name, path in sorted(self._certificates.items()):
            try:
                cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
            except (OSError, ValueError):
                readable.add_metric([name], 0.0)
                continue
            readable.add_metric([name], 1.0)
            expiry.add_metric([name], cert.not_valid_after_utc.timestamp())
        yield expiry
        yield readable


def configured_certificates(settings: Settings) -> dict[str, Path]:
    """The certificates of the node's settings: `web` (HTTPS), `dicom` (DICOM TLS) and
    `audit` (the client certificate for the audit repository)."""
    found: dict[str, Path] = {}
    if settings.web.tls_certfile is not None:
        found["web"] = Path(settings.web.tls_certfile)
    if settings.dicom.tls is not None:
        found["dicom"] = Path(settings.dicom.tls.cert_file)
    syslog = settings.audit.syslog
    if syslog is not None and syslog.cert_file is not None:
        found["audit"] = Path(syslog.cert_file)
    return found
