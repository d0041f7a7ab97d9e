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
"""

from __future__ import annotations

import hmac
import json
import re
from typing import Any

from fastapi import APIRouter, Header, HTTPException, Request, Response

from dicom_node.errors import DatasetMismatch, StoreRefused
from dicom_node.index.parse import read_file_meta
from dicom_node.ingest import Arrival, Ingestor
from dicom_node.status import Status

_SOP_CLASS = "00081150"
_SOP_INSTANCE = "00081155"
_WARNING_REASON = "00081196"
_FAILURE_REASON = "00081197"
_FAILED_SEQUENCE = "00081198"
_REFERENCED_SEQUENCE = "00081199"
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)


def split_multipart(body: bytes, content_type: str) -> list[tuple[dict[str, str], bytes]]:
    """The parts of a multipart/related body as (headers, payload). Raises ValueError."""
    match = _BOUNDARY.search(content_type)
    if not content_type.lower().startswith("multipart/related") or match is None:
        raise ValueError("expected multipart/related with a boundary")
    delimiter = b"--" + match.group(1).encode("latin-1")
    parts = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk[2:] if chunk.startswith(b"\r\n") else chunk
        head, sep, payload = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("a part has no header/body separator")
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        parts.append((headers, payload[:-2] if payload.endswith(b"\r\n") else payload))
    return parts


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


def _meta_uids(payload: bytes) -> tuple[str | None, str | None, str]:
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

    def __init__(self, ingestor: Ingestor, *, ae_title: str) -> None:
        self.ingestor = ingestor
        self.ae_title = ae_title

    def store(self, parts: list[tuple[dict[str, str], bytes]], *, study_uid: str | None,
              client: str, peer_address: str | None) -> tuple[int, dict[str, Any]]:
        referenced: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        warned = False
        for headers, payload in parts:
            media = headers.get("content-type", "application/dicom").split(";")[0].strip()
            if media.lower() != "application/dicom":
                failed.append(_item(None, None, int(Status.SOP_CLASS_NOT_SUPPORTED)))
                continue
            sop_class, sop_instance, syntax = _meta_uids(payload)

            def arrival(payload: bytes = payload, sop_class: str | None = sop_class,
                        sop_instance: str | None = sop_instance, syntax: str = syntax) -> Arrival:
                return Arrival(raw=payload, sop_class_uid=sop_class or "",
                               sop_instance_uid=sop_instance or "", transfer_syntax_uid=syntax,
                               calling_ae=client, called_ae=self.ae_title,
                               peer_address=peer_address)

            try:
                accepted = self.ingestor.ingest(arrival, calling_ae=client,
                                                peer_address=peer_address,
                                                sop_class_uid=sop_class,
                                                sop_instance_uid=sop_instance)
                stored = accepted.stored
                if study_uid and stored.study_instance_uid not in ("", study_uid):
                    # Stored (it is durable and indexed), but the client addressed another study.
                    raise DatasetMismatch("instance belongs to another study than the request")
            except StoreRefused as exc:
                failed.append(_item(sop_class, sop_instance, int(exc.status)))
                continue
            warning = int(accepted.status) if accepted.status != Status.SUCCESS else None
            warned = warned or warning is not None
            referenced.append(_item(sop_class, sop_instance, warning=warning))
        body: dict[str, Any] = {}
        if referenced:
            body[_REFERENCED_SEQUENCE] = {"vr": "SQ", "Value": referenced}
        if failed:
            body[_FAILED_SEQUENCE] = {"vr": "SQ", "Value": failed}
        status = 200 if not (failed or warned) else (202 if referenced else 409)
        return status, body


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
        try:
            parts = split_multipart(await request.body(), request.headers.get("content-type", ""))
        except ValueError as exc:
            raise HTTPException(415, str(exc)) from exc
        if not parts:
            raise HTTPException(400, "the request holds no parts")
        peer = request.client.host if request.client else None
        status, body = service.store(parts, study_uid=study_uid, client=client,
                                     peer_address=peer)
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
