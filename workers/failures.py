"""Which failures are worth retrying, and what may be said about them.

A job attempt can fail in two ways that need opposite handling:

- **transient**: the same input may succeed later (a file system or network hiccup, the
  database or the broker away, a GPU out of memory, a time limit on a loaded machine). The job
  goes back to the queue with backoff and is dead-lettered only when its attempts run out.
- **deterministic**: the data (or the configuration) makes the pipeline fail the same way every
  time: a header the code did not expect, a volume the model cannot take, a missing model.
  Retrying only delays the answer by the whole backoff, so the job gets one attempt, then a
  "not analysed: reason" report is delivered like any result and the job ends `failed`.

Anything not known to be transient is deterministic: an unexpected exception type is far more
often a data quirk than an outage, and a wrong guess in that direction costs one report instead
of minutes of silence.

What is recorded never repeats an exception's message unless the node wrote it: messages of
library exceptions quote the data (a malformed PatientBirthDate, a patient name in a decode
error), so only the exception type and where it was raised are kept.
"""

from __future__ import annotations

import re
import traceback
from dataclasses import dataclass
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError, TimeoutError

from common.errors import NodeError, TransientError
from dicom_node.encode.text import strip_uids

#: Errors of our own packages (every package's subclass the common bases) whose messages the
#: node wrote itself: UIDs and reasons, no PHI.
_OWN = (NodeError,)

#: Exception types that describe the environment, not the data.
_TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    TransientError,  # any package's transient failure (common.errors)
    OSError,  # I/O: includes ConnectionError, TimeoutError, ENOSPC, a shared mount away
    MemoryError, SoftTimeLimitExceeded,
    OperationalError, DisconnectionError, TimeoutError,
)
#: Known by name so that neither torch, redis nor kombu is imported here.
_TRANSIENT_NAMES = frozenset({
    "OutOfMemoryError",  # torch.cuda.OutOfMemoryError: another job holds the GPU
    "ConnectionError", "TimeoutError", "BusyLoadingError",  # redis
    "OperationalError",  # kombu: broker connection lost
})

_SPACE = re.compile(r"\s+")

REASON_MAX = 200
"""The longest human reason the node writes (the SR, FHIR and HL7 encoders shape further to
their own fields' limits)."""


def shape_reason(text: str, limit: int = REASON_MAX) -> str:
    """A one-line reason fit for a report: DICOM UIDs replaced by "…" (the encoders' own
    `strip_uids`), whitespace collapsed, at most `limit` characters (cut at a word boundary
    with an ellipsis)."""
    one_line = _SPACE.sub(" ", strip_uids(text)).strip() or "no reason given"
    if len(one_line) <= limit:
        return one_line
    cut = one_line[: limit - 1].rsplit(" ", 1)[0].rstrip(" ,;:")
    return (cut or one_line[: limit - 1]) + "…"


@dataclass(frozen=True)
class Failure:
    """A classified failure: `reason` is a short machine code (a metric label), `detail` the
    text kept in the job record (no PHI), `explanation` the sentence shown to the reader."""

    transient: bool
    reason: str
    detail: str
    explanation: str


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, _TRANSIENT_TYPES):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return any(cls.__name__ in _TRANSIENT_NAMES and cls.__module__.split(".")[0] in
               ("torch", "redis", "kombu", "amqp") for cls in type(exc).__mro__)


def _where(exc: BaseException) -> str:
    """`file:line` of the innermost frame in the node's own code (no values)."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if any(p in Path(f.filename).parts for p in
                                     ("workers", "dicom_node", "inference", "hl7_fhir"))]
    if not (ours or frames):
        return "unknown location"
    frame = (ours or frames)[-1]
    return f"{Path(frame.filename).parent.name}/{Path(frame.filename).name}:{frame.lineno}"


def classify(exc: BaseException) -> Failure:
    """Transient or deterministic, with what may be recorded and reported about `exc`."""
    transient = _is_transient(exc)
    name = type(exc).__name__
    if isinstance(exc, _OWN):
        code = getattr(exc, "reason", None)
        reason = code if isinstance(code, str) and code.isidentifier() else _snake(name)
        detail = shape_reason(str(exc) or name, 2000)
        explanation = shape_reason(str(exc) or name)
    elif isinstance(exc, SoftTimeLimitExceeded):
        reason, detail = "timeout", "the job's soft time limit was exceeded"
        explanation = detail
    else:
        reason = "io_error" if isinstance(exc, OSError) else "unexpected"
        if transient and reason == "unexpected":
            reason = "environment"
        # never the message: library exceptions quote the values they choked on
        detail = f"{name} at {_where(exc)}"
        explanation = (f"the node could not process this study ({name}); "
                       "the operator can see the details in the job record")
    return Failure(transient=transient, reason=reason[:64], detail=detail,
                   explanation=explanation)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
