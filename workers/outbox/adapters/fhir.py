"""FHIR outputs: the report Bundle to an EHR (a transaction POST, FHIR R4 3.1.0.11, through
`hl7_fhir.client`), to the node's own read facade store, and the priority signal as a FHIR
Task (see `workers.outbox.task`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from fhir.resources.R4B.bundle import Bundle
from pydantic import ValidationError
from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from hl7_fhir.client import Auth, BearerToken, ClientCredentials, FhirClient
from hl7_fhir.errors import PermanentDeliveryError, TransientDeliveryError
from hl7_fhir.facade.store import put_bundle
from workers.outbox.adapters.base import Sent, failure_from, http_code, invalid, missing
from workers.outbox.claims import DueDelivery, Failure
from workers.outbox.config import (
    FHIR_BUNDLE,
    FacadeDestination,
    FhirDestination,
    FhirTaskDestination,
)
from workers.outbox.tables import outputs
from workers.outbox.task import build_priority_task


def fhir_auth(dest: FhirDestination | FhirTaskDestination) -> Auth | None:
    """The client's credentials from the destination's settings."""
    if dest.token is not None:
        return BearerToken(dest.token.get_secret_value())
    if dest.token_url and dest.client_id and dest.client_secret is not None:
        return ClientCredentials(dest.token_url, dest.client_id,
                                 dest.client_secret.get_secret_value(), scope=dest.scope)
    return None


def read_bundle(path: str | None) -> Bundle:
    """The Bundle in a file. Raises OSError or ValueError (pydantic's ValidationError is one)."""
    return Bundle.model_validate_json(Path(path or "").read_bytes())


def _bundle_of(item: DueDelivery) -> Bundle | Failure:
    gone = missing(item)
    if gone is not None:
        return gone
    try:
        return read_bundle(item.output.path)
    except (OSError, ValueError, ValidationError):
        return invalid(item, "a FHIR R4 Bundle")


def _post(client: FhirClient, bundle: Bundle) -> Failure | None:
    try:
        client.send_bundle(bundle)
    except TransientDeliveryError as exc:
        return failure_from(exc, permanent=False, code=http_code(exc))
    except PermanentDeliveryError as exc:
        return failure_from(exc, permanent=True, code=http_code(exc))
    return None


class FhirAdapter:
    """POSTs each report Bundle to an EHR; one client per destination keeps its OAuth2 token."""

    def __init__(self, dest: FhirDestination) -> None:
        self._client = FhirClient(dest.base_url, fhir_auth(dest), timeout_s=dest.timeout_s)

    def send(self, items: Sequence[DueDelivery]) -> list[Sent]:
        results = []
        for item in items:
            bundle = _bundle_of(item)
            failure = bundle if isinstance(bundle, Failure) else _post(self._client, bundle)
            results.append(Sent(item.id, failure))
        return results

    def close(self) -> None:
        self._client.close()


class FacadeAdapter:
    """Stores each report Bundle in the node's read facade (same database)."""

    def __init__(self, _dest: FacadeDestination, engine: Engine) -> None:
        self._engine = engine

    def send(self, items: Sequence[DueDelivery]) -> list[Sent]:
        results = []
        for item in items:
            bundle = _bundle_of(item)
            failure = bundle if isinstance(bundle, Failure) else self._store(item, bundle)
            results.append(Sent(item.id, failure))
        return results

    def _store(self, item: DueDelivery, bundle: Bundle) -> Failure | None:
        try:
            put_bundle(self._engine, bundle)
        except ValueError:
            return invalid(item, "a Bundle the facade can store")
        except SQLAlchemyError as exc:
            return Failure(False, "transient", f"facade store: {type(exc).__name__}")
        return None

    def close(self) -> None:
        """The engine belongs to the runner's owner."""


class FhirTaskAdapter:
    """Creates the stat review Task of the study, pointing at the DiagnosticReport of the
    report Bundle the flagging job produced."""

    def __init__(self, dest: FhirTaskDestination, engine: Engine,
                 clock: Callable[[], datetime]) -> None:
        self._client = FhirClient(dest.base_url, fhir_auth(dest), timeout_s=dest.timeout_s)
        self._engine = engine
        self._clock = clock

    def _report_path(self, item: DueDelivery) -> str | None:
        with self._engine.connect() as conn:
            return conn.execute(select(outputs.c.path).where(
                outputs.c.job_id == item.output.job_id, outputs.c.kind == FHIR_BUNDLE,
            ).order_by(outputs.c.id).limit(1)).scalar()

    def _task(self, item: DueDelivery) -> Bundle | Failure:
        try:
            path = self._report_path(item)
        except SQLAlchemyError as exc:
            return Failure(False, "transient", f"outputs table: {type(exc).__name__}")
        if path is None or not Path(path).is_file():
            return Failure(True, "no_report", "the flagging job has no FHIR report Bundle "
                                              "for the Task to reference")
        try:
            report = read_bundle(path)
            return build_priority_task(report, item.output.study_instance_uid,
                                       item.output.note or "priority", self._clock())
        except (OSError, ValueError, ValidationError):
            return invalid(item, "backed by a usable FHIR report Bundle")

    def send(self, items: Sequence[DueDelivery]) -> list[Sent]:
        results = []
        for item in items:
            task = self._task(item)
            failure = task if isinstance(task, Failure) else _post(self._client, task)
            results.append(Sent(item.id, failure))
        return results

    def close(self) -> None:
        self._client.close()
