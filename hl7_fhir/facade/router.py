"""The read-only FHIR facade as a FastAPI router (FHIR R4 RESTful API 3.1.0: read, search-type,
capabilities).

``GET {prefix}/metadata`` is open (clients discover the server before they authenticate);
everything else needs ``Authorization: Bearer <token>`` with a configured token and answers 401
otherwise. Errors are OperationOutcome resources; searchsets are Bundles.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.engine import Engine

from hl7_fhir.facade.capability import capability_statement
from hl7_fhir.facade.search import SEARCH_PARAMS, SearchError, SearchResult, search
from hl7_fhir.facade.store import get_resource

FHIR_JSON = "application/fhir+json"
SOFTWARE_VERSION = "0.1.0"


def _respond(body: dict[str, Any], status: int = 200, **headers: str) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=FHIR_JSON, headers=headers or None)


def outcome(status: int, code: str, text: str, **headers: str) -> JSONResponse:
    """An OperationOutcome (R4 2.38) response with one error issue."""
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": text}],
    }
    return _respond(body, status, **headers)


@dataclass(frozen=True)
class FacadeAccess:
    """One request to a protected facade path, for an audit trail. `identity` names the
    token without revealing it (`token:` + 12 hex digits of its SHA-256; `anonymous` without
    one; `unknown:`... for a token that is not accepted); `patient` is the patient reference
    the request concerned, when it says one."""

    identity: str
    interaction: str
    resource_type: str
    resource_id: str | None
    query: str
    patient: str | None
    status: int
    address: str | None


AccessObserver = Callable[[FacadeAccess], None]


def _identity(request: Request) -> str:
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return "anonymous"
    return "token:" + hashlib.sha256(credential.strip().encode()).hexdigest()[:12]


def _authorized(request: Request, tokens: tuple[bytes, ...]) -> bool:
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credential:
        return False
    given = credential.strip().encode()
    # Compare with every token, without stopping early, so timing does not tell which matched.
    matches = [hmac.compare_digest(given, token) for token in tokens]
    return any(matches)


def _patient(resource_type: str, resource_id: str | None, params: Iterable[tuple[str, str]],
             resource: dict[str, Any] | None) -> str | None:
    if resource_type == "Patient" and resource_id:
        return f"Patient/{resource_id}"
    if resource is not None:
        reference = resource.get("subject", {}).get("reference")
        return str(reference) if reference else None
    for key, value in params:
        if key in ("patient", "subject") and value:
            return value if "/" in value else f"Patient/{value}"
        if key == "_id" and resource_type == "Patient" and value:
            return f"Patient/{value}"
    return None


def _searchset(request: Request, rtype: str, result: SearchResult) -> dict[str, Any]:
    base = str(request.url_for("fhir_metadata")).rsplit("/", 1)[0]
    links = [{"relation": "self", "url": str(request.url)}]
    if result.offset + result.count < result.total and result.count > 0:
        rest = request.url.remove_query_params("_offset")
        separator = "&" if rest.query else "?"
        next_offset = result.offset + result.count
        links.append({"relation": "next", "url": f"{rest}{separator}_offset={next_offset}"})
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": result.total,
        "link": links,
        "entry": [
            {
                "fullUrl": f"{base}/{rtype}/{res['id']}",
                "resource": res,
                "search": {"mode": "match"},
            }
            for res in result.resources
        ],
    }


def create_facade_router(
    engine: Engine, tokens: Iterable[str], *, prefix: str = "/fhir",
    on_access: AccessObserver | None = None,
) -> APIRouter:
    """Build the facade router over the store in `engine` (tables from `store.metadata`).

    `tokens` are the accepted bearer tokens; with none, every protected request gets 401.
    `on_access` is told of every read and search, refused ones included (an audit trail).
    """
    accepted = tuple(t.encode() for t in tokens if t)

    def observed(request: Request, answer: JSONResponse, resource_type: str,
                 resource_id: str | None, resource: dict[str, Any] | None = None) -> JSONResponse:
        if on_access is not None:
            identity = _identity(request)
            if answer.status_code == 401 and identity != "anonymous":
                identity = "unknown:" + identity.split(":", 1)[1]
            params = request.query_params.multi_items()
            on_access(FacadeAccess(
                identity=identity, interaction="read" if resource_id else "search",
                resource_type=resource_type, resource_id=resource_id,
                query=str(request.query_params),
                patient=_patient(resource_type, resource_id, params, resource),
                status=answer.status_code,
                address=request.client.host if request.client else None))
        return answer
    router = APIRouter(prefix=prefix, tags=["fhir"])
    published = datetime.now(UTC)

    def unauthorized() -> JSONResponse:
        return outcome(401, "login", "bearer token required", **{
            "WWW-Authenticate": 'Bearer realm="fhir"'
        })

    @router.get("/metadata", name="fhir_metadata")
    def metadata() -> JSONResponse:
        return _respond(capability_statement(published, SOFTWARE_VERSION))

    @router.get("/{resource_type}", name="fhir_search")
    def search_type(resource_type: str, request: Request) -> JSONResponse:
        return observed(request, _search_type(resource_type, request), resource_type, None)

    def _search_type(resource_type: str, request: Request) -> JSONResponse:
        if not _authorized(request, accepted):
            return unauthorized()
        if resource_type not in SEARCH_PARAMS:
            return outcome(404, "not-supported", f"resource type {resource_type} is not served")
        try:
            result = search(engine, resource_type, request.query_params.multi_items())
        except SearchError as exc:
            return outcome(400, "not-supported", str(exc))
        return _respond(_searchset(request, resource_type, result))

    @router.get("/{resource_type}/{resource_id}", name="fhir_read")
    def read(resource_type: str, resource_id: str, request: Request) -> JSONResponse:
        if not _authorized(request, accepted):
            return observed(request, unauthorized(), resource_type, resource_id)
        if resource_type not in SEARCH_PARAMS:
            return observed(request, outcome(
                404, "not-supported", f"resource type {resource_type} is not served"),
                resource_type, resource_id)
        resource = get_resource(engine, resource_type, resource_id)
        if resource is None:
            return observed(request, outcome(
                404, "not-found", f"{resource_type}/{resource_id} is not known"),
                resource_type, resource_id)
        version = resource.get("meta", {}).get("versionId", "1")
        return observed(request, _respond(resource, ETag=f'W/"{version}"'), resource_type,
                        resource_id, resource)

    return router
