"""STOW-RS client: stores instances over HTTP (PS3.18 10.5, Store Transaction).

One request per batch: ``POST {base}/studies[/{study}]`` with a ``multipart/related;
type="application/dicom"`` body holding each file as it is on disk (PS3.18 8.6.1.2), streamed
with a known Content-Length. The response (PS3.18 10.5.3) names each failed instance with its
Failure Reason, classified like a C-STORE status.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from dicom_node.scu.errors import (
    DeliveryPermanentError,
    DeliveryTransientError,
    StoreStatus,
    error_for_status,
)

LOG = logging.getLogger(__name__)
_CHUNK = 1 << 20
_FAILED_SOP_SEQUENCE = "00081198"
_REFERENCED_SOP_SEQUENCE = "00081199"
_SOP_INSTANCE_UID = "00081155"
_FAILURE_REASON = "00081197"
_TRANSIENT_HTTP = {408, 425, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class StowDestination:
    """A DICOMweb service: its base URL (e.g. ``http://pacs:8042/dicom-web``), an optional
    bearer token, and the request timeout in seconds."""

    base_url: str
    bearer_token: str | None = None
    timeout_s: float = 60.0


@dataclass(frozen=True)
class StowReport:
    """Instances the origin server reports stored (Referenced SOP Sequence)."""

    stored: tuple[str, ...]
    http_status: int


class _Body:
    """The multipart body as a byte stream with a precomputed length."""

    def __init__(self, paths: Sequence[Path], boundary: str) -> None:
        self.paths = paths
        self.part_head = (
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode("ascii")
        )
        self.tail = f"--{boundary}--\r\n".encode("ascii")
        self.length = sum(len(self.part_head) + p.stat().st_size + 2 for p in paths) + len(
            self.tail
        )

    def __iter__(self) -> Iterator[bytes]:
        for path in self.paths:
            yield self.part_head
            with path.open("rb") as handle:
                while chunk := handle.read(_CHUNK):
                    yield chunk
            yield b"\r\n"
        yield self.tail


def _values(item: dict[str, Any], tag: str) -> list[Any]:
    return list(item.get(tag, {}).get("Value", []))


def _raise_for_failures(document: Any, http_status: int) -> tuple[str, ...]:
    """Stored UIDs; raises the first failure, transient kinds before permanent ones.

    HTTP 409 means nothing was stored because of a conflict in the request (PS3.18 10.5.3.2,
    e.g. a Study Instance UID that does not match the URL): permanent whatever reason codes
    come with it, unless one says the server is out of resources (A7xx).
    """
    if not isinstance(document, dict):
        document = {}
    stored = tuple(
        str(v) for item in _values(document, _REFERENCED_SOP_SEQUENCE)
        for v in _values(item, _SOP_INSTANCE_UID)
    )
    errors = []
    for item in _values(document, _FAILED_SOP_SEQUENCE):
        uid = next(iter(_values(item, _SOP_INSTANCE_UID)), None)
        reason = next(iter(_values(item, _FAILURE_REASON)), None)
        status = int(reason) if reason is not None else StoreStatus.PROCESSING_FAILURE
        error = error_for_status(status, uid)
        if error is not None:
            errors.append(error)
    out_of_resources = [e for e in errors if (e.status or 0) & 0xFF00 == 0xA700]
    if http_status == 409:
        if out_of_resources:
            raise out_of_resources[0]
        first = errors[0] if errors else None
        raise DeliveryPermanentError(
            "STOW-RS: no instance stored (409 Conflict)",
            status=first.status if first else None,
            sop_instance_uid=first.sop_instance_uid if first else None,
        )
    transient = [e for e in errors if isinstance(e, DeliveryTransientError)]
    if transient or errors:
        raise (transient or errors)[0]
    return stored


def stow(
    destination: StowDestination,
    paths: Sequence[str | Path],
    *,
    study_instance_uid: str | None = None,
    client: httpx.Client | None = None,
) -> StowReport:
    """Stores the files with one STOW-RS request.

    Raises:
        DeliveryTransientError: connection failure, timeout, HTTP 408/425/429/5xx, or an
            instance failed with a transient reason (e.g. out of resources, A7xx).
        DeliveryPermanentError: other HTTP 4xx (401/403 included: credentials are configuration),
            HTTP 409, or an instance failed with a permanent reason.
    """
    files = [Path(p) for p in paths]
    if not files:
        return StowReport((), 0)
    boundary = f"infernode-{uuid.uuid4().hex}"
    body = _Body(files, boundary)
    url = destination.base_url.rstrip("/") + "/studies"
    if study_instance_uid:
        url += f"/{study_instance_uid}"
    headers = {
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        "Content-Length": str(body.length),
        "Accept": "application/dicom+json",
    }
    if destination.bearer_token:
        headers["Authorization"] = f"Bearer {destination.bearer_token}"
    own_client = client is None
    http = client or httpx.Client(timeout=destination.timeout_s)
    try:
        response = http.post(url, content=iter(body), headers=headers)
    except httpx.TransportError as exc:
        raise DeliveryTransientError(f"STOW-RS request failed ({type(exc).__name__})") from exc
    finally:
        if own_client:
            http.close()
    status = response.status_code
    if status in _TRANSIENT_HTTP:
        raise DeliveryTransientError(f"STOW-RS HTTP {status}")
    if status >= 400 and status != 409:
        raise DeliveryPermanentError(f"STOW-RS HTTP {status}")
    try:
        document = response.json() if response.content else None
    except ValueError:
        document = None
    stored = _raise_for_failures(document, status)
    LOG.info("STOW-RS stored %d/%d instances (HTTP %d)", len(stored), len(files), status)
    return StowReport(stored, status)
