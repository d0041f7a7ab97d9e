"""Association access control (PS3.8 section 7.1.1.9, A-ASSOCIATE-RJ).

The called AE title, the calling AE title and the peer's source address are checked before any
presentation context is negotiated. A refused peer gets a permanent rejection whose reason says
which check failed; more than `max_associations` established associations give a transient
rejection (local-limit-exceeded). Connections that have not yet sent their request are bounded
separately (`scp.guard`), so they never count against established ones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, cast

from pynetdicom import evt
from pynetdicom.acse import ACSE
from pynetdicom.association import Association
from pynetdicom.pdu_primitives import A_ASSOCIATE

from dicom_node.config import DicomNodeConfig
from dicom_node.metrics import IngestMetrics
from dicom_node.scp.guard import ConnectionGuard, bound_connection

log = logging.getLogger(__name__)


class RejectResult(IntEnum):
    """A-ASSOCIATE-RJ Result (PS3.8 Table 9-21)."""

    PERMANENT = 0x01
    TRANSIENT = 0x02


class RejectSource(IntEnum):
    SERVICE_USER = 0x01
    SERVICE_PROVIDER_PRESENTATION = 0x03


class RejectReason(IntEnum):
    """Service-user reasons (PS3.8 Table 9-21)."""

    NO_REASON_GIVEN = 0x01
    LOCAL_LIMIT_EXCEEDED = 0x02
    """With source 3 (service-provider, presentation related)."""
    CALLING_AE_NOT_RECOGNIZED = 0x03
    CALLED_AE_NOT_RECOGNIZED = 0x07


@dataclass(frozen=True)
class Refusal:
    reason: RejectReason
    label: str


@dataclass(frozen=True)
class AssociationEvent:
    """What the listener saw of an association, for an audit trail. `kind`: accepted,
    rejected, released, aborted or closed (the connection ended: always the last);
    `association`: an id shared by the events of one association; `reason`: the refusal
    label of a rejection."""

    kind: str
    association: int
    calling_ae: str
    called_ae: str
    address: str
    reason: str | None = None


AssociationObserver = Callable[[AssociationEvent], None]
"""Called on the association's threads: it must return at once and never raise."""


def association_event(assoc: Association, kind: str, reason: str | None = None,
                      request: A_ASSOCIATE | None = None) -> AssociationEvent:
    """The event of `assoc`; with the A-ASSOCIATE-RQ `request` (a rejection), the AE titles
    as the peer sent them."""
    info = assoc.requestor.address_info
    calling, called = ((request.calling_ae_title, request.called_ae_title) if request is not None
                       else (assoc.requestor.ae_title, assoc.acceptor.ae_title))
    return AssociationEvent(
        kind=kind, association=id(assoc), calling_ae=str(calling).strip(),
        called_ae=str(called).strip(), address=info.address if info is not None else "",
        reason=reason)


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
    """pynetdicom's ACSE with the node's access policy and association limit checked first."""

    def __init__(
        self, assoc: Association, policy: AccessPolicy, metrics: IngestMetrics | None,
        guard: ConnectionGuard | None, observer: AssociationObserver | None = None,
    ) -> None:
        super().__init__(assoc)
        self._policy = policy
        self._metrics = metrics
        self._guard = guard
        self._observer = observer

    def _negotiate_as_acceptor(self) -> None:
        if self._guard is not None:
            self._guard.settle(self.assoc)  # the request came: no longer pending
        request = cast(A_ASSOCIATE, self.requestor.primitive)
        info = self.assoc.requestor.address_info
        address = info.address if info is not None else ""
        refusal = self._policy.check(
            str(request.calling_ae_title), str(request.called_ae_title), address
        )
        if refusal is None and self._established() >= self._policy.config.max_associations:
            self._reject(request, RejectResult.TRANSIENT,
                         RejectSource.SERVICE_PROVIDER_PRESENTATION,
                         RejectReason.LOCAL_LIMIT_EXCEEDED, "too_many_associations")
            return
        if refusal is None:
            super()._negotiate_as_acceptor()
            if self._metrics is not None and self.assoc.is_rejected:
                self._metrics.rejections.labels(reason="too_many_associations").inc()
            return
        self._reject(request, RejectResult.PERMANENT, RejectSource.SERVICE_USER, refusal.reason,
                     refusal.label)

    def _established(self) -> int:
        """Associations this AE accepted that are established (pending ones not counted)."""
        return sum(1 for a in self.assoc.ae.active_associations
                   if a.is_acceptor and a.is_established and a is not self.assoc)

    def _reject(self, request: A_ASSOCIATE, result: RejectResult, source: RejectSource,
                reason: RejectReason, label: str) -> None:
        if self._metrics is not None:
            self._metrics.rejections.labels(reason=label).inc()
        if self._observer is not None:
            self._observer(association_event(self.assoc, "rejected", label, request))
        self.requestor.ae_title = request.calling_ae_title
        self.send_reject(result, source, reason)
        evt.trigger(self.assoc, evt.EVT_REJECTED, {})
        self.assoc.kill()


def install_access_control(
    policy: AccessPolicy, metrics: IngestMetrics | None, guard: ConnectionGuard | None = None,
    observer: AssociationObserver | None = None,
) -> list[tuple[Any, Any]]:
    """Handlers that put the policy, the association limit and the connection bounds
    (`scp.guard`) in front of each new connection, and release its pending slot on close;
    with `observer`, each association's acceptance, rejection, release, abort and close are
    reported to it."""

    def on_open(event: evt.Event) -> None:
        if observer is not None:  # first: "closed" is reported whatever fails below
            _report_closed_last(event.assoc, observer)
        event.assoc.acse = _ControlledACSE(event.assoc, policy, metrics, guard, observer)
        bound_connection(event.assoc, policy.config, guard)

    handlers: list[tuple[Any, Any]] = [(evt.EVT_CONN_OPEN, on_open)]
    if guard is not None:
        handlers.append((evt.EVT_CONN_CLOSE, lambda event: guard.settle(event.assoc)))
    if observer is not None:
        for event_type, kind in ((evt.EVT_ACCEPTED, "accepted"), (evt.EVT_RELEASED, "released"),
                                 (evt.EVT_ABORTED, "aborted")):
            handlers.append((event_type, _reporter(observer, kind)))
    return handlers


def _report_closed_last(assoc: Association, observer: AssociationObserver) -> None:
    """Reports "closed" when the association's thread ends (called at EVT_CONN_OPEN, before
    the thread starts), as the native layer does. pynetdicom raises EVT_CONN_CLOSE on the DUL
    thread the moment the transport closes: for a peer's A-ABORT or a dropped connection that
    is before the association's thread notices the abort and raises EVT_ABORTED, so "closed"
    would not be the last event of the association. By the end of the thread the transport is
    closed (the thread waits for its DUL to stop, then shuts the socket down) and the release,
    abort or rejection has been reported."""
    run = assoc.run

    def run_then_report() -> None:
        try:
            run()
        finally:
            try:
                observer(association_event(assoc, "closed"))
            except Exception:  # noqa: BLE001 - as pynetdicom's own handlers: logged
                log.exception("association observer failed")

    assoc.run = run_then_report  # type: ignore[method-assign]


def _reporter(observer: AssociationObserver, kind: str) -> Callable[[evt.Event], None]:
    def report(event: evt.Event) -> None:
        observer(association_event(event.assoc, kind))

    return report
