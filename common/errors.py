"""The two kinds every failure of the node falls into, shared by all packages.

A `TransientError` may succeed later without any change (a peer down, a disk full, a GPU busy):
callers retry it with backoff. A `PermanentError` fails the same way every time (bad input, a
refusal, a missing model): callers record its reason and stop. Each package's own errors
subclass one of these, so the job layer and the outbox classify any package's failure without
translating it by hand.

Every error carries, besides its message (which never holds patient data):

- `reason`: a short machine code (a metric label, a job record's reason), by class or given;
- `status`: the protocol status that goes with it (a DIMSE status, an HTTP code), if any;
- `retry_after`: seconds the peer asked to wait before a retry (HTTP Retry-After), if any.
"""

from __future__ import annotations


class NodeError(Exception):
    """Base of the failures raised on purpose by the node's packages."""

    reason: str = "error"
    status: int | None = None
    retry_after: float | None = None

    def __init__(self, message: str = "", *, reason: str | None = None,
                 status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason
        if status is not None:
            self.status = status
        if retry_after is not None:
            self.retry_after = retry_after


class TransientError(NodeError):
    """Worth retrying later: the same input may succeed once the environment recovers."""

    reason = "transient"


class PermanentError(NodeError):
    """Retrying cannot help: the input, the peer's answer or the configuration is wrong."""

    reason = "permanent"
