"""Read-only FHIR facade: the store of delivered resources and the FastAPI router over it."""

from hl7_fhir.facade.router import create_facade_router
from hl7_fhir.facade.store import get_resource, metadata, put_bundle

__all__ = ["create_facade_router", "get_resource", "metadata", "put_bundle"]
