"""The console's routes: login and logout, Overview, Studies (search and study page), Jobs and
Deliveries with their actions. Models, Routing and Configuration are in `admin_pages`."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from infernode.audit import Category, Outcome
from infernode.console import views
from infernode.console.auth import COOKIE
from infernode.console.config import Role
from infernode.console.web import HERE, Console, client_address
from workers import admin as job_admin
from workers.db import utcnow
from workers.errors import WorkerError
from workers.messages import JobState
from workers.outbox import admin as delivery_admin
from workers.outbox.tables import STATES as DELIVERY_STATES

if TYPE_CHECKING:
    from infernode.node import Node

LOGIN_CSRF = "infernode_login_csrf"
PUBLIC_STATIC = frozenset({"console.css"})


def add_session_routes(router: APIRouter, con: Console) -> None:
    @router.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_form(request: Request) -> Response:
        token = secrets.token_urlsafe(24)
        response = con.render(request, None, "login.html", login_csrf=token, error=None,
                              sso=con.cfg.oidc.label if con.cfg.oidc else None)
        _cookie(response, request, con, LOGIN_CSRF, token, max_age=3600)
        return response

    @router.post("/login", include_in_schema=False)
    def login(request: Request, user: Annotated[str, Form()],
              password: Annotated[str, Form()], csrf: Annotated[str, Form()] = "") -> Response:
        address = client_address(request) or "?"
        keys = (f"address:{address}", f"user:{user.lower()}")
        expected = request.cookies.get(LOGIN_CSRF)
        if not expected or not secrets.compare_digest(expected, csrf):
            return _login_refused(request, con, user, "csrf", "the form expired; try again", 403)
        if con.auth.limiter.blocked(*keys):
            return _login_refused(request, con, user, "rate_limited",
                                  "too many failed logins; wait and try again", 429)
        found = con.auth.check_password(user, password)
        if found is None:
            con.auth.limiter.failed(*keys)
            return _login_refused(request, con, user, "bad_credentials",
                                  "unknown user or wrong password", 401)
        con.auth.limiter.succeeded(keys[1])
        session_id, session = con.auth.open_session(found.name, found.role, address)
        con.record(request, session, "login", category=Category.LOGIN)
        response = RedirectResponse("/", status_code=303)
        _cookie(response, request, con, COOKIE, session_id, max_age=int(con.cfg.session_max_s))
        response.delete_cookie(LOGIN_CSRF, path="/login")
        return response

    @router.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        session, _ = await con.post(request, Role.VIEWER)
        con.auth.end_session(request.cookies.get(COOKIE, ""))
        con.record(request, session, "logout", category=Category.LOGIN)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    @router.get("/console/static/{name}", include_in_schema=False)
    def static(request: Request, name: str) -> Response:
        files = {p.name: p for p in (HERE / "static").iterdir() if p.is_file()}
        if name not in files:
            raise HTTPException(404)
        if name not in PUBLIC_STATIC:
            con.session(request)
        return FileResponse(files[name], headers={"Cache-Control": "private, max-age=300"})


def set_cookie(response: Response, request: Request, con: Console, name: str, value: str, *,
               max_age: int, path: str = "/", samesite: str = "strict") -> None:
    response.set_cookie(name, value, max_age=max_age, path=path, httponly=True,
                        samesite=samesite,  # type: ignore[arg-type]
                        secure=request.url.scheme == "https" or con.cfg.secure_cookie)


def login_refused(request: Request, con: Console, user: str, reason: str, message: str,
                  status: int) -> Response:
    """The login page again with `message`, the refusal audited (never the password)."""
    return _login_refused(request, con, user, reason, message, status)


def _cookie(response: Response, request: Request, con: Console, name: str, value: str, *,
            max_age: int) -> None:
    set_cookie(response, request, con, name, value, max_age=max_age,
               path="/login" if name == LOGIN_CSRF else "/")


def _login_refused(request: Request, con: Console, user: str, reason: str, message: str,
                   status: int) -> Response:
    con.record(request, None, "login", category=Category.LOGIN, outcome=Outcome.FAILURE,
               actor=user[:64], detail={"reason": reason})
    token = secrets.token_urlsafe(24)
    response = con.render(request, None, "login.html", status_code=status, login_csrf=token,
                          error=message, sso=con.cfg.oidc.label if con.cfg.oidc else None)
    _cookie(response, request, con, LOGIN_CSRF, token, max_age=3600)
    return response


def add_pages(router: APIRouter, con: Console, node: Node) -> None:
    from infernode.console.previews import PreviewCache

    previews = PreviewCache(node.engine)

    def models() -> list[tuple[str, str]]:
        return [(name, spec.model_version)
                for name, spec in sorted(node.settings.workers.pipelines.items())]

    def overview_data() -> views.Overview:
        return views.overview(node.engine, node.settings.dicom.spool_dir, models(),
                              views.now_utc())

    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    def overview(request: Request) -> Response:
        session = con.session(request)
        return con.render(request, session, "overview.html", page="overview", o=overview_data())

    @router.get("/overview/live", response_class=HTMLResponse, include_in_schema=False)
    def overview_live(request: Request) -> Response:
        session = con.session(request)
        return con.render(request, session, "overview_live.html", o=overview_data())

    @router.get("/studies", response_class=HTMLResponse, include_in_schema=False)
    def studies(request: Request, accession: str = "", date_from: str = "", date_to: str = "",
                modality: str = "", pipeline: str = "", result: str = "",
                state: str = "") -> Response:
        session = con.session(request)
        f = views.StudyFilter(accession=accession, date_from=date_from, date_to=date_to,
                              modality=modality, pipeline=pipeline, result=result, state=state)
        if accession and not session.role.allows(Role.OPERATOR):
            raise HTTPException(403, "searching by accession number needs the operator role")
        found = views.search_studies(node.engine, f)
        con.record(request, session, "studies_search",
                   detail={"filters": {k: bool(v) for k, v in vars(f).items()},
                           "studies": len(found)})
        return con.render(request, session, "studies.html", page="studies", f=f, studies=found,
                          pipelines=[m[0] for m in models()],
                          job_states=[s.value for s in JobState])

    @router.get("/studies/{study_uid}", response_class=HTMLResponse, include_in_schema=False)
    def study(request: Request, study_uid: str) -> Response:
        session = con.session(request)
        detail = views.study_detail(node.engine, study_uid)
        if detail is None:
            raise HTTPException(404, "no such study")
        show_phi = session.role.allows(Role.OPERATOR)
        patient = views.patient_header(detail["first_path"]) if show_phi else {}
        con.record(request, session, "study_view", subject=study_uid,
                   detail={"patient_identifiers_shown": show_phi})
        from infernode.console.admin_pages import explain_study

        shown = [{"label": p.label, "original": f"/studies/{study_uid}/preview/{i}/original.png",
                  "overlay": f"/studies/{study_uid}/preview/{i}/overlay.png"}
                 for i, p in enumerate(previews.previews(study_uid))]
        return con.render(request, session, "study.html", page="studies", d=detail,
                          patient=patient, explanation=explain_study(node, study_uid),
                          previews=shown)

    @router.get("/studies/{study_uid}/preview/{index}/{which}.png", include_in_schema=False)
    def preview(request: Request, study_uid: str, index: int, which: str) -> Response:
        session = con.session(request)
        found = previews.previews(study_uid)
        if which not in ("original", "overlay") or not 0 <= index < len(found):
            raise HTTPException(404, "no such preview")
        con.record(request, session, "preview_view", subject=study_uid,
                   detail={"preview": index, "image": which})
        image = found[index].original if which == "original" else found[index].overlay
        return Response(image, media_type="image/png",
                        headers={"Cache-Control": "private, no-store"})

    @router.get("/jobs", response_class=HTMLResponse, include_in_schema=False)
    def jobs_page(request: Request, state: Annotated[list[str] | None, Query()] = None,
                  pipeline: str = "", study: str = "") -> Response:
        session = con.session(request)
        wanted = [JobState(s) for s in state or () if s in {x.value for x in JobState}]
        jobs = job_admin.list_jobs(node.engine, states=wanted, pipeline=pipeline or None,
                                   study=study or None, limit=200)
        return con.render(request, session, "jobs.html", page="jobs", jobs=jobs,
                          states=[s.value for s in JobState], chosen=[s.value for s in wanted],
                          pipeline=pipeline, study=study, pipelines=[m[0] for m in models()])

    @router.get("/deliveries", response_class=HTMLResponse, include_in_schema=False)
    def deliveries_page(request: Request, state: str = "", destination: str = "",
                        study: str = "") -> Response:
        session = con.session(request)
        chosen = [state] if state in DELIVERY_STATES else []
        found = delivery_admin.list_deliveries(node.engine, states=chosen,
                                               destination=destination or None,
                                               study=study or None, limit=200)
        return con.render(request, session, "deliveries.html", page="deliveries",
                          deliveries=found, states=DELIVERY_STATES, state=state,
                          destination=destination, study=study)

    _add_actions(router, con, node)


#: action -> (what it acts on, label, the function doing it)
ACTIONS: dict[str, tuple[str, str]] = {
    "job-retry": ("job", "Retry job (run it again; its outputs are replaced)"),
    "job-replay": ("job", "Replay dead-lettered job"),
    "job-dead-letter": ("job", "Dead-letter queued job (no worker takes it; replay it later)"),
    "job-agree": ("job", "Record that you agree with the AI result of"),
    "job-disagree": ("job", "Record that you disagree with the AI result of"),
    "delivery-retry": ("delivery", "Send delivery again now"),
    "delivery-replay": ("delivery", "Replay dead-lettered delivery"),
    "delivery-dead-letter": ("delivery", "Dead-letter pending delivery (no more tries; replay "
                                         "it later)"),
}
#: actions whose confirmation asks for a short note (the reason, or the reader's comment)
NOTED = {"job-dead-letter": "reason", "delivery-dead-letter": "reason",
         "job-agree": "comment (optional)", "job-disagree": "comment (optional)"}


def _act(node: Node, action: str, target: str, user: str, note: str) -> str:
    """Does an action for `user`; returns what happened. Raises WorkerError or ValueError."""
    now = utcnow()
    if action in ("job-agree", "job-disagree"):
        from workers.monitoring.agreement import record_feedback

        record_feedback(node.engine, target, action == "job-agree", user, now, note or None)
        return f"your verdict on job {target} is recorded"
    if action == "job-dead-letter":
        if not note:
            raise ValueError("a reason is needed to dead-letter a job")
        job_admin.give_up(node.engine, target, now, note)
        return f"job {target} is dead-lettered"
    if action == "job-retry":
        job = job_admin.retry(node.engine, target, now)
        _send_jobs(node, [job])
        return f"job {job.id} queued again"
    if action == "job-replay":
        jobs = job_admin.replay(node.engine, now, job_ids=[target])
        _send_jobs(node, jobs)
        return f"job {target} replayed"
    delivery_id = int(target)
    if action == "delivery-dead-letter":
        if not note:
            raise ValueError("a reason is needed to dead-letter a delivery")
        view = delivery_admin.give_up(node.engine, delivery_id, now, note)
        return f"delivery {view.id} to {view.destination} is dead-lettered"
    if action == "delivery-retry":
        view = delivery_admin.retry(node.engine, delivery_id, now)
    else:
        view = delivery_admin.replay(node.engine, now, delivery_ids=[delivery_id])[0]
    node.delivery.wake()
    return f"delivery {view.id} to {view.destination} is pending again"


def _send_jobs(node: Node, jobs: list[Any]) -> None:
    """Re-queued jobs go to the node's transport now (the reconciler would on its next pass)."""
    from workers.errors import BrokerUnavailable
    from workers.jobs import mark_sent

    if node.transport.sends_messages:
        for job in jobs:
            try:
                node.transport.send(job)
            except BrokerUnavailable:
                continue
            mark_sent(node.engine, job.id, utcnow())
    if node.embedded is not None:
        node.embedded.wake()


def local_path(url: str | None) -> str:
    """The path and query of a URL, so a "back" link never leaves the console."""
    from urllib.parse import urlsplit

    parts = urlsplit(url or "/")
    path = parts.path if parts.path.startswith("/") and not parts.path.startswith("//") else "/"
    return path + (f"?{parts.query}" if parts.query else "")


def _add_actions(router: APIRouter, con: Console, node: Node) -> None:
    @router.get("/actions/{action}/{target}", response_class=HTMLResponse,
                include_in_schema=False)
    def confirm(request: Request, action: str, target: str) -> Response:
        session = con.session(request, Role.OPERATOR)
        if action not in ACTIONS:
            raise HTTPException(404, "no such action")
        kind, label = ACTIONS[action]
        return con.render(request, session, "confirm.html", action=action, target=target,
                          kind=kind, label=label, note=NOTED.get(action),
                          back=local_path(request.headers.get("referer")))

    @router.post("/actions/{action}/{target}", include_in_schema=False)
    async def act(request: Request, action: str, target: str) -> Response:
        session, form = await con.post(request, Role.OPERATOR)
        if action not in ACTIONS:
            raise HTTPException(404, "no such action")
        note = str(form.get("note") or "").strip()[:500]
        try:
            message = _act(node, action, target, session.user, note)
        except (WorkerError, ValueError, LookupError) as exc:
            con.record(request, session, action, outcome=Outcome.FAILURE, subject=target,
                       detail={"error": str(exc)[:200]})
            return con.render(request, session, "message.html", status_code=409,
                              title="Not done", message=str(exc),
                              back=local_path(form.get("back")))
        con.record(request, session, action, subject=target)
        return con.render(request, session, "message.html", title="Done", message=message,
                          back=local_path(form.get("back")))
