"""STOW-RS on the node (PS3.18 10.5, Store Transaction): a second way in, with the same receive
path and durability as C-STORE.

``POST /dicom-web/studies[/{study}]`` takes ``multipart/related; type="application/dicom"``; each
part is a DICOM Part 10 file stored bit-exact. The response is a DICOM JSON data set (PS3.18
10.5.3) listing each stored instance in Referenced SOP Sequence and each refused one in Failed SOP
Sequence with its Failure Reason; an instance stored with a warning (a conflicting duplicate,
PS3.4 B.2.3 0xB006) carries Warning Reason (0008,1196). HTTP status (PS3.18 10.5.3): 200 all stored,
202 some refused or a warning, 409 none stored. Each part goes through the same receive path as a
C-STORE, so a damaged part is refused, recorded and kept exactly as a damaged C-STORE would be.
A bearer token from the configured list is required.

The body is streamed to a temporary file in the spool (never held whole in memory) and refused
with 413 past `max_body_bytes`; splitting, parsing, fsync and indexing run in a worker thread, so
the event loop (and `/health`) never waits on them. Each part is copied from the spooled body into
a spool slot a megabyte at a time and read through a read-only mapping, like a C-STORE's data set,
so no part is held whole in memory either. With a study in the URL, a part of another study is
refused before anything of it is stored (its slot is removed).
"""

from __future__ import annotations

import hmac
import json
import mmap
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from fastapi import APIRouter, Header, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool

from dicom_node.buffers import Received
from dicom_node.config import DicomNodeConfig
from dicom_node.errors import StoreRefused
from dicom_node.index.parse import read_file_meta
from dicom_node.ingest import Arrival, Ingestor
from dicom_node.spool import SlotWriter
from dicom_node.status import Status

_SOP_CLASS = "00081150"
_SOP_INSTANCE = "00081155"
_WARNING_REASON = "00081196"
_FAILURE_REASON = "00081197"
_FAILED_SEQUENCE = "00081198"
_REFERENCED_SEQUENCE = "00081199"
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
DEFAULT_MAX_BODY_BYTES: int = DicomNodeConfig.model_fields["stow_max_body_bytes"].default
"""Largest STOW-RS request body, unless configured (`dicom.stow_max_body_bytes`)."""
PART_CHUNK_BYTES = 1024**2
"""How much of a part is copied from the spooled body into its spool slot at a time."""
PART_HEAD_BYTES = 256 * 1024
"""How much of a part its File Meta is read from (real ones are a few hundred bytes)."""


class Buffer(Protocol):
    """What the part splitter reads: bytes, or a memory map of a spooled body."""

    def find(self, sub: bytes, start: int = ..., end: int = ...) -> int: ...

    def __getitem__(self, index: slice) -> bytes: ...

    def __len__(self) -> int: ...


def _delimiter(content_type: str) -> bytes:
    match = _BOUNDARY.search(content_type)
    if not content_type.lower().startswith("multipart/related") or match is None:
        raise ValueError("expected multipart/related with a boundary")
    return b"--" + match.group(1).encode("latin-1")


@dataclass(frozen=True)
class Part:
    """One part of a multipart/related body: its headers and where its payload lies in the
    body (not copied out of it)."""

    headers: dict[str, str]
    body: Buffer
    start: int
    stop: int

    def head(self, size: int = PART_HEAD_BYTES) -> bytes:
        """The payload's first `size` bytes (where its File Meta is)."""
        return self.body[self.start:min(self.start + size, self.stop)]

    def chunks(self, size: int = PART_CHUNK_BYTES) -> Iterator[bytes]:
        """The payload, `size` bytes at a time."""
        for at in range(self.start, self.stop, size):
            yield self.body[at:min(at + size, self.stop)]


def iter_multipart(body: Buffer, content_type: str) -> Iterator[Part]:
    """The parts of a multipart/related body (bytes or a memory map of the spooled body), one
    at a time. Raises ValueError."""
    delimiter = _delimiter(content_type)
    at = body.find(delimiter)
    while at >= 0:
        start = at + len(delimiter)
        if body[start:start + 2] == b"--":
            return
        nxt = body.find(delimiter, start)
        end = nxt if nxt >= 0 else len(body)
        if body[start:start + 2] == b"\r\n":
            start += 2
        split = body.find(b"\r\n\r\n", start, end)
        if split < 0:
            raise ValueError("a part has no header/body separator")
        headers = {}
        for line in bytes(body[start:split]).decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        stop = end - 2 if body[end - 2:end] == b"\r\n" else end
        yield Part(headers, body, split + 4, stop)
        at = nxt


def _item(sop_class: str | None, sop_instance: str | None,
          reason: int | None = None, *, warning: int | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {}
    if sop_class:
        item[_SOP_CLASS] = {"vr": "UI", "Value": [sop_class]}
    if sop_instance:
        item[_SOP_INSTANCE] = {"vr": "UI", "Value": [sop_instance]}
    if reason is not None:
        item[_FAILURE_REASON] = {"vr": "US", "Value": [reason]}
    if warning is not None:
        item[_WARNING_REASON] = {"vr": "US", "Value": [warning]}
    return item


def _meta_uids(payload: Received) -> tuple[str | None, str | None, str]:
    """SOP Class, SOP Instance and Transfer Syntax UIDs from a part's File Meta (PS3.10 7.1);
    None where unreadable: the receive path then refuses and records the part."""
    try:
        meta, _ = read_file_meta(payload)
    except StoreRefused:
        return None, None, ""
    values = (meta.get(k) for k in ("MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID",
                                     "TransferSyntaxUID"))
    sop_class, sop_instance, syntax = (str(v) if v else None for v in values)
    return sop_class, sop_instance, syntax or ""


class StowService:
    """Stores each part of a STOW-RS request through the `Ingestor`."""

    def __init__(self, ingestor: Ingestor, *, ae_title: str,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.ingestor = ingestor
        self.ae_title = ae_title
        self.max_body_bytes = max_body_bytes

    def store_file(self, path: Path, content_type: str, *, study_uid: str | None, client: str,
                   peer_address: str | None) -> tuple[int, dict[str, Any]]:
        """Stores the parts of the spooled body at `path` (blocking: run it off the event loop).
        Raises ValueError when the body is not multipart/related or holds no part."""
        with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0,
                                                   access=mmap.ACCESS_READ) as body:
            return self.store(iter_multipart(body, content_type), study_uid=study_uid,
                              client=client, peer_address=peer_address)

    def store(self, parts: Iterable[Part], *, study_uid: str | None,
              client: str, peer_address: str | None) -> tuple[int, dict[str, Any]]:
        """Stores each part; the HTTP status and the DICOM JSON response (PS3.18 10.5.3).
        Raises ValueError when there is no part."""
        referenced: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        warned = False
        seen = 0
        for part in parts:
            seen += 1
            media = part.headers.get("content-type", "application/dicom").split(";")[0].strip()
            if media.lower() != "application/dicom":
                failed.append(_item(None, None, int(Status.SOP_CLASS_NOT_SUPPORTED)))
                continue
            # The part goes to a spool slot a megabyte at a time and is read back through a
            # read-only mapping, as a C-STORE's data set is (never whole in memory).
            # The UIDs come from the part itself, so that a refusal names them even when the
            # slot cannot be written (a full disk).
            sop_class, sop_instance, syntax = _meta_uids(part.head())
            slot = self.ingestor.spool.open_slot()
            try:
                for chunk in part.chunks():
                    slot.write(chunk)

                def arrival(slot: SlotWriter = slot, sop_class: str | None = sop_class,
                            sop_instance: str | None = sop_instance,
                            syntax: str = syntax) -> Arrival:
                    return Arrival(raw=slot.mapped(), sop_class_uid=sop_class or "",
                                   sop_instance_uid=sop_instance or "",
                                   transfer_syntax_uid=syntax, calling_ae=client,
                                   called_ae=self.ae_title, peer_address=peer_address,
                                   slot=slot)

                accepted = self.ingestor.ingest(arrival, calling_ae=client,
                                                peer_address=peer_address,
                                                sop_class_uid=sop_class,
                                                sop_instance_uid=sop_instance,
                                                expected_study=study_uid)
            except StoreRefused as exc:
                failed.append(_item(sop_class, sop_instance, int(exc.status)))
                continue
            finally:
                slot.close()
            warning = int(accepted.status) if accepted.status != Status.SUCCESS else None
            warned = warned or warning is not None
            referenced.append(_item(sop_class, sop_instance, warning=warning))
        if not seen:
            raise ValueError("the request holds no parts")
        body: dict[str, Any] = {}
        if referenced:
            body[_REFERENCED_SEQUENCE] = {"vr": "SQ", "Value": referenced}
        if failed:
            body[_FAILED_SEQUENCE] = {"vr": "SQ", "Value": failed}
        status = 200 if not (failed or warned) else (202 if referenced else 409)
        return status, body


async def _spool_body(request: Request, service: StowService) -> Path:
    """Streams the request body to a temporary file in the spool; 413 past the limit."""
    folder = service.ingestor.spool.root / ".tmp"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"stow-{uuid.uuid4().hex}.body"
    size = 0
    try:
        with path.open("wb") as out:
            # Written a megabyte at a time in a worker thread: a write can wait on the disk
            # (write-back throttling), and the event loop must not.
            pending: list[bytes] = []
            held = 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > service.max_body_bytes:
                    raise HTTPException(413, f"request body over {service.max_body_bytes} bytes")
                pending.append(chunk)
                held += len(chunk)
                if held >= PART_CHUNK_BYTES:
                    await run_in_threadpool(out.writelines, pending)
                    pending, held = [], 0
            if pending:
                await run_in_threadpool(out.writelines, pending)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def create_stow_router(service: StowService, tokens: tuple[str, ...]) -> APIRouter:
    """A router for ``/dicom-web/studies``; every request needs ``Authorization: Bearer``."""
    router = APIRouter()

    def _client(authorization: str | None) -> str:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not any(
            hmac.compare_digest(token.encode(), t.encode()) for t in tokens
        ):
            raise HTTPException(401, "a valid bearer token is required",
                                headers={"WWW-Authenticate": "Bearer"})
        return "STOW-RS"

    async def _store(request: Request, study_uid: str | None,
                     authorization: str | None) -> Response:
        client = _client(authorization)
        content_type = request.headers.get("content-type", "")
        try:
            _delimiter(content_type)
        except ValueError as exc:
            raise HTTPException(415, str(exc)) from exc
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > service.max_body_bytes:
            raise HTTPException(413, f"request body over {service.max_body_bytes} bytes")
        path = await _spool_body(request, service)
        peer = request.client.host if request.client else None
        try:
            status, body = await run_in_threadpool(
                service.store_file, path, content_type, study_uid=study_uid, client=client,
                peer_address=peer)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from exc
        finally:
            path.unlink(missing_ok=True)
        return Response(json.dumps(body), status_code=status,
                        media_type="application/dicom+json")

    @router.post("/dicom-web/studies")
    async def store_instances(request: Request,
                              authorization: str | None = Header(None)) -> Response:
        return await _store(request, None, authorization)

    @router.post("/dicom-web/studies/{study_uid}")
    async def store_study_instances(request: Request, study_uid: str,
                                    authorization: str | None = Header(None)) -> Response:
        return await _store(request, study_uid, authorization)

    return router
