"""The earlier SR that an amendment's SR supersedes (its Predecessor Documents Sequence).

An amendment of a study (a late series completed it again) writes new DICOM instances
(``dicom_node.encode.uids.UidFactory``), so the PACS holds both reports. The later one names the
earlier in Predecessor Documents Sequence (0040,A360; PS3.3 C.17.2), so that a viewer or reader
can tell which report replaced which. The earlier SR is the one recorded in the outputs table for
the same study and pipeline by the job of the latest earlier amendment; its Study, Series and
SOP Class/Instance UIDs are read from its stored file, which stays in the output folder until
retention removes the study's files (then no predecessor is named).
"""

from __future__ import annotations

import logging

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from sqlalchemy import Engine, select

from dicom_node.encode.types import DocumentRef
from workers.db import jobs
from workers.messages import JobContext
from workers.outbox.tables import outputs

log = logging.getLogger(__name__)

SR_STORAGE = "1.2.840.10008.5.1.4.1.1.88."
"""Prefix of the SR Storage SOP Class UIDs (PS3.4 B.5); the other DICOM outputs (SEG, KOS,
overlay series, GSPS) are not SR documents and are skipped."""

_TAGS = ["StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID", "SOPInstanceUID"]


def previous_sr(engine: Engine, context: JobContext) -> DocumentRef | None:
    """The SR recorded for the same study and pipeline by the latest earlier amendment that
    has one, or None (a first result, or no earlier SR file left to read)."""
    if context.amendment <= 0:
        return None
    query = (
        select(outputs.c.uid, outputs.c.path)
        .join(jobs, jobs.c.id == outputs.c.job_id)
        .where(outputs.c.study_instance_uid == context.study_instance_uid,
               outputs.c.pipeline == context.pipeline, outputs.c.kind == "dicom",
               jobs.c.amendment < context.amendment, outputs.c.path.is_not(None))
        .order_by(jobs.c.amendment.desc(), outputs.c.updated_at.desc(), outputs.c.id.desc())
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    for uid, path in rows:
        ref = _sr_ref(str(path), str(uid))
        if ref is not None:
            log.info("job %s: its SR supersedes SR %s", context.job_id, ref.sop_instance_uid)
            return ref
    if rows:
        log.info("job %s: no earlier SR file of amendment < %d left to reference",
                 context.job_id, context.amendment)
    return None


def _sr_ref(path: str, uid: str) -> DocumentRef | None:
    """The identifiers of the SR stored at `path` under SOP Instance UID `uid`; None when the
    file is gone or unreadable, is not an SR, or is not the recorded instance."""
    try:
        ds = dcmread(path, stop_before_pixels=True, specific_tags=_TAGS)
    except (OSError, InvalidDicomError):
        return None
    sop_class = str(ds.get("SOPClassUID", ""))
    if not sop_class.startswith(SR_STORAGE) or str(ds.get("SOPInstanceUID", "")) != uid:
        return None
    try:
        return DocumentRef(study_instance_uid=str(ds.get("StudyInstanceUID", "")),
                           series_instance_uid=str(ds.get("SeriesInstanceUID", "")),
                           sop_class_uid=sop_class, sop_instance_uid=uid)
    except ValueError:
        return None
