"""The facade's CapabilityStatement (FHIR R4 2.39, served at ``[base]/metadata``), generated
from the same table the search code uses so the two cannot disagree."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hl7_fhir.facade.search import SEARCH_PARAMS

FHIR_VERSION = "4.0.1"


def capability_statement(published: datetime, software_version: str) -> dict[str, Any]:
    """A CapabilityStatement (kind instance) listing read and search-type per resource type,
    and bearer-token security on everything but /metadata."""
    resources = [
        {
            "type": rtype,
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [
                {"name": name, "type": kind} for name, kind in sorted(params.items())
            ],
        }
        for rtype, params in SEARCH_PARAMS.items()
    ]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": published.isoformat(),
        "kind": "instance",
        "software": {"name": "InferNode FHIR facade", "version": software_version},
        "implementation": {"description": "Read-only FHIR facade of AI results"},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "documentation": "Read-only. Searches: _count and _offset page results.",
                "security": {
                    "cors": False,
                    "description": "Send 'Authorization: Bearer <token>'; /metadata is open.",
                },
                "resource": resources,
            }
        ],
    }
