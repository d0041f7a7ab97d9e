"""The console's router, added to the node's web app by `infernode.web.create_app`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter

from infernode.audit import AuditLog
from infernode.console.admin_pages import add_admin_pages
from infernode.console.auth import Authenticator
from infernode.console.routes import add_pages, add_session_routes
from infernode.console.web import Console

if TYPE_CHECKING:
    from infernode.node import Node


def create_console_router(node: Node) -> APIRouter:
    """Every console route: login, pages, actions and the console's static files."""
    cfg = node.settings.console
    con = Console(Authenticator(node.engine, cfg), cfg, AuditLog(node.engine))
    router = APIRouter()
    add_session_routes(router, con)
    add_pages(router, con, node)
    add_admin_pages(router, con, node)
    if cfg.oidc is not None:
        from infernode.console.oidc import OidcClient
        from infernode.console.sso import add_oidc_routes

        add_oidc_routes(router, con, OidcClient(cfg.oidc))
    return router
