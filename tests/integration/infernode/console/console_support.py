"""Helpers of the console tests: a TestClient on a node's web app, logging in, CSRF tokens."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

PASSWORDS = {"vera": "viewer-pass-1", "otto": "operator-pass-1", "ada": "admin-pass-1"}
ROLES = {"vera": "viewer", "otto": "operator", "ada": "admin"}


def client_for(node: Any, address: str = "testclient") -> TestClient:
    """A client of the node's web app (built once per node) from `address`."""
    from infernode.web import create_app

    app = getattr(node, "_test_web_app", None)
    if app is None:
        app = create_app(node)
        node._test_web_app = app
    return TestClient(app, follow_redirects=False, client=(address, 50000))


def login_csrf(client: TestClient) -> str:
    page = client.get("/login")
    assert page.status_code == 200
    return page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def log_in(client: TestClient, user: str, password: str | None = None) -> Any:
    token = login_csrf(client)
    return client.post("/login", data={"user": user, "password": password or PASSWORDS[user],
                                       "csrf": token})


def page_csrf(html: str) -> str:
    return html.split('name="csrf" value="', 1)[1].split('"', 1)[0]
