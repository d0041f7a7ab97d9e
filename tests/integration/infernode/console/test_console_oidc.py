"""Console single sign-on against a loopback OpenID Connect provider: the authorization code
flow with PKCE signs a user in with the role mapped from their groups; a forged state, a token
for another sign-on (nonce), another issuer's token and a user without a mapped group are
refused and audited."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from infernode.audit import AuditLog, Category
from infernode.console.auth import COOKIE
from tests.integration.infernode.console.console_support import client_for
from tests.integration.infernode.console.oidc_provider import (
    CLIENT_ID,
    CLIENT_SECRET,
    running_provider,
)


@pytest.fixture
def provider_node(console_node):
    with running_provider() as provider:
        node = console_node(oidc={
            "issuer": provider.issuer, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
            "role_map": {"radiology-it": "operator", "pacs-admins": "admin"}})
        yield provider, node


def _sign_on(client: Any) -> Any:
    """Browser steps: start at the console, follow the provider's redirect back."""
    start = client.get("/login/oidc")
    assert start.status_code == 303
    at_provider = httpx.get(start.headers["location"], follow_redirects=False)
    assert at_provider.status_code == 302
    back = httpx.URL(at_provider.headers["location"])
    assert back.path == "/login/oidc/callback"
    return client.get(f"{back.path}?{back.query.decode()}")


def test_sign_on_with_the_provider_gives_the_mapped_role(provider_node):
    provider, node = provider_node
    client = client_for(node)
    assert 'href="/login/oidc"' in client.get("/login").text
    done = _sign_on(client)
    assert done.status_code == 200 and 'http-equiv="refresh"' in done.text
    cookie = next(h for h in done.headers.get_list("set-cookie") if h.startswith(COOKIE))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    page = client.get("/")
    assert page.status_code == 200 and "alice (operator)" in page.text
    assert client.get("/config").status_code == 403  # operator, not admin
    provider.user["groups"] = ["radiology-it", "pacs-admins"]
    admin = client_for(node, "10.3.3.3")
    _sign_on(admin)
    assert "alice (admin)" in admin.get("/").text
    logins = AuditLog(node.engine).query(category=str(Category.LOGIN))
    assert [(e.actor, e.outcome, e.detail.get("method")) for e in logins] == [
        ("alice", "success", "oidc"), ("alice", "success", "oidc")]


REFUSALS = [
    ({"nonce": "another-sign-on"}, "bad_nonce"),
    ({"iss": "http://127.0.0.1:1/elsewhere"}, "bad_id_token"),
    ({"aud": "another-client"}, "bad_id_token"),
    ({"exp": 1_000_000_000}, "bad_id_token"),
    ({"groups": ["cafeteria"]}, "no_role"),
]


def test_invalid_tokens_and_unmapped_users_are_refused(provider_node):
    provider, node = provider_node
    for tamper, reason in REFUSALS:
        provider.tamper = tamper
        client = client_for(node)
        refused = _sign_on(client)
        assert refused.status_code == 401, tamper
        assert COOKIE not in client.cookies
        assert client.get("/").status_code == 303
        failure = AuditLog(node.engine).query(category=str(Category.LOGIN))[0]
        assert (failure.outcome, failure.detail["reason"]) == ("failure", reason), tamper


def test_a_callback_not_started_in_this_browser_is_refused(provider_node):
    provider, node = provider_node
    victim = client_for(node)
    start = victim.get("/login/oidc")
    back = httpx.URL(httpx.get(start.headers["location"]).headers["location"])
    attacker = client_for(node, "10.4.4.4")  # no state cookie: a forged / replayed callback
    refused = attacker.get(f"{back.path}?{back.query.decode()}")
    assert refused.status_code == 400 and COOKIE not in attacker.cookies
    assert provider.token_requests == 0  # the code was never exchanged
    assert victim.get(f"{back.path}?{back.query.decode()}").status_code == 200
    again = victim.get(f"{back.path}?{back.query.decode()}")  # a code and state work once
    assert again.status_code in (400, 401)
