"""HL7 v2 general acknowledgment (ACK, v2.5.1 section 2.9 and 2.14.8 MSA).

Reading is tolerant on purpose: receivers answer with ACKs of many versions and dialects, so
only MSH encoding characters and MSA-1/MSA-2 (plus the ERR-3 error code) are read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from hl7_fhir.hl7v2 import er7

ACCEPT = frozenset({"AA", "CA"})
ERROR = frozenset({"AE", "CE"})  # the receiver failed to process it; may succeed later
REJECT = frozenset({"AR", "CR"})  # the receiver refuses the message itself


@dataclass(frozen=True)
class Ack:
    """The parts of an ACK the sender acts on; `error_code` is ERR-3.1 (table 0357)."""

    code: str
    control_id: str
    error_code: str | None = None

    @property
    def accepted(self) -> bool:
        return self.code in ACCEPT


def _fields(segment: str, separator: str) -> list[str]:
    return segment.split(separator)


def parse_ack(text: str) -> Ack:
    """Read MSA-1 (acknowledgment code) and MSA-2 (control id of the acknowledged message).

    Raises `ValueError` when there is no MSH or MSA segment.
    """
    segments = [s for s in text.replace("\n", "\r").split("\r") if s.strip()]
    if not segments or not segments[0].startswith("MSH") or len(segments[0]) < 8:
        raise ValueError("ACK has no MSH segment")
    field_sep = segments[0][3]
    component_sep = segments[0][4]
    msa = next((s for s in segments if s.startswith("MSA" + field_sep)), None)
    if msa is None:
        raise ValueError("ACK has no MSA segment")
    fields = _fields(msa, field_sep) + ["", ""]
    err = next((s for s in segments if s.startswith("ERR" + field_sep)), None)
    error_code = None
    if err is not None:
        err_fields = _fields(err, field_sep) + ["", "", ""]
        error_code = err_fields[3].split(component_sep)[0] or None
    return Ack(code=fields[1].strip().upper(), control_id=fields[2].strip(), error_code=error_code)


def build_ack(
    received: str, code: str, sent: datetime, control_id: str, error_code: str | None = None
) -> str:
    """An original-mode ACK for `received` (swaps sender and receiver, echoes MSH-10 in MSA-2).

    For MLLP peers in tests and for any listener the node runs. Raises `ValueError` on a
    message without MSH.
    """
    msh = received.replace("\n", "\r").split("\r")[0]
    if not msh.startswith("MSH") or len(msh) < 8:
        raise ValueError("message has no MSH segment")
    f = _fields(msh, msh[3]) + [""] * 12
    # f[i] is MSH-(i+1) for i >= 1 because f[1] holds MSH-2 (MSH-1 is the separator).
    header = er7.FIELD.join(
        ["MSH", f[1], f[4], f[5], f[2], f[3], er7.dtm(sent), "", "ACK^R01^ACK",
         er7.escape(control_id), f[10], f[11]]
    )
    segments = [header, er7.segment("MSA", {1: code, 2: f[9]})]
    if error_code is not None:
        segments.append(er7.segment("ERR", {3: error_code, 4: "E"}))
    return er7.message(segments)
