"""Errors raised by the inference package.

``PermanentInferenceError`` means retrying cannot help (bad card, bad checksum, unusable input);
``TransientInferenceError`` means a retry may succeed (device out of memory). Both subclass the
node's shared failure bases (``common.errors``), so the job layer classifies them as they are;
each class carries a ``reason`` code. Messages never carry patient data.
"""

from __future__ import annotations

from common import errors as common_errors
from common.errors import NodeError


class InferenceError(NodeError):
    """Base class of every error raised here."""


class PermanentInferenceError(InferenceError, common_errors.PermanentError):
    """Retrying will not help."""

    reason = "model_error"


class TransientInferenceError(InferenceError, common_errors.TransientError):
    """A later retry may succeed."""

    reason = "model_busy"


class ModelCardError(PermanentInferenceError):
    """``model.yaml`` is missing, unreadable or invalid."""

    reason = "model_card"


class ChecksumError(PermanentInferenceError):
    """A weights file does not match the sha256 its card declares."""

    reason = "model_checksum"


class ModelNotFoundError(PermanentInferenceError):
    """No model with the requested id is registered."""

    reason = "model_not_found"


class ModelLoadError(PermanentInferenceError):
    """Weights could not be loaded into the declared architecture."""

    reason = "model_load"


class InputError(PermanentInferenceError):
    """The input volume cannot be processed by this model."""

    reason = "model_input"
