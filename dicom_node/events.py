"""Typed messages that leave the DICOM side of the node.

They carry identifiers and paths, never pixels, and a schema version so a consumer can refuse a
message it does not understand.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

SCHEMA_VERSION = 1


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_version: int = SCHEMA_VERSION


class InstanceStored(_Message):
    """One SOP instance is on disk (fsynced) and indexed."""

    sop_instance_uid: str
    sop_class_uid: str
    series_instance_uid: str
    study_instance_uid: str
    path: str
    size_bytes: int
    calling_ae: str
    duplicate: bool = False


class SeriesSummary(_Message):
    """The header facts routing needs about one complete series."""

    series_instance_uid: str
    modality: str | None
    body_part_examined: str | None
    series_description: str | None
    protocol_name: str | None
    image_type: tuple[str, ...]
    sop_class_uids: tuple[str, ...]
    instance_count: int
    slice_thickness: float | None
    calling_ae: str | None
    called_ae: str | None


class StudyReady(_Message):
    """A study (or part of it) finished arriving; `amendment` counts re-completions caused by
    instances that arrived after an earlier completion."""

    study_instance_uid: str
    series: tuple[SeriesSummary, ...]
    completed_at: datetime
    amendment: int = 0
