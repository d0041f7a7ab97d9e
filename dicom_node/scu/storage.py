"""Storage SCU: sends a batch of stored instances to a peer over one association (PS3.4 B.2.2).

The presentation contexts proposed (PS3.8 7.1.1.13) are derived from the files: for each SOP
Class, its own transfer syntax in a context of its own, plus an uncompressed context when the
files are compressed, so that a peer that does not accept the compressed form still receives
the instance (decoded, which is lossless for the lossless syntaxes it was stored in).

TCP_NODELAY is set on the socket as soon as it connects: without it each small PDU of a C-STORE
can wait for the peer's delayed ACK (~40 ms per image on Linux).
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filereader import read_file_meta_info
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.events import Event

from dicom_node.scu.errors import (
    DeliveryPermanentError,
    DeliveryTransientError,
    error_for_status,
)

LOG = logging.getLogger(__name__)
_MAX_CONTEXTS = 128  # PS3.8 9.3.2.2: odd context IDs 1..255
_UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
# A-ASSOCIATE-RJ Result (PS3.8 9.3.4): 1 rejected-permanent, 2 rejected-transient.
_REJECTED_TRANSIENT = 2


@dataclass(frozen=True)
class StoreDestination:
    """A peer Storage SCP: address, AE titles and timeouts in seconds."""

    host: str
    port: int
    called_ae: str
    calling_ae: str = "INFERNODE"
    connect_timeout_s: float = 10.0
    acse_timeout_s: float = 30.0
    dimse_timeout_s: float = 60.0
    network_timeout_s: float = 60.0
    max_pdu_bytes: int = 262144
    tls: ClientTls | None = None


@dataclass(frozen=True)
class ClientTls:
    """DICOM over TLS to the peer (PS3.15 B.1): the CA that issued the peer's certificate, and
    the node's own certificate/key when the peer asks for one."""

    ca_file: str
    cert_file: str | None = None
    key_file: str | None = None

    def context(self) -> ssl.SSLContext:
        """TLS 1.2 or newer, the peer's certificate verified against `ca_file`."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context


@dataclass(frozen=True)
class StoredInstance:
    """One instance the peer accepted; `status` is 0x0000 or a warning (B000, B006, B007)."""

    sop_instance_uid: str
    status: int
    transfer_syntax_uid: str


@dataclass(frozen=True)
class StoreReport:
    """What one batch achieved, and whether the socket had TCP_NODELAY set."""

    stored: tuple[StoredInstance, ...]
    tcp_nodelay: bool


@dataclass(frozen=True)
class _FileInfo:
    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: UID


def _file_info(path: Path) -> _FileInfo:
    try:
        meta = read_file_meta_info(path)
    except (OSError, ValueError) as exc:
        raise DeliveryPermanentError(f"{path.name}: not a readable DICOM file") from exc
    return _FileInfo(
        path,
        str(meta.MediaStorageSOPClassUID),
        str(meta.MediaStorageSOPInstanceUID),
        UID(str(meta.TransferSyntaxUID)),
    )


def _contexts(files: Sequence[_FileInfo]) -> list[tuple[str, list[str]]]:
    wanted: dict[tuple[str, tuple[str, ...]], None] = {}
    for f in files:
        if f.transfer_syntax_uid in _UNCOMPRESSED:
            wanted[(f.sop_class_uid, _UNCOMPRESSED)] = None
        else:
            wanted[(f.sop_class_uid, (str(f.transfer_syntax_uid),))] = None
            if f.transfer_syntax_uid.is_compressed:
                wanted[(f.sop_class_uid, _UNCOMPRESSED)] = None
    if len(wanted) > _MAX_CONTEXTS:
        raise DeliveryPermanentError(
            f"batch needs {len(wanted)} presentation contexts; at most {_MAX_CONTEXTS} allowed"
        )
    return [(sop, list(syntaxes)) for sop, syntaxes in wanted]


def _set_nodelay(event: Event) -> None:
    sock = event.assoc.dul.socket.socket if event.assoc.dul.socket else None
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _nodelay_on(assoc: Association) -> bool:
    holder = assoc.dul.socket
    sock = holder.socket if holder is not None else None
    if sock is None:
        return False
    return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


class StorageSCU:
    """Sends batches of files to one destination, one association per batch."""

    def __init__(self, destination: StoreDestination) -> None:
        self.destination = destination

    def _ae(self) -> AE:
        d = self.destination
        ae = AE(ae_title=d.calling_ae)
        ae.connection_timeout = d.connect_timeout_s
        ae.acse_timeout = d.acse_timeout_s
        ae.dimse_timeout = d.dimse_timeout_s
        ae.network_timeout = d.network_timeout_s
        return ae

    def _associate(self, files: Sequence[_FileInfo]) -> Association:
        d = self.destination
        ae = self._ae()
        for sop_class, syntaxes in _contexts(files):
            ae.add_requested_context(sop_class, syntaxes)
        assoc = ae.associate(
            d.host, d.port, ae_title=d.called_ae, max_pdu=d.max_pdu_bytes,
            evt_handlers=[(evt.EVT_CONN_OPEN, _set_nodelay)],
            tls_args=(d.tls.context(), d.host) if d.tls else None,
        )
        if assoc.is_established:
            return assoc
        if assoc.is_rejected:
            result = getattr(assoc.acceptor.primitive, "result", None)
            diagnostic = getattr(assoc.acceptor.primitive, "diagnostic", None)
            reason = f"association rejected by {d.called_ae} (result {result}, reason {diagnostic})"
            if result == _REJECTED_TRANSIENT:
                raise DeliveryTransientError(reason)
            raise DeliveryPermanentError(reason)
        if assoc.is_aborted and assoc.acceptor.primitive is not None and assoc.rejected_contexts:
            # Accepted, but not one presentation context: pynetdicom aborts (PS3.8 9.3.3.2).
            raise DeliveryPermanentError(
                f"{d.called_ae} accepted none of the proposed SOP classes / transfer syntaxes"
            )
        if assoc.is_aborted:
            raise DeliveryTransientError(f"association aborted by {d.called_ae}")
        raise DeliveryTransientError(f"no association with {d.host}:{d.port} ({d.called_ae})")

    @staticmethod
    def _dataset_for(assoc: Association, info: _FileInfo) -> Dataset:
        """The instance in a transfer syntax an accepted context carries."""
        accepted = {
            (cx.abstract_syntax, cx.transfer_syntax[0]) for cx in assoc.accepted_contexts
        }
        ds = dcmread(info.path)
        if (info.sop_class_uid, info.transfer_syntax_uid) in accepted:
            return ds
        if any((info.sop_class_uid, ts) in accepted for ts in _UNCOMPRESSED):
            if info.transfer_syntax_uid.is_compressed:
                # A change of transfer syntax is not a new instance: keep the SOP Instance UID
                # (pydicom would otherwise mint one).
                ds.decompress(generate_instance_uid=False)
            return ds
        raise DeliveryPermanentError(
            f"peer accepted no presentation context for SOP Class {info.sop_class_uid}",
            sop_instance_uid=info.sop_instance_uid,
        )

    def send(
        self,
        paths: Sequence[str | Path],
        on_progress: Callable[[str, int], None] | None = None,
    ) -> StoreReport:
        """C-STOREs every file over one association; `on_progress(sop_uid, status)` is called
        after each response.

        Sends everything it can; stops at the first transient failure (the rest would meet the
        same peer state).

        Raises:
            DeliveryTransientError: peer unreachable, busy, aborted, out of resources.
            DeliveryPermanentError: association rejected permanently, SOP class not accepted,
                or an instance refused with a failure status; `sop_instance_uid` and `status`
                name the first such instance, after the others were sent.
        """
        files = [_file_info(Path(p)) for p in paths]
        if not files:
            return StoreReport((), False)
        assoc = self._associate(files)
        stored: list[StoredInstance] = []
        refused: DeliveryPermanentError | None = None
        try:
            nodelay = _nodelay_on(assoc)
            for info in files:
                try:
                    ds = self._dataset_for(assoc, info)
                except DeliveryPermanentError as exc:
                    refused = refused or exc
                    continue
                response = assoc.send_c_store(ds)
                status = int(getattr(response, "Status", -1)) if response else -1
                if on_progress is not None:
                    on_progress(info.sop_instance_uid, status)
                if status < 0:
                    raise DeliveryTransientError(
                        "no C-STORE response (timeout or connection lost)",
                        sop_instance_uid=info.sop_instance_uid,
                    )
                error = error_for_status(status, info.sop_instance_uid)
                if isinstance(error, DeliveryTransientError):
                    raise error
                if error is not None:
                    refused = refused or error
                    continue
                syntax = str(ds.file_meta.TransferSyntaxUID)
                stored.append(StoredInstance(info.sop_instance_uid, status, syntax))
        finally:
            if assoc.is_established:
                assoc.release()
        LOG.info("stored %d/%d at %s", len(stored), len(files), self.destination.called_ae)
        if refused is not None:
            raise refused
        return StoreReport(tuple(stored), nodelay)
