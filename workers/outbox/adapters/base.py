"""What every adapter is: it sends a batch of claimed deliveries to one destination and says,
for each, delivered or how it failed. Adapters turn the leaf packages' transient/permanent
errors into `Failure`s here, so the runner handles one shape; they never raise for a delivery
failure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from workers.outbox.claims import DueDelivery, Failure


@dataclass(frozen=True)
class Sent:
    """The outcome of one delivery of a batch: `failure` None means delivered."""

    delivery_id: int
    failure: Failure | None = None


class Adapter(Protocol):
    """One destination's sender. `send` gets deliveries of that destination (for batching
    adapters: all outputs of one job) and returns one `Sent` per delivery."""

    def send(self, items: Sequence[DueDelivery]) -> list[Sent]: ...

    def close(self) -> None: ...


def failure_from(exc: Exception, *, permanent: bool, code: str | None = None) -> Failure:
    """A Failure from a leaf package's delivery error, whose messages carry no PHI (their
    contract). `code` (an HTTP or DIMSE status) is appended to the reason label."""
    label = "permanent" if permanent else "transient"
    retry_after = getattr(exc, "retry_after", None)
    return Failure(permanent, f"{label}:{code}" if code else label, str(exc) or type(exc).__name__,
                   float(retry_after) if isinstance(retry_after, (int, float)) else None)


def http_code(exc: Exception) -> str | None:
    status = getattr(exc, "status", None)
    return str(status) if isinstance(status, int) else None


def dimse_code(exc: Exception) -> str | None:
    status = getattr(exc, "status", None)
    return f"0x{status:04X}" if isinstance(status, int) else None


def missing(item: DueDelivery) -> Failure | None:
    """A permanent failure when the output file is gone: only a re-run writes it again (and
    resets the delivery)."""
    path = item.output.path
    if path is None or not Path(path).is_file():
        return Failure(True, "missing_output",
                       f"output file of {item.output.kind} {item.output.uid} is missing")
    return None


def invalid(item: DueDelivery, what: str) -> Failure:
    return Failure(True, "invalid_output",
                   f"output {item.output.kind} {item.output.uid} is not {what}")
