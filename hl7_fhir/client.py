"""FHIR client: posts a transaction Bundle to an EHR's FHIR base URL (FHIR R4 3.1.0.11,
"transaction": ``POST [base]`` with a Bundle of type transaction).

Authentication is a static bearer token or OAuth2 client credentials (RFC 6749 section 4.4;
the token is cached until shortly before it expires). Every failure is raised as a
`TransientDeliveryError` (5xx, 429, 408, 409, 412, timeouts, connection errors) or a
`PermanentDeliveryError` (other 4xx: 400, 401, 403, 404, 405, 410, 422...). Reasons name the
HTTP status and OperationOutcome issue codes only; OperationOutcome diagnostics are never copied
because servers often echo resource content (PHI) in them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from fhir.resources.R4B.bundle import Bundle

from hl7_fhir.errors import PermanentDeliveryError, TransientDeliveryError

FHIR_JSON = "application/fhir+json"
# Statuses worth retrying: the same request may succeed later (RFC 9110 15.5/15.6).
TRANSIENT_STATUSES = frozenset({408, 409, 412, 425, 429})
# Refresh a cached token this long before the server says it expires.
TOKEN_EXPIRY_MARGIN_S = 30.0


@dataclass(frozen=True)
class BearerToken:
    """A static bearer token (RFC 6750)."""

    token: str


@dataclass(frozen=True)
class ClientCredentials:
    """OAuth2 client-credentials grant (RFC 6749 4.4); the secret goes in HTTP Basic
    (client_secret_basic, RFC 6749 2.3.1) unless `secret_in_body`."""

    token_url: str
    client_id: str
    client_secret: str
    scope: str | None = None
    secret_in_body: bool = False


Auth = BearerToken | ClientCredentials


@dataclass(frozen=True)
class EntryOutcome:
    """One entry of the transaction-response: its status line and Location, if any."""

    status: str
    location: str | None


@dataclass(frozen=True)
class TransactionResult:
    status_code: int
    entries: tuple[EntryOutcome, ...]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _issue_codes(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return ""
    issues = [i.get("code") for i in body.get("issue", []) if isinstance(i, dict)]
    found = sorted({str(c) for c in issues if c})
    return f" (OperationOutcome: {', '.join(found)})" if found else ""


def classify(response: httpx.Response, what: str) -> None:
    """Raise the delivery error a non-2xx `response` means; return for 2xx."""
    code = response.status_code
    if 200 <= code < 300:
        return
    reason = f"{what} answered HTTP {code}{_issue_codes(response)}"
    if code >= 500 or code in TRANSIENT_STATUSES:
        raise TransientDeliveryError(reason, status=code, retry_after=_retry_after(response))
    raise PermanentDeliveryError(reason, status=code)


class _TokenCache:
    """OAuth2 access token of one client, fetched on demand and kept until expiry."""

    def __init__(self, creds: ClientCredentials, monotonic: Callable[[], float]) -> None:
        self._creds = creds
        self._monotonic = monotonic
        self._token: str | None = None
        self._expires_at = 0.0

    def invalidate(self) -> None:
        self._token = None

    def get(self, http: httpx.Client) -> tuple[str, bool]:
        """The token, and whether it was just fetched (a fresh token is not retried on 401)."""
        if self._token is not None and self._monotonic() < self._expires_at:
            return self._token, False
        self._token, lifetime = self._fetch(http)
        self._expires_at = self._monotonic() + max(0.0, lifetime - TOKEN_EXPIRY_MARGIN_S)
        return self._token, True

    def _fetch(self, http: httpx.Client) -> tuple[str, float]:
        creds = self._creds
        form = {"grant_type": "client_credentials"}
        if creds.scope:
            form["scope"] = creds.scope
        headers = {"Accept": "application/json"}
        try:
            if creds.secret_in_body:
                form |= {"client_id": creds.client_id, "client_secret": creds.client_secret}
                response = http.post(creds.token_url, data=form, headers=headers)
            else:
                basic = httpx.BasicAuth(creds.client_id, creds.client_secret)
                response = http.post(creds.token_url, data=form, auth=basic, headers=headers)
        except httpx.TimeoutException as exc:
            raise TransientDeliveryError("token endpoint timed out") from exc
        except httpx.TransportError as exc:
            reason = f"token endpoint unreachable: {type(exc).__name__}"
            raise TransientDeliveryError(reason) from exc
        if response.status_code in (400, 401):
            # RFC 6749 5.2: the error code (invalid_client, invalid_scope...) carries no PHI.
            error = _oauth_error(response)
            raise PermanentDeliveryError(
                f"token endpoint refused the client credentials: HTTP {response.status_code}"
                f"{f' ({error})' if error else ''}",
                status=response.status_code,
            )
        classify(response, "token endpoint")
        try:
            body = response.json()
            token = str(body["access_token"])
            lifetime = float(body.get("expires_in", 300))
        except (ValueError, KeyError, TypeError) as exc:
            raise TransientDeliveryError("token endpoint answered without an access_token") from exc
        return token, lifetime


def _oauth_error(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, str) and error.isascii() and len(error) < 64 else ""


class FhirClient:
    """A FHIR R4 server's base URL plus its credentials; keep one per destination so the
    OAuth2 token is reused. Use as a context manager, or call `close()`."""

    def __init__(
        self,
        base_url: str,
        auth: Auth | None = None,
        *,
        timeout_s: float = 30.0,
        verify: bool | str = True,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._auth = auth
        self._http = httpx.Client(timeout=timeout_s, verify=verify, follow_redirects=False)
        self._tokens = (
            _TokenCache(auth, monotonic) if isinstance(auth, ClientCredentials) else None
        )

    def __enter__(self) -> FhirClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _authorization(self) -> tuple[dict[str, str], bool]:
        if isinstance(self._auth, BearerToken):
            return {"Authorization": f"Bearer {self._auth.token}"}, True
        if self._tokens is not None:
            token, fresh = self._tokens.get(self._http)
            return {"Authorization": f"Bearer {token}"}, fresh
        return {}, True

    def send_bundle(self, bundle: Bundle | Mapping[str, Any]) -> TransactionResult:
        """POST the transaction Bundle to the base URL and return the transaction-response.

        A 401 with a cached OAuth2 token fetches a new token and tries once more (the server
        may have revoked it early). Raises `TransientDeliveryError` / `PermanentDeliveryError`.
        """
        if isinstance(bundle, Bundle):
            body = bundle.model_dump_json(exclude_none=True)
        else:
            body = json.dumps(dict(bundle))
        headers = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}
        for _attempt in range(2):
            auth_header, fresh = self._authorization()
            try:
                response = self._http.post(
                    self.base_url, content=body, headers=headers | auth_header
                )
            except httpx.TimeoutException as exc:
                raise TransientDeliveryError("FHIR server timed out") from exc
            except httpx.TransportError as exc:
                raise TransientDeliveryError(
                    f"FHIR server unreachable: {type(exc).__name__}"
                ) from exc
            if response.status_code == 401 and self._tokens is not None and not fresh:
                self._tokens.invalidate()
                continue
            break
        classify(response, "FHIR server")
        return _transaction_result(response)

    def final_reports(self, since: str, *, page_size: int = 100,
                      max_pages: int = 50) -> list[dict[str, Any]]:
        """DiagnosticReports with status final, corrected or amended updated at or after
        `since` (a FHIR instant), following the search Bundle's `next` links on the same base
        (FHIR R4 3.1.1.4 search, `_lastUpdated=ge`). Raises the delivery error types."""
        url: str | None = f"{self.base_url}/DiagnosticReport"
        params: dict[str, str] | None = {"status": "final,corrected,amended",
                                         "_lastUpdated": f"ge{since}", "_count": str(page_size)}
        found: list[dict[str, Any]] = []
        for _page in range(max_pages):
            if url is None:
                break
            auth_header, _fresh = self._authorization()
            try:
                response = self._http.get(url, params=params,
                                          headers={"Accept": FHIR_JSON} | auth_header)
            except httpx.TimeoutException as exc:
                raise TransientDeliveryError("FHIR server timed out") from exc
            except httpx.TransportError as exc:
                raise TransientDeliveryError(
                    f"FHIR server unreachable: {type(exc).__name__}") from exc
            classify(response, "FHIR server")
            try:
                body = response.json()
            except ValueError as exc:
                raise TransientDeliveryError("FHIR search answered without JSON") from exc
            found += [e["resource"] for e in body.get("entry") or []
                      if isinstance(e, dict) and isinstance(e.get("resource"), dict)]
            url = next((str(link.get("url")) for link in body.get("link") or []
                        if link.get("relation") == "next"), None)
            if url is not None and not url.startswith(self.base_url):
                break  # a next link to another server is not followed with our token
            params = None
        return found


def _transaction_result(response: httpx.Response) -> TransactionResult:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        return TransactionResult(response.status_code, ())
    entries = []
    for entry in body.get("entry", []):
        outcome = entry.get("response", {}) if isinstance(entry, dict) else {}
        entries.append(EntryOutcome(str(outcome.get("status", "")), outcome.get("location")))
    failed = [e.status for e in entries if e.status[:1] in ("4", "5")]
    if failed:
        # A transaction is all-or-nothing (R4 3.1.0.11.2), so this is a non-conformant server;
        # treat it by the first failing entry's class.
        first = failed[0].split(" ")[0]
        reason = f"FHIR transaction entry failed with {first}"
        if first.startswith("5"):
            raise TransientDeliveryError(reason)
        raise PermanentDeliveryError(reason)
    return TransactionResult(response.status_code, tuple(entries))


def send_bundle(
    bundle: Bundle | Mapping[str, Any],
    base_url: str,
    auth: Auth | None = None,
    *,
    timeout_s: float = 30.0,
) -> TransactionResult:
    """One-shot convenience over `FhirClient.send_bundle` (no token reuse across calls)."""
    with FhirClient(base_url, auth, timeout_s=timeout_s) as client:
        return client.send_bundle(bundle)
