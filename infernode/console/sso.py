"""The console's OpenID Connect routes: `/login/oidc` starts a sign-on at the provider,
`/login/oidc/callback` completes it (see `oidc`)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from infernode.audit import Category
from infernode.console.auth import COOKIE, OIDC
from infernode.console.oidc import OidcClient, OidcError
from infernode.console.routes import login_refused, set_cookie
from infernode.console.web import Console, client_address

STATE_COOKIE = "infernode_oidc_state"
CALLBACK = "/login/oidc/callback"


def add_oidc_routes(router: APIRouter, con: Console, client: OidcClient) -> None:
    @router.get("/login/oidc", include_in_schema=False)
    def start(request: Request) -> Response:
        redirect_uri = client.cfg.redirect_url or str(request.url_for("oidc_callback"))
        try:
            url, state = client.begin(redirect_uri)
        except OidcError as exc:
            return login_refused(request, con, "(oidc)", exc.reason, str(exc), 502)
        response = RedirectResponse(url, status_code=303)
        # Lax, not Strict: the provider's redirect back is a cross-site navigation
        set_cookie(response, request, con, STATE_COOKIE, state, max_age=600,
                   path="/login/oidc", samesite="lax")
        return response

    @router.get(CALLBACK, name="oidc_callback", include_in_schema=False)
    def callback(request: Request, state: str = "", code: str = "",
                 error: str = "") -> Response:
        bound = request.cookies.get(STATE_COOKIE, "")
        if error:
            return login_refused(request, con, "(oidc)", "provider_error",
                                 "the sign-on provider refused the sign-on", 401)
        if not state or not code or state != bound:
            return login_refused(request, con, "(oidc)", "bad_state",
                                 "the sign-on was not started in this browser", 400)
        try:
            user = client.finish(state, code)
        except OidcError as exc:
            return login_refused(request, con, "(oidc)", exc.reason, str(exc), 401)
        session_id, session = con.auth.open_session(user.name, user.role,
                                                    client_address(request), origin=OIDC)
        con.record(request, session, "login", category=Category.LOGIN,
                   detail={"method": "oidc"})
        # A page, not a redirect: the SameSite=Strict session cookie is sent only on a
        # navigation started from this site, so the browser moves on from here.
        response = HTMLResponse(
            '<!doctype html><meta http-equiv="refresh" content="0;url=/">'
            '<title>Signed in</title><p>Signed in. <a href="/">Continue</a></p>')
        set_cookie(response, request, con, COOKIE, session_id,
                   max_age=int(con.cfg.session_max_s))
        response.delete_cookie(STATE_COOKIE, path="/login/oidc")
        return response
