"""Failure types of the job layer.

Transient and permanent failures are different types because they lead to different states:
a transient failure (broker blip, PACS down, a worker killed) is retried with backoff until the
attempts run out and the job is dead-lettered; a permanent one (bad input, nothing readable)
fails the job at once with its reason recorded.
"""

from __future__ import annotations

from common import errors as common_errors
from common.errors import NodeError


class WorkerError(NodeError):
    """Base of every error raised on purpose by the workers package."""

    #: short machine-readable reason, used as the `reason` label of failure metrics
    reason: str = "error"


class TransientError(WorkerError, common_errors.TransientError):
    """Worth retrying later: the same input may succeed once a peer is back."""

    reason = "transient"


class PermanentError(WorkerError, common_errors.PermanentError):
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
