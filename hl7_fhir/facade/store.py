"""The facade's resource store: FHIR resources as JSON plus the columns its searches use.

Two tables: `fhir_resources` (one row per resource: type, id, version, JSON, and the
single-valued search columns patient ref / status / date range) and `fhir_resource_tokens`
(one row per identifier, category coding and code coding). Tokens live in their own table
because they are multi-valued (a report has a LOINC and a v2 category coding; an ImagingStudy
has a Study UID and an accession identifier), and exact matching on indexed rows works the same
on SQLite and PostgreSQL, unlike searching inside a packed text column.

`put_bundle` applies a transaction/batch Bundle the way a FHIR server would (R4 3.1.0.11):
conditional updates and conditional creates are resolved by identifier, urn:uuid fullUrls
become the resource ids, and references between entries are rewritten to ``Type/id``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import sqlalchemy as sa
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle
from pydantic import ValidationError
from sqlalchemy.engine import Connection, Engine

from hl7_fhir.facade.dates import Range, parse_range

metadata = sa.MetaData()

fhir_resources = sa.Table(
    "fhir_resources",
    metadata,
    sa.Column("resource_type", sa.String(64), primary_key=True),
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("version_id", sa.Integer, nullable=False),
    sa.Column("last_updated", sa.DateTime(), nullable=False),
    sa.Column("patient_ref", sa.String(128), nullable=True, index=True),
    sa.Column("status", sa.String(32), nullable=True),
    # Effective/started time as a UTC range [start, end), naive UTC (SQLite keeps no offset).
    sa.Column("date_start", sa.DateTime(), nullable=True),
    sa.Column("date_end", sa.DateTime(), nullable=True),
    sa.Column("json", sa.Text, nullable=False),
)

fhir_resource_tokens = sa.Table(
    "fhir_resource_tokens",
    metadata,
    sa.Column("resource_type", sa.String(64), nullable=False),
    sa.Column("resource_id", sa.String(64), nullable=False),
    sa.Column("param", sa.String(32), nullable=False),
    sa.Column("system", sa.String(256), nullable=True),
    sa.Column("code", sa.String(256), nullable=False),
    sa.ForeignKeyConstraint(
        ["resource_type", "resource_id"],
        ["fhir_resources.resource_type", "fhir_resources.id"],
        ondelete="CASCADE",
    ),
    sa.Index("ix_fhir_tokens_lookup", "resource_type", "param", "code"),
    sa.Index("ix_fhir_tokens_owner", "resource_type", "resource_id"),
)

STORED_TYPES = frozenset({"DiagnosticReport", "Observation", "ImagingStudy", "Device", "Patient"})


def _codings(concepts: Any) -> Iterator[tuple[str | None, str]]:
    items = concepts if isinstance(concepts, list) else [concepts] if concepts else []
    for item in items:
        for c in item.get("coding", []):
            if c.get("code"):
                yield c.get("system"), c["code"]


def _tokens(resource: Mapping[str, Any]) -> Iterator[tuple[str, str | None, str]]:
    for ident in resource.get("identifier", []) or []:
        if isinstance(ident, dict) and ident.get("value"):
            yield "identifier", ident.get("system"), ident["value"]
    for system, code in _codings(resource.get("category")):
        yield "category", system, code
    for system, code in _codings(resource.get("code")):
        yield "code", system, code


def _date_range(resource: Mapping[str, Any]) -> Range | None:
    text = resource.get("effectiveDateTime") or resource.get("started")
    if isinstance(text, str):
        return parse_range(text)
    period = resource.get("effectivePeriod")
    if isinstance(period, dict) and period.get("start"):
        start = parse_range(period["start"])
        end = parse_range(period["end"]) if period.get("end") else None
        return Range(start.start, end.end if end else datetime.max)
    return None


def _patient_ref(resource: Mapping[str, Any]) -> str | None:
    if resource.get("resourceType") == "Patient":
        return f"Patient/{resource['id']}"
    ref = (resource.get("subject") or {}).get("reference")
    return ref if isinstance(ref, str) and ref.startswith("Patient/") else None


def parse_token(text: str) -> tuple[str | None, str]:
    """`system|code` with FHIR search escapes (R4 3.1.1.5.7) undone."""
    system, code, current, escaped = None, "", "", False
    for ch in text:
        if escaped:
            current, escaped = current + ch, False
        elif ch == "\\":
            escaped = True
        elif ch == "|" and system is None:
            system, current = current, ""
        else:
            current += ch
    code = current
    return (system or None), code


def _find_by_identifier(conn: Connection, resource_type: str, query: str) -> list[str]:
    params = dict(parse_qsl(query, keep_blank_values=True))
    if set(params) != {"identifier"}:
        raise ValueError("only identifier= conditions are supported")
    system, code = parse_token(params["identifier"])
    t = fhir_resource_tokens
    stmt = sa.select(t.c.resource_id).where(
        t.c.resource_type == resource_type, t.c.param == "identifier", t.c.code == code
    )
    if system is not None:
        stmt = stmt.where(t.c.system == system)
    return sorted(set(conn.scalars(stmt)))


def _rewrite_references(node: Any, mapping: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        return {
            k: mapping.get(v, v) if k == "reference" and isinstance(v, str)
            else _rewrite_references(v, mapping)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rewrite_references(v, mapping) for v in node]
    return node


def _target(conn: Connection, entry: Mapping[str, Any]) -> tuple[str, bool]:
    """The id an entry's resource gets, and whether it must be written at all."""
    resource = entry["resource"]
    rtype = resource["resourceType"]
    request = entry.get("request") or {}
    full_url = entry.get("fullUrl") or ""
    default = full_url[len("urn:uuid:"):] if full_url.startswith("urn:uuid:") else None
    method = request.get("method")
    url = request.get("url", "")
    if method == "POST" and request.get("ifNoneExist"):
        found = _find_by_identifier(conn, rtype, request["ifNoneExist"])
        if found:
            return found[0], False
    elif method == "PUT" and "?" in url:
        found = _find_by_identifier(conn, rtype, url.split("?", 1)[1])
        if len(found) > 1:
            raise ValueError(f"conditional update of {rtype} matches more than one resource")
        if found:
            return found[0], True
    elif method == "PUT" and "/" in url:
        return url.split("/", 1)[1], True
    return resource.get("id") or default or str(uuid.uuid4()), True


def put_bundle(
    engine: Engine, bundle: Bundle | Mapping[str, Any], *, now: datetime | None = None
) -> list[str]:
    """Store every resource of a transaction, batch or collection Bundle in one DB
    transaction; return their ``Type/id`` references in entry order.

    Raises `ValueError` on an unsupported resource type, an ambiguous conditional update or a
    resource that does not validate as R4 after its references are rewritten.
    """
    data = json.loads(bundle.model_dump_json(exclude_none=True)) if isinstance(
        bundle, Bundle
    ) else json.loads(json.dumps(bundle))
    if data.get("type") not in ("transaction", "batch", "collection"):
        raise ValueError("only transaction, batch and collection Bundles can be stored")
    stamp = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
    entries = [e for e in data.get("entry", []) if e.get("resource")]
    with engine.begin() as conn:
        targets = [_target(conn, e) for e in entries]
        mapping = {
            e["fullUrl"]: f"{e['resource']['resourceType']}/{rid}"
            for e, (rid, _) in zip(entries, targets, strict=True)
            if e.get("fullUrl")
        }
        stored = []
        for entry, (rid, write) in zip(entries, targets, strict=True):
            resource = entry["resource"]
            stored.append(f"{resource['resourceType']}/{rid}")
            if write:
                _upsert(conn, _rewrite_references(resource, mapping), rid, stamp)
    return stored


def _upsert(conn: Connection, resource: dict[str, Any], rid: str, stamp: datetime) -> None:
    rtype = resource["resourceType"]
    if rtype not in STORED_TYPES:
        raise ValueError(f"the facade does not store {rtype}")
    t = fhir_resources
    key = (t.c.resource_type == rtype) & (t.c.id == rid)
    previous = conn.scalar(sa.select(t.c.version_id).where(key))
    version = (previous or 0) + 1
    resource["id"] = rid
    resource["meta"] = {
        **(resource.get("meta") or {}),
        "versionId": str(version),
        "lastUpdated": stamp.replace(tzinfo=UTC).isoformat(),
    }
    try:
        get_fhir_model_class(rtype).model_validate(resource)  # serve only valid R4
    except ValidationError as exc:
        # Name the failing paths only: pydantic's message quotes input values (PHI).
        paths = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})
        raise ValueError(f"{rtype} is not valid FHIR R4 at {', '.join(paths)}") from None
    dates = _date_range(resource)
    tk = fhir_resource_tokens
    conn.execute(sa.delete(tk).where((tk.c.resource_type == rtype) & (tk.c.resource_id == rid)))
    conn.execute(sa.delete(t).where(key))
    conn.execute(
        sa.insert(t).values(
            resource_type=rtype,
            id=rid,
            version_id=version,
            last_updated=stamp,
            patient_ref=_patient_ref(resource),
            status=resource.get("status"),
            date_start=dates.start if dates else None,
            date_end=dates.end if dates else None,
            json=json.dumps(resource, separators=(",", ":")),
        )
    )
    rows = [
        {"resource_type": rtype, "resource_id": rid, "param": p, "system": s, "code": c}
        for p, s, c in dict.fromkeys(_tokens(resource))
    ]
    if rows:
        conn.execute(sa.insert(tk), rows)


def get_resource(engine: Engine, resource_type: str, rid: str) -> dict[str, Any] | None:
    """One stored resource as JSON, or None."""
    t = fhir_resources
    with engine.connect() as conn:
        text = conn.scalar(
            sa.select(t.c.json).where((t.c.resource_type == resource_type) & (t.c.id == rid))
        )
    return json.loads(text) if text is not None else None
