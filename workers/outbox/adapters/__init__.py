"""One adapter per destination type; `build_adapter` picks it from the configuration."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine

from workers.outbox.adapters.base import Adapter, Sent
from workers.outbox.config import (
    DicomDestination,
    FacadeDestination,
    FhirDestination,
    FhirTaskDestination,
    MllpDestination,
    SenderDestination,
    StowDestination,
    WebhookDestination,
)

AnyDestination = (DicomDestination | SenderDestination | StowDestination | FhirDestination
                  | FhirTaskDestination | FacadeDestination | MllpDestination
                  | WebhookDestination)

__all__ = ["Adapter", "Sent", "build_adapter"]


def build_adapter(dest: AnyDestination, engine: Engine,
                  clock: Callable[[], datetime]) -> Adapter:
    """The sender of `dest`. Imports only the leaf modules that destination needs."""
    if isinstance(dest, DicomDestination):
        from workers.outbox.adapters.dicom import CStoreAdapter

        return CStoreAdapter(dest)
    if isinstance(dest, SenderDestination):
        from workers.outbox.adapters.sender import ReturnToSenderAdapter

        return ReturnToSenderAdapter(dest, engine)
    if isinstance(dest, StowDestination):
        from workers.outbox.adapters.dicom import StowAdapter

        return StowAdapter(dest)
    if isinstance(dest, FhirDestination):
        from workers.outbox.adapters.fhir import FhirAdapter

        return FhirAdapter(dest)
    if isinstance(dest, FhirTaskDestination):
        from workers.outbox.adapters.fhir import FhirTaskAdapter

        return FhirTaskAdapter(dest, engine, clock)
    if isinstance(dest, FacadeDestination):
        from workers.outbox.adapters.fhir import FacadeAdapter

        return FacadeAdapter(dest, engine)
    if isinstance(dest, MllpDestination):
        from workers.outbox.adapters.hl7 import MllpAdapter

        return MllpAdapter(dest)
    from workers.outbox.adapters.webhook import WebhookAdapter

    return WebhookAdapter(dest)
