"""Delivery failures, split by what the outbox should do with them.

A `TransientDeliveryError` is retried with backoff (peer down, timeout, HTTP 5xx/429, HL7 AE);
a `PermanentDeliveryError` is dead-lettered at once with its reason (HTTP 4xx, HL7 AR). Messages
carry status codes and protocol codes only, never patient data, because they end up in the
delivery table and in logs.
"""

from __future__ import annotations

from common import errors as common_errors
from common.errors import NodeError


class DeliveryError(NodeError):
    """Base class of every delivery failure raised by hl7_fhir."""

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class TransientDeliveryError(DeliveryError, common_errors.TransientError):
    """Worth retrying later: the peer may accept the same payload then.

    `retry_after` is the delay in seconds the peer asked for (HTTP Retry-After), if any.
    """

    def __init__(
        self, reason: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(reason, status=status)
        self.retry_after = retry_after


class PermanentDeliveryError(DeliveryError, common_errors.PermanentError):
    """Retrying the same payload will fail again; record the reason and stop."""
