"""Console single sign-on: the OpenID Connect authorization code flow with PKCE (OpenID Connect
Core 1.0 section 3.1; RFC 7636).

`begin` sends the browser to the provider with a random state, nonce and code challenge (kept in
memory for ten minutes; the state is also bound to the browser by a cookie); `finish` exchanges
the code at the token endpoint and validates the ID token: signature against the provider's
JWKS, issuer, audience, expiry, issued-at and nonce. The user name and role come from the
token's claims through `console.oidc.role_map`.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt

from infernode.console.config import OidcConfig, Role

PENDING_TTL_S = 600.0
MAX_PENDING = 1000
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384"]


class OidcError(Exception):
    """A sign-on that cannot complete; `reason` is a short code for the audit trail."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class _Pending:
    nonce: str
    verifier: str
    redirect_uri: str
    created: float


@dataclass(frozen=True)
class OidcUser:
    name: str
    role: Role


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class OidcClient:
    """One provider; thread-safe. `clock`: monotonic seconds (tests move it)."""

    def __init__(self, cfg: OidcConfig, clock: Any = time.monotonic) -> None:
        self.cfg, self.clock = cfg, clock
        self._pending: dict[str, _Pending] = {}
        self._metadata: dict[str, Any] | None = None
        self._keys: jwt.PyJWKSet | None = None
        self._lock = threading.Lock()

    def _get(self, url: str) -> dict[str, Any]:
        try:
            response = httpx.get(url, timeout=self.cfg.timeout_s)
            response.raise_for_status()
            found: dict[str, Any] = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise OidcError("provider_unreachable",
                            f"the sign-on provider did not answer ({type(exc).__name__})") from exc
        return found

    def metadata(self) -> dict[str, Any]:
        """The provider's discovery document (fetched once). Raises OidcError."""
        if self._metadata is None:
            issuer = self.cfg.issuer.rstrip("/")
            found = self._get(f"{issuer}/.well-known/openid-configuration")
            if found.get("issuer", "").rstrip("/") != issuer:
                raise OidcError("issuer_mismatch", "the provider names another issuer")
            self._metadata = found
        return self._metadata

    def begin(self, redirect_uri: str) -> tuple[str, str]:
        """(the provider's authorization URL, the state). Raises OidcError."""
        meta = self.metadata()
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        verifier = secrets.token_urlsafe(48)
        with self._lock:
            now = self.clock()
            for key in [k for k, p in self._pending.items()
                        if now - p.created > PENDING_TTL_S]:
                del self._pending[key]
            if len(self._pending) >= MAX_PENDING:
                raise OidcError("too_many_pending", "too many sign-ons in progress")
            self._pending[state] = _Pending(nonce, verifier, redirect_uri, now)
        query = urlencode({
            "response_type": "code", "client_id": self.cfg.client_id,
            "redirect_uri": redirect_uri, "scope": " ".join(self.cfg.scopes), "state": state,
            "nonce": nonce, "code_challenge_method": "S256",
            "code_challenge": _b64url(hashlib.sha256(verifier.encode()).digest()),
        })
        return f"{meta['authorization_endpoint']}?{query}", state

    def finish(self, state: str, code: str) -> OidcUser:
        """The user signed on by `code`. Raises OidcError (unknown or expired state, token
        refused, invalid ID token, no role)."""
        with self._lock:
            pending = self._pending.pop(state, None)
        if pending is None or self.clock() - pending.created > PENDING_TTL_S:
            raise OidcError("bad_state", "the sign-on expired or was not started here")
        claims = self._claims(self._exchange(code, pending), pending.nonce)
        name = claims.get(self.cfg.username_claim) or claims.get("sub")
        if not isinstance(name, str) or not name:
            raise OidcError("no_username", "the ID token names no user")
        granted = claims.get(self.cfg.roles_claim) or []
        values = [granted] if isinstance(granted, str) else list(granted)
        roles = [self.cfg.role_map[v] for v in values if v in self.cfg.role_map]
        if not roles:
            raise OidcError("no_role", "the user has no console role")
        return OidcUser(name[:64], max(roles, key=lambda r: r.rank))

    def _exchange(self, code: str, pending: _Pending) -> str:
        meta = self.metadata()
        data = {"grant_type": "authorization_code", "code": code,
                "redirect_uri": pending.redirect_uri, "code_verifier": pending.verifier,
                "client_id": self.cfg.client_id}
        auth = ((self.cfg.client_id, self.cfg.client_secret.get_secret_value())
                if self.cfg.client_secret else None)
        try:
            response = httpx.post(meta["token_endpoint"], data=data, auth=auth,
                                  timeout=self.cfg.timeout_s)
        except httpx.HTTPError as exc:
            raise OidcError("provider_unreachable",
                            f"the token endpoint did not answer ({type(exc).__name__})") from exc
        if response.status_code != 200:
            raise OidcError("token_refused",
                            f"the provider refused the code (HTTP {response.status_code})")
        try:
            token = response.json()["id_token"]
        except (ValueError, KeyError) as exc:
            raise OidcError("no_id_token", "the provider returned no ID token") from exc
        if not isinstance(token, str):
            raise OidcError("no_id_token", "the provider returned no ID token")
        return token

    def _key(self, token: str) -> Any:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as exc:
            raise OidcError("bad_id_token", "the ID token is not a JWT") from exc
        for refresh in (False, True):
            if self._keys is None or refresh:
                try:
                    self._keys = jwt.PyJWKSet.from_dict(self._get(self.metadata()["jwks_uri"]))
                except jwt.PyJWTError as exc:
                    raise OidcError("bad_jwks", "the provider's keys cannot be read") from exc
            keys = self._keys.keys
            match = [k for k in keys if kid is None or k.key_id == kid]
            if match:
                return match[0].key
        raise OidcError("unknown_key", "the ID token is signed with an unknown key")

    def _claims(self, token: str, nonce: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token, self._key(token), algorithms=ALGORITHMS, audience=self.cfg.client_id,
                issuer=self.metadata()["issuer"], leeway=60,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]})
        except jwt.PyJWTError as exc:
            raise OidcError("bad_id_token", f"the ID token is not valid ({type(exc).__name__})"
                            ) from exc
        if not secrets.compare_digest(str(claims.get("nonce", "")), nonce):
            raise OidcError("bad_nonce", "the ID token answers another sign-on")
        return claims
