"""`infernode send`: C-STORE every DICOM file of a folder to a peer over one association."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_file_meta_info

from dicom_node.scu.storage import StorageSCU, StoreDestination, StoreReport


def dicom_files(folder: Path) -> list[Path]:
    """Every DICOM Part 10 file below `folder`, in name order."""
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            read_file_meta_info(path)
        except (InvalidDicomError, OSError, ValueError):
            continue
        found.append(path)
    return found


def send_files(
    files: list[Path],
    *,
    host: str,
    port: int,
    called_ae: str,
    calling_ae: str,
    on_progress: Callable[[str, int], None] | None = None,
) -> StoreReport:
    """Sends the files as they are stored. Raises the SCU's DeliveryTransientError or
    DeliveryPermanentError when the peer is unreachable or refuses."""
    destination = StoreDestination(host=host, port=port, called_ae=called_ae,
                                   calling_ae=calling_ae)
    return StorageSCU(destination).send(files, on_progress=on_progress)
