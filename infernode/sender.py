"""`infernode send`: C-STORE every DICOM file of a folder to a peer, one association per batch."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.filereader import read_file_meta_info
from pydicom.errors import InvalidDicomError
from pynetdicom import AE

MAX_CONTEXTS = 128


@dataclass
class SendReport:
    sent: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def dicom_files(folder: Path) -> list[tuple[Path, str, str]]:
    """(path, SOP class, transfer syntax) of every DICOM Part 10 file below `folder`."""
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            meta = read_file_meta_info(path)
        except (InvalidDicomError, OSError, ValueError):
            continue
        found.append(
            (path, str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID))
        )
    return found


def send_files(
    files: Iterable[tuple[Path, str, str]],
    *,
    host: str,
    port: int,
    called_ae: str,
    calling_ae: str,
    on_progress: Callable[[Path, int], None] | None = None,
) -> SendReport:
    """Sends the files as they are stored (no re-encoding). Raises ConnectionError when the
    association is rejected or cannot be opened."""
    files = list(files)
    report = SendReport()
    contexts = sorted({(c, ts) for _, c, ts in files})
    for start in range(0, len(contexts), MAX_CONTEXTS):
        batch_contexts = set(contexts[start : start + MAX_CONTEXTS])
        ae = AE(ae_title=calling_ae)
        for sop_class, ts in batch_contexts:
            ae.add_requested_context(sop_class, ts)
        assoc = ae.associate(host, port, ae_title=called_ae)
        if not assoc.is_established:
            raise ConnectionError(f"association with {called_ae}@{host}:{port} not established")
        sock = getattr(getattr(assoc.dul, "socket", None), "socket", None)
        if sock is not None:
            # Without TCP_NODELAY each small PDU can wait on delayed ACKs.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for path, sop_class, ts in files:
                if (sop_class, ts) not in batch_contexts:
                    continue
                status = assoc.send_c_store(path)
                code = int(status.Status) if status and "Status" in status else -1
                if code == 0:
                    report.sent += 1
                else:
                    key = f"0x{code:04X}" if code >= 0 else "no response"
                    report.failed[key] = report.failed.get(key, 0) + 1
                if on_progress is not None:
                    on_progress(path, code)
        finally:
            if assoc.is_established:
                assoc.release()
    return report
