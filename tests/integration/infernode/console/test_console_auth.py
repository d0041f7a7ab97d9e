"""Console access: argon2 hashes, login and logout, the login rate limit, CSRF refusals,
session expiry (idle and absolute), cookies, and the audit trail of each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from typer.testing import CliRunner

from infernode.audit import AuditLog, Category
from infernode.cli import app as cli_app
from infernode.console.auth import COOKIE, Authenticator, hash_password, verify_password
from infernode.console.tables import console_sessions
from tests.integration.infernode.console.console_support import (
    PASSWORDS,
    client_for,
    log_in,
    page_csrf,
)


def test_hash_password_cli_makes_an_argon2_hash_that_verifies():
    result = CliRunner().invoke(cli_app, ["console", "hash-password", "--password", "s3cret!"])
    assert result.exit_code == 0, result.output
    hashed = result.output.strip()
    assert hashed.startswith("$argon2id$")
    assert verify_password(hashed, "s3cret!")
    assert not verify_password(hashed, "s3cret")
    assert not verify_password("not a hash", "s3cret!")
    assert hash_password("x") != hash_password("x")  # salted


def test_nothing_but_the_login_page_and_its_css_without_a_session(console_node):
    client = client_for(console_node())
    for path in ("/", "/studies", "/jobs", "/deliveries", "/models", "/routing", "/config",
                 "/overview/live", "/console/static/console.js", "/studies/1.2.3",
                 "/actions/delivery-replay/1"):
        response = client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"] == "/login"
    assert client.get("/login").status_code == 200
    assert client.get("/console/static/console.css").status_code == 200
    assert client.post("/actions/delivery-replay/1", data={"csrf": "x"}).status_code == 303


def test_login_sets_a_strict_http_only_cookie_and_logout_ends_the_session(console_node):
    node = console_node()
    client = client_for(node)
    response = log_in(client, "otto")
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = next(h for h in response.headers.get_list("set-cookie")
                  if h.startswith(f"{COOKIE}="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP and secure_cookie off
    session_id = cookie.split(";")[0].split("=", 1)[1]
    with node.engine.connect() as conn:
        stored = conn.execute(sa.select(console_sessions.c.id_sha256)).scalars().all()
    assert len(stored) == 1 and session_id not in stored[0]  # kept hashed only
    overview = client.get("/")
    assert overview.status_code == 200 and "Overview" in overview.text
    assert "otto (operator)" in overview.text
    assert client.post("/logout", data={"csrf": page_csrf(overview.text)}).status_code == 303
    client.cookies.set(COOKIE, session_id)  # the old cookie replayed after logout
    assert client.get("/").status_code == 303
    events = AuditLog(node.engine).query(category=str(Category.LOGIN))
    assert [(e.action, e.outcome, e.actor) for e in events] == [
        ("logout", "success", "otto"), ("login", "success", "otto")]
    assert events[1].source == "testclient"


def test_cookies_are_secure_over_https_or_when_configured(console_node):
    node = console_node()
    client = client_for(node)
    client.base_url = "https://testserver"  # type: ignore[assignment]
    response = log_in(client, "otto")
    cookie = next(h for h in response.headers.get_list("set-cookie")
                  if h.startswith(f"{COOKIE}="))
    assert "Secure" in cookie
    behind_proxy = client_for(console_node(secure_cookie=True))  # plain HTTP to the node
    assert "Secure" in behind_proxy.get("/login").headers["set-cookie"]


def test_wrong_password_and_unknown_user_are_refused_and_audited(console_node):
    node = console_node()
    client = client_for(node)
    assert log_in(client, "otto", "wrong").status_code == 401
    refused = log_in(client, "nobody", "whatever")
    assert refused.status_code == 401 and "unknown user or wrong password" in refused.text
    assert COOKIE not in client.cookies
    failures = AuditLog(node.engine).query(category=str(Category.LOGIN))
    assert {(e.actor, e.outcome, e.detail["reason"]) for e in failures} == {
        ("otto", "failure", "bad_credentials"), ("nobody", "failure", "bad_credentials")}
    assert all("wrong" not in str(e.detail) for e in failures)  # no password in the trail


def test_login_rate_limit_per_user_and_per_address(console_node):
    node = console_node(login_attempts=3, login_window_s=600)
    client = client_for(node)
    for _ in range(3):
        assert log_in(client, "otto", "wrong").status_code == 401
    # the right password no longer helps, for this user
    assert log_in(client, "otto").status_code == 429
    # the same address is blocked for every user name (3 failures from it)
    assert log_in(client, "ada").status_code == 429
    reasons = [e.detail["reason"] for e in AuditLog(node.engine).query(
        category=str(Category.LOGIN))]
    assert reasons.count("rate_limited") == 2


def test_login_rate_limit_per_user_from_many_addresses(console_node):
    node = console_node(login_attempts=2)
    for address in ("10.0.0.1", "10.0.0.2"):
        assert log_in(client_for(node, address), "vera", "wrong").status_code == 401
    assert log_in(client_for(node, "10.0.0.3"), "vera").status_code == 429
    assert log_in(client_for(node, "10.0.0.3"), "otto").status_code == 303


def test_posts_without_the_csrf_token_are_refused(console_node):
    node = console_node()
    client = client_for(node)
    # the login form's own token (double submit: cookie and field)
    token = client.get("/login").text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    bad = client.post("/login", data={"user": "otto", "password": PASSWORDS["otto"],
                                      "csrf": token + "x"})
    assert bad.status_code == 403
    assert log_in(client, "ada").status_code == 303
    assert client.post("/logout").status_code == 403
    assert client.post("/logout", data={"csrf": "forged"}).status_code == 403
    assert client.post("/models/ich/switch", data={"enabled": "false"}).status_code == 403
    assert client.post("/actions/job-retry/x", data={"csrf": "forged"}).status_code == 403
    assert client.get("/").status_code == 200  # still logged in
    refusals = AuditLog(node.engine).query(category=str(Category.CONSOLE))
    assert [e.action for e in refusals].count("csrf_refused") == 4


def test_sessions_end_when_idle_or_too_old_or_the_user_is_gone(console_node):
    node = console_node(session_idle_s=60, session_max_s=3600)
    now = [datetime(2026, 12, 4, 10, 0, tzinfo=UTC)]
    auth = Authenticator(node.engine, node.settings.console, clock=lambda: now[0])
    user = auth.check_password("otto", PASSWORDS["otto"])
    assert user is not None and auth.check_password("otto", "nope") is None
    idle_id, _ = auth.open_session(user.name, user.role, "127.0.0.1")
    for _ in range(70):  # kept alive by use: 70 requests 55 s apart outlive session_max_s
        now[0] += timedelta(seconds=55)
        if auth.session(idle_id) is None:
            break
    assert now[0] - datetime(2026, 12, 4, 10, 0, tzinfo=UTC) > timedelta(seconds=3600)
    assert now[0] - datetime(2026, 12, 4, 10, 0, tzinfo=UTC) <= timedelta(seconds=3655)
    second, _ = auth.open_session(user.name, user.role, "127.0.0.1")
    now[0] += timedelta(seconds=61)
    assert auth.session(second) is None  # idle too long
    assert auth.session(second) is None  # and stays ended
    third, _ = auth.open_session(user.name, user.role, "127.0.0.1")
    smaller = node.settings.console.model_copy(update={"users": ()})
    assert Authenticator(node.engine, smaller, clock=lambda: now[0]).session(third) is None
    assert auth.session(third) is None  # ended for good, even with the user back
    assert auth.session("made-up") is None and auth.session(None) is None
