"""HL7 v2 ORU^R01 outputs over MLLP (HL7 v2.5.1 Appendix C), through `hl7_fhir.hl7v2.mllp`:
one connection per message, and the ACK is read and checked (MSA-1, MSA-2)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hl7_fhir.errors import PermanentDeliveryError, TransientDeliveryError
from hl7_fhir.hl7v2.mllp import client_tls_context, send_mllp
from workers.outbox.adapters.base import Sent, failure_from, invalid, missing
from workers.outbox.claims import DueDelivery, Failure
from workers.outbox.config import MllpDestination


class MllpAdapter:
    """Sends each ER7 message file to one HL7 receiver."""

    def __init__(self, dest: MllpDestination) -> None:
        self._dest = dest
        tls = dest.tls
        self._ssl = (client_tls_context(tls.ca_file, tls.cert_file, tls.key_file)
                     if tls is not None else None)

    def _send_one(self, item: DueDelivery) -> Failure | None:
        gone = missing(item)
        if gone is not None:
            return gone
        try:
            message = Path(item.output.path or "").read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return invalid(item, "a UTF-8 ER7 message")
        try:
            send_mllp(message, self._dest.host, self._dest.port, timeout_s=self._dest.timeout_s,
                      ssl_context=self._ssl)
        except ValueError:
            # no MSH segment or no control id: the file is not an HL7 message
            return invalid(item, "an HL7 v2 message with MSH-10")
        except TransientDeliveryError as exc:
            return failure_from(exc, permanent=False)
        except PermanentDeliveryError as exc:
            return failure_from(exc, permanent=True)
        return None

    def send(self, items: Sequence[DueDelivery]) -> list[Sent]:
        return [Sent(item.id, self._send_one(item)) for item in items]

    def close(self) -> None:
        """One connection per message: nothing held."""
