"""STOW-RS ingest with an audit trail (the web service's; kept out of `audit_hooks`, which every
acceptor process imports, so that a process that only receives C-STORE never loads the web
stack)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import sqlalchemy as sa

from dicom_node.dicomweb.stow_server import Part, StowService
from dicom_node.index.tables import instances
from dicom_node.ingest import Ingestor
from infernode.audit import AuditEvent, Category

REFERENCED_SOP_SEQUENCE = "00081199"
REFERENCED_SOP_INSTANCE_UID = "00081155"
"""DICOM JSON keys of a STOW-RS response (PS3.18 10.5.3)."""


class AuditedStowService(StowService):
    """STOW-RS ingest that audits each request's stored instances as one event per study
    (as an association's are), looking their studies up in the index after the request."""

    def __init__(self, ingestor: Ingestor, *, ae_title: str, max_body_bytes: int,
                 submit: Callable[[AuditEvent], None]) -> None:
        super().__init__(ingestor, ae_title=ae_title, max_body_bytes=max_body_bytes)
        self._submit = submit

    def store(self, parts: Iterable[Part], *, study_uid: str | None,
              client: str, peer_address: str | None) -> tuple[int, dict[str, Any]]:
        status, body = super().store(parts, study_uid=study_uid, client=client,
                                     peer_address=peer_address)
        sops = [str(item[REFERENCED_SOP_INSTANCE_UID]["Value"][0])
                for item in body.get(REFERENCED_SOP_SEQUENCE, {}).get("Value", [])
                if REFERENCED_SOP_INSTANCE_UID in item]
        if sops:
            studies: dict[str, list[str]] = {}
            with self.ingestor.index.engine.connect() as conn:
                for sop, study in conn.execute(
                        sa.select(instances.c.sop_instance_uid, instances.c.study_instance_uid)
                        .where(instances.c.sop_instance_uid.in_(sops))):
                    studies.setdefault(study, []).append(sop)
            for study, uids in studies.items():
                self._submit(AuditEvent(
                    Category.INSTANCES, "received", actor=client, source=peer_address,
                    subject=study, detail={"count": len(uids), "sop_instance_uids": uids,
                                           "destination": self.ae_title, "via": "stow-rs"}))
        return status, body
