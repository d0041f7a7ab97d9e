"""The node's DICOM listener: one Application Entity with the Verification and Storage SCPs.

Accepted SOP classes and transfer syntaxes are the ones modalities and PACS send for CT, MR
(classic and Enhanced), CR, DX, SC, SEG, SR and KOS (PS3.4 Annex B.5); instances are stored in the
transfer syntax they arrived in, never decoded on the receive path.

Two upper layers serve it, chosen by `dicom.upper_layer`: the node's own (`scp.upper`, the
default) and pynetdicom's (the fallback). Both negotiate the same contexts, apply the same
bounds and access policy, report the same association events and store through
`StorageSCP.store`.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from typing import Any, cast

from pydicom import uid
from pydicom import uid as sc
from pynetdicom import AE, _config, evt
from pynetdicom.association import Association
from pynetdicom.presentation import DEFAULT_TRANSFER_SYNTAXES, PresentationContext, build_context
from pynetdicom.transport import ThreadedAssociationServer

from dicom_node.config import DicomNodeConfig, TlsConfig
from dicom_node.metrics import IngestMetrics
from dicom_node.scp.access import AccessPolicy, AssociationObserver, install_access_control
from dicom_node.scp.guard import ConnectionGuard, GuardedServer
from dicom_node.scp.storage import StorageSCP
from dicom_node.scp.upper import NativeServer
from dicom_node.scp.verification import VerificationSCP

VERIFICATION = "1.2.840.10008.1.1"
UPPER_LAYER_LOGGER = "dicom_node.scp.upper"
"""The logger of the node's own upper layer (`scp.upper`): per C-STORE lines at INFO."""

STORAGE_SOP_CLASSES: tuple[str, ...] = (
    sc.CTImageStorage,
    sc.EnhancedCTImageStorage,
    sc.LegacyConvertedEnhancedCTImageStorage,
    sc.MRImageStorage,
    sc.EnhancedMRImageStorage,
    sc.EnhancedMRColorImageStorage,
    sc.LegacyConvertedEnhancedMRImageStorage,
    sc.ComputedRadiographyImageStorage,
    sc.DigitalXRayImageStorageForPresentation,
    sc.DigitalXRayImageStorageForProcessing,
    sc.SecondaryCaptureImageStorage,
    sc.MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
    sc.MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    sc.MultiFrameSingleBitSecondaryCaptureImageStorage,
    sc.MultiFrameTrueColorSecondaryCaptureImageStorage,
    sc.SegmentationStorage,
    sc.BasicTextSRStorage,
    sc.EnhancedSRStorage,
    sc.ComprehensiveSRStorage,
    sc.Comprehensive3DSRStorage,
    sc.XRayRadiationDoseSRStorage,
    sc.KeyObjectSelectionDocumentStorage,
)

# pynetdicom accepts the first of these that the requestor proposes, so the order is a policy:
# lossless compressed first (a sender offering them holds the data that way, and the bytes are kept
# as they are), then uncompressed, and lossy syntaxes last, so that the node never asks a sender to
# compress lossily data it holds losslessly.
TRANSFER_SYNTAXES: tuple[str, ...] = (
    uid.JPEGLosslessSV1,
    uid.JPEGLossless,
    uid.JPEGLSLossless,
    uid.JPEG2000Lossless,
    uid.RLELossless,
    uid.ExplicitVRLittleEndian,
    uid.ImplicitVRLittleEndian,
    uid.DeflatedExplicitVRLittleEndian,
    uid.JPEGBaseline8Bit,
    uid.JPEGExtended12Bit,
    uid.JPEGLSNearLossless,
    uid.JPEG2000,
)


def supported_contexts() -> list[PresentationContext]:
    """The presentation contexts the node accepts, transfer syntaxes in preference order:
    Verification with the default syntaxes, every Storage SOP class with TRANSFER_SYNTAXES."""
    return [build_context(VERIFICATION, list(DEFAULT_TRANSFER_SYNTAXES)),
            *(build_context(sop_class, list(TRANSFER_SYNTAXES))
              for sop_class in STORAGE_SOP_CLASSES)]


class ReusePortServer(GuardedServer):
    """The listener of one of several acceptor processes on the same host:port."""

    allow_reuse_port = True


def tls_context(tls: TlsConfig) -> ssl.SSLContext:
    """A server context for DICOM over TLS: TLS 1.2 or newer, the node's certificate, and
    client certificates verified against `ca_file` (PS3.15 B.1, BCP 195 profile)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    if tls.ca_file is not None:
        context.load_verify_locations(cafile=str(tls.ca_file))
    context.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_NONE
    return context


def configure_protocol_logging(level: str) -> None:
    """Sets the protocol loggers (pynetdicom's and the node's own upper layer's) to `level`.
    Above INFO pynetdicom's standard per-message handlers are not bound to new associations
    either: they build summaries of every PDU and DIMSE message (and log each C-STORE request
    at INFO), work the receive path would pay for nothing."""
    numeric = logging.getLevelName(level)
    logging.getLogger("pynetdicom").setLevel(numeric)
    logging.getLogger(UPPER_LAYER_LOGGER).setLevel(numeric)
    _config.LOG_HANDLER_LEVEL = "standard" if numeric <= logging.INFO else "none"


ABORT_JOIN_S = 5.0
"""On stop, how long each aborted association's thread is waited for (one in a store finishes
that store first; its response is not sent)."""


class DicomServer:
    """Starts and stops the listener; the SCP handlers are passed in."""

    def __init__(
        self,
        config: DicomNodeConfig,
        storage: StorageSCP,
        *,
        metrics: IngestMetrics | None = None,
        on_association: AssociationObserver | None = None,
    ) -> None:
        """`on_association` is told of each association's acceptance, rejection, release,
        abort and close (an audit trail's observer; it must return at once)."""
        self.config = config
        self.storage = storage
        self.verification = VerificationSCP()
        self.metrics = metrics
        self.on_association = on_association
        self._server: ThreadedAssociationServer | None = None
        self._ae: AE | None = None
        self._native: NativeServer | None = None

    def build_ae(self) -> AE:
        cfg = self.config
        ae = AE(ae_title=cfg.ae_title)
        # Established associations are limited by the access control (`max_associations`) and
        # pending connections by the guard; pynetdicom's own count covers both.
        ae.maximum_associations = cfg.max_associations + cfg.max_pending_associations
        ae.network_timeout = cfg.network_timeout_s
        ae.acse_timeout = cfg.acse_timeout_s
        ae.dimse_timeout = cfg.dimse_timeout_s
        ae.maximum_pdu_size = cfg.max_pdu_bytes
        # Called/calling checks are done by AccessPolicy, with the peer address.
        ae.require_called_aet = False
        for context in supported_contexts():
            ae.add_supported_context(str(context.abstract_syntax), context.transfer_syntax)
        return ae

    def start(self) -> None:
        """Binds and serves in background threads (the port is bound on return)."""
        configure_protocol_logging(self.config.protocol_log_level)
        guard = ConnectionGuard(self.config, self.metrics)
        if self.config.upper_layer == "native":
            self._start_native(guard)
            return
        handlers: list[Any] = [
            (evt.EVT_C_ECHO, self.verification.handle_echo),
            (evt.EVT_C_STORE, self.storage.handle_store),
            *install_access_control(AccessPolicy(self.config), self.metrics, guard,
                                    self.on_association),
        ]
        ae = self.build_ae()
        if self.metrics is not None:
            self.metrics.active_associations.set_function(
                lambda: len([a for a in ae.active_associations if a.is_acceptor])
            )
            self.metrics.pending_connections.set_function(guard.pending)
        server_class = (ReusePortServer if self.config.acceptor_processes > 1
                        else GuardedServer)
        server = cast(GuardedServer, ae.make_server(
            (self.config.host, self.config.port), evt_handlers=handlers,
            ssl_context=tls_context(self.config.tls) if self.config.tls else None,
            server_class=server_class,
        ))
        server.guard = guard
        # As pynetdicom's own non-blocking start_server does: serve in a daemon thread and
        # register the server with the AE (its shutdown unregisters it).
        threading.Thread(target=server.serve_forever, name="dicom-accept", daemon=True).start()
        ae._servers.append(server)
        self._ae, self._server = ae, server

    def _start_native(self, guard: ConnectionGuard) -> None:
        native = NativeServer(
            self.config, self.storage, supported_contexts=supported_contexts(), guard=guard,
            policy=AccessPolicy(self.config), observer=self.on_association,
            ssl_context=tls_context(self.config.tls) if self.config.tls else None)
        native.start()
        if self.metrics is not None:
            self.metrics.active_associations.set_function(native.established_count)
            self.metrics.pending_connections.set_function(guard.pending)
        self._native = native

    @property
    def port(self) -> int:
        if self._native is not None:
            return self._native.port
        if self._server is None:
            raise RuntimeError("server not started")
        return int(self._server.server_address[1])

    def stop(self, grace_s: float | None = None) -> None:
        """Stops accepting, lets in-flight associations finish for `grace_s` (default
        `stop_grace_s`), then aborts those still open: a store not yet acknowledged is simply
        not acknowledged, and the sender sends it again."""
        grace = self.config.stop_grace_s if grace_s is None else grace_s
        if self._native is not None:
            self._stop_native(self._native, grace)
            return
        if self._server is None:
            return
        self._server.shutdown()
        self._server = None
        deadline = time.monotonic() + grace
        while self._acceptors() and time.monotonic() < deadline:
            time.sleep(0.05)
        for assoc in self._acceptors():
            assoc.abort()

    def _stop_native(self, native: NativeServer, grace: float) -> None:
        self._native = None
        native.stop_accepting()
        deadline = time.monotonic() + grace
        while native.connections() and time.monotonic() < deadline:
            time.sleep(0.05)
        left = native.connections()
        for association in left:
            association.abort()
        for association in left:  # each ends at its next read, or once its store returns
            association.join(timeout=ABORT_JOIN_S)

    def _acceptors(self) -> list[Association]:
        if self._ae is None:
            return []
        return [a for a in self._ae.active_associations if a.is_acceptor]
