"""Association access control (PS3.8 section 7.1.1.9, A-ASSOCIATE-RJ).

The called AE title, the calling AE title and the peer's source address are checked before any
presentation context is negotiated. A refused peer gets a permanent rejection whose reason says
which check failed; the concurrency limit gives a transient rejection (pynetdicom's own
`maximum_associations` check, local-limit-exceeded).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any, cast

from pynetdicom import evt
from pynetdicom.acse import ACSE
from pynetdicom.association import Association
from pynetdicom.pdu_primitives import A_ASSOCIATE

from dicom_node.config import DicomNodeConfig
from dicom_node.metrics import IngestMetrics


class RejectResult(IntEnum):
    """A-ASSOCIATE-RJ Result (PS3.8 Table 9-21)."""

    PERMANENT = 0x01
    TRANSIENT = 0x02


class RejectSource(IntEnum):
    SERVICE_USER = 0x01


class RejectReason(IntEnum):
    """Service-user reasons (PS3.8 Table 9-21)."""

    NO_REASON_GIVEN = 0x01
    CALLING_AE_NOT_RECOGNIZED = 0x03
    CALLED_AE_NOT_RECOGNIZED = 0x07


@dataclass(frozen=True)
class Refusal:
    reason: RejectReason
    label: str


class AccessPolicy:
    """Decides, from the configuration, whether a peer may associate."""

    def __init__(self, config: DicomNodeConfig) -> None:
        self.config = config

    def check(self, calling_ae: str, called_ae: str, address: str) -> Refusal | None:
        """None when allowed; otherwise the refusal to send.

        A known AE title coming from an address not listed for it is refused as "calling AE
        not recognized": the node recognises a peer by its title and address together.
        """
        cfg = self.config
        if cfg.require_called_ae and called_ae.strip() != cfg.ae_title:
            return Refusal(RejectReason.CALLED_AE_NOT_RECOGNIZED, "called_ae")
        if not cfg.require_known_peers:
            return None
        known = [p for p in cfg.peers if p.ae_title == calling_ae.strip()]
        if not known:
            return Refusal(RejectReason.CALLING_AE_NOT_RECOGNIZED, "calling_ae")
        if not any(p.allows(calling_ae, address) for p in known):
            return Refusal(RejectReason.CALLING_AE_NOT_RECOGNIZED, "source_address")
        return None


class _ControlledACSE(ACSE):
    """pynetdicom's ACSE with the node's access policy checked first."""

    def __init__(
        self, assoc: Association, policy: AccessPolicy, metrics: IngestMetrics | None
    ) -> None:
        super().__init__(assoc)
        self._policy = policy
        self._metrics = metrics

    def _negotiate_as_acceptor(self) -> None:
        request = cast(A_ASSOCIATE, self.requestor.primitive)
        info = self.assoc.requestor.address_info
        address = info.address if info is not None else ""
        refusal = self._policy.check(
            str(request.calling_ae_title), str(request.called_ae_title), address
        )
        if refusal is None:
            super()._negotiate_as_acceptor()
            if self._metrics is not None and self.assoc.is_rejected:
                self._metrics.rejections.labels(reason="too_many_associations").inc()
            return
        if self._metrics is not None:
            self._metrics.rejections.labels(reason=refusal.label).inc()
        self.requestor.ae_title = request.calling_ae_title
        self.send_reject(RejectResult.PERMANENT, RejectSource.SERVICE_USER, refusal.reason)
        evt.trigger(self.assoc, evt.EVT_REJECTED, {})
        self.assoc.kill()


def install_access_control(
    policy: AccessPolicy, metrics: IngestMetrics | None
) -> tuple[Any, Any]:
    """An EVT_CONN_OPEN handler that puts the policy in front of each new association."""

    def on_open(event: evt.Event) -> None:
        event.assoc.acse = _ControlledACSE(event.assoc, policy, metrics)

    return (evt.EVT_CONN_OPEN, on_open)
