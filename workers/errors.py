"""Failure types of the job layer.

Transient and permanent failures are different types because they lead to different states:
a transient failure (broker blip, PACS down, a worker killed) is retried with backoff until the
attempts run out and the job is dead-lettered; a permanent one (bad input, nothing readable)
fails the job at once with its reason recorded.
"""

from __future__ import annotations


class WorkerError(Exception):
    """Base of every error raised on purpose by the workers package."""

    #: short machine-readable reason, used as the `reason` label of failure metrics
    reason: str = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class TransientError(WorkerError):
    """Worth retrying later: the same input may succeed once a peer is back."""

    reason = "transient"


class PermanentError(WorkerError):
    """Retrying cannot help: the input or the configuration is wrong."""

    reason = "permanent"


class BrokerUnavailable(TransientError):
    """The message broker could not take a message; the job stays queued in the database and
    the reconciler sends it when the broker is back."""

    reason = "broker_unavailable"


class UnknownPipeline(PermanentError):
    """A job or rule names a pipeline that no configuration entry provides."""

    reason = "unknown_pipeline"


class InvalidTransition(WorkerError):
    """An operator asked for a state change the job state machine does not allow."""

    reason = "invalid_transition"


class JobNotFound(WorkerError):
    """No job has the given id."""

    reason = "not_found"
