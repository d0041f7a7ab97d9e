"""Plumbing shared by the console's pages: templates, the session dependency, CSRF, audit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from jinja2.runtime import Context

from infernode.audit import AuditEvent, AuditLog, Category, Outcome
from infernode.console.auth import COOKIE, Authenticator, Session, csrf_ok
from infernode.console.config import ConsoleConfig, Role

HERE = Path(__file__).parent
MASK = "•••"


@pass_context
def _phi(ctx: Context, value: Any) -> str:
    """A patient identifier, or a mask when the viewer may not see it."""
    if not ctx.get("show_phi"):
        return MASK
    return "" if value is None else str(value)


def _dt(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""


def _secs(value: Any) -> str:
    return "" if value is None else f"{value:.2f} s"


def _bytes(value: Any) -> str:
    if value is None:
        return "?"
    size = float(value)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.1f} {unit}"
        size /= 1024
    return ""


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters.update(phi=_phi, dt=_dt, secs=_secs, size=_bytes)
    templates.env.autoescape = True
    return templates


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


class Console:
    """What every console route shares: the authenticator, templates and the audit trail."""

    def __init__(self, auth: Authenticator, cfg: ConsoleConfig, audit: AuditLog) -> None:
        self.auth, self.cfg, self.audit = auth, cfg, audit
        self.templates = make_templates()

    def session(self, request: Request, needed: Role = Role.VIEWER) -> Session:
        """The request's session. Raises HTTPException: 303 to the login page without one,
        403 when the role is below `needed`."""
        session = self.auth.session(request.cookies.get(COOKIE))
        if session is None:
            raise HTTPException(303, "login required", headers={"Location": "/login"})
        if not session.role.allows(needed):
            raise HTTPException(403, f"this page needs the {needed} role")
        return session

    async def post(self, request: Request, needed: Role) -> tuple[Session, dict[str, str]]:
        """The session and form of a POST, its CSRF token checked. Raises HTTPException (403
        on a missing or wrong token)."""
        session = self.session(request, needed)
        form = {k: str(v) for k, v in (await request.form()).items()}
        if not csrf_ok(session, form.get("csrf")):
            self.record(request, session, "csrf_refused", outcome=Outcome.FAILURE,
                        detail={"path": request.url.path})
            raise HTTPException(403, "missing or invalid CSRF token")
        return session, form

    def render(self, request: Request, session: Session | None, name: str,
               status_code: int = 200, **context: Any) -> HTMLResponse:
        context.update(
            session=session,
            show_phi=session is not None and session.role.allows(Role.OPERATOR),
            is_operator=session is not None and session.role.allows(Role.OPERATOR),
            is_admin=session is not None and session.role.allows(Role.ADMIN),
            csrf=session.csrf_token if session else "",
        )
        return self.templates.TemplateResponse(request, name, context, status_code=status_code)

    def record(self, request: Request, session: Session | None, action: str, *,
               category: Category = Category.CONSOLE, outcome: Outcome = Outcome.SUCCESS,
               subject: str | None = None, actor: str | None = None,
               detail: dict[str, Any] | None = None) -> None:
        self.audit.record(AuditEvent(
            category=category, action=action, outcome=outcome,
            actor=actor or (session.user if session else None), source=client_address(request),
            subject=subject, detail={**(detail or {}),
                                     **({"role": str(session.role)} if session else {})}))
