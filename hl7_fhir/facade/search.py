"""FHIR R4 search (3.1.1) over the facade store: the parameters listed in SEARCH_PARAMS, with
token (`system|code`, `|code`, `code`, `system|`), reference, and date (eq/gt/lt/ge/le)
semantics, comma = OR within one parameter, repetition = AND. Anything else is refused, so a
client never mistakes an ignored filter for an applied one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement

from hl7_fhir.facade.dates import parse_prefixed
from hl7_fhir.facade.store import fhir_resource_tokens, fhir_resources, parse_token

_COMMON = {"_id": "token"}
_CLINICAL = {
    **_COMMON,
    "patient": "reference",
    "subject": "reference",
    "identifier": "token",
    "category": "token",
    "code": "token",
    "date": "date",
    "status": "token",
}
#: Search parameters per resource type, with their FHIR search parameter type.
SEARCH_PARAMS: dict[str, dict[str, str]] = {
    "DiagnosticReport": _CLINICAL,
    "Observation": _CLINICAL,
    "ImagingStudy": {
        **_COMMON,
        "patient": "reference",
        "subject": "reference",
        "identifier": "token",
        "started": "date",
        "status": "token",
    },
    "Device": {**_COMMON, "identifier": "token", "status": "token"},
    "Patient": {**_COMMON, "identifier": "token"},
}
DEFAULT_COUNT = 50
MAX_COUNT = 500


class SearchError(ValueError):
    """A search the facade cannot answer; the message names parameters, never values."""


@dataclass(frozen=True)
class SearchResult:
    total: int
    resources: list[dict[str, Any]]
    count: int
    offset: int


def _split(value: str) -> list[str]:
    """Split on commas not escaped with a backslash (R4 3.1.1.5.7)."""
    parts, current, escaped = [], "", False
    for ch in value:
        if escaped:
            current += "\\" + ch
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return parts


def _token_clause(rtype: str, param: str, value: str) -> ColumnElement[bool]:
    t = fhir_resource_tokens
    options = []
    for item in _split(value):
        system, code = parse_token(item)
        cond = (t.c.param == param) & (t.c.resource_type == rtype)
        if "|" in item.replace("\\|", ""):
            # "system|code", "|code" (no system) or "system|" (any code in system)
            cond &= t.c.system == system if system else t.c.system.is_(None)
            if code:
                cond &= t.c.code == code
        else:
            cond &= t.c.code == code
        options.append(cond)
    owned = sa.select(t.c.resource_id).where(sa.or_(*options))
    return fhir_resources.c.id.in_(owned)


def _column_token(column: Any, value: str) -> ColumnElement[bool]:
    clause: ColumnElement[bool] = column.in_([parse_token(v)[1] for v in _split(value)])
    return clause


def _reference_clause(value: str) -> ColumnElement[bool]:
    refs = []
    for item in _split(value):
        tail = item.rstrip("/").split("/")
        refs.append("/".join(tail[-2:]) if len(tail) >= 2 else f"Patient/{tail[0]}")
    return fhir_resources.c.patient_ref.in_(refs)


def _date_clause(value: str) -> ColumnElement[bool]:
    r = fhir_resources.c
    try:
        prefix, rng = parse_prefixed(value)
    except ValueError as exc:
        raise SearchError(f"bad date value: {exc}") from None
    # Resource range [date_start, date_end) against search range [rng.start, rng.end).
    if prefix == "eq":
        return (r.date_start >= rng.start) & (r.date_end <= rng.end)
    if prefix == "gt":
        return r.date_end > rng.end
    if prefix == "lt":
        return r.date_start < rng.start
    if prefix == "ge":
        return r.date_end > rng.start
    return r.date_start < rng.end  # le


def _int_param(name: str, value: str, low: int, high: int) -> int:
    if not value.isdigit():
        raise SearchError(f"{name} must be a non-negative integer")
    return max(low, min(high, int(value)))


def search(engine: Engine, rtype: str, params: Sequence[tuple[str, str]]) -> SearchResult:
    """Run a search; raises `SearchError` for unknown types, parameters, modifiers or values."""
    known = SEARCH_PARAMS.get(rtype)
    if known is None:
        raise SearchError(f"resource type {rtype} is not served")
    r = fhir_resources.c
    clauses: list[ColumnElement[bool]] = [r.resource_type == rtype]
    count, offset = DEFAULT_COUNT, 0
    for name, value in params:
        if name == "_count":
            count = _int_param(name, value, 0, MAX_COUNT)
            continue
        if name == "_offset":
            offset = _int_param(name, value, 0, 10**9)
            continue
        kind = known.get(name)
        if kind is None:
            raise SearchError(f"search parameter {name!r} is not supported for {rtype}")
        if not value:
            raise SearchError(f"search parameter {name!r} has no value")
        if name == "_id":
            clauses.append(r.id.in_(_split(value)))
        elif kind == "reference":
            clauses.append(_reference_clause(value))
        elif kind == "date":
            clauses.append(_date_clause(value))
        elif name == "status":
            clauses.append(_column_token(r.status, value))
        else:
            clauses.append(_token_clause(rtype, name, value))
    where = sa.and_(*clauses)
    with engine.connect() as conn:
        total = conn.scalar(sa.select(sa.func.count()).select_from(fhir_resources).where(where))
        rows = conn.scalars(
            sa.select(r.json)
            .where(where)
            .order_by(r.date_start.desc().nulls_last(), r.last_updated.desc(), r.id)
            .limit(count)
            .offset(offset)
        ).all()
    return SearchResult(int(total or 0), [json.loads(x) for x in rows], count, offset)
