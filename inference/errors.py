"""Errors raised by the inference package.

``PermanentInferenceError`` means retrying cannot help (bad card, bad checksum, unusable input);
``TransientInferenceError`` means a retry may succeed (device out of memory). ``workers`` maps
them onto its own retry policy. Messages never carry patient data.
"""

from __future__ import annotations


class InferenceError(Exception):
    """Base class of every error raised here."""


class PermanentInferenceError(InferenceError):
    """Retrying will not help."""


class TransientInferenceError(InferenceError):
    """A later retry may succeed."""


class ModelCardError(PermanentInferenceError):
    """``model.yaml`` is missing, unreadable or invalid."""


class ChecksumError(PermanentInferenceError):
    """A weights file does not match the sha256 its card declares."""


class ModelNotFoundError(PermanentInferenceError):
    """No model with the requested id is registered."""


class ModelLoadError(PermanentInferenceError):
    """Weights could not be loaded into the declared architecture."""


class InputError(PermanentInferenceError):
    """The input volume cannot be processed by this model."""
